"""The machine in words, for the records of runs and benchmarks: the GPU's name, or the CPU's model, threads,
bf16 matrix units and any limit put on its vector units. No stage imports it, so a change of wording re-runs
nothing (a stage's cache key hashes the code it reaches)."""
from __future__ import annotations

import os
import platform

import torch

from .device import auto_precision

# What makes a CPU's libraries use less of its vector units (oneDNN, MKL, torch's own kernels): how a CPU with
# bf16 units is made to compute as one with AVX2 alone; a record of a run made so says it.
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


def describe(device: torch.device | str) -> str:
    """The device in words for a run's record: the GPU's name, or the CPU's model, threads, bf16 units and limits."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the platform's word for the processor
        pass
    found = [unit.upper() for unit in ("amx_bf16", "avx512_bf16") if unit in flags]
    native_units = auto_precision("cpu")[0] == "bf16"
    units = f"bf16 units ({', '.join(found)})" if native_units and found else "bf16 units" if native_units \
        else "no bf16 units"
    limits = [f"{key}={os.environ[key]}" for key in ISA_LIMITS if os.environ.get(key)]
    return f"{name}, {torch.get_num_threads()} threads, {units}" + (f" ({', '.join(limits)})" if limits else "")
