"""The sweep's record, `docs/experiments/<preset>.md` (stage 11), generated from results/ like a run's
(`docs`): each paper figure's runs and claims read, and how every run of the sweep ran."""
from __future__ import annotations

import pandas as pd

from .. import artefacts as A
from ..config import RunConfig
from ..measure.checks import NOT_RUN
from ..measure.curves import interpolation_curve
from .claims import PRESET_FIGURES
from .docs import EXPERIMENTS_DOC_STAGE, how_it_ran, relative, render, summary
from .sweeps import PRESET, Sweep


def how_the_runs_ran(cfg: RunConfig, sweep: Sweep) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run of the sweep with results, in one row each (`summary`; a run without a record was made by
    older code and says so), and the seconds of each of their stages."""
    rows, seconds, older = [], {}, sweep.without_record(cfg.root / "results")
    for label in (PRESET, *sweep.variants):
        run = cfg.model_copy(update={"name": sweep.run_name(label)})
        if not A.METRICS.path(run).exists():
            continue
        if label in older:
            rows.append({"run": label, "code": "older code: no record of how it ran"})
            continue
        record = how_it_ran(run, before=EXPERIMENTS_DOC_STAGE)
        rows.append({"run": label, **summary(record)})
        seconds[label] = record.set_index("stage").seconds
    by_stage = pd.DataFrame(seconds).T.rename_axis("run").reset_index() if seconds else pd.DataFrame()
    return pd.DataFrame(rows), by_stage


def curve_summary(runs: dict[str, pd.DataFrame], labels: dict[str, str], orders: list[str]) -> pd.DataFrame:
    """Per run of a figure: its student, and per order the range of its interpolated sizes and their ρ."""
    rows = []
    for label, shown in labels.items():
        if label not in runs:
            continue
        m = runs[label]
        row = {"run": label, "shown as": shown, "student": m[m.method == "student"].value.iloc[0]}
        for order in orders:
            curve = interpolation_curve(m, order).iloc[1:-1]
            if len(curve):
                row[f"{order}: interpolated"] = f"{curve.value.min():.3g}–{curve.value.max():.3g}"
        rows.append(row)
    return pd.DataFrame(rows)


def beside_threshold(value: float, rule: str) -> str:
    """`value` to 3 significant figures, or as many more as it takes not to read as the rule's threshold
    (1.001 against "> 1" is not shown as 1)."""
    threshold = float(rule.split()[-1])
    for digits in range(3, 9):
        shown = f"{value:.{digits}g}"
        if float(shown) != threshold or value == threshold:
            break
    return shown


def verdicts(claims: pd.DataFrame) -> pd.DataFrame:
    """One row per claim, one column per scope (patch order): the measured value and whether it holds."""
    def cell(row) -> str:
        if str(row.holds) == NOT_RUN:
            return NOT_RUN
        return f"{beside_threshold(row.value, row.rule)}: {'holds' if str(row.holds) == 'True' else 'fails'}"
    cells = claims.assign(cell=[cell(r) for r in claims.itertuples()])
    wide = cells.pivot_table(index=["claim", "rule"], columns="scope", values="cell", aggfunc="first", sort=False)
    return wide.reset_index().rename_axis(columns=None).fillna("")


def claim_readings(sweep: Sweep, claims: pd.DataFrame) -> dict[str, dict]:
    """Per paper figure with claims: what the paper reports, the measured verdicts, the runs they come from,
    and, while one fails, what would settle it (`Reading` in the sweep file)."""
    readings = {}
    for paper, rows in claims.groupby(claims.figure.astype(str), sort=False):
        runs = list(dict.fromkeys(([PRESET] if paper in PRESET_FIGURES else []) + sweep.runs_of(paper)))
        readings[paper] = {"reading": sweep.reading(paper), "verdicts": verdicts(rows), "runs": runs,
                           "fails": bool((rows.holds.astype(str) == "False").any())}
    return readings


def write_experiments_doc(cfg: RunConfig, sweep: Sweep, runs: dict[str, pd.DataFrame], claims: pd.DataFrame,
                          readings: dict[str, dict]) -> Path:
    """docs/experiments/<preset>.md from the sweep's results/ and figures/, the claims read (`claim_readings`)."""
    doc = A.EXPERIMENTS_DOC.path(cfg)
    orders = cfg.interpolate.orders
    sections, placed = [], {"7", "table 3"}  # those two have sections
    for name, spec in sweep.spec.figures.items():
        labels = ({sweep.reference: spec.reference} if spec.reference else {}) | \
                 ({PRESET: spec.preset} if spec.preset else {}) | \
                 {v: variant.label for v, variant in sweep.variants.items() if variant.figure == name}
        image = cfg.figures_dir / f"{name}.png"
        reads = spec.paper if spec.paper in readings and spec.paper not in placed else None  # its claims, once
        placed.add(reads)
        sections.append({"spec": spec, "image": relative(image, doc) if image.exists() else None,
                         "runs": curve_summary(runs, labels, orders), "reads": reads})
    extra = {n: relative(cfg.figures_dir / f"{n}.png", doc) for n in ("fig7_layer_pruning", "fig_frontier_baselines")
             if (cfg.figures_dir / f"{n}.png").exists()}
    ran, by_stage = how_the_runs_ran(cfg, sweep)
    render("experiments.md.j2", doc, cfg=cfg, sweep=sweep, claims=claims, sections=sections, figures=extra,
            ran=ran, by_stage=by_stage, readings=readings,
            unplaced=[p for p in readings if p not in placed],
            layer_pruning=pd.read_csv(A.LAYER_PRUNING.path(cfg)), flops=pd.read_csv(A.FLOPS.path(cfg)),
            missing=[v for v in sweep.variants if v not in runs])
    return doc
