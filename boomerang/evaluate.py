"""Held-out perplexity and parameter counts, written as one tidy long table per run."""
from __future__ import annotations

import math
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
                  "task", "metric", "value", "stderr"]


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


def evaluate_run(cfg, teacher, tokenizer, student, layout) -> pd.DataFrame:
    """Perplexity of teacher, student, every interpolated size and the naive-pruning baseline.

    Naive pruning is the same patching applied to the undistilled pruned student, i.e. the teacher with
    the same layers removed (whatever the distilled student was initialised from). Teacher and student
    rows carry `order = "none"`.
    """
    init_student = build_student(teacher, layout).eval()
    blocks = heldout_blocks(cfg.data, tokenizer, cfg.evaluate.eval_tokens)
    tied = bool(getattr(teacher.config, "tie_word_embeddings", False))
    e = cfg.evaluate
    rows: list[dict] = []

    def add(model, name, method, order, k, num):
        result = perplexity(model, blocks, e.batch_size, e.mixed_precision, desc=name)
        base = {"model": name, "method": method, "order": order, "k": k, "num_layers": num,
                **parameter_counts(model, tied), "task": "heldout"}
        rows.append({**base, "metric": "perplexity", "value": result["perplexity"],
                     "stderr": result["perplexity"] * result["nll_stderr"]})
        rows.append({**base, "metric": "nll", "value": result["nll"], "stderr": result["nll_stderr"]})

    m = layout.num_blocks
    add(teacher, "teacher", "teacher", "none", m, layout.num_teacher_layers)
    add(student, "student", "student", "none", 0, m)
    if e.naive_pruning:
        add(init_student, "naive_pruned_k0", "naive_pruned", "none", 0, m)
    for order in cfg.interpolate.orders:
        for spec in tqdm(interpolants(layout, order)[1:-1], desc=f"sizes ({order})"):
            add(patch(teacher, student, layout, spec.blocks), f"interp_{order}_k{spec.k}",
                "interpolated", order, spec.k, spec.num_layers)
            if e.naive_pruning:
                add(patch(teacher, init_student, layout, spec.blocks), f"naive_{order}_k{spec.k}",
                    "naive_pruned", order, spec.k, spec.num_layers)
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def boomerang_checks(metrics: pd.DataFrame, tolerance: float = 0.02, naive_factor: float = 10.0) -> pd.DataFrame:
    """The boomerang effect as measurable claims, one row per (patch order, claim).

    - intermediates lie between student and teacher perplexity (within `tolerance`);
    - perplexity falls with size: Spearman ρ(num_layers, perplexity) over student, intermediates, teacher;
    - naive pruning is at least `naive_factor`× worse than interpolation at the middle third of sizes.
    """
    from scipy.stats import spearmanr

    p = metrics[(metrics.task == "heldout") & (metrics.metric == "perplexity")]
    teacher = p[p.method == "teacher"].value.iloc[0]
    student = p[p.method == "student"].value.iloc[0]
    rows = []
    for order in sorted(set(p[p.method == "interpolated"].order)):
        interp = p[(p.method == "interpolated") & (p.order == order)].sort_values("k")
        inside = interp.value.between(teacher * (1 - tolerance), student * (1 + tolerance))
        curve = pd.concat([p[p.method.isin(["student", "teacher"])], interp])
        rho = spearmanr(curve.num_layers, curve.value).statistic
        rows += [
            {"order": order, "claim": "intermediates between student and teacher",
             "value": inside.mean(), "rule": ">= 0.9", "holds": bool(inside.mean() >= 0.9)},
            {"order": order, "claim": "perplexity falls with size (Spearman rho)",
             "value": rho, "rule": "<= -0.9", "holds": bool(rho <= -0.9)},
        ]
        naive = p[(p.method == "naive_pruned") & (p.order == order)]
        if len(naive):
            m = interp.k.max() + 1
            middle = interp[(interp.k >= m / 3) & (interp.k <= 2 * m / 3)].set_index("k").value
            ratio = (naive.set_index("k").value.reindex(middle.index) / middle).min()
            rows.append({"order": order, "claim": f"naive pruning worse at middle sizes (min ratio)",
                         "value": ratio, "rule": f">= {naive_factor:g}", "holds": bool(ratio >= naive_factor)})
    return pd.DataFrame(rows)
