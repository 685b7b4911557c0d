"""Files: atomic writes (every file or directory appears complete or not at all, so an interrupted run never
leaves a half-written artefact that a later stage would trust), one writer per run, and the shared cache
directory."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .config import REPO_ROOT, ConfigError


def cache_dir() -> Path:
    """Downloads and derived inputs shared by every run (teacher checkpoints, text, tokens):
    `$BOOMERANG_CACHE`, else `.cache/` in the repository."""
    return Path(os.environ.get("BOOMERANG_CACHE", REPO_ROOT / ".cache"))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success move it onto `path` (file or directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


MANIFEST = "MANIFEST.json"


def write_manifest(directory: str | Path) -> None:
    """Size and SHA-256 of every file in a directory the project built, written once it is complete, so
    that a later reader can tell a whole cache from a truncated or altered one (`manifest_problem`)."""
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    write_json(directory / MANIFEST, {str(p.relative_to(directory)): [p.stat().st_size, _sha256(p)] for p in files})


def manifest_problem(directory: str | Path) -> str | None:
    """None when every file of the manifest is there with its size and hash; else what is wrong."""
    directory = Path(directory)
    if not (directory / MANIFEST).exists():
        return f"no {MANIFEST} (an interrupted or older build)"
    for name, (size, digest) in read_json(directory / MANIFEST).items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} when it was built"
        if _sha256(path) != digest:
            return f"{name} differs from what was built (SHA-256)"
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


HELD = "BOOMERANG_HOLDS"  # the lock file a parent process holds for the processes it starts


@contextlib.contextmanager
def exclusive(path: str | Path, what: str) -> Iterator[None]:
    """Hold `path` as a lock while the block runs, or refuse at once, naming the process that holds it. The
    kernel drops the lock when its holder dies, so a killed run never blocks the next one; processes started
    inside the block (`HELD` names the lock in their environment) are the holder's own and pass."""
    path = Path(path)
    if os.environ.get(HELD) == str(path.resolve()):
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ConfigError(f"{what} is already running ({f.read().strip() or 'another process'}); wait for it "
                              f"to finish or stop it (its lock: {path})") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}: {' '.join(sys.argv)}"[:300])
        f.flush()
        saved = os.environ.get(HELD)
        os.environ[HELD] = str(path.resolve())
        try:
            yield
        finally:
            if saved is None:
                del os.environ[HELD]
            else:
                os.environ[HELD] = saved


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
