"""Layer-pruning baselines the paper compares against (Fig. 7), each producing a model of any size.

- ShortGPT (Men et al. 2024): drop the layers with the lowest Block Influence,
  BI_i = 1 − E_tokens[cos(input of layer i, output of layer i)], measured on calibration text.
- LaCo (Yang et al. 2024): collapse a run of adjacent layers into one by adding the later layers'
  parameter differences to the first ("reserving differences while seeking common"), accepting a merge only
  while the merged model's last hidden states stay similar to the original's on calibration text.
"""
from __future__ import annotations

from copy import deepcopy

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel

from ..config import RunConfig
from ..core.arch import (adapter_for, assemble, decoder_layers, hidden_states, layer_output, parameter_counts,
                         ties_embeddings)
from ..progress import progress
from ..sources.text import heldout_sequences, train_batches
from .align import final_state_cosine, final_states
from .models import METRIC_COLUMNS
from .perplexity import perplexity


@torch.no_grad()
def block_influence(model: nn.Module, sequences: Tensor, batch_size: int = 8) -> list[float]:
    """BI of every decoder layer, averaged over all tokens of `sequences`."""
    layers = decoder_layers(model)
    sums = torch.zeros(len(layers), dtype=torch.float64)
    count = 0

    def hook(i):
        def record(module, args, kwargs, output):
            x = args[0] if args else kwargs["hidden_states"]
            sums[i] += (1 - F.cosine_similarity(x.float(), layer_output(output).float(), dim=-1)).sum().item()
        return record

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        for batch in sequences.split(batch_size):
            hidden_states(model, batch.to(next(model.parameters()).device))
            count += batch.numel()
    finally:
        for h in handles:
            h.remove()
    return (sums / count).tolist()


def keep_layers(model: PreTrainedModel, keep: list[int]) -> PreTrainedModel:
    """The model with only the listed layers, in order (tensors shared with `model`)."""
    return assemble(model.config, [(model, j) for j in keep], model, model).eval()


def shortgpt(model: PreTrainedModel, influence: list[float], num_layers: int) -> PreTrainedModel:
    """Remove the layers of lowest Block Influence until `num_layers` remain."""
    n = len(influence)
    if not 1 <= num_layers <= n:
        raise ValueError(f"num_layers must be in [1, {n}], got {num_layers}")
    removed = set(sorted(range(n), key=lambda i: influence[i])[: n - num_layers])
    return keep_layers(model, [i for i in range(n) if i not in removed])


@torch.no_grad()
def merge_into_first(layers: list[nn.Module]) -> nn.Module:
    """One layer with θ = θ_0 + Σ_k (θ_k − θ_0): LaCo's merge of a run of adjacent layers."""
    merged = deepcopy(layers[0])
    params = [dict(layer.named_parameters()) for layer in layers]
    for name, p in merged.named_parameters():
        p.add_(sum(other[name] - params[0][name] for other in params[1:]))
    return merged


def _collapse(model: PreTrainedModel, start: int, count: int) -> PreTrainedModel:
    """A copy of `model` with layers start..start+count-1 merged into one (re-assembled, so every layer
    knows its new index)."""
    out = deepcopy(model)
    layers = decoder_layers(out)
    layers[start] = merge_into_first([layers[i] for i in range(start, start + count)])
    for _ in range(count - 1):
        del layers[start + 1]
    setattr(out.config, adapter_for(out).num_layers_key, len(layers))
    if isinstance(getattr(out.config, "layer_types", None), list):
        del out.config.layer_types[start + 1: start + count]
    return keep_layers(out, list(range(len(layers))))


@torch.no_grad()
def laco(model: PreTrainedModel, num_layers: int, sequences: Tensor, merge_layers: int = 4, lowest: int = 1,
         interval: int = 2, threshold: float = 0.65, batch_size: int = 8,
         reference: list[Tensor] | None = None) -> PreTrainedModel:
    """Collapse layers top-down until `num_layers` remain.

    Walking from the top, a merge of `merge_layers` layers starting no lower than layer `lowest` is kept if
    the last hidden states stay above `threshold` cosine similarity to the original's; the walk then jumps
    `interval` layers down, otherwise one. The last merge is shortened to land exactly on `num_layers`. When a walk reaches `lowest` short of
    the target, the next walk starts from the top again; a walk that keeps nothing takes the most similar
    candidate, so the target is always reached. `reference` (the original model's last hidden states on
    `sequences`) lets a run continue from an already collapsed model."""
    n = len(decoder_layers(model))
    if not 1 <= num_layers <= n:
        raise ValueError(f"num_layers must be in [1, {n}], got {num_layers}")
    reference = reference or final_states(model, sequences, batch_size)
    if n - 2 < lowest and num_layers < n:
        raise ValueError(f"a {n}-layer model has no pair of layers at or above layer {lowest} to merge")
    current = model
    while len(decoder_layers(current)) > num_layers:
        size = len(decoder_layers(current))
        best, kept_any = None, False
        start = max(lowest, size - merge_layers)
        while start >= lowest and len(decoder_layers(current)) > num_layers:
            size = len(decoder_layers(current))
            start = min(start, size - 2)
            count = min(merge_layers, size - num_layers + 1, size - start)
            candidate = _collapse(current, start, count)
            sim = final_state_cosine(candidate, reference, sequences, batch_size)
            if sim > threshold:
                current, kept_any = candidate, True
                start -= interval
            else:
                if best is None or sim > best[0]:
                    best = (sim, candidate)
                start -= 1
        if not kept_any and len(decoder_layers(current)) > num_layers:
            current = best[1]
    return current


def layer_pruning_table(cfg: RunConfig, teacher: PreTrainedModel, tokenizer, sizes: list[int]) -> pd.DataFrame:
    """Held-out perplexity of ShortGPT and LaCo at every size in `sizes` (metrics.csv layout).

    Calibration text is the first `calibration_tokens` of the training stream. LaCo goes from the largest
    size to the smallest, each size continuing from the previous one and always compared with the teacher."""
    lp, e = cfg.layer_pruning, cfg.evaluate
    calibration = next(train_batches(cfg.data, tokenizer, max(1, lp.calibration_tokens // cfg.data.seq_len),
                                     cfg.seed))
    heldout = heldout_sequences(cfg.data, tokenizer, e.eval_tokens)
    tied = ties_embeddings(teacher.config)
    influence = block_influence(teacher, calibration)
    reference = final_states(teacher, calibration)
    rows, collapsed = [], teacher
    for n in progress(sorted(sizes, reverse=True), desc="ShortGPT / LaCo sizes"):
        collapsed = laco(collapsed, n, calibration, lp.laco_merge_layers, lp.laco_lowest, lp.laco_interval,
                         lp.laco_threshold, reference=reference)
        for method, model in (("shortgpt", shortgpt(teacher, influence, n)), ("laco", collapsed)):
            result = perplexity(model, heldout, e.batch_size, e.mixed_precision)
            rows.append({"model": f"{method}_{n}", "method": method, "order": "none", "num_layers": n, **parameter_counts(model, tied), "task": "heldout",
                         "metric": "perplexity", "value": result["perplexity"],
                         "stderr": result["perplexity"] * result["nll_stderr"], "batch_size": e.batch_size})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)
