"""Held-out perplexity and parameter counts, written as one tidy long table per run."""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import nullcontext

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .arch import adapter_for, decoder_layers
from .data import heldout_blocks
from .patch import interpolants, patch
from .prune import build_student

METRIC_COLUMNS = ["model", "method", "order", "k", "num_layers", "params", "params_inference",
                  "task", "metric", "value", "stderr", "batch_size"]


@torch.no_grad()
def perplexity(model: nn.Module, blocks: torch.Tensor, batch_size: int = 8, mixed_precision: str = "bf16",
               desc: str | None = None) -> dict[str, float]:
    """Token-level perplexity of packed blocks (every token real), with the standard error of mean NLL."""
    device = next(model.parameters()).device
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if mixed_precision == "bf16"
                else nullcontext())
    nll = []
    for batch in tqdm(blocks.split(batch_size), desc=desc, leave=False, disable=desc is None):
        batch = batch.to(device)
        with autocast:
            logits = model(input_ids=batch).logits
        losses = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), batch[:, 1:].flatten(), reduction="none")
        nll.append(losses.view(len(batch), -1).mean(1))  # one value per block
    per_block = torch.cat(nll)
    mean = per_block.mean().item()
    stderr = (per_block.std().item() / math.sqrt(len(per_block))) if len(per_block) > 1 else float("nan")
    return {"nll": mean, "nll_stderr": stderr, "perplexity": math.exp(mean)}


def parameter_counts(model: nn.Module, tied_family: bool) -> dict[str, int]:
    """Training-time count (a tied family's embedding counted once) and inference-time count (both).

    `tied_family` comes from the teacher's config rather than from tensor identity, so interpolated models
    whose embedding and head come from different models sit on the same x-axis as teacher and student.
    """
    adapter = adapter_for(model)
    parts = [decoder_layers(model), model.get_submodule(adapter.norm), *(model.get_submodule(p) for p in adapter.embed)]
    body = sum(p.numel() for part in parts for p in part.parameters())
    head = model.get_submodule(adapter.head).weight.numel()
    return {"params": body + (0 if tied_family else head), "params_inference": body + head}


def run_models(teacher, student, layout, orders, init_student=None, size_stride: int = 1,
               naive_stride: int = 1, distinct_sizes: bool = False) -> Iterator[tuple[nn.Module, dict]]:
    """Every model a run evaluates, with its row labels: teacher, student, each `size_stride`-th
    intermediate size along each order, and, given the undistilled `init_student`, naive pruning at each
    `naive_stride`-th size (0 = none). Teacher and student rows carry `order = "none"`.

    By default every k in 1..M-1 is an intermediate size. With `distinct_sizes`, only layer counts strictly
    between the student's and the teacher's are: patching a one-layer block keeps the size, and when that
    layer was frozen at the teacher's the model is the student or the teacher again.

    Naive pruning is the same patching applied to the undistilled pruned student, i.e. the teacher with
    the same layers removed; it always strides over the distinct sizes, since in the undistilled student a
    one-layer block is an exact copy of its teacher layer. Models are built lazily and share the sources'
    tensors."""
    m, n = layout.num_blocks, layout.num_teacher_layers
    naive = init_student is not None and naive_stride > 0
    yield teacher, {"model": "teacher", "method": "teacher", "order": "none", "k": m, "num_layers": n}
    yield student, {"model": "student", "method": "student", "order": "none", "k": 0, "num_layers": m}
    if naive:
        yield init_student, {"model": "naive_pruned_k0", "method": "naive_pruned", "order": "none", "k": 0,
                             "num_layers": m}
    for order in orders:
        sizes = interpolants(layout, order)[1:-1]
        distinct = [s for s in sizes if m < s.num_layers < n]
        naive_sizes = set(distinct[::naive_stride]) if naive else set()
        for i, spec in enumerate(tqdm(distinct if distinct_sizes else sizes, desc=f"sizes ({order})")):
            labels = {"order": order, "k": spec.k, "num_layers": spec.num_layers}
            if i % size_stride == 0:
                yield (patch(teacher, student, layout, spec.blocks),
                       {"model": f"interp_{order}_k{spec.k}", "method": "interpolated", **labels})
            if spec in naive_sizes:
                yield (patch(teacher, init_student, layout, spec.blocks),
                       {"model": f"naive_{order}_k{spec.k}", "method": "naive_pruned", **labels})


