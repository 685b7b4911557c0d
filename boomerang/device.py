"""Where a run's models live and in which precision they compute."""
from __future__ import annotations

import os
from contextlib import nullcontext

import torch

from .config import Precision

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def default_device() -> torch.device:
    """`$BOOMERANG_DEVICE` if set, else the GPU when there is one. Every stage puts teacher and student there,
    and the models it builds from them follow their tensors."""
    return torch.device(os.environ.get("BOOMERANG_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))


def autocast(device: torch.device | str, precision: Precision):
    """Mixed precision for the matrix products (weights stay as they are), or nothing for `no`."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype else nullcontext()
