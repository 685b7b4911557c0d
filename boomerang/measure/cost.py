"""What each size costs to run on this device, measured on the exported model loaded alone, as a deployment
would load it: prefill throughput, per-token decode latency at batch 1 with a KV cache, and peak memory
(the GPU allocator's peak, or the process's peak resident memory above the bare runtime on a CPU).

Every model with the same number of layers has the same shapes, so one model per layer count is measured.
Each measurement runs in a process of its own, so that its peak memory is its own.
"""
from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoModelForCausalLM

from ..config import Precision
from ..core.patch import export
from ..device import autocast, default_device
from ..family import Family
from ..progress import progress
from .flops import forward_flops_per_token

COST_COLUMNS = ["num_layers", "params", "params_inference", "forward_gflops_per_token", "prefill_tokens_per_s",
                "decode_ms_per_token", "peak_memory_mib", "device"]


def peak_memory_mib(device: torch.device | str) -> float:
    """This process's peak memory so far: the GPU allocator's peak, or on a CPU the high-water mark of the
    resident set of this process image. On Linux that is `VmHWM`, which starts afresh when a spawned process
    starts: `ru_maxrss` carries the spawning parent's peak over, and would hide any smaller one."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except OSError:  # no procfs (macOS): ru_maxrss, in bytes there
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


@torch.no_grad()
def _measure(path: str, prompt_tokens: int, new_tokens: int, precision: Precision, queue) -> None:
    """In a fresh process: load `path` alone, time a prefill and `new_tokens` cached decode steps at batch 1."""
    device = default_device()
    baseline = peak_memory_mib(device) if device.type != "cuda" else 0.0
    model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
    prompt = torch.randint(0, model.config.vocab_size, (1, prompt_tokens), generator=torch.Generator().manual_seed(0))
    prompt = prompt.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with autocast(device, precision):
        model(input_ids=prompt)  # warm-up
        sync()
        start = time.perf_counter()
        out = model(input_ids=prompt, use_cache=True)
        sync()
        prefill = time.perf_counter() - start
        cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        start = time.perf_counter()
        for _ in range(new_tokens):
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        sync()
        decode = time.perf_counter() - start
    queue.put({"prefill_tokens_per_s": prompt_tokens / prefill, "decode_ms_per_token": 1000 * decode / new_tokens,
               "peak_memory_mib": peak_memory_mib(device) - baseline, "device": str(device)})


def fresh_processes():
    """Processes that start afresh but skip importing torch each time: forked from a server process that
    imported this module once, where the platform has one (spawned otherwise). A forked process starts its
    peak resident memory at its size when forked, so `peak_memory_mib` above that baseline is its own."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def measure(path: str | Path, prompt_tokens: int, new_tokens: int, precision: Precision) -> dict:
    """The cost of one exported model, measured in a process of its own."""
    ctx = fresh_processes()
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(str(path), prompt_tokens, new_tokens, precision, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"measuring {path} failed (exit code {proc.exitcode}); its traceback is above")
    return queue.get()


def cost_table(family: Family, orders: list[str], prompt_tokens: int, new_tokens: int,
               precision: Precision) -> pd.DataFrame:
    """One row per layer count the family spans (student, every size along `orders`, teacher)."""
    models = {family.layout.num_blocks: family.student, family.layout.num_teacher_layers: family.teacher}
    for order in orders:
        for spec in family.interpolants(order):
            if spec.num_layers not in models:
                models[spec.num_layers] = family.model(spec.blocks)
    rows = []
    for n in progress(sorted(models), desc="cost per size"):
        model = models[n]
        with tempfile.TemporaryDirectory() as tmp:
            export(model, tmp)
            measured = measure(tmp, prompt_tokens, new_tokens, precision)
            rows.append({"num_layers": n, **family.counts(model),
                         "forward_gflops_per_token": forward_flops_per_token(model, n, prompt_tokens) / 1e9,
                         **measured})
    return pd.DataFrame(rows, columns=COST_COLUMNS)
