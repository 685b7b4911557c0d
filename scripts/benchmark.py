"""Print distillation throughput and peak memory, and the time and peak memory of a sweep over all k.

Each measurement runs in its own process so that its peak memory (resident, and on the GPU when the run
uses one) is its own.

    python scripts/benchmark.py --config configs/smollm2-cpu.yaml [--steps 5] [--eval-tokens 1024]
    python scripts/benchmark.py --config configs/qwen3-4b.yaml --override '{"distill.grad_accum": 1}'
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time


def _peak_memory(prefix: str) -> dict[str, int]:
    import torch

    peak = {f"{prefix} peak RSS (MiB)": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if torch.cuda.is_available():  # Linux reports KiB above; the allocator's own peak here
        peak[f"{prefix} peak GPU memory (MiB)"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return peak


def bench_distill(config: str, overrides: dict, steps: int, queue) -> None:
    from boomerang.config import load_config
    from boomerang.distill import train
    from boomerang.prune import prune_run
    from boomerang.teacher import load_teacher

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(config, {**overrides, "name": "benchmark", "output_root": tmp, "distill.steps": steps,
                                   "distill.checkpoint_every": steps + 1})
        teacher, tok = load_teacher(cfg.teacher)
        prune_run(cfg, teacher, tok)
        device = teacher.device
        del teacher
        log = train(cfg, cfg.run_dir / "student_init", cfg.run_dir / "student", cfg.results_dir / "log.csv")
    per_step = int(log.tokens.iloc[0])
    seconds = log.tokens / log.tokens_per_s  # the log's rate is cumulative since the first step
    queue.put({"device": str(device),
               f"distill tokens/s (mean of {steps} steps)": round(log.tokens_per_s.iloc[-1]),
               "distill tokens/s (last step)": round(per_step / seconds.diff().iloc[-1]) if steps > 1 else "-",
               "distill tokens/step": per_step, **_peak_memory("distill")})


def bench_sweep(config: str, overrides: dict, eval_tokens: int, queue) -> None:
    from boomerang.config import load_config
    from boomerang.data import heldout_blocks
    from boomerang.evaluate import perplexity
    from boomerang.patch import sweep, unique_tensor_bytes
    from boomerang.prune import build_student, layout_from_config, load_student
    from boomerang.arch import num_layers
    from boomerang.teacher import load_teacher

    cfg = load_config(config, overrides)
    teacher, tok = load_teacher(cfg.teacher)
    trained = cfg.run_dir / "student"
    if trained.exists():
        student, layout = load_student(trained)
    else:  # no run yet: the pruned student has the same shapes and costs the same
        layout = layout_from_config(cfg.prune, num_layers(teacher.config))
        student = build_student(teacher, layout)
    student.eval()
    blocks = heldout_blocks(cfg.data, tok, eval_tokens)
    base_mib = unique_tensor_bytes([teacher, student]) / 2**20
    start = time.perf_counter()
    n = 0
    for order in cfg.interpolate.orders:
        for _, model in sweep(teacher, student, layout, order):
            perplexity(model, blocks, cfg.evaluate.batch_size, cfg.evaluate.mixed_precision)
            n += 1
    queue.put({"sweep models": n, "sweep eval tokens per model": blocks.numel(),
               "sweep seconds": round(time.perf_counter() - start, 1),
               "teacher+student tensors (MiB)": round(base_mib),
               **_peak_memory("sweep")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/smollm2-cpu.yaml")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--eval-tokens", type=int, default=1024)
    parser.add_argument("--override", default="{}", help="JSON dict of dotted overrides, as for the pipeline")
    parser.add_argument("--only", nargs="+", choices=("distill", "sweep"), help="run these measurements only")
    args = parser.parse_args()
    overrides = json.loads(args.override)
    ctx = mp.get_context("spawn")
    benches = {"distill": (bench_distill, args.steps), "sweep": (bench_sweep, args.eval_tokens)}
    for name in args.only or benches:
        target, extra = benches[name]
        queue = ctx.Queue()
        proc = ctx.Process(target=target, args=(args.config, overrides, extra, queue))
        proc.start()
        proc.join()  # the result is a few numbers, small enough to wait in the queue
        if proc.exitcode != 0:
            raise SystemExit(f"{name} benchmark failed (exit code {proc.exitcode}); its traceback is above")
        for key, value in queue.get().items():
            print(f"{key:36s} {value}")


if __name__ == "__main__":
    main()
