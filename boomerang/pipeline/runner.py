"""Run the numbered notebooks in order with papermill, from one config, caching every stage.

A stage is skipped when its cache key is unchanged and its outputs are as it left them. The key covers
what the stage runs: the config sections it reads, the package code its function and the package functions
its notebook imports reach (docstrings and comments aside), its notebook's code cells, and the key of the
stage before it, so a change re-runs that stage and every later one. Executed notebooks are kept under
`results/<run>/notebooks/`.

    python -m boomerang.pipeline --config configs/smollm2-cpu.yaml [--dry-run] [--force 04_evaluate]
"""
from __future__ import annotations

import argparse
import ast
import contextlib
from contextlib import nullcontext
import hashlib
import importlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
from nbclient.exceptions import DeadKernelError
from papermill.exceptions import PapermillExecutionError
from traitlets.config import Config

from ..artefacts import EXECUTED, LOCK, PROGRESS, RUN_RECORD, RUN_RECORD_TYPES, STAGE_RECORDS
from ..config import REPO_ROOT, ConfigError, RunConfig, load_config, parse_overrides, resolve_preset
from ..device import PRECISION_SECTIONS, default_device, precision_name, resolve_run
from ..io import exclusive, manifest_problem, read_json, write_csv, write_json, write_text
from ..machine import describe
from ..progress import CHANNEL, follow
from ..provenance import NOT_CODE, PACKAGE, code_digests, fingerprint
from ..sources.teacher import cached_teacher
from .preflight import preflight
from .stages import STAGES, Stage, stages

NOTEBOOKS = REPO_ROOT / "notebooks"
# What the notebooks' kernels are told: no progress bars or library chatter in the executed notebooks
# (JupyterLab, without these, shows progress bars as widgets).
KERNEL_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
              "TRANSFORMERS_VERBOSITY": "error", "DATASETS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore",
              "TOKENIZERS_PARALLELISM": "false"}


@contextlib.contextmanager
def _kernel_sockets():
    """Where a stage's kernel listens: Unix sockets in a private temporary directory where the system has
    them, so no port opens on the host (and ipykernel does not warn of unencrypted TCP at every stage)."""
    if os.name == "nt":
        yield Config()
        return
    with tempfile.TemporaryDirectory(prefix="boomerang-kernel-") as directory:
        yield Config({"KernelManager": {"transport": "ipc", "ip": str(Path(directory) / "kernel")}})


def code_cells(notebook: dict) -> list[str]:
    """The code cells' sources only: prose edits and saving in Jupyter (outputs, ids) keep the cache."""
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]


def helper_digests(notebook: dict, stage: Stage) -> dict[str, str]:
    """What the package functions a notebook imports beside its stage run (a helper that shows a result
    makes the executed notebook too), hashed as `code_digests` hashes a stage function."""
    tree = ast.parse("\n".join(line for cell in code_cells(notebook) for line in cell.splitlines()
                               if not line.lstrip().startswith(("%", "!"))))  # IPython magics and shell lines
    digests = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
            module = importlib.import_module(node.module)
            for alias in node.names:
                obj = getattr(module, alias.name, None)
                if inspect.isfunction(obj) and obj.__module__ not in NOT_CODE | {stage.run.__module__}:
                    digests |= code_digests(obj)
    return digests


def key_parts(cfg: RunConfig, stage: Stage, notebook: dict, upstream: str) -> dict:
    """Everything a stage's result depends on, by part, so that a dry run can say which part changed."""
    parts = {"config": cfg.digest(*stage.sections) if stage.sections else "",
             "code": code_digests(stage.run) | helper_digests(notebook, stage),
             "notebook": hashlib.sha256(json.dumps(code_cells(notebook)).encode()).hexdigest()[:16],
             "upstream": upstream}
    if stage.elsewhere:
        parts["elsewhere"] = content_digest(stage.elsewhere(cfg))
    if "data" in stage.sections and cfg.data.source == "text_dir":  # local text is keyed by what it says
        parts["text"] = content_digest(sorted(Path(cfg.data.path).rglob("*.txt")))
    return parts


def content_digest(paths: list[Path]) -> str:
    """A hash of the files' contents (a missing file counts as such): other runs' results a stage reads."""
    h = hashlib.sha256()
    for path in paths:
        h.update(f"{path.parent.name}/{path.name}\0".encode())
        h.update(path.read_bytes() if path.is_file() else b"\0missing")
    return h.hexdigest()[:16]


def stage_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def outputs(cfg: RunConfig, stage: Stage) -> list[Path]:
    return [path for artefact in stage.writes for path in artefact.files(cfg)]


