"""Held-out perplexity of every model of a run, as one tidy long table, and the boomerang checks on it."""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TypeVar

import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from ..config import Precision
from ..core.arch import adapter_for, hidden_states
from ..core.orders import FIXED_ORDERS
from ..device import autocast, compute_dtype
from ..family import Family
from ..progress import progress
from .blockwise import Blockwise
from .checks import Claim, claims_frame

METRIC_COLUMNS = ["model", "method", "order", "k", "authors_k", "num_layers", "params", "params_inference",
                  "task", "metric", "value", "stderr", "batch_size"]
BETWEEN_TOLERANCE = 0.02  # an intermediate size may sit 2 % outside the student-teacher band
NAIVE_FACTOR = 10.0  # naive pruning must be 10x worse at the middle sizes
MONOTONE_RHO = -0.9  # Spearman rho of perplexity against size
HEAD_CHUNK = 512  # tokens whose logits exist at once
T = TypeVar("T")


@torch.no_grad()
def perplexity(model: nn.Module, blocks: torch.Tensor, batch_size: int = 8,
               mixed_precision: Precision = "auto") -> dict[str, float]:
    """Token-level perplexity of packed blocks (every token real), with the standard error of the mean NLL
    over blocks."""
    device = next(model.parameters()).device
    head = model.get_submodule(adapter_for(model).head)
    nll = []
    for batch in blocks.split(batch_size):
        batch = batch.to(device)
        with autocast(device, mixed_precision):
            final = hidden_states(model, batch)[-1]
        nll.append(block_nll(final, batch, head, mixed_precision))
    return nll_summary(torch.cat(nll))


@torch.no_grad()
def block_nll(final: torch.Tensor, batch: torch.Tensor, head: nn.Module, mixed_precision: Precision) -> torch.Tensor:
    """The mean next-token NLL of each block of `batch`, from the model's final post-norm states. The LM head
    runs on `HEAD_CHUNK` tokens at a time: the (tokens x vocabulary) logits of a batch are gigabytes in fp32."""
    dtype = compute_dtype(mixed_precision, final.device)
    weight, bias = ((None if t is None else t.to(dtype or t.dtype)) for t in (head.weight, head.bias))  # cast once
    losses = []
    final, targets = final[:, :-1].flatten(0, 1), batch[:, 1:].flatten()
    for states, chunk_targets in zip(final.split(HEAD_CHUNK), targets.split(HEAD_CHUNK)):
        logits = F.linear(states.to(dtype or states.dtype), weight, bias)  # what autocast would compute
        losses.append(F.cross_entropy(logits.float(), chunk_targets, reduction="none"))
    return torch.cat(losses).view(len(batch), -1).mean(1)


def nll_summary(per_block: torch.Tensor) -> dict[str, float]:
    """Mean NLL, its standard error over blocks, and the perplexity."""
    mean = per_block.mean().item()
    stderr = (per_block.std().item() / math.sqrt(len(per_block))) if len(per_block) > 1 else float("nan")
    return {"nll": mean, "nll_stderr": stderr, "perplexity": math.exp(mean)}


