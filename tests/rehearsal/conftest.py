"""The offline rehearsal of the paper presets (`make rehearsal`): tiny stand-ins under the presets' exact hub
names in a local Hugging Face cache, read by the unmodified code with the offline flags set.

The flags and HF_HOME must be set before any HF library is imported, so `make rehearsal` sets them before
Python starts; every run of the package happens in a child process that inherits them."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from boomerang.io import read_json, write_json
from boomerang.standins import build

OFFLINE = ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "NLTK_DATA", "REHEARSAL_DIR")


@pytest.fixture(scope="session")
def rehearsal_dir() -> Path:
    missing = [k for k in OFFLINE if not os.environ.get(k)]
    if missing:
        pytest.fail(f"the rehearsal runs through `make rehearsal`, which sets {missing}")
    return Path(os.environ["REHEARSAL_DIR"])


@pytest.fixture(scope="session")
def hub(rehearsal_dir) -> dict:
    """The stand-in cache, built once per rehearsal into $HF_HOME: by the first of `make rehearsal`'s workers
    to ask for it, while the others wait. A later rehearsal builds it again, never trusting an earlier one's."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")  # one id for all the workers of this pytest run
    if run is None:
        return build(Path(os.environ["HF_HOME"]))
    manifest = rehearsal_dir / f"standins-{run}.json"
    with open(rehearsal_dir / "standins.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not manifest.exists():
            write_json(manifest, build(Path(os.environ["HF_HOME"])))
    return read_json(manifest)