def why_not_cached(record: dict | None, parts: dict, cfg: RunConfig, stage: Stage) -> str | None:
    """None when the stage's record matches; otherwise what changed."""
    if record is None:
        return "never ran"
    old = record.get("parts", {})
    changed = [f"config {', '.join(stage.sections)}" if old.get("config") != parts["config"] else None,
               "notebook code" if old.get("notebook") != parts["notebook"] else None]
    old_code = old.get("code", {})
    code = sorted(m for m in set(parts["code"]) | set(old_code) if parts["code"].get(m) != old_code.get(m))
    changed.append(f"code of {', '.join(code)}" if code else None)
    changed = [c for c in changed if c]
    if changed:
        return "changed: " + "; ".join(changed)
    if old.get("upstream") != parts["upstream"]:
        return "an earlier stage's result changed"
    if old.get("elsewhere") != parts.get("elsewhere"):
        return "results of another run it reads changed"
    if old.get("text") != parts.get("text"):
        return "the text under data.path changed"
    now = fingerprint(outputs(cfg, stage))
    touched = sorted(Path(p).name for p in set(now) | set(record.get("outputs", {}))
                     if now.get(p) != record.get("outputs", {}).get(p))
    if touched:
        return f"outputs changed outside the runner: {', '.join(touched)}"
    return None


def _repo_relative(path: str | Path) -> str:
    """`path` relative to the repository when inside it, so that executed notebooks carry no path of the
    machine that ran them."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def notebook_path_argument(config: str | Path) -> str:
    """The config as the notebook's parameter."""
    return _repo_relative(resolve_preset(config))


@contextlib.contextmanager
def _kernel_environment(extra: dict[str, str]):
    env = {**KERNEL_ENV, **extra}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(config: str | Path, overrides: dict | None = None, force: tuple[str, ...] = (), group: str = "run",
        notebooks: Path = NOTEBOOKS, log=print, dry_run: bool = False) -> dict[str, str]:
    """Execute the stages of `group`; returns each stage's outcome ('cached', 'ran in Ns', or with
    `dry_run` 'would run: <why>', running and writing nothing)."""
    cfg, overrides = decide_precision(load_config(config, overrides or {}), overrides or {}, log)
    todo = stages(group)
    unknown = set(force) - {s.name for s in todo}
    if unknown:
        raise ConfigError(f"--force names no stage of this run: {sorted(unknown)}; stages: {[s.name for s in todo]}")
    teacher_built = check_caches(cfg, log) if dry_run else True  # a real run builds it in the pre-flight
    lock = nullcontext() if dry_run else exclusive(LOCK.path(cfg), f"a pipeline of run {cfg.name!r}")
    with lock:  # one writer per run: a second pipeline of the same run name is refused at once
        if not dry_run:
            remove_retired_notebooks(cfg)
        outcome, invalidated, key, checked = {}, False, "", False
        for stage in todo:
            # the notebook is read once: key and execution see the same source, even if it is edited meanwhile
            notebook = nbformat.read(notebooks / stage.notebook, as_version=4)
            parts = key_parts(cfg, stage, notebook, key)
            key = stage_key(parts)
            record_path = STAGE_RECORDS.path(cfg) / f"{stage.name}.json"
            record = read_json(record_path) if record_path.exists() else None
            why = ("forced" if stage.name in force else "an earlier stage runs" if invalidated
                   else why_not_cached(record, parts, cfg, stage))
            if why is None:
                outcome[stage.name] = "cached"
                log(f"[{stage.name}] cached")
                continue
            invalidated = True
            if not checked:
                if teacher_built:
                    preflight(cfg, log, group)
                else:
                    log(f"input checks: not made by a dry run, as they read the teacher, which is not built yet "
                        f"({cached_teacher(cfg.teacher)}); a real run builds it and checks before its first stage")
                checked = True
            if dry_run:
                outcome[stage.name] = f"would run: {why}"
                log(f"[{stage.name}] would run: {why}")
                continue
            log(f"[{stage.name}] running ({why}) ...")
            record_path.unlink(missing_ok=True)  # until it succeeds, the stage is not done
            with follow(PROGRESS.path(cfg), lambda line: log(f"[{stage.name}] {line}")):
                seconds = _execute(stage, notebook, cfg, config, overrides, notebooks)
            write_json(record_path, {"key": key, "parts": parts, "outputs": fingerprint(outputs(cfg, stage)),
                                     "seconds": round(seconds, 1)})
            record_stage(cfg, stage, seconds)
            outcome[stage.name] = f"ran in {seconds:.0f}s"
            log(f"[{stage.name}] done in {seconds:.0f}s")
        return outcome


def remove_retired_notebooks(cfg: RunConfig) -> None:
    """Executed notebooks of stages that no longer exist, which would pass for this run's results."""
    current = {s.notebook for s in STAGES}
    for executed in EXECUTED.path(cfg).glob("*.ipynb"):
        if executed.name not in current:
            executed.unlink()


def decide_precision(cfg: RunConfig, overrides: dict, log) -> tuple[RunConfig, dict]:
    """The run's precisions decided once, here (`auto`: bf16 where the device has it natively, else fp32),
    and the overrides that hand the decision to every stage's kernel, so that all compute alike."""
    cfg, notes = resolve_run(cfg)
    for line in notes:
        log(f"precision: {line}")
    decided = {f"{s}.mixed_precision": getattr(cfg, s).mixed_precision for s in PRECISION_SECTIONS}
    return cfg, {**overrides, **decided, "teacher.dtype": cfg.teacher.dtype}


