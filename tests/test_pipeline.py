"""The runner executes every notebook with papermill on the tiny model, then caches and invalidates by what
each stage runs: its config sections, its package code, its notebook, its outputs."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from boomerang import artefacts as A
from boomerang import provenance
from boomerang.provenance import code_digests
from boomerang.config import REPO_ROOT, ConfigError, load_config, parse_overrides
from boomerang.pipeline import docs, runner
from boomerang.pipeline.claims import variant_checks
from boomerang.pipeline.stages import STAGES, stages
from boomerang.pipeline.tables import markdown

RUN = [s.name for s in stages("run")]


def quiet(*_):
    pass


def reruns(outcome: dict) -> list[str]:
    return [name for name, what in outcome.items() if what != "cached"]


def test_every_notebook_runs_then_caches_by_what_each_stage_runs(run_config, monkeypatch, capfd):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # the offline lm-eval tasks need no network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # relative paths, as a user types them, name the same files in the pre-flight and in every stage's kernel
    monkeypatch.chdir(run_config.parent)
    preset = yaml.safe_load(run_config.read_text())
    shutil.copytree(preset["data"]["path"], "corpus")  # a copy of the shared corpus, as it is edited below
    preset["output_root"], preset["data"]["path"] = "outputs", "corpus"
    run_config.write_text(yaml.safe_dump(preset))
    cfg = load_config(run_config)
    retired = A.EXECUTED.path(cfg) / "07_figures.ipynb"  # left by a stage that no longer exists
    retired.parent.mkdir(parents=True, exist_ok=True)
    retired.write_text("{}")
    lines = []
    first = runner.run(run_config, log=lines.append)
    assert all(v.startswith("ran") for v in first.values()), first
    assert not retired.exists()
    # the terminal shows the precision decided once, and progress while a stage runs; the notebooks do not
    assert "precision: distill, evaluate, lm_eval: fp32" in lines
    distilling = [line for line in lines if line.startswith("[02_distill] distill:")]
    assert distilling and "4/4" in distilling[-1] and "tokens/s" in distilling[-1], lines
    assert any(line.startswith("[04_evaluate] ") and "models" in line for line in lines), lines
    assert "without encryption" not in capfd.readouterr().err  # the kernels listen on private Unix sockets
    record = docs.how_it_ran(cfg)
    assert list(record.stage) == RUN and (record.seconds > 0).all()
    assert record.set_index("stage").precision.to_dict()["02_distill"] == "fp32"
    assert record.device.str.contains("threads").all() and record.code.str.len().ge(7).all()
    for name in RUN:
        executed = A.EXECUTED.path(cfg) / f"{name}.ipynb"
        notebook = nbformat.read(executed, as_version=4)
        outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("name") == "stderr"], f"{name}: stderr in the executed notebook"
        widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert not widgets, f"{name}: progress bars in the executed notebook"
        assert str(REPO_ROOT) not in json.dumps(notebook.cells), f"{name}: a path of this machine"
        (injected,) = [c.source for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert max(map(len, injected.splitlines()[2:])) <= 88, f"{name}: an override line scrolls sideways in Lab"
        text = json.dumps([o for o in outputs if o.get("output_type") == "stream"])
        assert "tokens/s]" not in text and "step 2/4" not in text, f"{name}: progress in the executed notebook"

    metrics = pd.read_csv(A.METRICS.path(cfg))
    assert A.METRICS.path(cfg).resolve().is_relative_to(run_config.parent / "outputs")  # where the user said
    assert not (REPO_ROOT / "notebooks" / "outputs").exists()  # not beside the notebooks the kernels read
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

    # local text is keyed by its content: an edited document re-runs distillation and what follows it
    document = next(Path("corpus").glob("*.txt"))
    original = document.read_text()
    document.write_text(original.replace(".", "!", 1))
    planned = runner.run(run_config, log=quiet, dry_run=True)
    assert planned["01_prune"] == "cached" and planned["02_distill"] == "would run: the text under data.path changed"
    document.write_text(original)
    assert set(runner.run(run_config, log=quiet, dry_run=True).values()) == {"cached"}

    # a run's record set beside another run's: re-reported when that run's results change, and only then
    beside = {"compare_with": ["other"]}
    planned = runner.run(run_config, beside, log=quiet, dry_run=True)
    assert reruns(planned) == ["08_report"] and planned["08_report"] == "would run: changed: config compare_with"
    report, compared = stages("run")[-1], load_config(run_config, beside)
    notebook = nbformat.read(runner.NOTEBOOKS / report.notebook, as_version=4)
    reported = {"parts": runner.key_parts(compared, report, notebook, ""), "outputs": {}}
    record, kept = A.RUN_DOC.path(cfg), A.RUN_DOC.path(cfg).read_bytes()
    stat = record.stat()
    docs.write_run_doc(compared)
    assert "`other` has no results yet" in A.RUN_DOC.path(cfg).read_text()
    shutil.copytree(cfg.results_dir, cfg.results_dir.with_name("other"))
    assert runner.why_not_cached(reported, runner.key_parts(compared, report, notebook, ""), compared, report) == \
        "results of another run it reads changed"
    docs.write_run_doc(compared)
    doc = A.RUN_DOC.path(cfg).read_text()
    assert "## Beside the run `other`" in doc and "ratio" in doc and "holds (other)" in doc and "tiny (s)" in doc
    # the record's stage table: the stages that made what the page reports, not the report's row of a past run
    assert "| 07_sizes " in doc and "| 08_report " not in doc, doc
    record.write_bytes(kept)  # the runner's own record as it left it
    os.utime(record, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    # a dry run says what a change would re-run and why, and runs and writes nothing
    records = {p: p.read_bytes() for p in A.STAGE_RECORDS.path(cfg).iterdir()}
    planned = runner.run(run_config, {"interpolate.orders": ["first_to_last"]}, log=quiet, dry_run=True)
    assert planned["03_interpolate"] == "would run: changed: config interpolate, evaluate"
    assert reruns(planned) == RUN[2:] and planned["04_evaluate"] == "would run: an earlier stage runs"
    assert records == {p: p.read_bytes() for p in A.STAGE_RECORDS.path(cfg).iterdir()}

    # a semantic edit of package code re-runs the stages that reach it, and every later one; prose does not
    source = provenance._source
    edited = "boomerang.measure.curves"

    def edit(replace):
        monkeypatch.setattr(provenance, "_source", lambda m: replace(source(m)) if m == edited else source(m))

    edit(lambda s: s.replace("BETWEEN_TOLERANCE = 0.02", "BETWEEN_TOLERANCE = 0.03"))
    planned = runner.run(run_config, log=quiet, dry_run=True)
    assert reruns(planned) == RUN[3:]  # a check's change re-runs its readers, not interpolation or distillation
    assert planned["04_evaluate"] == f"would run: changed: code of {edited}"
    edit(lambda s: s.replace('"""Student, the interpolated sizes', '"""The student, the interpolated sizes')
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

    # a changed evaluation setting re-runs interpolation (KLPatch calibrates with evaluate's batch and precision),
    # evaluation and what follows, not pruning or distillation
    changed = runner.run(run_config, {"evaluate.eval_tokens": 128}, log=quiet)
    assert reruns(changed) == RUN[2:]
    weights = A.STUDENT.path(cfg) / "model.safetensors"
    weights.write_bytes(weights.read_bytes())
    planned = runner.run(run_config, log=quiet, dry_run=True)
    assert planned["02_distill"] == "would run: outputs changed outside the runner: model.safetensors"


@pytest.mark.parametrize("cell, says", [
    ('raise ValueError("the cell that fails")', r"error: stage 01_prune failed in cell \d+.*ValueError: the cell that fails"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", r"error: stage 01_prune: its kernel died \(killed, or "
                                                                 r"out of memory\); the stage is not recorded")])
def test_a_failed_stage_names_its_notebook_and_cell_and_is_not_recorded(run_config, tmp_path, cell, says):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(runner.NOTEBOOKS, notebooks)
    broken = nbformat.read(notebooks / "01_prune.ipynb", as_version=4)
    broken.cells[-1].source = cell
    nbformat.write(broken, notebooks / "01_prune.ipynb")
    with pytest.raises(SystemExit, match=says):
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


@pytest.mark.parametrize("commit", ["6387039", "1e52345"])
def test_a_commit_that_looks_like_a_number_is_recorded_as_written(run_config, monkeypatch, commit):
    cfg = load_config(run_config)
    monkeypatch.setattr(runner, "code_version", lambda: commit)
    for stage in stages("run")[:2]:
        runner.record_stage(cfg, stage, 1.0)
    record = docs.how_it_ran(cfg)
    assert record.code.tolist() == [commit, commit]
    # and the docs show it as written, not as the number a table renderer would read in it (1e+52345)
    assert f"| {commit} " in markdown(record) and "e+" not in markdown(record)
    assert docs.summary(record)["code"] == commit


def test_a_package_function_a_notebook_imports_keys_its_stage_as_its_stage_function_does(run_config):
    """A helper that shows a result makes the executed notebook: editing it re-runs the stages that call it."""
    stage = next(s for s in STAGES if s.name == "11_experiments")
    cell = lambda source: {"cell_type": "code", "source": source}  # noqa: E731
    plain = {"cells": [cell("from boomerang.config import load_config\nfrom boomerang.pipeline import stages")]}
    shown = cell("%matplotlib inline\nfrom boomerang.pipeline.claims import variant_checks")
    helper = {"cells": [*plain["cells"], shown]}
    assert runner.helper_digests(plain, stage) == {}  # the stage function's reach is hashed per function
    assert runner.helper_digests(helper, stage) == code_digests(variant_checks)
    code = runner.key_parts(load_config(run_config), stage, helper, "")["code"]
    assert "boomerang.pipeline.claims.variant_checks" in code


def test_the_sweeps_figures_and_record_are_code_of_stage_11_only():
    """Drawing or writing up the sweep is read by the experiments stage alone: a change there re-runs no run."""
    sweep_code = {"boomerang.pipeline.sweep_plots", "boomerang.pipeline.experiments_doc"}
    reach = {s.name: set(code_digests(s.run)) & sweep_code for s in STAGES}
    assert reach.pop("11_experiments") == sweep_code
    assert not any(reach.values()), reach


def test_the_code_version_ignores_what_runs_generate(tmp_path, monkeypatch):
    """A run rewrites results/ as it goes; only a change elsewhere makes the code differ from its commit."""
    git = lambda *args: subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    for path in ("results/run/metrics.csv", "boomerang/x.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    monkeypatch.setattr(runner, "REPO_ROOT", tmp_path)
    (tmp_path / "results/run/metrics.csv").write_text("2\n")
    assert not runner.code_version().endswith("+changes")
    (tmp_path / "boomerang/x.py").write_text("2\n")
    assert runner.code_version().endswith("+changes")
