"""The runner executes every notebook with papermill on the tiny model, then caches and invalidates by what
each stage runs: its config sections, its package code, its notebook, its outputs."""
import json
import shutil

import nbformat
import pandas as pd
import pytest

from boomerang import artefacts as A
from boomerang import provenance
from boomerang.config import REPO_ROOT, ConfigError, load_config, parse_overrides
from boomerang.pipeline import runner
from boomerang.pipeline.stages import stages

RUN = [s.name for s in stages("run")]


def quiet(*_):
    pass


def reruns(outcome: dict) -> list[str]:
    return [name for name, what in outcome.items() if what != "cached"]


def test_every_notebook_runs_then_caches_by_what_each_stage_runs(run_config, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # the offline lm-eval tasks need no network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config(run_config)
    first = runner.run(run_config, log=quiet)
    assert all(v.startswith("ran") for v in first.values()), first
    for name in RUN:
        executed = A.EXECUTED.path(cfg) / f"{name}.ipynb"
        notebook = nbformat.read(executed, as_version=4)
        outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("name") == "stderr"], f"{name}: stderr in the executed notebook"
        widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert not widgets, f"{name}: progress bars in the executed notebook"
        assert str(REPO_ROOT) not in json.dumps(notebook.cells), f"{name}: a path of this machine"

    metrics = pd.read_csv(A.METRICS.path(cfg))
    assert set(metrics.method) == {"teacher", "student", "interpolated", "naive_pruned"}
    assert metrics.value.notna().all() and set(metrics.task) == {"heldout"}
    scores = pd.read_csv(A.LM_EVAL.path(cfg))
    assert set(scores.task) == {"boomerang_rolling", "boomerang_lastword", "boomerang_cloze"}
    # teacher, student, naive k=0; then per order its one size strictly between student (4 layers) and
    # teacher (6), interpolated and naive-pruned (the strides are tested in test_evaluate)
    per_task = scores[scores.metric == "acc_norm"]
    assert len(per_task) == 3 + 2 * 1 + 2 * 1
    assert set(per_task[per_task.order != "none"].num_layers) == {5}
    for name in ("distill_log", "fig2_interpolation_vs_naive_pruning", "fig2_lm_eval", "alignment_cka"):
        for ext in ("png", "pdf"):
            assert (cfg.figures_dir / f"{name}.{ext}").stat().st_size > 1000
    assert (A.EXPORTS.path(cfg) / "last_to_first_k2" / "config.json").exists()
    doc = A.RUN_DOC.path(cfg).read_text()
    assert "authors' k" in doc and "fig2_interpolation_vs_naive_pruning.png" in doc

    assert set(runner.run(run_config, log=quiet).values()) == {"cached"}

    # a dry run says what a change would re-run and why, and runs and writes nothing
    records = {p: p.read_bytes() for p in A.STAGE_RECORDS.path(cfg).iterdir()}
    planned = runner.run(run_config, {"interpolate.orders": ["first_to_last"]}, log=quiet, dry_run=True)
    assert planned["03_interpolate"] == "would run: changed: config interpolate"
    assert reruns(planned) == RUN[2:] and planned["04_evaluate"] == "would run: an earlier stage runs"
    assert records == {p: p.read_bytes() for p in A.STAGE_RECORDS.path(cfg).iterdir()}

    # a semantic edit of package code re-runs the stages that reach it, and every later one; prose does not
    source = provenance._source
    edited = "boomerang.measure.perplexity"

    def edit(replace):
        monkeypatch.setattr(provenance, "_source", lambda m: replace(source(m)) if m == edited else source(m))

    edit(lambda s: s.replace("BETWEEN_TOLERANCE = 0.02", "BETWEEN_TOLERANCE = 0.03"))
    planned = runner.run(run_config, log=quiet, dry_run=True)
    assert reruns(planned) == RUN[2:]  # interpolation tables live in measure.perplexity; distillation does not
    assert planned["03_interpolate"] == f"would run: changed: code of {edited}"
    edit(lambda s: s.replace('"""Held-out perplexity of every', '"""The held-out perplexity of every')
         .replace("# an intermediate size may sit", "# an intermediate size can sit"))
    assert set(runner.run(run_config, log=quiet, dry_run=True).values()) == {"cached"}
    monkeypatch.setattr(provenance, "_source", source)

    # an output rewritten outside the runner invalidates its stage: a table here, the student that
    # `python -m boomerang.distill` would write again below
    table = A.METRICS.path(cfg)
    table.write_text(table.read_text())
    planned = runner.run(run_config, log=quiet, dry_run=True)
    assert planned["04_evaluate"] == "would run: outputs changed outside the runner: metrics.csv"
    assert reruns(planned) == RUN[3:]

    # a changed evaluation setting re-runs evaluation and what follows, not pruning or distillation
    changed = runner.run(run_config, {"evaluate.eval_tokens": 128}, log=quiet)
    assert reruns(changed) == RUN[3:]
    weights = A.STUDENT.path(cfg) / "model.safetensors"
    weights.write_bytes(weights.read_bytes())
    planned = runner.run(run_config, log=quiet, dry_run=True)
    assert planned["02_distill"] == "would run: outputs changed outside the runner: model.safetensors"


def test_a_failed_stage_names_its_notebook_and_cell_and_is_not_recorded(run_config, tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(runner.NOTEBOOKS, notebooks)
    broken = nbformat.read(notebooks / "01_prune.ipynb", as_version=4)
    broken.cells[-1].source = 'raise ValueError("the cell that fails")'
    nbformat.write(broken, notebooks / "01_prune.ipynb")
    with pytest.raises(SystemExit, match=r"01_prune failed in cell \d+.*ValueError: the cell that fails"):
        runner.run(run_config, log=quiet, notebooks=notebooks)
    assert not (A.STAGE_RECORDS.path(load_config(run_config)) / "01_prune.json").exists()


def test_bad_command_line_values_name_their_cause(run_config):
    with pytest.raises(ConfigError, match="stpes"):
        load_config(run_config, {"distill.stpes": 3})
    with pytest.raises(ConfigError, match="--force names no stage.*04_evalute"):
        runner.run(run_config, force=("04_evalute",), log=quiet, dry_run=True)
    with pytest.raises(ConfigError, match="--override is not valid JSON"):
        parse_overrides('{"distill.steps": 10')
    with pytest.raises(ConfigError, match="--override must be a JSON object"):
        parse_overrides(json.dumps([1, 2]))
