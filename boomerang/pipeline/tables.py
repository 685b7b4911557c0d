"""Result tables as Markdown, as the records in docs/ and the notebooks show them.

JupyterLab drops the <style> of HTML outputs in a notebook it does not trust, which is every executed notebook a
reader opens from the repository, so a styled pandas table loses its alignment there (long claims set flush
right); a Markdown table keeps its text left-aligned and shows every number the same way as the docs do.
"""
from __future__ import annotations

import pandas as pd
from IPython.display import Markdown


def markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A Markdown table with numbers to `digits` significant figures and empty cells for missing values. A
    text column is shown as written: the renderer would read a commit id such as 1e52345 as a number."""
    def cell(v):
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.{digits}g}"
        return v
    text = [i for i, column in enumerate(frame.columns) if not pd.api.types.is_numeric_dtype(frame[column])]
    return frame.map(cell).to_markdown(index=False, disable_numparse=text)


def show(frame: pd.DataFrame, digits: int = 3) -> Markdown:
    """`frame` for a notebook to display: a Markdown table without the columns that hold nothing."""
    return Markdown(markdown(frame.dropna(axis=1, how="all"), digits))


def not_measured(what: str, setting: str) -> Markdown:
    """The line a notebook shows where this run's config left a measurement out (`setting`, as set), so that no
    cell stays blank under prose describing what it would show."""
    return Markdown(f"*Not measured in this run: {what} (`{setting}`).*")
