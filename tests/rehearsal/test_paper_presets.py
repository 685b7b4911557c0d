"""Every paper preset, unchanged but for its budget, through the runner on stand-ins: prune, distil in two
processes (FSDP as the presets say, DDP once; on a GPU box one per GPU, up to two), interpolate, evaluate,
the paper's lm-eval suite, alignment, figures; then the experiment stages with the off-the-shelf pairs of
Fig. 6."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from boomerang import artefacts as A
from boomerang.config import REPO_ROOT, load_config
from boomerang.device import default_device
from boomerang.measure.harness import TASK_GROUPS

PROCESSES = 2 if default_device().type == "cpu" else min(2, torch.cuda.device_count())
SUITE = load_config(REPO_ROOT / "configs" / "paper-base.yaml").lm_eval.tasks
# What changes for the rehearsal is the budget, never a code path: steps, tokens, how many sizes lm-eval
# scores, how many items per task, how long a generation may run; every size in held-out perplexity.
BUDGET = {"distill.steps": 2, "distill.batch_size": 1, "distill.grad_accum": 2, "distill.num_processes": PROCESSES,
          "distill.checkpoint_every": 1, "data.seq_len": 64, "data.skip_documents": 16, "data.shuffle_buffer": 32,
          "evaluate.eval_tokens": 512, "align.eval_tokens": 256, "align.tokens_per_minibatch": 64,
          "lm_eval.limit": 2, "lm_eval.max_gen_toks": 8, "lm_eval.size_stride": 6, "lm_eval.naive_stride": 12,
          "lm_eval.bootstrap_iters": 0, "offshelf.eval_tokens": 256, "offshelf.seq_len": 32,
          "layer_pruning.calibration_tokens": 128}
PRESETS = {"qwen3-4b": {}, "pythia-2.8b": {"distill.parallel": "ddp"}, "llama-3.2-3b": {},
           "qwen3-4b-released": {}, "pythia-2.8b-released": {}, "llama-3.2-3b-released": {}}
# this project's k minus the authors' along each preset's order: Qwen3 and Pythia patch last -> first past
# two one-layer blocks, Llama first -> last past one
K_OFFSET = {"qwen3-4b": 2, "pythia-2.8b": 2, "llama-3.2-3b": 1}


def pipeline(*args: str) -> str:
    """Run a module of the package in a child process (offline: it inherits `make rehearsal`'s variables)."""
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, f"{' '.join(args[:3])} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return proc.stdout


def overrides(rehearsal_dir, preset: str) -> dict:
    return {**BUDGET, **PRESETS[preset], "output_root": str(rehearsal_dir / "out")}


@pytest.mark.rehearsal
@pytest.mark.parametrize("preset", [pytest.param(p, marks=pytest.mark.xdist_group(p)) for p in PRESETS])
def test_a_paper_preset_runs_end_to_end_offline(preset, hub, rehearsal_dir):
    extra = overrides(rehearsal_dir, preset)
    pipeline("boomerang.pipeline", "--config", f"configs/{preset}.yaml", "--override", json.dumps(extra))
    cfg = load_config(REPO_ROOT / "configs" / f"{preset}.yaml", extra)
    metrics = pd.read_csv(A.METRICS.path(cfg))
    sizes = metrics[metrics.method == "interpolated"]
    assert len(sizes) > 0 and metrics.value.notna().all()
    matched = sizes.dropna(subset="authors_k")
    assert len(matched) and (matched.authors_k == matched.k - K_OFFSET[preset.removesuffix("-released")]).all()
    scores = pd.read_csv(A.LM_EVAL.path(cfg))
    assert set(scores.task) == set(SUITE), set(SUITE) ^ set(scores.task)
    assert (cfg.figures_dir / "fig2_lm_eval.png").exists() and A.RUN_DOC.path(cfg).exists()
    if not cfg.prune.student:
        log = pd.read_csv(A.DISTILL_LOG.path(cfg))
        assert len(log) == 2 and log.tokens.iloc[0] == PROCESSES * 2 * 64  # processes x two micro-batches x 64


@pytest.mark.rehearsal
@pytest.mark.xdist_group("qwen3-4b")  # after that preset's test, in the same worker
def test_the_experiment_stages_run_with_the_off_the_shelf_pairs(hub, rehearsal_dir):
    preset = "qwen3-4b"
    sweep = rehearsal_dir / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"preset": str(REPO_ROOT / "configs" / f"{preset}.yaml")}))
    # the preset's own run, with the same budget, is the one the first test made: cached here
    pipeline("boomerang.pipeline.experiments", "--sweep", str(sweep), "--only", "--override",
             json.dumps(overrides(rehearsal_dir, preset)))
    cfg = load_config(REPO_ROOT / "configs" / f"{preset}.yaml", overrides(rehearsal_dir, preset))
    offshelf = pd.read_csv(A.OFFSHELF.path(cfg))
    assert set(offshelf.task) == {"distilbert-bert", "distilgpt2-gpt2"}
    assert set(offshelf.metric) == {"pseudo_perplexity", "perplexity"}
    claims = pd.read_csv(A.CLAIMS.path(cfg))
    assert (claims.figure.astype(str) == "6").sum() == 2 * 3 * 2  # two pairs, three checks, two orders
    assert set(pd.read_csv(A.LAYER_PRUNING.path(cfg)).method) == {"shortgpt", "laco"}
    for pair in ("distilbert-bert", "distilgpt2-gpt2"):
        assert (cfg.figures_dir / f"fig6_offshelf_{pair}.png").exists()


def test_the_suite_is_the_papers():
    assert set(SUITE) == {t for tasks in TASK_GROUPS.values() for t in tasks} | {"wikitext"}
