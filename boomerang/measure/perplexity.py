"""Held-out perplexity: of one model, and of every model of a run block by block, as one tidy long table."""
from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Precision
from ..core.arch import adapter_for, hidden_states
from ..device import autocast, compute_dtype
from ..family import Family
from .blockwise import Blockwise
from .models import METRIC_COLUMNS, run_models

HEAD_CHUNK = 512  # tokens whose logits exist at once


@torch.no_grad()
def perplexity(model: nn.Module, sequences: torch.Tensor, batch_size: int = 8,
               mixed_precision: Precision = "auto") -> dict[str, float]:
    """Token-level perplexity of packed sequences (every token real), with the standard error of the mean NLL
    over sequences."""
    device = next(model.parameters()).device
    head = model.get_submodule(adapter_for(model).head)
    nll = []
    for batch in sequences.split(batch_size):
        batch = batch.to(device)
        with autocast(device, mixed_precision):
            final = hidden_states(model, batch)[-1]
        nll.append(sequence_nll(final, batch, head, mixed_precision))
    return nll_summary(torch.cat(nll))


@torch.no_grad()
def sequence_nll(final: torch.Tensor, batch: torch.Tensor, head: nn.Module,
                 mixed_precision: Precision) -> torch.Tensor:
    """The mean next-token NLL of each sequence of `batch`, from the model's final post-norm states. The LM head
    runs on `HEAD_CHUNK` tokens at a time: the (tokens x vocabulary) logits of a batch are gigabytes in fp32."""
    dtype = compute_dtype(mixed_precision, final.device)
    weight, bias = ((None if t is None else t.to(dtype or t.dtype)) for t in (head.weight, head.bias))  # cast once
    losses = []
    final, targets = final[:, :-1].flatten(0, 1), batch[:, 1:].flatten()
    for states, chunk_targets in zip(final.split(HEAD_CHUNK), targets.split(HEAD_CHUNK)):
        logits = F.linear(states.to(dtype or states.dtype), weight, bias)  # what autocast would compute
        losses.append(F.cross_entropy(logits.float(), chunk_targets, reduction="none"))
    return torch.cat(losses).view(len(batch), -1).mean(1)


def nll_summary(per_sequence: torch.Tensor) -> dict[str, float]:
    """Mean NLL, its standard error over sequences, and the perplexity."""
    mean = per_sequence.mean().item()
    stderr = (per_sequence.std().item() / math.sqrt(len(per_sequence))) if len(per_sequence) > 1 else float("nan")
    return {"nll": mean, "nll_stderr": stderr, "perplexity": math.exp(mean)}


def blockwise_nll(family: Family, sets: Iterable[Iterable[int]], sequences: torch.Tensor, batch_size: int,
                  mixed_precision: Precision, desc: str = "perplexity") -> dict[frozenset[int], torch.Tensor]:
    """The mean NLL of each of `sequences` under the patched model of each of `sets`, by its
    `Family.identity`, all run block by block together (`Blockwise`)."""
    batches = list(sequences.split(batch_size))
    runner = Blockwise(family, mixed_precision)
    nll = runner.reduce(sets, batches, desc=desc,
                        fn=lambda key, final, i: sequence_nll(final, batches[i].to(final.device), runner.head(key),
                                                                mixed_precision))
    return {key: torch.cat(per_batch) for key, per_batch in nll.items()}


def heldout_table(family: Family, sequences: torch.Tensor, orders: list[str], batch_size: int,
                  mixed_precision: Precision, naive_stride: int) -> pd.DataFrame:
    """Held-out perplexity (and NLL) of every model of `run_models`, naive pruning at every
    `naive_stride`-th size."""
    families = {"distilled": family, "naive": family.undistilled()}
    models = list(run_models(family, orders, families["naive"], naive_stride=naive_stride))
    results = {}
    for tag, member in families.items():
        nll = blockwise_nll(member, [k for (t, k), _, _ in models if t == tag], sequences, batch_size,
                            mixed_precision, desc=f"held-out perplexity ({tag})")
        results |= {(tag, key): nll_summary(per_sequence) for key, per_sequence in nll.items()}
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
