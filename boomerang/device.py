"""Where a run's models live, and in which precision they compute.

`auto` (every section's default) computes in bf16 where the device has it natively and in fp32 elsewhere: a
CPU without bf16 matrix units (AVX2 only, as most laptops) runs a bf16 product orders of magnitude slower than an
fp32 one, so the same config would take days there. The choice is measured, not read off CPU flags, so that it
also sees oneDNN's own limits (`ONEDNN_MAX_CPU_ISA`, which is how a CPU with bf16 units is made to behave
like one without). A run decides once (the runner passes the decision to every stage); within a process the
answer is cached.
"""
from __future__ import annotations

import os
import time
from contextlib import nullcontext
from functools import cache

import torch

from .config import ConfigError, DType, Precision, RunConfig

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
WEIGHT_PRECISIONS = {"bfloat16": "bf16", "float16": "fp16"}  # a teacher's weights computed in, as a precision
PRECISION_SECTIONS = ("distill", "evaluate", "lm_eval")  # the sections with a `mixed_precision`
SLOW = 0.5  # a lower precision whose products run below this share of fp32's rate is not native here
INSIST = "BOOMERANG_ALLOW_SLOW_PRECISION"  # set to 1 to run an explicit precision this device computes slowly


def default_device() -> torch.device:
    """`$BOOMERANG_DEVICE` if set, else the GPU when there is one. Every stage puts teacher and student there,
    and the models it builds from them follow their tensors."""
    return torch.device(os.environ.get("BOOMERANG_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))


def matmul_rate(device: torch.device | str, dtype: torch.dtype, seconds: float = 0.05, size: int = 256) -> float:
    """FLOP/s of `size`³ matrix products in `dtype` on `device`, timed for about `seconds` after a warm-up."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device).to(dtype)
    a @ a
    _sync(device)
    start, repeats = time.perf_counter(), 0
    while repeats < 2 or time.perf_counter() - start < seconds:
        a @ a
        repeats += 1
        _sync(device)
    return repeats * 2 * size**3 / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@cache
def rates(device_type: str, precision: Precision) -> tuple[float, float]:
    """(fp32, `precision`) matrix-product FLOP/s measured on this CPU, once per process."""
    return matmul_rate(device_type, torch.float32), matmul_rate(device_type, AUTOCAST_DTYPES[precision])


def native(device: torch.device | str, precision: Precision = "bf16") -> tuple[bool, str]:
    """Whether `device` computes `precision` at least at half fp32's rate, and the evidence in words."""
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported() if precision == "bf16" else True
        return ok, f"{torch.cuda.get_device_name(device)} {'has' if ok else 'lacks'} native {precision}"
    fp32, lower = rates(device.type, precision)
    ok = lower >= SLOW * fp32
    return ok, (f"{precision} matrix products run at {lower / 1e9:.3g} GFLOP/s here against {fp32 / 1e9:.3g} in "
                f"fp32{'' if ok else f': no native {precision}'}")


@cache
def auto_precision(device_type: str) -> tuple[Precision, str]:
    """What `auto` means on this device: bf16 where it is native, fp32 (`no`) otherwise, and why."""
    ok, why = native(device_type)
    return ("bf16" if ok else "no"), why


def resolve(precision: Precision, device: torch.device | str) -> Precision:
    """A concrete precision: `auto` decided for this device, anything else as given."""
    return auto_precision(torch.device(device).type)[0] if precision == "auto" else precision


def weights_dtype(dtype: DType, device: torch.device | str) -> torch.dtype:
    """The dtype a teacher's weights load in: `auto` is bfloat16 where the device computes it natively."""
    if dtype == "auto":
        return torch.bfloat16 if auto_precision(torch.device(device).type)[0] == "bf16" else torch.float32
    return getattr(torch, dtype)


def compute_dtype(precision: Precision, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of `precision` on `device`; None computes in the weights' own dtype."""
    return AUTOCAST_DTYPES.get(resolve(precision, device))


def autocast(device: torch.device | str, precision: Precision):
    """Mixed precision for the matrix products (weights stay as they are), or nothing for `no`."""
    dtype = compute_dtype(precision, device)
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype else nullcontext()


def resolve_run(cfg: RunConfig, device: torch.device | str | None = None) -> tuple[RunConfig, list[str]]:
    """`cfg` with every `auto` precision decided for `device`, and a line per section saying what and why.
    An explicit lower precision that this device computes slowly is refused, naming both rates and how to
    insist; a run that wants it anyway sets `BOOMERANG_ALLOW_SLOW_PRECISION=1`."""
    device = torch.device(device or default_device())
    updates, decided = {}, {}
    if cfg.teacher.dtype == "auto":
        chosen = str(weights_dtype("auto", device)).removeprefix("torch.")
        updates["teacher"] = cfg.teacher.model_copy(update={"dtype": chosen})
        decided.setdefault(f"auto -> {chosen} weights", []).append("teacher.dtype")
    elif cfg.teacher.dtype in WEIGHT_PRECISIONS:
        _refuse_slow(device, "teacher.dtype", cfg.teacher.dtype, WEIGHT_PRECISIONS[cfg.teacher.dtype])
    for section in PRECISION_SECTIONS:
        asked = getattr(cfg, section).mixed_precision
        if asked == "auto":
            chosen, why = auto_precision(device.type)
            updates[section] = getattr(cfg, section).model_copy(update={"mixed_precision": chosen})
            decided.setdefault(f"auto -> {precision_name(chosen)} ({why})", []).append(section)
        elif asked != "no":
            why = _refuse_slow(device, f"{section}.mixed_precision", asked, asked)
            decided.setdefault(f"{asked} ({why})", []).append(section)
        else:
            decided.setdefault("fp32", []).append(section)
    notes = [f"{', '.join(sections)}: {what}" for what, sections in decided.items()]
    return cfg.model_copy(update=updates), notes


def _refuse_slow(device: torch.device, key: str, value: str, precision: Precision) -> str:
    """Why `precision` is fine here; a ConfigError naming both rates and how to insist where it is slow."""
    ok, why = native(device, precision)
    if not ok and os.environ.get(INSIST) != "1":
        raise ConfigError(f"{key} = {value!r} on this {device.type}: {why}; its matrix products would run "
                          f"{_slowdown(device, precision):.0f}x slower than in fp32. Use 'auto' (or "
                          f"{'float32' if key == 'teacher.dtype' else 'no'!r}), or set {INSIST}=1 to run it anyway")
    return why


def precision_name(precision: Precision) -> str:
    """A precision as a person reads it: `no` computes in fp32."""
    return "fp32" if precision == "no" else precision


def _slowdown(device: torch.device, precision: Precision) -> float:
    fp32, lower = rates(device.type, precision)
    return fp32 / lower


# Dense bf16 tensor peak, FLOP/s, by a word of `torch.cuda.get_device_name` (the vendors' data sheets).
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
                 "4090": 165e12}


@cache
def peak_flops(device: torch.device | str, precision: Precision = "bf16") -> float:
    """The device's peak FLOP/s in `precision` for model FLOPs utilisation: a known GPU's bf16 tensor peak, or,
    on a CPU (whose peak depends on its vector units and clocks), the best rate of matrix products in that
    dtype measured here in about a second, growing the matrices while a product takes under 50 ms, so that MFU
    reads as the share of what this machine's matrix kernels deliver in the dtype the run computes in."""
    device = torch.device(device)
    precision = resolve(precision, device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for word, peak in GPU_PEAK_BF16.items():
            if word in name:
                return peak if precision != "no" else peak / 2  # TF32 tensor cores: half the bf16 rate
        raise KeyError(f"no bf16 peak known for {name!r}; add it to device.GPU_PEAK_BF16")
    dtype = AUTOCAST_DTYPES.get(precision, torch.float32)
    size, best = 256, 0.0
    while True:
        rate = matmul_rate(device, dtype, seconds=0.2, size=size)
        best = max(best, rate)
        if size >= 2048 or 2 * size**3 / rate > 0.05:
            return best
        size *= 2
