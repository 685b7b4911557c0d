"""Every file and directory a run writes, by name: stages declare these, and no path string is repeated.

`runs/<run>/` holds what is large or private (students, checkpoints, stage records; git-ignored),
`results/<run>/` the tables and executed notebooks, `figures/<run>/` the figures (PNG and PDF), and
`docs/*/<run>.md` the records generated from them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .config import RunConfig


@dataclass(frozen=True)
class Artefact:
    where: Literal["runs", "results", "figures", "docs"]
    name: str  # a file or directory name; a figure's name without its extension; under docs/, a folder

    def path(self, cfg: RunConfig) -> Path:
        if self.where == "docs":  # docs/<kind>/<run>.md: one record per run
            return cfg.root / "docs" / self.name / f"{cfg.name}.md"
        return {"runs": cfg.run_dir, "results": cfg.results_dir, "figures": cfg.figures_dir}[self.where] / self.name

    def files(self, cfg: RunConfig) -> list[Path]:
        """The paths behind the artefact: a figure is its PNG and its PDF."""
        path = self.path(cfg)
        return [path.with_name(f"{self.name}.{ext}") for ext in ("png", "pdf")] if self.where == "figures" else [path]


def figure(name: str) -> Artefact:
    return Artefact("figures", name)


# runs/<run>/
STUDENT_INIT = Artefact("runs", "student_init")
STUDENT = Artefact("runs", "student")
CHECKPOINTS = Artefact("runs", "checkpoints")
EXPORTS = Artefact("runs", "exports")  # interpolate.export_k sizes as plain checkpoints, <order>_k<k>/
STAGE_RECORDS = Artefact("runs", "stages")
RESOLVED_CONFIG = Artefact("runs", "config.json")  # what processes launched by a stage read
LOCK = Artefact("runs", "lock")  # held while a pipeline or a distillation writes the run
PROGRESS = Artefact("runs", "progress.log")  # a running stage's progress lines, which the runner prints
# results/<run>/
RUN_RECORD = Artefact("results", "stages.csv")  # each stage's time, device, precision and code version
RUN_RECORD_TYPES = {"stage": str, "seconds": float, "precision": str, "device": str, "code": str,
                    "finished": str}  # read as written: a commit such as 6387039 or 1e52345 is not a number
LAYOUT = Artefact("results", "layout.csv")
DISTILL_LOG = Artefact("results", "distill_log.csv")
INTERPOLANTS = Artefact("results", "interpolants.csv")
METRICS = Artefact("results", "metrics.csv")  # held-out perplexity of every model
CHECKS = Artefact("results", "checks.csv")
LM_EVAL = Artefact("results", "lm_eval.csv")  # lm-eval scores, in the layout of METRICS
LM_EVAL_CHECKS = Artefact("results", "lm_eval_checks.csv")
LM_EVAL_SAMPLES = Artefact("results", "lm_eval_samples")
ALIGNMENT = Artefact("results", "alignment.csv")
ALIGNMENT_CHECKS = Artefact("results", "alignment_checks.csv")
ORDERS = Artefact("results", "orders.csv")  # every order's perplexity at every size, KLPatch against the fixed
OPTIMUM = Artefact("results", "optimum.csv")
COST = Artefact("results", "cost.csv")
LAYER_PRUNING = Artefact("results", "layer_pruning.csv")
FLOPS = Artefact("results", "flops.csv")
OFFSHELF = Artefact("results", "offshelf.csv")
CLAIMS = Artefact("results", "claims.csv")
EXECUTED = Artefact("results", "notebooks")
# docs/, generated from results/
RUN_DOC = Artefact("docs", "runs")
EXPERIMENTS_DOC = Artefact("docs", "experiments")


def student_source(cfg: RunConfig) -> str | Path:
    """Where the distilled student is: a released one (`prune.student`) or this run's."""
    return cfg.prune.student or STUDENT.path(cfg)
