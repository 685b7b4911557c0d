"""Print distillation throughput and peak memory, and the time and peak memory of a sweep over all k.

Each measurement runs in its own process so that its peak resident memory is its own.

    python scripts/benchmark.py --config configs/smollm2-cpu.yaml [--steps 5] [--eval-tokens 1024]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def bench_distill(config: str, steps: int, queue) -> None:
    from boomerang.config import load_config
    from boomerang.distill import train
    from boomerang.prune import prune_run
    from boomerang.teacher import load_teacher

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(config, {"name": "benchmark", "output_root": tmp, "distill.steps": steps,
                                   "distill.checkpoint_every": steps + 1})
        teacher, tok = load_teacher(cfg.teacher)
        prune_run(cfg, teacher, tok)
        del teacher
        log = train(cfg, cfg.run_dir / "student_init", cfg.run_dir / "student", cfg.results_dir / "log.csv")
    queue.put({f"distill tokens/s (mean of {steps} steps)": round(log.tokens_per_s.iloc[-1]),
               "distill tokens/step": int(log.tokens.iloc[0]),
               "distill peak RSS (MiB)": round(_peak_rss_mib())})


def bench_sweep(config: str, eval_tokens: int, queue) -> None:
    from boomerang.config import load_config
    from boomerang.data import heldout_blocks
    from boomerang.evaluate import perplexity
    from boomerang.patch import sweep, unique_tensor_bytes
    from boomerang.prune import build_student, layout_from_config, load_student
    from boomerang.arch import num_layers
    from boomerang.teacher import load_teacher

    cfg = load_config(config)
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
               "sweep peak RSS (MiB)": round(_peak_rss_mib())})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/smollm2-cpu.yaml")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--eval-tokens", type=int, default=1024)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    for target, extra in ((bench_distill, args.steps), (bench_sweep, args.eval_tokens)):
        queue = ctx.Queue()
        proc = ctx.Process(target=target, args=(args.config, extra, queue))
        proc.start()
        result = queue.get()
        proc.join()
        for key, value in result.items():
            print(f"{key:36s} {value}")


if __name__ == "__main__":
    main()
