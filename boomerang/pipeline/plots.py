"""Paper-style figures drawn from the tidy result tables only."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import LogFormatter
import pandas as pd
import seaborn as sns

from ..io import atomic_path
from ..measure.curves import interpolation_curve

ORDER_LABELS = {"last_to_first": "patch last → first", "first_to_last": "patch first → last", "klpatch": "KLPatch"}
ORDER_COLORS = {"last_to_first": "#1f77b4", "first_to_last": "#ff7f0e", "klpatch": "#2ca02c"}
COLORS = {"interpolated": "#1f77b4", "naive_pruned": "#d62728", "student": "#2ca02c", "teacher": "black"}
LABELS = {"interpolated": "boomerang interpolation", "naive_pruned": "naive layer pruning",
          "student": "distilled student", "teacher": "teacher"}


def apply_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


class _PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (50, 60, 100), where matplotlib would write 5×10¹ on a short range."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def log_y(ax) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))


def legend_beneath(fig: plt.Figure, ax, ncol: int = 4) -> float:
    """One legend for all panels, from `ax`'s labelled artists, beneath them where no curve lies under it.
    Returns the fraction of the figure's height it takes, the bottom of tight_layout's rect."""
    handles, labels = ax.get_legend_handles_labels()
    ncol = min(len(labels), ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=9, bbox_to_anchor=(0.5, 0))
    return (0.22 * -(-len(labels) // ncol) + 0.08) / fig.get_figheight()  # inches per row at 9 pt, and margin


def boomerang_figure(metrics: pd.DataFrame, metric: str = "perplexity", x: str = "params",
                     task: str = "heldout", title: str | None = None) -> plt.Figure:
    """Paper Fig. 2 for one run (Fig. 6 for an off-the-shelf pair): `metric` of `task` vs size, one column
    per patch order.

    Top row: interpolation against naive layer pruning where the run measured it (log scale). Bottom row:
    interpolation alone on a linear scale, with the student's and teacher's levels, so "between the two"
    can be read off.
    """
    apply_style()
    p = metrics[(metrics.task == task) & (metrics.metric == metric)]
    orders = sorted(set(p[p.method == "interpolated"].order))
    fig, axes = plt.subplots(2, len(orders), figsize=(4.0 * len(orders), 6), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]})
    ends = p[p.method.isin(["student", "teacher"])]
    for col, order in enumerate(orders):
        top, zoom = axes[0][col], axes[1][col]
        interp = pd.concat([p[(p.method == "interpolated") & (p.order == order)], ends]).sort_values(x)
        naive = p[(p.method == "naive_pruned") & (p.order.isin([order, "none"]))]
        for ax in (top, zoom):
            ax.plot(interp[x] / 1e6, interp.value, "o-", ms=4, color=COLORS["interpolated"],
                    label=LABELS["interpolated"])
            for method in ("student", "teacher"):
                row = ends[ends.method == method]
                ax.scatter(row[x] / 1e6, row.value, s=160, marker="*", color=COLORS[method], zorder=5,
                           label=LABELS[method])
        if len(naive):  # from the teacher down; a run without it (evaluate.naive_stride 0) has no such curve
            naive = pd.concat([naive, ends[ends.method == "teacher"]]).sort_values(x)
            top.plot(naive[x] / 1e6, naive.value, "o-", ms=4, color=COLORS["naive_pruned"],
                     label=LABELS["naive_pruned"])
        log_y(top)
        top.set_title(ORDER_LABELS.get(order, order))
        for method in ("student", "teacher"):
            zoom.axhline(ends[ends.method == method].value.iloc[0], color=COLORS[method], ls=":", lw=1)
        zoom.set_xlabel("parameters (M, embeddings counted once)" if x == "params" else x)
    axes[0][0].set_ylabel(f"{'held-out' if task == 'heldout' else task} {metric} (log)")
    axes[1][0].set_ylabel(f"{metric}, interpolation only")
    bottom = legend_beneath(fig, axes[0][0])
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def harness_figure(panels: pd.DataFrame, x: str = "params") -> plt.Figure:
    """Paper Figs. 2-3 for lm-eval: one panel per task group or task (see `harness.panel_scores`), score
    against size for interpolation along each order and for naive pruning, student and teacher marked."""
    apply_style()
    names = list(dict.fromkeys(panels.panel))
    fig, axes = plt.subplots(1, len(names), figsize=(4.0 * len(names), 3.6), squeeze=False)
    styles = {"last_to_first": "-", "first_to_last": "--"}
    for ax, name in zip(axes[0], names):
        p = panels[panels.panel == name]
        ends = p[p.method.isin(["student", "teacher"])]
        for method in ("interpolated", "naive_pruned"):
            for order in sorted(set(p[p.method == method].order) - {"none"}):
                anchor = ends if method == "interpolated" else ends[ends.method == "teacher"]
                line = pd.concat([p[(p.method == method) & (p.order.isin([order, "none"]))], anchor])
                line = line.sort_values(x)
                ax.errorbar(line[x] / 1e6, line.value, yerr=line.stderr.fillna(0), fmt="o" + styles.get(order, "-"),
                            ms=3, lw=1.2, capsize=2, color=COLORS[method],
                            label=f"{LABELS[method]} ({ORDER_LABELS.get(order, order)})")
        for method in ("student", "teacher"):
            row = ends[ends.method == method]
            ax.scatter(row[x] / 1e6, row.value, s=160, marker="*", color=COLORS[method], zorder=5,
                       label=LABELS[method])
        metric = p.metric.iloc[0]
        if "perplexity" in metric:
            log_y(ax)
        ax.set_title(name)
        ax.set_ylabel(metric)
        ax.set_xlabel("parameters (M, embeddings counted once)" if x == "params" else x)
    fig.tight_layout(rect=(0, legend_beneath(fig, axes[0][0], ncol=3), 1, 1))
    return fig


def distill_log_figure(log: pd.DataFrame) -> plt.Figure:
    """Every loss term against training tokens."""
    apply_style()
    terms = [t for t in ("loss", "ce", "kl", "cos", "tail") if t in log]
    rows = (len(terms) + 2) // 3
    fig, axes = plt.subplots(rows, 3, figsize=(9, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(terms):]:
        ax.set_visible(False)
    for ax, term in zip(axes.flat, terms):
        ax.plot(log.tokens / 1e3, log[term], lw=1)
        ax.set_title(term)
        ax.set_xlabel("tokens (k)")
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, directory: str | Path, name: str) -> plt.Figure:
    """Write `name.png` and `name.pdf` atomically and close the figure, which is returned: a notebook shows
    it where its text speaks of it, not wherever the cell that drew it ends. The PDF carries no creation
    date, so an unchanged figure is an unchanged file."""
    for ext in ("png", "pdf"):
        with atomic_path(Path(directory) / f"{name}.{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight",
                        metadata={"CreationDate": None} if ext == "pdf" else None)
    plt.close(fig)
    return fig


def save_all(drawn: dict[str, plt.Figure], directory: str | Path) -> dict[str, plt.Figure]:
    """`save` every figure of a stage under its name; the figures by name, for its notebook to show."""
    return {name: save(fig, directory, name) for name, fig in drawn.items()}


def cka_figure(alignment: pd.DataFrame) -> plt.Figure:
    """CKA heatmaps (student state × teacher state) per student; dots mark the layout's alignment map."""
    apply_style()
    cka = alignment[alignment.kind == "cka"]
    models = list(dict.fromkeys(cka.model))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.2), squeeze=False)
    for ax, name in zip(axes[0], models):
        grid = cka[cka.model == name].pivot(index="student_state", columns="teacher_state", values="value")
        image = ax.imshow(grid.values, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis")
        aligned = alignment[(alignment.kind == "cosine") & (alignment.model == name)]
        ax.scatter(aligned.teacher_state, aligned.student_state, s=12, color="white", edgecolor="black",
                   linewidth=0.5, label="alignment map")
        ax.set_title(name)
        ax.set_xlabel("teacher hidden state (0 = embeddings)")
        ax.set_ylabel("student hidden state")
        ax.grid(False)
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.colorbar(image, ax=axes[0].tolist(), label="debiased linear CKA", shrink=0.9)
    return fig


def cosine_figure(alignment: pd.DataFrame) -> plt.Figure:
    """Per-layer cosine between each student hidden state and its aligned teacher state."""
    apply_style()
    cos = alignment[alignment.kind == "cosine"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    sns.lineplot(data=cos, x="student_state", y="value", hue="model", marker="o", ax=ax)
    ax.set_xlabel("student hidden state (0 = embeddings, last = post-norm)")
    ax.set_ylabel("cosine to aligned teacher state")
    ax.set_ylim(top=1.02)
    fig.tight_layout()
    return fig


def final_cosine_figure(alignment: pd.DataFrame, metrics: pd.DataFrame) -> plt.Figure:
    """For each size along each order, by its number of layers: final-state cosine to the teacher beside
    held-out perplexity (`interpolation_curve`'s sizes: each layer count once)."""
    apply_style()
    fin = alignment[alignment.kind == "final_cosine"]
    ppl = metrics[(metrics.task == "heldout") & (metrics.metric == "perplexity")]
    orders = list(dict.fromkeys(fin.order))
    fig, axes = plt.subplots(1, len(orders), figsize=(4.0 * len(orders), 3.4), squeeze=False)
    for ax, order in zip(axes[0], orders):
        f = fin[fin.order == order].sort_values(["num_layers", "k"]).drop_duplicates("num_layers", keep="last")
        p = interpolation_curve(ppl, order).set_index("num_layers").value
        ax.plot(f.num_layers, f.value, "o-", color=COLORS["interpolated"], label="final-state cosine to teacher")
        ax.set_xlabel("layers")
        ax.set_ylabel("cosine", color=COLORS["interpolated"])
        twin = ax.twinx()
        twin.plot(p.index, p.values, "s--", color="tab:orange", label="held-out perplexity")
        log_y(twin)
        twin.set_ylabel("perplexity", color="tab:orange")
        twin.grid(False)
        ax.set_title(ORDER_LABELS.get(order, order))
    fig.tight_layout()
    return fig


METHOD_STYLES = {"naive_pruned": ("naive layer pruning", "s--", "#d62728"),  # label, line style, colour
                 "shortgpt": ("ShortGPT", "v--", "#9467bd"), "laco": ("LaCo", "^--", "#8c564b")}


def orders_figure(orders: pd.DataFrame, optimum: pd.DataFrame | None = None) -> plt.Figure:
    """Held-out perplexity of every patch order at every intermediate size, and the exact optimum of
    KLPatch's objective where it was searched."""
    apply_style()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    names = [c for c in orders.columns if c != "num_layers" and "/" not in c and c != "best fixed order"]
    for name in names:
        ax.plot(orders.num_layers, orders[name], "o-", ms=3.5, lw=1.3, color=ORDER_COLORS.get(name),
                label=ORDER_LABELS.get(name, name))
    if optimum is not None and len(optimum):
        best = optimum[optimum.choice == "optimum"]
        ax.scatter(best.num_layers, best.heldout_perplexity, marker="*", s=140, color="black", zorder=5,
                   label="exact optimum of the KL objective")
    log_y(ax)
    ax.set_xlabel("layers")
    ax.set_ylabel("held-out perplexity (log)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def frontier_figure(metrics: pd.DataFrame, cost: pd.DataFrame, others: pd.DataFrame | None = None) -> plt.Figure:
    """Quality against what a size costs to run: held-out perplexity against decode latency per token and
    against peak memory, for every order and baseline the run has (`others`: ShortGPT / LaCo rows). Sizes
    with the same number of layers cost the same, so each model sits at its layer count's measured cost. The
    axis stops at twice the student's perplexity, so the interpolation curves keep their shape; a baseline
    that runs above it says so in the legend."""
    apply_style()
    ppl = metrics[(metrics.task == "heldout") & (metrics.metric == "perplexity")]
    lines = {ORDER_LABELS.get(o, o): ("o-", ORDER_COLORS.get(o), interpolation_curve(ppl, o))
             for o in sorted(set(ppl[ppl.method == "interpolated"].order))}
    top = 2 * max(rows.value.max() for _, _, rows in lines.values())
    baselines = pd.concat([ppl[ppl.method == "naive_pruned"], *([] if others is None else [others])])
    for method, rows in baselines.groupby("method"):
        label, style, color = METHOD_STYLES.get(method, (method, "x--", None))
        rows = rows.groupby("num_layers", as_index=False).value.min()
        label += f" (above the axis at {(rows.value > top).sum()} sizes)" if (rows.value > top).any() else ""
        lines[label] = (style, color, rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (column, xlabel) in zip(axes, [("decode_ms_per_token", "decode latency, batch 1 (ms per token)"),
                                           ("peak_memory_mib", "peak memory (MiB)")]):
        for label, (style, color, rows) in lines.items():
            joined = rows.merge(cost[["num_layers", column]], on="num_layers").sort_values(column)
            ax.plot(joined[column], joined.value, style, ms=3.5, lw=1.2, color=color, label=label)
        ax.set_xlabel(xlabel)
        log_y(ax)
        ax.set_ylim(top=top)
    axes[0].set_ylabel("held-out perplexity (log)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"What each size costs on {cost.device.iloc[0]}")
    fig.tight_layout()
    return fig
