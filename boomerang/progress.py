"""Progress of long work, shown where a person is watching and kept out of the documents.

In a terminal or JupyterLab: tqdm's bars (widgets in Lab). Under the runner, the executed notebooks should
read as documents, so the runner sets `TQDM_DISABLE=1` for their kernels and names a file in
`BOOMERANG_PROGRESS`; bars and notes then go to that file, a line every few seconds, and the runner prints
them in the terminal as they come (`follow`).
"""
from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm as text_bar
from tqdm.auto import tqdm

CHANNEL = "BOOMERANG_PROGRESS"  # the file the runner reads progress from
EVERY = 10.0  # seconds between two progress lines in that file


def _channel():
    path = os.environ.get(CHANNEL)
    if not path:
        return None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", buffering=1)


def progress(iterable=None, **kwargs) -> tqdm:
    """A tqdm bar: as text to the runner's channel when there is one (in a kernel, too, where tqdm.auto would
    draw a widget), else as tqdm decides (none if disabled)."""
    off = kwargs.pop("disable", False)
    channel = None if off else _channel()
    if channel is not None:
        return text_bar(iterable, file=channel, mininterval=EVERY, maxinterval=EVERY, ascii=True, ncols=120,
                    dynamic_ncols=False, disable=False, **{**kwargs, "leave": True})
    return tqdm(iterable, disable=True if off or os.environ.get("TQDM_DISABLE") == "1" else None, **kwargs)


def note(message: str) -> None:
    """A line for the person watching: to the runner's channel when there is one, else to stderr."""
    channel = _channel()
    if channel is None:
        print(message, file=sys.stderr, flush=True)
    else:
        with channel:
            channel.write(f"\n{message}\n")  # a line of its own after a bar's last redraw


class follow:
    """While the `with` block runs, print every new line of `path` through `log` (tqdm's carriage-return
    redraws become lines of their own), polling every second."""

    def __init__(self, path: Path, log: Callable[[str], None]):
        self.path, self.log, self.done, self.offset, self.rest = Path(path), log, threading.Event(), 0, ""

    def _drain(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", errors="replace") as f:
            f.seek(self.offset)
            text = f.read()
            self.offset = f.tell()
        text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", self.rest + text)  # nested bars' cursor moves
        *lines, self.rest = text.replace("\r", "\n").split("\n")
        for line in lines:
            if line.strip():
                self.log(line.rstrip())

    def _loop(self) -> None:
        while not self.done.wait(1.0):
            self._drain()

    def __enter__(self):
        self.path.unlink(missing_ok=True)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self._drain()
        if self.rest.strip():
            self.log(self.rest.rstrip())
        self.path.unlink(missing_ok=True)
