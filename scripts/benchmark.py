"""Distillation steps and the sweep over every size: tokens/s, peak memory and model FLOPs utilisation. Side by
side in one run, each in its own process so that its peak memory is its own: the current step and the plain
full-logits reference step of the same loss (`distill.chunk_tokens: 0`); the step with the package's allocator
setting (freed memory kept: `boomerang.allocator`) and with glibc's defaults; the step eager and with its
decoder layers compiled (`distill.compile`); the held-out perplexity of every size along both fixed orders
block by block (as the pipeline runs it) and with each model run whole.

Cases: the config's teacher (the CPU default: SmolLM2-135M), and any stand-in of `stand_in_teacher.py`
(same shapes as a real teacher, random weights: shapes set speed and memory), e.g. `qwen3-vocab`, a small
model with Qwen3's 151,936-token vocabulary. MFU is model FLOPs per token (`measure.flops`: student forward
and backward, teacher forward) times tokens/s over the device's peak in the precision the step computes in
(`distill.mixed_precision`, `auto` decided as the pipeline decides it): a known GPU's tensor peak, or on a CPU
the best rate of matrix products in that dtype measured here in about a second.

    python scripts/benchmark.py --write docs/benchmarks.md          # CPU default and qwen3-vocab, recorded
    python scripts/benchmark.py --config configs/qwen3-4b.yaml --cases qwen3-4b --steps 4 \\
        --override '{"distill.num_processes": 1, "distill.grad_accum": 1}'
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

STAND_IN = Path(__file__).with_name("stand_in_teacher.py")
MEASURES = ("distill", "allocator", "compile", "sweep")


def prune(config: str, overrides: dict, queue) -> None:
    """Stage 01 alone: what it leaves in a process would otherwise count in the next measurement's peak."""
    from boomerang.config import load_config
    from boomerang.pipeline import stages

    stages.prune(load_config(config, overrides))
    queue.put(None)


def bench_distill(config: str, overrides: dict, steps: int, queue) -> None:
    from boomerang import artefacts as A
    from boomerang.config import load_config
    from boomerang.core.prune import read_layout
    from boomerang.device import resolve
    from boomerang.measure.cost import peak_memory_mib
    from boomerang.distill.train import train
    from boomerang.measure.flops import distillation_flops
    from boomerang.sources.teacher import load_teacher

    with tempfile.TemporaryDirectory() as tmp:
        run = {**overrides, "name": "benchmark", "output_root": tmp}
        _run(prune, config, run)  # in its own process, as in the pipeline
        cfg = load_config(config, {**run, "distill.steps": steps, "distill.checkpoint_every": steps + 1})
        teacher, _ = load_teacher(cfg.teacher)
        layout = read_layout(A.STUDENT_INIT.path(cfg))
        flops_per_token = distillation_flops(teacher, layout.num_blocks, layout.num_teacher_layers, 1, cfg.data.seq_len)
        device = teacher.device
        del teacher
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # over the run: loading included
        log = train(cfg, log=lambda *_: None)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    per_step = int(log.tokens.iloc[0])
    elapsed = log.tokens / log.tokens_per_s
    rate = per_step / elapsed.diff().iloc[1:].mean()  # the first step warms up (and compiles)
    precision = resolve(cfg.distill.mixed_precision, device)
    queue.put({"device": str(device), "precision": precision, "tokens/step": per_step, "tokens/s": rate,
               "first step s": elapsed.iloc[0], "peak MiB": peak_memory_mib(device),
               "model GFLOP/s": flops_per_token * rate / 1e9, "page faults/step": faults / steps})


def bench_sweep(config: str, overrides: dict, eval_tokens: int, by_block: bool, queue) -> None:
    from boomerang.config import load_config
    from boomerang.core.orders import FIXED_ORDERS
    from boomerang.core.patch import unique_tensor_bytes
    from boomerang.measure.cost import peak_memory_mib
    from boomerang.family import Family
    from boomerang.measure.perplexity import blockwise_nll, perplexity
    from boomerang.sources.text import heldout_sequences

    with tempfile.TemporaryDirectory() as tmp:
        run = {**overrides, "name": "benchmark", "output_root": tmp}
        _run(prune, config, run)
        cfg = load_config(config, run)
        e = cfg.evaluate
        family = Family.load(cfg.teacher, Path(tmp) / "runs" / "benchmark" / "student_init")  # its shapes
        sequences = heldout_sequences(cfg.data, family.tokenizer, eval_tokens)
        sets = [spec.blocks for order in FIXED_ORDERS for spec in family.interpolants(order)]
        start = time.perf_counter()
        if by_block:  # what the pipeline does: each distinct function once, common first blocks shared
            blockwise_nll(family, sets, sequences, e.batch_size, e.mixed_precision)
        else:  # the plain way: every size of every order run whole
            for blocks_patched in sets:
                perplexity(family.model(blocks_patched), sequences, e.batch_size, e.mixed_precision)
        queue.put({"models": len(sets), "tokens per model": sequences.numel(), "seconds": time.perf_counter() - start,
                   "teacher+student MiB": unique_tensor_bytes([family.teacher, family.student]) / 2**20,
                   "peak MiB": peak_memory_mib(family.teacher.device)})


class Failed(Exception):
    """A measurement's process ended with an error (its traceback is printed above)."""


