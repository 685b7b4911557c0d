"""The paper's comparative claims, tested on the runs of a sweep: one claim per role a variant plays,
computed from the result tables (never typed in). A claim whose runs are missing is reported as not run."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from scipy.stats import spearmanr

from ..measure.checks import Claim, claims_frame
from ..measure.curves import MONOTONE_RHO, boomerang_checks, interpolation_curve
from .sweeps import PRESET, Sweep


def _rho(curve: pd.DataFrame) -> float:
    return spearmanr(curve.num_layers, curve.value).statistic


def _ratio_at_sizes(other: pd.DataFrame, reference: pd.DataFrame) -> pd.Series:
    """other / reference perplexity at the intermediate sizes both have (the last row of each size)."""
    ref = reference.groupby("num_layers").value.last().iloc[1:-1]  # intermediate sizes only
    return (other.groupby("num_layers").value.last().reindex(ref.index) / ref).dropna()


PRESET_FIGURES = ("2", "7", "table 3")  # the paper figures with a claim on the preset's own curve


def paper_claims(sweep: Sweep, runs: dict[str, pd.DataFrame], layer_pruning: pd.DataFrame | None = None,
                 flops: pd.DataFrame | None = None, offshelf: pd.DataFrame | None = None) -> pd.DataFrame:
    """`runs` maps the sweep's labels to perplexity rows. The preset's curve is tested against naive pruning
    and the layer-pruning methods; each variant against the sweep's reference run, by the roles it plays.
    `offshelf` holds the off-the-shelf pairs (one `task` per pair), absent where they cannot run."""
    main = runs[PRESET]
    claims = []
    for order in sorted(set(main[main.method == "interpolated"].order)):
        curve = interpolation_curve(main, order)
        naive = main[(main.method == "naive_pruned") & (main.order == order)]
        claims.append(Claim("interpolation beats naive pruning at every intermediate size (min ratio)",
                            _ratio_at_sizes(naive, curve).min(), "> 1", order, "2"))
        claims += _variant_claims(sweep, runs, order)
        if layer_pruning is not None and len(layer_pruning):
            for method in ("shortgpt", "laco"):
                ratio = _ratio_at_sizes(layer_pruning[layer_pruning.method == method], curve)
                claims += [Claim(f"interpolation beats {method} at every intermediate size (min ratio)",
                                 ratio.min(), "> 1", order, "7"),
                           Claim(f"the gap to {method} widens as models shrink (Spearman rho of ratio vs size)",
                                 spearmanr(ratio.index, ratio.values).statistic, "< 0", order, "7")]
    claims += offshelf_claims(offshelf)
    if flops is not None:
        factor = float(flops.set_index("num_layers").flops["saving factor"])
        claims.append(Claim("distilling once saves compute over distilling every size (saving factor)", factor,
                            ">= 10", "none", "table 3"))
    return claims_frame(claims)


@dataclass(frozen=True)
class _Curves:
    """The interpolation curves along one order that a sweep's variants are tested on; a variant missing from
    `variants`, or a `reference` of None, did not run along it."""

    sweep: Sweep
    order: str
    variants: dict[str, pd.DataFrame]
    reference: pd.DataFrame | None

    def figure(self, name: str) -> str:
        variant = self.sweep.variants[name]
        return self.sweep.spec.figures[variant.figure].paper if variant.figure else ""

    def claim(self, name: str, text: str, rule: str, test: Callable[[pd.DataFrame], float],
              needs_reference: bool = True) -> Claim:
        """`test` of the variant's curve, or not run while that curve (or the reference's it needs) is missing."""
        ready = name in self.variants and (self.reference is not None or not needs_reference)
        figure = self.figure(name)
        return Claim(text, test(self.variants[name]) if ready else None, rule, self.order, figure)


def _variant_claims(sweep: Sweep, runs: dict[str, pd.DataFrame], order: str) -> list[Claim]:
    """Figs. 2 (initialisation), 4, 5, 8 and 10: each variant, by its roles, against the reference's curve.
    A run that did not interpolate along `order` (e.g. made before the order was in its config) counts as
    not run for it."""
    along = {name: interpolation_curve(run, order) for name, run in runs.items()
             if ((run.method == "interpolated") & (run.order == order)).any()}
    curves = _Curves(sweep, order, {name: along[name] for name in sweep.variants if name in along},
                     along.get(sweep.reference))
    return [*_initialisation_claims(curves), *_loss_ablation_claims(curves), *_cosine_claims(curves),
            *_student_size_claims(curves), *_token_budget_claims(curves), *_separate_student_claims(curves, runs)]


def _initialisation_claims(curves: _Curves) -> list[Claim]:
    """Fig. 2: the pruned teacher is a better start than random weights, at every size."""
    return [curves.claim(name, "random-init interpolation is worse than pruning-init at every size (min ratio)", "> 1",
                         lambda c: _ratio_at_sizes(c, curves.reference).min())
            for name in curves.sweep.with_role("random_init")]


def _loss_ablation_claims(curves: _Curves) -> list[Claim]:
    """Fig. 5: one claim for all loss ablations together, as the full loss must beat even the best of them."""
    losses = curves.sweep.with_role("loss_ablation")
    if not losses:
        return []
    ready = curves.reference is not None and all(name in curves.variants for name in losses)
    best = min(_ratio_at_sizes(curves.variants[n], curves.reference).mean() for n in losses) if ready else None
    return [Claim("the full loss gives the lowest interpolated perplexity (best ablation's mean ratio to it)",
                  best, "> 1", curves.order, curves.figure(losses[0]))]


def _cosine_claims(curves: _Curves) -> list[Claim]:
    """Fig. 5: the cosine term is what keeps interpolation monotone, so dropping it raises rho."""
    return [curves.claim(name, "the cosine term makes interpolation more monotone (rho without minus rho with)", "> 0",
                         lambda c: _rho(c) - _rho(curves.reference))
            for name in curves.sweep.with_role("cosine_ablation")]


def _student_size_claims(curves: _Curves) -> list[Claim]:
    """Fig. 8: whether a student of a given size interpolates is judged on its own curve, without the reference."""
    sweep, claims = curves.sweep, []
    for name in sweep.with_role("interpolates"):
        claims.append(curves.claim(name, f"a student from {sweep.variants[name].label} still interpolates "
                                   "(Spearman rho)", f"<= {MONOTONE_RHO:g}", _rho, needs_reference=False))
    for name in sweep.with_role("does_not_interpolate"):
        claims.append(curves.claim(name, f"a student from {sweep.variants[name].label} does not interpolate smoothly "
                                   "(Spearman rho)", f"> {MONOTONE_RHO:g}", _rho, needs_reference=False))
    return claims


def _token_budget_claims(curves: _Curves) -> list[Claim]:
    """Fig. 10: a student distilled on too few tokens interpolates less monotonically than the reference."""
    return [curves.claim(name, f"too few tokens: interpolation less monotone (rho at "
                         f"{curves.sweep.variants[name].label} minus the reference's)", "> 0",
                         lambda c: _rho(c) - _rho(curves.reference))
            for name in curves.sweep.with_role("token_budget")]


def _separate_student_claims(curves: _Curves, runs: dict[str, pd.DataFrame]) -> list[Claim]:
    """Fig. 4: interpolation saves distilling each size, so it must match a student distilled at that size."""
    return [curves.claim(name, f"interpolation on par with a student distilled at {curves.sweep.variants[name].label} "
                         "(interpolated / distilled perplexity)", "<= 1.1",
                         lambda c: _same_size_ratio(curves.reference, runs[name]))
            for name in curves.sweep.with_role("separately_distilled")]


def _same_size_ratio(base: pd.DataFrame, separate: pd.DataFrame) -> float:
    student = separate[separate.method == "student"].iloc[0]
    same = base[base.num_layers == student.num_layers]
    return same.value.iloc[0] / student.value if len(same) else float("nan")


def offshelf_claims(offshelf: pd.DataFrame | None) -> list[Claim]:
    """Fig. 6: the boomerang checks of each off-the-shelf pair, or one "not run" row without pairs."""
    if offshelf is None or offshelf.empty:
        return [Claim("released distilled models interpolate with their teachers (hub presets)", None, ">= 0.9",
                      "none", "6")]
    claims = []
    for pair, table in offshelf.groupby("task"):
        for check in boomerang_checks(table, task=pair, metric=table.metric.iloc[0]).itertuples():
            claims.append(Claim(f"{pair}: {check.claim}", check.value, check.rule, check.scope, "6"))
    return claims


def variant_checks(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The boomerang checks (between, monotone) of every run, side by side."""
    frames = [boomerang_checks(m).assign(run=label) for label, m in runs.items()]
    return pd.concat(frames, ignore_index=True)[["run", "scope", "claim", "value", "holds"]]
