"""Paper-style figures drawn from the tidy result tables only."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .io import atomic_path

ORDER_LABELS = {"last_to_first": "patch last → first", "first_to_last": "patch first → last"}
COLORS = {"interpolated": "#1f77b4", "naive_pruned": "#d62728", "student": "#2ca02c", "teacher": "black"}
LABELS = {"interpolated": "boomerang interpolation", "naive_pruned": "naive layer pruning",
          "student": "distilled student", "teacher": "teacher"}


def _style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def boomerang_figure(metrics: pd.DataFrame, metric: str = "perplexity", x: str = "params") -> plt.Figure:
    """Paper Fig. 2 for one run: held-out metric vs size, one panel per patch order."""
    _style()
    p = metrics[(metrics.task == "heldout") & (metrics.metric == metric)]
    orders = sorted(set(p[p.method == "interpolated"].order))
    fig, axes = plt.subplots(1, len(orders), figsize=(5.2 * len(orders), 4), sharey=True, squeeze=False)
    ends = p[p.method.isin(["student", "teacher"])]
    for ax, order in zip(axes[0], orders):
        for method in ("naive_pruned", "interpolated"):
            curve = p[(p.method == method) & (p.order == order)]
            if method == "interpolated":
                curve = pd.concat([curve, ends])
            else:
                curve = pd.concat([curve, p[(p.method == method) & (p.order == "none")], ends[ends.method == "teacher"]])
            curve = curve.sort_values(x)
            ax.plot(curve[x] / 1e6, curve.value, "o-", ms=4, color=COLORS[method], label=LABELS[method])
        for method in ("student", "teacher"):
            row = ends[ends.method == method]
            ax.scatter(row[x] / 1e6, row.value, s=160, marker="*", color=COLORS[method], zorder=5,
                       label=LABELS[method])
        ax.set_yscale("log")
        ax.set_title(ORDER_LABELS.get(order, order))
        ax.set_xlabel("parameters (M, embeddings counted once)" if x == "params" else f"{x}")
    axes[0][0].set_ylabel(f"held-out {metric}")
    axes[0][0].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def distill_log_figure(log: pd.DataFrame) -> plt.Figure:
    """Every loss term against training tokens."""
    _style()
    terms = [t for t in ("loss", "ce", "kl", "cos") if t in log]
    fig, axes = plt.subplots(1, len(terms), figsize=(3.4 * len(terms), 3))
    for ax, term in zip(axes, terms):
        ax.plot(log.tokens / 1e3, log[term], lw=1)
        ax.set_title(term)
        ax.set_xlabel("tokens (k)")
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, directory: str | Path, name: str) -> list[Path]:
    """Write `name.png` and `name.pdf` atomically; returns the paths."""
    paths = []
    for ext in ("png", "pdf"):
        path = Path(directory) / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        paths.append(path)
    return paths
