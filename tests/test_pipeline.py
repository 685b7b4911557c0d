"""The runner executes every notebook with papermill on the tiny model, then caches and invalidates."""
import hashlib
import json
from dataclasses import asdict

import pandas as pd
import pytest

from boomerang import pipeline
from boomerang.config import load_config


def test_every_notebook_runs_then_caches(run_config, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # the offline lm-eval tasks need no network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config(run_config)
    first = pipeline.run(str(run_config), log=lambda *_: None)
    assert all(v.startswith("ran") for v in first.values()), first
    for stage in pipeline.STAGES:
        assert (cfg.results_dir / "notebooks" / stage.notebook).exists()

    metrics = pd.read_csv(cfg.results_dir / "metrics.csv")
    assert set(metrics.method) == {"teacher", "student", "interpolated", "naive_pruned"}
    assert metrics.value.notna().all()
    harness = metrics[metrics.task != "heldout"]
    assert set(harness.task) == {"boomerang_rolling", "boomerang_lastword", "boomerang_cloze"}
    # teacher, student, naive k=0; then per order its one size strictly between student (4 layers) and
    # teacher (6), interpolated and naive-pruned (the strides are tested in test_evaluate)
    per_task = harness[harness.metric == "acc_norm"]
    assert len(per_task) == 3 + 2 * 1 + 2 * 1
    assert set(per_task[per_task.order != "none"].num_layers) == {5}
    assert (cfg.results_dir / "lm_eval_checks.csv").exists()
    for name in ("fig2_interpolation_vs_naive_pruning", "fig2_lm_eval"):
        for ext in ("png", "pdf"):
            assert (cfg.figures_dir / f"{name}.{ext}").stat().st_size > 1000
    assert (cfg.run_dir / "interpolated" / "last_to_first_k2" / "config.json").exists()

    again = pipeline.run(str(run_config), log=lambda *_: None)
    assert set(again.values()) == {"cached"}

    # a dry run says what a changed setting would re-run, and runs and writes nothing
    records = {p: p.read_bytes() for p in (cfg.run_dir / "stages").iterdir()}
    planned = pipeline.run(str(run_config), {"interpolate.orders": ["first_to_last"]}, log=lambda *_: None,
                           dry_run=True)
    assert list(planned.values()) == ["cached"] * 2 + ["would run: inputs changed"] + \
        ["would run: an earlier stage runs"] * 4
    assert records == {p: p.read_bytes() for p in (cfg.run_dir / "stages").iterdir()}

    # a changed evaluation setting re-runs evaluation and what follows, not pruning or distillation
    changed = pipeline.run(str(run_config), {"evaluate.eval_tokens": 128}, log=lambda *_: None)
    assert [changed[s.name] == "cached" for s in pipeline.STAGES] == [True, True, True, False, False, False, False]
    # an lm-eval setting re-runs lm-eval and what follows, and keeps the perplexity rows
    changed = pipeline.run(str(run_config), {"evaluate.eval_tokens": 128, "lm_eval.tasks": ["boomerang_cloze"]},
                           log=lambda *_: None)
    assert [changed[s.name] == "cached" for s in pipeline.STAGES] == [True, True, True, True, False, False, False]
    metrics = pd.read_csv(cfg.results_dir / "metrics.csv")
    assert set(metrics.task) == {"heldout", "boomerang_cloze"}


def test_failed_stage_names_notebook_and_cell(run_config):
    with pytest.raises(SystemExit, match=r"01_prune failed in cell \d+.*ValueError"):
        pipeline.run(str(run_config), {"prune.init": "zeros"}, log=lambda *_: None)


def test_unknown_config_key_is_rejected(run_config):
    with pytest.raises(ValueError, match="stpes"):
        load_config(run_config, {"distill.stpes": 3})


def test_an_option_at_its_default_leaves_cache_keys_alone(run_config):
    """`distill.patch_prob`, `patch_draw`, `tail_weight` and `gradient_checkpointing` came after runs were
    cached: at their defaults they must not change their keys; set, they must."""
    cfg = load_config(run_config)
    before = asdict(cfg.distill)
    for later in ("patch_prob", "patch_draw", "tail_weight", "gradient_checkpointing"):
        del before[later]  # as hashed before they existed
    old_key = hashlib.sha256(json.dumps({"distill": before}, sort_keys=True).encode()).hexdigest()[:16]
    assert cfg.digest("distill") == old_key
    patch_aware = load_config(run_config, {"distill.patch_prob": 0.5}).digest("distill")
    assert patch_aware != old_key
    ends = load_config(run_config, {"distill.patch_prob": 0.5, "distill.patch_draw": "ends"}).digest("distill")
    assert ends not in (old_key, patch_aware)
    assert load_config(run_config, {"distill.tail_weight": 1.0}).digest("distill") != old_key
    assert load_config(run_config, {"distill.gradient_checkpointing": True}).digest("distill") != old_key
