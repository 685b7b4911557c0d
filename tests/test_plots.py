import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import pandas as pd  # noqa: E402

from boomerang.pipeline.plots import boomerang_figure, save  # noqa: E402
from boomerang.pipeline.sweep_plots import order_panels, sweep_figure  # noqa: E402
from boomerang.pipeline.tables import show  # noqa: E402


def test_an_unchanged_figure_saves_to_identical_files(tmp_path, monkeypatch):
    """Committed PDFs change only when the figure does: no creation date inside."""
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2])
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # matplotlib dates its PDFs from this when set
    save(fig, tmp_path / "first", "figure")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    save(fig, tmp_path / "second", "figure")
    for ext in ("png", "pdf"):
        assert (tmp_path / "first" / f"figure.{ext}").read_bytes() == (tmp_path / "second" / f"figure.{ext}").read_bytes()


def test_a_saved_figure_is_closed_and_returned_for_the_notebook_to_show(tmp_path):
    """A stage's figures appear where its notebook shows them, not at the end of the cell that drew them."""
    fig, ax = plt.subplots()
    ax.plot([1, 2], [2, 1])
    assert save(fig, tmp_path, "figure") is fig
    assert fig.number not in plt.get_fignums()


def run(orders: list[str]) -> pd.DataFrame:
    rows = [{"method": "student", "order": "none", "k": 0, "num_layers": 4, "params": 40, "value": 20.0},
            {"method": "teacher", "order": "none", "k": 3, "num_layers": 7, "params": 70, "value": 10.0}]
    rows += [{"method": "interpolated", "order": o, "k": k, "num_layers": 4 + k, "params": 40 + 10 * k, "value": 20.0 - 3 * k}
             for o in orders for k in (1, 2)]
    return pd.DataFrame(rows)


def test_a_panel_is_drawn_only_for_an_order_every_compared_run_measured():
    """A run without an order has only its endpoints there; joining them would draw a line no run measured."""
    runs = {"preset": run(["last_to_first", "klpatch"]), "variant": run(["last_to_first"])}
    panels, note = order_panels(runs, ["last_to_first", "klpatch"])
    assert list(panels) == ["last_to_first"] and set(panels["last_to_first"]) == {"preset", "variant"}
    assert note == "no KLPatch panel: not measured by variant"
    fig = sweep_figure(panels, note=note)
    assert len(fig.axes) == 1 and note in [t.get_text() for t in fig.texts]
    assert order_panels({"variant": run([])}, ["klpatch"]) == ({}, "no KLPatch panel: not measured by variant")


def test_fig2_draws_naive_pruning_only_for_a_run_that_measured_it():
    """A variant skips naive pruning (evaluate.naive_stride 0): a legend entry with no curve reads as missing data."""
    def legend(metrics):
        fig = boomerang_figure(metrics.assign(task="heldout", metric="perplexity"))
        lines = [line for ax in fig.axes for line in ax.lines if line.get_label() == "naive layer pruning"]
        return [t.get_text() for t in fig.legends[0].get_texts()], len(lines)
    without = run(["last_to_first", "klpatch"])
    naive = pd.DataFrame([{"method": "naive_pruned", "order": "none", "k": k, "num_layers": 4 + k,
                           "params": 40 + 10 * k, "value": 50.0 * k} for k in (1, 2)])
    assert legend(without) == (["boomerang interpolation", "distilled student", "teacher"], 0)
    assert legend(pd.concat([without, naive])) == (
        ["boomerang interpolation", "distilled student", "teacher", "naive layer pruning"], 2)  # a curve per panel


def test_a_notebook_table_is_markdown_with_only_the_columns_that_hold_something():
    """JupyterLab strips a styled table's CSS in an untrusted notebook; Markdown keeps claims left-aligned."""
    nan = float("nan")
    checks = pd.DataFrame({"figure": [nan, nan], "claim": ["naive pruning worse at middle sizes", "between"],
                           "value": [672.79, 0.0071234], "holds": [True, False],
                           "where it fails": [nan, "8.05x at 23 layers"]})
    header, rule, *rows = show(checks).data.splitlines()
    assert [c.strip() for c in header.strip("|").split("|")] == ["claim", "value", "holds", "where it fails"]
    assert rule.split("|")[1].startswith(":-")  # text flush left
    assert "673" in rows[0] and "0.00712" in rows[1] and rows[0].rstrip("| ").endswith("True")
