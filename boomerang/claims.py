"""The paper's comparative claims, tested on the runs of a sweep: one row per claim, computed from the
result tables (never typed in). A claim whose runs are missing is reported as not run."""
from __future__ import annotations

import operator
from pathlib import Path

import pandas as pd
from scipy.stats import spearmanr

from .evaluate import boomerang_checks, interpolation_curve

CLAIM_COLUMNS = ["figure", "claim", "order", "value", "rule", "holds"]


def load_runs(results_root: str | Path, names: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Held-out perplexity rows of each run that has results, keyed by label (label -> run name)."""
    runs = {}
    for label, name in names.items():
        path = Path(results_root) / name / "metrics.csv"
        if path.exists():
            m = pd.read_csv(path)
            runs[label] = m[(m.task == "heldout") & (m.metric == "perplexity")]
    return runs


def _rho(curve: pd.DataFrame) -> float:
    return spearmanr(curve.num_layers, curve.value).statistic


def _ratio_at_sizes(other: pd.DataFrame, reference: pd.DataFrame) -> pd.Series:
    """other / reference perplexity at the intermediate sizes both have (the last row of each size)."""
    ref = reference.groupby("num_layers").value.last().iloc[1:-1]  # intermediate sizes only
    return (other.groupby("num_layers").value.last().reindex(ref.index) / ref).dropna()


_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _row(figure: str, claim: str, order: str, value: float | None, rule: str) -> dict:
    """A claim's row; `rule` is "<op> <threshold>", `value` None when its runs are missing."""
    op, threshold = rule.split()
    holds = "not run" if value is None else bool(_OPS[op](value, float(threshold)))
    return {"figure": figure, "claim": claim, "order": order, "value": value, "rule": rule, "holds": holds}


def paper_claims(runs: dict[str, pd.DataFrame], layer_pruning: pd.DataFrame | None = None,
                 flops: pd.DataFrame | None = None, offshelf: pd.DataFrame | None = None,
                 reference: str = "preset") -> pd.DataFrame:
    """`runs` maps variant labels (as in configs/sweeps) to perplexity rows. The preset's curve is tested
    against naive pruning and the layer-pruning methods; the ablations against `reference`'s (the run they
    differ from by one setting). `offshelf` holds the off-the-shelf pairs (one `task` per pair), absent
    where they cannot run."""
    main = runs["preset"]
    orders = sorted(set(main[main.method == "interpolated"].order))
    rows = []
    for order in orders:
        curve = interpolation_curve(main, order)
        naive = main[(main.method == "naive_pruned") & (main.order == order)]
        ratio = _ratio_at_sizes(naive, curve)
        rows.append(_row("2", "interpolation beats naive pruning at every intermediate size (min ratio)",
                         order, ratio.min(), "> 1"))
        rows += _ablation_claims(runs, reference, order)
        if layer_pruning is not None and len(layer_pruning):
            for method in ("shortgpt", "laco"):
                ratio = _ratio_at_sizes(layer_pruning[layer_pruning.method == method], curve)
                rows.append(_row("7", f"interpolation beats {method} at every intermediate size (min ratio)",
                                 order, ratio.min(), "> 1"))
                widen = spearmanr(ratio.index, ratio.values).statistic
                rows.append(_row("7", f"the gap to {method} widens as models shrink (Spearman rho of ratio "
                                 "vs size)", order, widen, "< 0"))
    rows += offshelf_claims(offshelf)
    if flops is not None:
        factor = float(flops.set_index("num_layers").flops["saving factor"])
        rows.append(_row("table 3", "distilling once saves compute over distilling every size "
                         "(saving factor)", "none", factor, ">= 10"))
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def _ablation_claims(runs: dict[str, pd.DataFrame], reference: str, order: str) -> list[dict]:
    """Figs. 2 (initialisation), 4, 5, 8 and 10: each variant against the reference run's curve."""
    rows = []
    base = interpolation_curve(runs[reference], order) if reference in runs else None

    def vs(label, figure, claim, rule, test, needs_reference=True):
        ready = label in runs and (base is not None or not needs_reference)
        rows.append(_row(figure, claim, order, test(interpolation_curve(runs[label], order)) if ready else None, rule))

    vs("random-init", "2", "random-init interpolation is worse than pruning-init at every size (min ratio)",
       "> 1", lambda c: _ratio_at_sizes(c, base).min())
    losses = {k: v for k, v in runs.items() if k.startswith("loss-")}
    best = (min(_ratio_at_sizes(interpolation_curve(v, order), base).mean() for v in losses.values())
            if losses and base is not None else None)
    rows.append(_row("5", "the full loss gives the lowest interpolated perplexity (best ablation's mean ratio "
                     "to it)", order, best, "> 1"))
    vs("loss-ce-kl", "5", "the cosine term makes interpolation more monotone (rho without minus rho with)",
       "> 0", lambda c: _rho(c) - _rho(base))
    vs("every-3rd", "8", "a student from every 3rd layer still interpolates (Spearman rho)", "<= -0.9", _rho,
       needs_reference=False)
    vs("every-4th", "8", "a student from every 4th layer does not interpolate smoothly (Spearman rho)",
       "> -0.9", _rho, needs_reference=False)
    budgets = sorted((k for k in runs if k.startswith("tokens-")), key=lambda k: int(k.split("-")[1]))
    for label in budgets:
        vs(label, "10", f"too few tokens: interpolation less monotone (rho at {label.split('-')[1]} steps "
           "minus the reference's)", "> 0", lambda c: _rho(c) - _rho(base))
    if not budgets:
        rows.append(_row("10", "too few tokens: interpolation less monotone", order, None, "> 0"))
    for label in (k for k in runs if k.startswith("separate-")):
        student = runs[label][runs[label].method == "student"].iloc[0]
        ratio = None
        if base is not None:
            same = base[base.num_layers == student.num_layers]
            ratio = same.value.iloc[0] / student.value if len(same) else float("nan")
        rows.append(_row("4", f"interpolation on par with a student distilled at {student.num_layers} layers "
                         "(interpolated / distilled perplexity)", order, ratio, "<= 1.1"))
    return rows


def offshelf_claims(offshelf: pd.DataFrame | None) -> list[dict]:
    """Fig. 6: the boomerang checks of each off-the-shelf pair, or one "not run" row without pairs."""
    if offshelf is None or offshelf.empty:
        return [_row("6", "released distilled models interpolate with their teachers (hub presets)", "none",
                     None, ">= 0.9")]
    rows = []
    for pair, table in offshelf.groupby("task"):
        metric = table.metric.iloc[0]
        for check in boomerang_checks(table, task=pair, metric=metric).itertuples():
            rows.append(_row("6", f"{pair}: {check.claim}", check.order, check.value, check.rule))
    return rows


def variant_checks(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The boomerang checks (between, monotone) of every run, side by side."""
    frames = [boomerang_checks(m).assign(run=label) for label, m in runs.items()]
    return pd.concat(frames, ignore_index=True)[["run", "order", "claim", "value", "holds"]]


def sweep_curves(runs: dict[str, pd.DataFrame], labels: dict[str, str], orders: list[str]) -> dict:
    """{order: {display label: interpolation curve}} for the runs of `labels` (run label -> display) that exist."""
    return {order: {shown: interpolation_curve(runs[label], order) for label, shown in labels.items() if label in runs}
            for order in orders}


def separate_students(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The students distilled directly at intermediate sizes, as points for `plots.sweep_figure`."""
    rows = [m[m.method == "student"].assign(label="distilled at this size", style="point")
            for label, m in runs.items() if label.startswith("separate-")]
    return pd.concat(rows, ignore_index=True) if rows else None
