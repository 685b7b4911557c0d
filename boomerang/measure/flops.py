"""Training compute of distillation (the paper's Table 3): every size distilled separately vs once.

Forward FLOPs per token follow Kaplan et al. (2020): 2 per weight of the decoder layers and the LM head
(the embedding lookup is free) plus 2·n_layers·n_ctx·d_model for attention scores. A distillation step
costs the student's forward and backward (3× forward) and the frozen teacher's forward.
"""
from __future__ import annotations

import pandas as pd
from torch import nn

from ..core.arch import adapter_for, decoder_layers


def forward_flops_per_token(model: nn.Module, num_layers: int, seq_len: int) -> int:
    """Forward FLOPs per token of `model`'s architecture with `num_layers` of its (equal-shaped) layers."""
    layer = sum(p.numel() for p in decoder_layers(model)[0].parameters())
    head = model.get_submodule(adapter_for(model).head).weight
    d_model = head.shape[1]
    return 2 * (num_layers * layer + head.numel()) + 2 * num_layers * seq_len * d_model


def distillation_flops(model: nn.Module, student_layers: int, teacher_layers: int, tokens: int, seq_len: int) -> int:
    return tokens * (3 * forward_flops_per_token(model, student_layers, seq_len)
                     + forward_flops_per_token(model, teacher_layers, seq_len))


def flops_table(model: nn.Module, sizes: list[int], teacher_layers: int, tokens: int, seq_len: int) -> pd.DataFrame:
    """Distilling a student of each size in `sizes` separately, against distilling the smallest once and
    interpolating to the rest: one row per size plus a total with the saving factor."""
    rows = [{"num_layers": n, "flops": distillation_flops(model, n, teacher_layers, tokens, seq_len)}
            for n in sorted(sizes)]
    separate = sum(r["flops"] for r in rows)
    once = rows[0]["flops"]
    rows.append({"num_layers": "all separately", "flops": separate})
    rows.append({"num_layers": "boomerang (smallest once)", "flops": once})
    rows.append({"num_layers": "saving factor", "flops": separate / once})
    return pd.DataFrame(rows)
