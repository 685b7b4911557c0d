"""The sweep's figures (stage 11): one per paper figure of the sweep file, each run's interpolation curve in a
panel per patch order; Fig. 7 against ShortGPT and LaCo, Fig. 6 per off-the-shelf pair. Only stage 11 draws
these, so a change here re-runs only it."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..measure.curves import interpolation_curve
from .plots import ORDER_LABELS, apply_style, boomerang_figure, legend_beneath, log_y, save
from .sweeps import PRESET, Sweep

MARKERS = "os^vDP"  # one per run of a figure
OLDER = " (older code)"  # after the label of a run made before runs recorded how they ran


def order_panels(runs: dict[str, pd.DataFrame], orders: list[str]) -> tuple[dict[str, dict[str, pd.DataFrame]], str]:
    """The curves of a figure comparing `runs` (shown label -> metrics), one panel per order that every one of
    them measured; and a note naming each order left out and the runs that did not measure it. A run that
    did not measure an order has only its endpoints there: a line between them would read as a result."""
    measured = {label: set(m[m.method == "interpolated"].order) for label, m in runs.items()}
    panels = {o: {label: interpolation_curve(m, o) for label, m in runs.items()} for o in orders
              if all(o in measured[label] for label in runs)}
    missing = {o: ", ".join(label for label in runs if o not in measured[label]) for o in orders if o not in panels}
    note = "; ".join(f"no {ORDER_LABELS.get(o, o)} panel: not measured by {labels}" for o, labels in missing.items())
    return panels, note


def sweep_figure(curves: dict[str, dict[str, pd.DataFrame]], others: pd.DataFrame | None = None,
                 title: str = "", x: str = "params", note: str = "") -> plt.Figure:
    """Held-out perplexity against size, one panel per patch order: an interpolation curve per run
    (`curves[order][label]`, student to teacher), and order-independent `others` (columns `label`, `style`
    "line" or "point", x, `value`) drawn in every panel, e.g. ShortGPT / LaCo or separately distilled students;
    `note` under the panels says what is not drawn."""
    apply_style()
    orders = list(curves)
    fig, axes = plt.subplots(1, len(orders), figsize=(4.0 * len(orders), 3.6), squeeze=False, sharey=True)
    palette = sns.color_palette("tab10")
    for ax, order in zip(axes[0], orders):
        for i, (label, curve) in enumerate(curves[order].items()):
            # the reference (first) wide and underneath, each run its own marker: a curve lying on another shows
            ax.plot(curve[x] / 1e6, curve.value, MARKERS[i % len(MARKERS)] + "-", ms=6 if i == 0 else 3.5,
                    lw=3.2 if i == 0 else 1.4, alpha=0.6 if i == 0 else 1.0, color=palette[i % 10], label=label)
        if others is not None:
            for j, (label, rows) in enumerate(others.groupby("label", sort=False)):
                color = palette[(len(curves[order]) + j) % 10]
                rows = rows.sort_values(x)
                style = "s--" if rows["style"].iloc[0] == "line" else "D"
                ax.plot(rows[x] / 1e6, rows.value, style, ms=6 if style == "D" else 3.5, lw=1.2, color=color,
                        label=label)
        log_y(ax)
        ax.set_title(ORDER_LABELS.get(order, order))
        ax.set_xlabel("parameters (M, embeddings counted once)" if x == "params" else x)
    axes[0][0].set_ylabel("held-out perplexity (log)")
    bottom = legend_beneath(fig, axes[0][-1])
    if title:
        fig.suptitle(title)
    if note:
        fig.text(0.5, 0, note, ha="center", va="top", fontsize=9, wrap=True)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def sweep_figures(sweep: Sweep, runs: dict[str, pd.DataFrame], layer_pruning: pd.DataFrame,
                  offshelf: pd.DataFrame | None, orders: list[str], directory: str | Path,
                  older: set[str] = frozenset()) -> dict[str, plt.Figure]:
    """Every figure of the sweep that has runs to draw: per figure of the sweep file, the reference run's
    curve (and the preset's) with its variants' (a separately distilled student as a point); Fig. 7
    (interpolation against ShortGPT and LaCo) and Fig. 6 (each off-the-shelf pair), by name. A panel appears
    only for an order every run of its figure measured (`order_panels`); a run in `older` says so in its label."""
    drawn = {}
    for name, spec in sweep.spec.figures.items():
        labels = {sweep.reference: spec.reference} if spec.reference else {}
        labels |= {PRESET: spec.preset} if spec.preset else {}
        members = [v for v, variant in sweep.variants.items() if variant.figure == name and v in runs]
        points = [v for v in members if "separately_distilled" in sweep.variants[v].roles]
        labels |= {v: sweep.variants[v].label for v in members if v not in points}
        labels = {label: shown + OLDER * (label in older) for label, shown in labels.items()}
        curves, note = order_panels({shown: runs[label] for label, shown in labels.items() if label in runs}, orders)
        others = (pd.concat([runs[v][runs[v].method == "student"].assign(
            label="distilled at this size" + OLDER * (v in older), style="point") for v in points], ignore_index=True)
            if points else None)
        if curves and sum(label in runs for label in labels) + len(points) > 1:
            drawn[name] = save(sweep_figure(curves, others, title=spec.title, note=note), directory, name)
    curves, note = order_panels({"boomerang interpolation": runs[PRESET]}, orders) if PRESET in runs else ({}, "")
    if curves:
        pruners = layer_pruning.assign(label=layer_pruning.method.map({"shortgpt": "ShortGPT", "laco": "LaCo"}),
                                       style="line")
        drawn["fig7_layer_pruning"] = save(sweep_figure(curves, pruners, title="Interpolation vs layer-pruning methods",
                                                        note=note), directory, "fig7_layer_pruning")
    for pair, table in ([] if offshelf is None else offshelf.groupby("task")):
        drawn[f"fig6_offshelf_{pair}"] = save(boomerang_figure(table, metric=table.metric.iloc[0], task=pair,
                                                               title=pair), directory, f"fig6_offshelf_{pair}")
    return drawn
