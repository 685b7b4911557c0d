"""Where a run's models live and in which precision they compute."""
from __future__ import annotations

import os
import time
from contextlib import nullcontext
from functools import cache

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


# Dense bf16 tensor peak, FLOP/s, by a word of `torch.cuda.get_device_name` (the vendors' data sheets).
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
                 "4090": 165e12}


@cache
def peak_flops(device: torch.device | str) -> float:
    """The device's peak FLOP/s for model FLOPs utilisation: a known GPU's bf16 tensor peak, or, on a CPU
    (whose peak depends on its vector units and clocks), the rate of a large bf16 matrix product measured
    here, so that MFU reads as the share of what this machine's matrix kernels deliver."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for word, peak in GPU_PEAK_BF16.items():
            if word in name:
                return peak
        raise KeyError(f"no bf16 peak known for {name!r}; add it to device.GPU_PEAK_BF16")
    a = torch.randn(2048, 2048, dtype=torch.bfloat16)
    a @ a  # warm-up
    start, repeats = time.perf_counter(), 8
    for _ in range(repeats):
        a @ a
    return repeats * 2 * 2048**3 / (time.perf_counter() - start)