def run_models(family: Family, orders: list[str], naive: Family | None = None, size_stride: int = 1,
               naive_stride: int = 1, distinct_sizes: bool = False) -> Iterator[tuple[tuple, nn.Module, dict]]:
    """Every model a run evaluates, with its row labels: teacher, student, each `size_stride`-th
    intermediate size along each order, and, given the `naive` (undistilled) family, naive pruning at each
    `naive_stride`-th size (0 = none). Teacher and student rows carry `order = "none"`.

    By default every k in 1..M-1 is an intermediate size. With `distinct_sizes`, only layer counts strictly
    between the student's and the teacher's are: patching a one-layer block keeps the size, and when that
    layer was frozen at the teacher's the model is the student or the teacher again. Naive pruning always
    strides over the distinct sizes, since in the undistilled student a one-layer block is an exact copy of
    its teacher layer. Models are built lazily and share the family's tensors; each comes with a key that two
    models computing the same function share (`Family.identity`), so a measurement is made once per key
    (`measured_once`)."""
    layout = family.layout
    m, n = layout.num_blocks, layout.num_teacher_layers
    naive = naive if naive_stride > 0 else None
    ends = {"order": "none", "authors_k": None}
    yield ("distilled", family.identity(range(m))), family.teacher, {"model": "teacher", "method": "teacher", **ends,
                                                                     "k": m, "num_layers": n}
    yield ("distilled", frozenset()), family.student, {"model": "student", "method": "student", **ends, "k": 0,
                                                       "num_layers": m}
    if naive:
        yield ("naive", frozenset()), naive.student, {"model": "naive_pruned_k0", "method": "naive_pruned", **ends,
                                                      "k": 0, "num_layers": m}
    for order in orders:
        sizes = family.interpolants(order)[1:-1]
        distinct = [s for s in sizes if m < s.num_layers < n]
        naive_sizes = set(distinct[::naive_stride]) if naive else set()
        for i, spec in enumerate(progress(distinct if distinct_sizes else sizes, desc=f"sizes ({order})")):
            labels = {"order": order, "k": spec.k, "authors_k": spec.authors_k, "num_layers": spec.num_layers}
            if i % size_stride == 0:
                yield (("distilled", family.identity(spec.blocks)), family.model(spec.blocks),
                       {"model": spec.name(), "method": "interpolated", **labels})
            if spec in naive_sizes:
                yield (("naive", naive.identity(spec.blocks)), naive.model(spec.blocks),
                       {"model": spec.name("naive"), "method": "naive_pruned", **labels})


def measured_once(models: Iterable[tuple[Hashable, nn.Module, dict]], measure: Callable[[nn.Module], T]
                  ) -> Iterator[tuple[nn.Module, dict, T]]:
    """`measure(model)` for each of `models` (key, model, labels), made once per key: the same function
    built along two orders, or a patch that changes nothing, is measured once and reported under each label."""
    done: dict[Hashable, T] = {}
    for key, model, labels in models:
        if key not in done:
            done[key] = measure(model)
        yield model, labels, done[key]


def blockwise_nll(family: Family, sets: Iterable[Iterable[int]], blocks: torch.Tensor, batch_size: int,
                  mixed_precision: Precision, desc: str = "perplexity") -> dict[frozenset[int], torch.Tensor]:
    """Per-token NLL on `blocks` of the patched model of each of `sets`, by its `Family.identity`, all run
    block by block together (`Blockwise`)."""
    batches = list(blocks.split(batch_size))
    runner = Blockwise(family, mixed_precision)
    nll = runner.reduce(sets, batches, desc=desc,
                        fn=lambda key, final, i: block_nll(final, batches[i].to(final.device), runner.head(key),
                                                             mixed_precision))
    return {key: torch.cat(per_batch) for key, per_batch in nll.items()}


def heldout_table(family: Family, blocks: torch.Tensor, orders: list[str], batch_size: int,
                  mixed_precision: Precision, naive_stride: int) -> pd.DataFrame:
    """Held-out perplexity (and NLL) of every model of `run_models`, naive pruning at every
    `naive_stride`-th size."""
    families = {"distilled": family, "naive": family.undistilled()}
    models = list(run_models(family, orders, families["naive"], naive_stride=naive_stride))
    results = {}
    for tag, member in families.items():
        nll = blockwise_nll(member, [k for (t, k), _, _ in models if t == tag], blocks, batch_size, mixed_precision,
                            desc=f"held-out perplexity ({tag})")
        results |= {(tag, key): nll_summary(per_token) for key, per_token in nll.items()}
    rows: list[dict] = []
    for key, model, labels in models:
        result = results[key]
        base = {**labels, **family.counts(model), "task": "heldout", "batch_size": batch_size}
        rows.append({**base, "metric": "perplexity", "value": result["perplexity"],
                     "stderr": result["perplexity"] * result["nll_stderr"]})
        rows.append({**base, "metric": "nll", "value": result["nll"], "stderr": result["nll_stderr"]})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def measured_perplexities(family: Family, metrics: pd.DataFrame, orders: list[str]) -> dict[frozenset[int], float]:
    """The held-out perplexities of `heldout_table`'s distilled models, by `Family.identity`."""
    ppl = metrics[(metrics.task == "heldout") & (metrics.metric == "perplexity")].set_index("model").value
    known = {family.identity(()): ppl["student"], family.identity(range(family.layout.num_blocks)): ppl["teacher"]}
    for order in orders:
        for spec in family.interpolants(order):
            if spec.name() in ppl:
                known[family.identity(spec.blocks)] = ppl[spec.name()]
    return known