def _run(target, *args, env: dict | None = None) -> dict | None:
    """`target` in a fresh process (with `env` on top of this environment): what it puts in the queue."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    with mock.patch.dict(os.environ, env or {}):  # a spawned process starts with this environment
        proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise Failed(f"{target.__name__} failed (exit code {proc.exitcode}); its traceback is above")
    return queue.get()


def _measured(target, *args, env: dict | None = None) -> dict:
    """A row's measurements, or why there are none (out of memory, say): the other rows still run."""
    try:
        return _run(target, *args, env=env)
    except Failed as err:
        return {"failed": str(err)}


def stand_in(shape: str, tokenizer: str, dtype: str, into: Path) -> str:
    """A stand-in teacher of `shape` in `into`, written once (it is seeded: one kept from before is the same)."""
    out = into / shape
    if not out.exists():
        partial = into / f"{shape}.partial"
        subprocess.run([sys.executable, str(STAND_IN), shape, "--tokenizer", tokenizer, "--out", str(partial),
                        "--dtype", dtype], check=True, capture_output=True)
        partial.rename(out)
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/smollm2-cpu.yaml")
    parser.add_argument("--override", default="{}", help="JSON dict of dotted overrides, as for the pipeline")
    parser.add_argument("--cases", nargs="+", default=["teacher", "qwen3-vocab"],
                        help="`teacher` (the config's) and stand-in shapes of stand_in_teacher.py")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--eval-tokens", type=int, default=1024)
    parser.add_argument("--only", nargs="+", choices=MEASURES, help="run these measurements only")
    parser.add_argument("--stand-ins", type=Path, help="keep stand-in teachers here for later runs (default: not kept)")
    parser.add_argument("--write", type=Path, help="also record the table, with the machine, date and code, here "
                        "(docs/benchmarks.md: the one place the project's speed and memory figures live)")
    args = parser.parse_args()
    overrides = json.loads(args.override)
    from boomerang.config import load_config
    from boomerang.pipeline.runner import code_version
    from boomerang.sources.teacher import teacher_path

    teacher = load_config(args.config, overrides).teacher
    code = code_version()  # what is measured: the code as the run starts
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        kept = args.stand_ins or Path(tmp)
        kept.mkdir(parents=True, exist_ok=True)
        for case in args.cases:
            case_overrides = dict(overrides)
            if case != "teacher":
                path = stand_in(case, teacher_path(teacher), teacher.dtype, kept)
                case_overrides |= {"teacher.source": "hub", "teacher.name": path}
            only = args.only or MEASURES
            if "distill" in only:
                chunk = load_config(args.config, case_overrides).distill.chunk_tokens or 512
                for label, chunk_tokens in ((f"step, logits {chunk} tokens at a time", chunk),
                                            ("step, full logits (reference)", 0)):
                    measured = _measured(bench_distill, args.config,
                                         {**case_overrides, "distill.chunk_tokens": chunk_tokens}, args.steps)
                    rows.append({"case": case, "measure": label, **measured})
            if "allocator" in only:  # the same step with freed memory kept (boomerang.allocator), and without
                for label, env in (("step, freed memory kept (the package's setting)", {}),
                                   ("step, glibc's allocator defaults (GLIBC_TUNABLES='')", {"GLIBC_TUNABLES": ""})):
                    rows.append({"case": case, "measure": label,
                                 **_measured(bench_distill, args.config, case_overrides, args.steps, env=env)})
            if "compile" in only:  # later steps compile what the first did not run (a patched model's layers)
                for label, compiled in (("step, eager", False), ("step, decoder layers compiled", True)):
                    rows.append({"case": case, "measure": label,
                                 **_measured(bench_distill, args.config,
                                             {**case_overrides, "distill.compile": compiled}, args.steps)})
            if "sweep" in only:
                for label, by_block in (("perplexity of every size, block by block", True),
                                        ("perplexity of every size, each run whole", False)):
                    rows.append({"case": case, "measure": label,
                                 **_measured(bench_sweep, args.config, case_overrides, args.eval_tokens, by_block)})
    import pandas as pd

    table = with_mfu(pd.DataFrame(rows)).round(1)
    print(table.to_string(index=False))
    if args.write:
        record(table, args.write, code)
    if any("failed" in row for row in rows):
        sys.exit(1)


def with_mfu(table):
    """MFU of every distillation row against one measurement of the device's peak per precision, made here
    once (a peak measured in each row's own process would vary from row to row by more than the rows do)."""
    from boomerang.device import peak_flops, precision_name

    if "model GFLOP/s" not in table:
        return table
    peaks = {(d, p): peak_flops(d, p) for d, p in set(zip(table.device, table.precision)) if isinstance(p, str)}
    table["MFU %"] = [100 * gflops * 1e9 / peaks[d, p] if isinstance(p, str) else None
                      for gflops, d, p in zip(table["model GFLOP/s"], table.device, table.precision)]
    table["precision"] = [precision_name(p) if isinstance(p, str) else p for p in table.precision]
    return table


def record(table, path: Path, code: str) -> None:
    """The table as Markdown with what it was measured on: the document README and docstrings point to."""
    from datetime import datetime, timezone

    import torch
    from boomerang.device import default_device
    from boomerang.io import write_text
    from boomerang.machine import describe

    command = " ".join(["python", "scripts/benchmark.py", *sys.argv[1:]])
    write_text(path, f"""# Benchmarks

Generated by `{command}` (`make benchmark`); do not edit by hand. Each row ran in its own process, so its
peak memory is its own. MFU is model FLOPs per token times tokens/s over this device's peak in the step's
precision, measured here (`boomerang.device.peak_flops`).

- measured: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC
- device: {describe(default_device())}
- torch {torch.__version__}; code {code}

{table.astype(object).where(table.notna(), "").to_markdown(index=False)}
""")


if __name__ == "__main__":
    main()
