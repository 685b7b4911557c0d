import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from boomerang.pipeline.plots import save  # noqa: E402


def test_an_unchanged_figure_saves_to_identical_files(tmp_path, monkeypatch):
    """Committed PDFs change only when the figure does: no creation date inside."""
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2])
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # matplotlib dates its PDFs from this when set
    first = save(fig, tmp_path / "first", "figure")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    second = save(fig, tmp_path / "second", "figure")
    assert [p.suffix for p in first] == [".png", ".pdf"]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()
