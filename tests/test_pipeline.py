"""The runner executes every notebook with papermill on the tiny model, then caches and invalidates."""
import json

import pandas as pd
import pytest

from boomerang import pipeline
from boomerang.config import load_config


def test_every_notebook_runs_then_caches(run_config):
    cfg = load_config(run_config)
    first = pipeline.run(str(run_config), log=lambda *_: None)
    assert all(v.startswith("ran") for v in first.values()), first
    for stage in pipeline.STAGES:
        assert (cfg.results_dir / "notebooks" / stage.notebook).exists()

    metrics = pd.read_csv(cfg.results_dir / "metrics.csv")
    assert set(metrics.method) == {"teacher", "student", "interpolated", "naive_pruned"}
    assert metrics.value.notna().all()
    for ext in ("png", "pdf"):
        assert (cfg.figures_dir / f"fig2_interpolation_vs_naive_pruning.{ext}").stat().st_size > 1000
    assert (cfg.run_dir / "interpolated" / "last_to_first_k2" / "config.json").exists()

    again = pipeline.run(str(run_config), log=lambda *_: None)
    assert set(again.values()) == {"cached"}

    # a changed evaluation setting re-runs evaluation and what follows, not pruning or distillation
    changed = pipeline.run(str(run_config), {"evaluate.eval_tokens": 128}, log=lambda *_: None)
    assert [changed[s.name] == "cached" for s in pipeline.STAGES] == [True, True, True, False, False, False]


def test_failed_stage_names_notebook_and_cell(run_config):
    with pytest.raises(SystemExit, match=r"01_prune failed in cell \d+.*ValueError"):
        pipeline.run(str(run_config), {"prune.init": "zeros"}, log=lambda *_: None)


def test_unknown_config_key_is_rejected(run_config):
    with pytest.raises(ValueError, match="stpes"):
        load_config(run_config, {"distill.stpes": 3})
