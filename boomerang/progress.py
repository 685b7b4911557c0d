"""Progress bars: widgets in JupyterLab, text in a terminal, none where `TQDM_DISABLE=1` (the runner sets it
for the notebooks it executes, whose saved outputs should read as documents; tqdm's notebook bars ignore it
on their own)."""
from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    return tqdm(iterable, disable=True if os.environ.get("TQDM_DISABLE") == "1" else None, **kwargs)
