"""Run the numbered notebooks in order with papermill, from one config, caching every stage.

A stage is skipped when its cache key is unchanged: the key hashes the config sections the stage reads,
the notebook's code cells and the key of the stage before it, so changing `distill.steps` re-runs distillation
and everything after it, but not pruning. Executed notebooks are kept under `results/<run>/notebooks/`.

    python -m boomerang.pipeline --config configs/smollm2-cpu.yaml
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import REPO_ROOT, RunConfig, load_config
from .io import read_json, write_json

NOTEBOOKS = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class Stage:
    notebook: str
    sections: tuple[str, ...]  # config sections this stage reads

    @property
    def name(self) -> str:
        return self.notebook.removesuffix(".ipynb")


STAGES = (
    Stage("01_prune.ipynb", ("seed", "teacher", "prune")),
    Stage("02_distill.ipynb", ("data", "distill")),
    Stage("03_interpolate.ipynb", ("interpolate",)),
    Stage("04_evaluate.ipynb", ("evaluate",)),
    Stage("05_lm_eval.ipynb", ("lm_eval",)),
    Stage("06_alignment.ipynb", ("align",)),
    Stage("07_figures.ipynb", ()),
)


def code_cells(notebook: dict) -> str:
    """The code cells' sources only: prose edits and saving in Jupyter (outputs, ids) keep the cache."""
    return json.dumps(["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"])


def stage_key(previous: str, cfg: RunConfig, stage: Stage, notebook: dict) -> str:
    """Cache key of a stage, chained on the previous stage's so that a change upstream invalidates
    everything downstream."""
    h = hashlib.sha256(previous.encode())
    h.update(cfg.digest(*stage.sections).encode() if stage.sections else b"")
    h.update(code_cells(notebook).encode())
    return h.hexdigest()[:16]


def _record_path(cfg: RunConfig, stage: Stage) -> Path:
    return cfg.run_dir / "stages" / f"{stage.name}.json"


def run(config: str, overrides: dict | None = None, force: tuple[str, ...] = (), stages=STAGES,
        notebooks: Path = NOTEBOOKS, log=print, dry_run: bool = False) -> dict[str, str]:
    """Execute the stages; returns each stage's outcome ('cached' or 'ran in Ns'). A dry run executes and
    writes nothing and says which stages would run ('would run: <why>')."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    import nbformat

    overrides = overrides or {}
    cfg = load_config(config, overrides)
    executed_dir = cfg.results_dir / "notebooks"
    outcome, invalidated, key = {}, False, ""
    for stage in stages:
        # the notebook is read once: the key and the execution see the same source, even if the file
        # is edited while the pipeline runs
        notebook = nbformat.read(notebooks / stage.notebook, as_version=4)
        key = stage_key(key, cfg, stage, notebook)
        record = _record_path(cfg, stage)
        cached = record.exists() and read_json(record).get("key") == key
        if cached and not invalidated and stage.name not in force:
            outcome[stage.name] = "cached"
            log(f"[{stage.name}] cached (key {key})")
            continue
        why = ("forced" if stage.name in force else "an earlier stage runs" if invalidated
               else "inputs changed" if record.exists() else "never ran")
        invalidated = True  # a re-run stage forces every later stage to run too
        if dry_run:
            outcome[stage.name] = f"would run: {why}"
            log(f"[{stage.name}] would run: {why} (key {key})")
            continue
        log(f"[{stage.name}] running ({why}) ...")
        executed_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        output = executed_dir / stage.notebook
        try:
            pm.execute_notebook(
                notebook, output, cwd=str(notebooks), kernel_name="python3",
                parameters={"config": str(Path(config).resolve()) if Path(config).exists() else config,
                            "overrides": overrides},
                progress_bar=False, log_output=True, stdout_file=sys.stdout, stderr_file=sys.stderr,
            )
        except PapermillExecutionError as err:
            raise SystemExit(
                f"stage {stage.name} failed in cell {err.cell_index} (execution count {err.exec_count}): "
                f"{err.ename}: {err.evalue}\nexecuted notebook with the traceback: {output}"
            ) from None
        seconds = time.perf_counter() - start
        write_json(record, {"key": key, "seconds": round(seconds, 1),
                            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
        outcome[stage.name] = f"ran in {seconds:.0f}s"
        log(f"[{stage.name}] done in {seconds:.0f}s")
    return outcome


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/smollm2-cpu.yaml", help="preset YAML (configs/)")
    parser.add_argument("--override", default="{}", help='JSON of dotted overrides, e.g. \'{"distill.steps": 10}\'')
    parser.add_argument("--force", nargs="*", default=(), help="stage names to re-run even if cached")
    parser.add_argument("--dry-run", action="store_true", help="say which stages would run; run nothing")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    outcome = run(args.config, json.loads(args.override), tuple(args.force), dry_run=args.dry_run)
    print(json.dumps(outcome, indent=2))
    print(f"pipeline finished in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