def interpolation_table(family: Family, orders: list[str]) -> pd.DataFrame:
    """Size of every interpolated model along each order (built, counted, discarded), with both
    conventions of k."""
    rows = [{"order": order, "k": spec.k, "authors_k": spec.authors_k, "num_layers": spec.num_layers,
             "patched_blocks": list(spec.blocks), **family.counts(model)}
            for order in orders for spec, model in family.sweep(order)]
    return pd.DataFrame(rows)


def interpolation_curve(metrics: pd.DataFrame, order: str) -> pd.DataFrame:
    """Student, the interpolated sizes strictly between it and the teacher along `order`, teacher: one row
    per size, smallest first. A patch of a one-layer block keeps the student's or the teacher's size; when
    that layer was frozen it is the student or the teacher again, and when it was trained (random init,
    unfrozen runs) it is another model of the same size, so the curve's ends are the endpoints themselves."""
    ends = metrics[metrics.method.isin(["student", "teacher"])]
    interp = metrics[(metrics.method == "interpolated") & (metrics.order == order)
                     & metrics.num_layers.between(ends.num_layers.min(), ends.num_layers.max(), inclusive="neither")]
    return pd.concat([ends, interp]).sort_values(["num_layers", "k"]).drop_duplicates("num_layers", keep="last")


def order_comparison(metrics: pd.DataFrame, orders: list[str]) -> pd.DataFrame:
    """Held-out perplexity of every order at every size strictly between student and teacher, the best fixed
    order's, and each order chosen on data against it (a ratio below 1: better than both fixed orders)."""
    ppl = metrics[(metrics.task == "heldout") & (metrics.metric == "perplexity")]
    curves = {o: interpolation_curve(ppl, o).iloc[1:-1].set_index("num_layers").value for o in orders}
    table = pd.DataFrame(curves)
    fixed = [o for o in orders if o in FIXED_ORDERS]
    if fixed:
        table["best fixed order"] = table[fixed].min(axis=1)
        for o in (o for o in orders if o not in FIXED_ORDERS):
            table[f"{o} / best fixed"] = table[o] / table["best fixed order"]
    return table.reset_index()


def boomerang_checks(metrics: pd.DataFrame, task: str = "heldout", metric: str = "perplexity",
                     figure: str = "") -> pd.DataFrame:
    """The boomerang effect on a perplexity-like `metric` of `task`, per patch order, over the sizes of
    `interpolation_curve` (the one rule for "intermediate size" everywhere):

    - intermediate sizes lie between student and teacher (within `BETWEEN_TOLERANCE`);
    - the metric falls with size: Spearman ρ(num_layers, metric) from student to teacher;
    - naive pruning is at least `NAIVE_FACTOR`× worse than interpolation at the middle third of sizes.
    """
    p = metrics[(metrics.task == task) & (metrics.metric == metric)]
    claims = []
    for order in sorted(set(p[p.method == "interpolated"].order)):
        curve = interpolation_curve(p, order)
        student, teacher = curve.value.iloc[0], curve.value.iloc[-1]
        interp = curve.iloc[1:-1]
        inside = interp.value.between(teacher * (1 - BETWEEN_TOLERANCE), student * (1 + BETWEEN_TOLERANCE))
        rho = spearmanr(curve.num_layers, curve.value).statistic
        claims += [Claim("intermediate sizes between student and teacher", inside.mean(), ">= 0.9", order, figure),
                   Claim(f"{metric} falls with size (Spearman rho)", rho, f"<= {MONOTONE_RHO:g}", order, figure)]
        naive = p[(p.method == "naive_pruned") & (p.order == order)]
        if len(naive):
            low, high = curve.num_layers.iloc[0], curve.num_layers.iloc[-1]
            third = (high - low) / 3
            middle = interp[interp.num_layers.between(low + third, high - third)].set_index("num_layers").value
            naive = naive.sort_values("k").groupby("num_layers").value.last()
            ratio = (naive.reindex(middle.index) / middle).min()
            claims.append(Claim("naive pruning worse at middle sizes (min ratio)", ratio, f">= {NAIVE_FACTOR:g}",
                                order, figure))
    return claims_frame(claims)
