"""The boomerang effect read off a run's table: each order's curve from student to teacher, the orders
compared size by size, and the checks on a curve (between the endpoints, falling with size, far better than
naive pruning). Pure functions of the table, so a change here re-runs only the stages that read them."""
from __future__ import annotations

import pandas as pd
from scipy.stats import spearmanr

from ..core.orders import FIXED_ORDERS
from .checks import Claim, claims_frame

BETWEEN_TOLERANCE = 0.02  # an intermediate size may sit 2 % outside the student-teacher band
NAIVE_FACTOR = 10.0  # naive pruning must be 10x worse at the middle sizes
MONOTONE_RHO = -0.9  # Spearman rho of perplexity against size


def interpolation_curve(metrics: pd.DataFrame, order: str) -> pd.DataFrame:
    """Student, the interpolated sizes strictly between it and the teacher along `order`, teacher: one row
    per size, smallest first. A patch of a one-layer block keeps the student's or the teacher's size; when
    that layer was frozen it is the student or the teacher again, and when it was trained (random init,
    unfrozen runs) it is another model of the same size, so the curve's ends are the endpoints themselves."""
    ends = metrics[metrics.method.isin(["student", "teacher"])]
    interp = metrics[(metrics.method == "interpolated") & (metrics.order == order)
                     & metrics.num_layers.between(ends.num_layers.min(), ends.num_layers.max(), inclusive="neither")]
    return pd.concat([ends, interp]).sort_values(["num_layers", "k"]).drop_duplicates("num_layers", keep="last")


def order_comparison(metrics: pd.DataFrame, orders: list[str]) -> pd.DataFrame:
    """Held-out perplexity of every order at every size strictly between student and teacher, the best fixed
    order's, and each order chosen on data against it (a ratio below 1: better than both fixed orders)."""
    ppl = metrics[(metrics.task == "heldout") & (metrics.metric == "perplexity")]
    curves = {o: interpolation_curve(ppl, o).iloc[1:-1].set_index("num_layers").value for o in orders}
    table = pd.DataFrame(curves)
    fixed = [o for o in orders if o in FIXED_ORDERS]
    if fixed:
        table["best fixed order"] = table[fixed].min(axis=1)
        for o in (o for o in orders if o not in FIXED_ORDERS):
            table[f"{o} / best fixed"] = table[o] / table["best fixed order"]
    return table.reset_index()


def boomerang_checks(metrics: pd.DataFrame, task: str = "heldout", metric: str = "perplexity",
                     figure: str = "") -> pd.DataFrame:
    """The boomerang effect on a perplexity-like `metric` of `task`, per patch order, over the sizes of
    `interpolation_curve` (the one rule for "intermediate size" everywhere):

    - intermediate sizes lie between student and teacher (within `BETWEEN_TOLERANCE`);
    - the metric falls with size: Spearman ρ(num_layers, metric) from student to teacher;
    - naive pruning is at least `NAIVE_FACTOR`× worse than interpolation at the middle third of sizes.
    """
    p = metrics[(metrics.task == task) & (metrics.metric == metric)]
    claims = []
    for order in sorted(set(p[p.method == "interpolated"].order)):
        curve = interpolation_curve(p, order)
        student, teacher = curve.value.iloc[0], curve.value.iloc[-1]
        interp = curve.iloc[1:-1]
        inside = interp.value.between(teacher * (1 - BETWEEN_TOLERANCE), student * (1 + BETWEEN_TOLERANCE))
        rho = spearmanr(curve.num_layers, curve.value).statistic
        rises = curve.num_layers[curve.value.diff() > 0]
        claims += [Claim("intermediate sizes between student and teacher", inside.mean(), ">= 0.9", order, figure,
                         f"outside the band at {_layers(interp.num_layers[~inside])}"),
                   Claim(f"{metric} falls with size (Spearman rho)", rho, f"<= {MONOTONE_RHO:g}", order, figure,
                         f"rises at {_layers(rises)}")]
        naive = p[(p.method == "naive_pruned") & (p.order == order)]
        if len(naive):
            low, high = curve.num_layers.iloc[0], curve.num_layers.iloc[-1]
            third = (high - low) / 3
            middle = interp[interp.num_layers.between(low + third, high - third)].set_index("num_layers").value
            naive = naive.sort_values("k").groupby("num_layers").value.last()
            ratios = (naive.reindex(middle.index) / middle).dropna()
            short = ratios[ratios < NAIVE_FACTOR]
            claims.append(Claim("naive pruning worse at middle sizes (min ratio)", ratios.min(), f">= {NAIVE_FACTOR:g}",
                                order, figure, "; ".join(f"{r:.3g}x at {n} layers" for n, r in short.items())))
    return claims_frame(claims)


def _layers(sizes: pd.Series) -> str:
    return ", ".join(str(int(n)) for n in sizes) + " layers"


def size_table(metrics: pd.DataFrame, task: str = "heldout", metric: str = "perplexity") -> pd.DataFrame:
    """One row per layer count from the student's to the teacher's, each size once: its parameters, `metric`
    along each order (`interpolation_curve`) and of naive pruning (the best of the orders' layer choices)."""
    p = metrics[(metrics.task == task) & (metrics.metric == metric)]
    orders = sorted(set(p[p.method == "interpolated"].order))
    table = pd.DataFrame({o: interpolation_curve(p, o).set_index("num_layers").value for o in orders})
    naive = p[p.method == "naive_pruned"].groupby("num_layers").value.min()
    if len(naive):
        table["naive pruning"] = naive.reindex(table.index)
    ends = p[p.method.isin(["student", "teacher"])].set_index("num_layers").method
    table.insert(0, "model", [ends.get(n, "interpolated") for n in table.index])
    table.insert(1, "params (M)", p.groupby("num_layers").params.max().reindex(table.index) / 1e6)
    return table.rename_axis("layers").reset_index()