def check_caches(cfg: RunConfig, log) -> bool:
    """Say which cache the project built would be built again: one that no longer matches its manifest.
    True when the teacher the input checks read is there without building anything (a hub teacher, or a
    GGUF wheel's that the cache holds intact)."""
    if cfg.teacher.source != "gguf_wheel":
        return True
    cache = cached_teacher(cfg.teacher)
    if not cache.exists():
        return False
    problem = manifest_problem(cache)
    if problem:
        log(f"the cached teacher {cache} fails its check ({problem}): the run builds it again")
    return problem is None


GENERATED = ("results", "figures", "docs/runs", "docs/experiments")  # what runs write: not code


def code_version() -> str:
    """The commit the package ran from (`+changes` when the work tree differs from it outside what runs
    generate, which a run rewrites as it goes), for a run's record."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True,
                                  check=True).stdout.strip()
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                      *(f":(exclude){path}" for path in GENERATED))
        return git("rev-parse", "--short=7", "HEAD") + ("+changes" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        from .. import __version__
        return f"boomerang {__version__}"


def record_stage(cfg: RunConfig, stage: Stage, seconds: float) -> None:
    """A stage's row in `results/<run>/stages.csv`: how long it took, on what, in which precision, from which
    code. A cached stage keeps the row of the run that made its results."""
    path = RUN_RECORD.path(cfg)
    rows = pd.read_csv(path, dtype=RUN_RECORD_TYPES, keep_default_na=False) if path.exists() else pd.DataFrame()
    rows = rows[rows.stage != stage.name] if len(rows) else rows
    row = {"stage": stage.name, "seconds": round(seconds, 1), "precision": _precisions(cfg, stage),
           "device": describe(default_device()), "code": code_version(),
           "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    order = {s.name: i for i, s in enumerate(stages("run") + stages("experiments"))}
    rows = pd.concat([rows, pd.DataFrame([row])], ignore_index=True)
    write_csv(path, rows.sort_values("stage", key=lambda s: s.map(order)).reset_index(drop=True))


def _precisions(cfg: RunConfig, stage: Stage) -> str:
    """The precision of the sections the stage reads (fp32 for `no`); empty where it names none (the models
    compute in their weights' dtype)."""
    read = [s for s in PRECISION_SECTIONS if s in stage.sections]
    return ", ".join(sorted({precision_name(getattr(cfg, s).mixed_precision) for s in read}))


def _execute(stage: Stage, notebook: dict, cfg: RunConfig, config, overrides: dict, notebooks: Path) -> float:
    """Run a stage's notebook in a kernel working where the command was started, so that a relative path in
    the config (data.path, output_root, ...) names in every stage what the pre-flight checked."""
    output = EXECUTED.path(cfg) / stage.notebook
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        with _kernel_environment({CHANNEL: str(PROGRESS.path(cfg))}), _kernel_sockets() as sockets:
            pm.execute_notebook(notebook, output, cwd=os.getcwd(), kernel_name="python3",
                                parameters={"config": notebook_path_argument(config), "overrides": overrides},
                                progress_bar=False, log_output=True, stdout_file=sys.stdout, stderr_file=sys.stderr,
                                config=sockets)
    except PapermillExecutionError as err:
        raise SystemExit(f"error: stage {stage.name} failed in cell {err.cell_index} (execution count "
                         f"{err.exec_count}): {err.ename}: {err.evalue}\nexecuted notebook with the traceback: "
                         f"{output}") from None
    except DeadKernelError:
        raise SystemExit(f"error: stage {stage.name}: its kernel died (killed, or out of memory); the stage is not "
                         f"recorded, so the next run starts it again. Executed notebook so far: {output}") from None
    executed = nbformat.read(output, as_version=4)
    # one parameters cell, papermill's, which holds what ran; paths where papermill recorded the notebook
    # object it was handed and the output path as given
    executed.cells = [c for c in executed.cells if "parameters" not in c.metadata.get("tags", [])]
    executed.metadata.papermill.input_path = _repo_relative(notebooks / stage.notebook)
    executed.metadata.papermill.output_path = _repo_relative(output)
    write_text(output, nbformat.writes(executed))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/smollm2-cpu.yaml", help="preset YAML (configs/)")
    parser.add_argument("--override", default="{}", help='JSON of dotted overrides, e.g. \'{"distill.steps": 10}\'')
    parser.add_argument("--force", nargs="*", default=(), help="stage names to re-run even if cached")
    parser.add_argument("--dry-run", action="store_true",
                        help="make the input checks, say which stages would run and why; run nothing")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        outcome = run(args.config, parse_overrides(args.override), tuple(args.force), dry_run=args.dry_run)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    print(json.dumps(outcome, indent=2))
    print(f"pipeline finished in {time.perf_counter() - start:.0f}s")