def evaluate_run(cfg, teacher, tokenizer, student, layout) -> pd.DataFrame:
    """Held-out perplexity of every model of `run_models`: every size, and naive pruning when
    `evaluate.naive_pruning` (every `evaluate.naive_stride`-th size)."""
    e = cfg.evaluate
    init_student = build_student(teacher, layout).eval() if e.naive_pruning else None
    blocks = heldout_blocks(cfg.data, tokenizer, e.eval_tokens)
    tied = bool(getattr(teacher.config, "tie_word_embeddings", False))
    rows: list[dict] = []
    for model, labels in run_models(teacher, student, layout, cfg.interpolate.orders, init_student,
                                    naive_stride=e.naive_stride):
        result = perplexity(model, blocks, e.batch_size, e.mixed_precision, desc=labels["model"])
        base = {**labels, **parameter_counts(model, tied), "task": "heldout", "batch_size": e.batch_size}
        rows.append({**base, "metric": "perplexity", "value": result["perplexity"],
                     "stderr": result["perplexity"] * result["nll_stderr"]})
        rows.append({**base, "metric": "nll", "value": result["nll"], "stderr": result["nll_stderr"]})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def interpolation_curve(metrics: pd.DataFrame, order: str) -> pd.DataFrame:
    """Student, the interpolated sizes strictly between it and the teacher along `order`, teacher: one row
    per size, smallest first. A patch of a one-layer block keeps the student's or the teacher's size; when
    that layer was frozen it is the student or the teacher again, and when it was trained (random init,
    unfrozen runs) it is another model of the same size, so the curve's ends are the endpoints themselves."""
    ends = metrics[metrics.method.isin(["student", "teacher"])]
    interp = metrics[(metrics.method == "interpolated") & (metrics.order == order)
                     & metrics.num_layers.between(ends.num_layers.min(), ends.num_layers.max(), inclusive="neither")]
    return pd.concat([ends, interp]).sort_values(["num_layers", "k"]).drop_duplicates("num_layers", keep="last")


def boomerang_checks(metrics: pd.DataFrame, tolerance: float = 0.02, naive_factor: float = 10.0,
                     task: str = "heldout", metric: str = "perplexity") -> pd.DataFrame:
    """The boomerang effect on a perplexity-like `metric` of `task`, one row per (patch order, claim), over
    the sizes of `interpolation_curve` (the one rule for "intermediate size" everywhere):

    - intermediate sizes lie between student and teacher (within `tolerance`);
    - the metric falls with size: Spearman ρ(num_layers, metric) from student to teacher;
    - naive pruning is at least `naive_factor`× worse than interpolation at the middle third of sizes.
    """
    from scipy.stats import spearmanr

    p = metrics[(metrics.task == task) & (metrics.metric == metric)]
    rows = []
    for order in sorted(set(p[p.method == "interpolated"].order)):
        curve = interpolation_curve(p, order)
        student, teacher = curve.value.iloc[0], curve.value.iloc[-1]
        interp = curve.iloc[1:-1]
        inside = interp.value.between(teacher * (1 - tolerance), student * (1 + tolerance))
        rho = spearmanr(curve.num_layers, curve.value).statistic
        rows += [
            {"order": order, "claim": "intermediate sizes between student and teacher",
             "value": inside.mean(), "rule": ">= 0.9", "holds": bool(inside.mean() >= 0.9)},
            {"order": order, "claim": f"{metric} falls with size (Spearman rho)",
             "value": rho, "rule": "<= -0.9", "holds": bool(rho <= -0.9)},
        ]
        naive = p[(p.method == "naive_pruned") & (p.order == order)]
        if len(naive):
            low, high = curve.num_layers.iloc[0], curve.num_layers.iloc[-1]
            third = (high - low) / 3
            middle = interp[interp.num_layers.between(low + third, high - third)].set_index("num_layers").value
            naive = naive.sort_values("k").groupby("num_layers").value.last()
            ratio = (naive.reindex(middle.index) / middle).min()
            rows.append({"order": order, "claim": "naive pruning worse at middle sizes (min ratio)",
                         "value": ratio, "rule": f">= {naive_factor:g}", "holds": bool(ratio >= naive_factor)})
    return pd.DataFrame(rows)
