import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from boomerang.pipeline.plots import save  # noqa: E402


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
