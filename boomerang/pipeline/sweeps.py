"""A sweep file (configs/sweeps/): a preset, its variants, and what each variant is for.

Each variant is a dict of overrides on the preset (after the sweep's `common` ones) run under the name
`<preset>--<variant>`, with the role it plays in the paper's comparisons and the figure that draws it.
Claims and figures read those roles, never the variants' names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import ValidationError, model_validator

from ..artefacts import METRICS, RUN_RECORD
from ..config import PRESETS, ConfigError, RunConfig, Section, load_config, read_yaml, resolve_preset

Role = Literal[
    "random_init",  # Fig. 2: the reference recipe from random weights
    "loss_ablation",  # Fig. 5: a subset of the loss terms; the full loss should be best
    "cosine_ablation",  # Fig. 5: the reference without the cosine term only
    "interpolates",  # Fig. 8: a student size expected to still interpolate
    "does_not_interpolate",  # Fig. 8: a student size expected not to
    "token_budget",  # Fig. 10: fewer distillation tokens than the reference
    "separately_distilled",  # Fig. 4: a student distilled directly at an intermediate size
]
PRESET = "preset"


class Reading(Section):
    """How the doc reads the claims of one paper figure: what the paper reports, and what would settle a claim
    that fails at this preset's scale (shown only while one fails). Prose only: every number comes from a run."""

    paper_reports: str = ""
    to_settle: str = ""


class FigureSpec(Reading):
    """One figure of the experiments: the paper figure it reproduces, its title, and the labels of the
    reference run's and the preset's curves when it draws them."""

    paper: str
    title: str
    reference: str | None = None
    preset: str | None = None
    note: str = ""  # what the figure shows, in words (the numbers come from the runs)


class Variant(Section):
    overrides: dict[str, Any] = {}
    label: str = ""
    figure: str | None = None
    roles: list[Role] = []


class SweepFile(Section):
    preset: str
    reference: str = PRESET  # the run the ablations are compared with: "preset" or a variant
    common: dict[str, Any] = {}  # overrides every variant shares
    figures: dict[str, FigureSpec] = {}
    variants: dict[str, Variant] = {}
    readings: dict[str, Reading] = {}  # the claims of paper figures no variant is drawn in (Fig. 7, Table 3, ...)

    @model_validator(mode="after")
    def _names_exist(self):
        if self.reference != PRESET and self.reference not in self.variants:
            raise ValueError(f"reference {self.reference!r} is neither 'preset' nor a variant ({sorted(self.variants)})")
        for name, variant in self.variants.items():
            if variant.figure is not None and variant.figure not in self.figures:
                raise ValueError(f"variant {name!r} names figure {variant.figure!r}, not one of {sorted(self.figures)}")
        return self


@dataclass(frozen=True)
class Sweep:
    path: Path
    preset: Path
    spec: SweepFile

    @property
    def reference(self) -> str:
        return self.spec.reference

    @property
    def variants(self) -> dict[str, Variant]:
        return self.spec.variants

    def reading(self, paper: str) -> Reading:
        """How the claims of paper figure `paper` ("4", "table 3") are read."""
        specs = [f for f in self.spec.figures.values() if f.paper == paper]
        return self.spec.readings.get(paper) or (specs[0] if specs else Reading())

    def runs_of(self, paper: str) -> list[str]:
        """The labels of the variants drawn in paper figure `paper`, after the reference they are compared with."""
        drawn = [v for v, variant in self.variants.items()
                 if variant.figure and self.spec.figures[variant.figure].paper == paper]
        return [self.reference, *(v for v in drawn if v != self.reference)] if drawn else []

    def with_role(self, role: Role) -> list[str]:
        return [name for name, v in self.variants.items() if role in v.roles]

    def overrides(self, label: str) -> dict:
        """What turns the preset into run `label` ("preset" or a variant), its run name included."""
        if label == PRESET:
            return {}
        return {**self.spec.common, **self.variants[label].overrides, "name": self.run_name(label)}

    def run_config(self, label: str) -> RunConfig:
        return load_config(self.preset, self.overrides(label))

    def run_name(self, label: str) -> str:
        base = load_config(self.preset).name
        return base if label == PRESET else f"{base}--{label}"

    def load_runs(self, results_root: str | Path) -> dict[str, pd.DataFrame]:
        """Held-out perplexity rows of every run of the sweep that has results, keyed by label."""
        runs = {}
        for label in (PRESET, *self.variants):
            path = Path(results_root) / self.run_name(label) / METRICS.name
            if path.exists():
                m = pd.read_csv(path)
                runs[label] = m[(m.task == "heldout") & (m.metric == "perplexity")]
        return runs

    def without_record(self, results_root: str | Path) -> set[str]:
        """Labels of the runs with results but no record of how they ran (`stages.csv`): made by code older
        than the run record, so not by today's pipeline."""
        root = Path(results_root)
        return {label for label in (PRESET, *self.variants)
                if (root / self.run_name(label) / METRICS.name).exists()
                and not (root / self.run_name(label) / RUN_RECORD.name).exists()}


def read_sweep(path: str | Path) -> Sweep:
    path = resolve_preset(path, "sweep", PRESETS / "sweeps")
    try:
        spec = SweepFile.model_validate(read_yaml(path) or {})
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path}: {problems}") from None
    preset = resolve_preset(path.parent / spec.preset, f"{path.name}'s preset:")
    return Sweep(path, preset, spec)
