"""Off-the-shelf pairs (the paper's Fig. 6): interpolate between a released distilled model and its
teacher with no training of ours. DistilBERT and DistilGPT2 were initialised from teacher layers
[0, 2, 4, 7, 9, 11] of BERT-base and GPT-2 (`sources.pairs` loads them so that the ordinary patching applies).
"""
from __future__ import annotations

import math

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DataConfig, OffshelfConfig
from ..core.arch import num_layers
from ..core.prune import Layout
from ..family import Family
from ..sources.pairs import load_pair
from ..sources.text import heldout_sequences
from .models import METRIC_COLUMNS, measured_once, run_models
from .perplexity import perplexity

DISTIL_LAYERS = tuple(OffshelfConfig().layers)  # (0, 2, 4, 7, 9, 11): DistilBERT's and DistilGPT2's
@torch.no_grad()
def pseudo_perplexity(model: nn.Module, input_ids: Tensor, mask_token_id: int, skip_ids: set[int] = frozenset(),
                      batch_size: int = 32) -> dict[str, float]:
    """Masked-LM pseudo-perplexity (Salazar et al. 2020): mask each scored token in turn and score it from
    both sides; exp of the mean negative log-likelihood over every scored token of every sequence."""
    device = next(model.parameters()).device
    nll = []
    for seq in input_ids.to(device):
        positions = [i for i, t in enumerate(seq.tolist()) if t not in skip_ids]
        if not positions:
            continue
        at_all = torch.tensor(positions, device=device)
        masked = seq.repeat(len(positions), 1)
        masked[torch.arange(len(positions), device=device), at_all] = mask_token_id
        for rows in torch.arange(len(positions), device=device).split(batch_size):
            logits = model(input_ids=masked[rows]).logits
            at = at_all[rows]
            logp = F.log_softmax(logits[rows - rows[0], at].float(), dim=-1)
            nll.append(-logp.gather(1, seq[at].unsqueeze(1)).squeeze(1))
    per_token = torch.cat(nll)
    mean = per_token.mean().item()
    return {"nll": mean, "nll_stderr": per_token.std().item() / math.sqrt(len(per_token)),
            "pseudo_perplexity": math.exp(mean)}


def pair_family(teacher: str, student: str, layers: list[int], dtype: torch.dtype = torch.float32,
                device: str | torch.device | None = None) -> tuple[Family, bool]:
    """A released pair as a family whose student was initialised from teacher `layers`, and whether it is a
    masked LM (`sources.pairs.load_pair`)."""
    teacher_model, student_model, tokenizer, masked = load_pair(teacher, student, dtype, device)
    layout = Layout(tuple(layers), num_layers(teacher_model.config))
    return Family(teacher_model, student_model, layout, tokenizer), masked


def pair_sequences(cfg: OffshelfConfig, data: DataConfig, tokenizer, masked: bool) -> Tensor:
    """`eval_tokens` of text in sequences of `seq_len`, from `cfg.dataset` or else the run's held-out text;
    a masked LM's sequences are framed by its [CLS] ... [SEP], as in pre-training."""
    inner = cfg.seq_len - 2 if masked else cfg.seq_len
    source = (DataConfig(source="hub", heldout_dataset=cfg.dataset, heldout_config=cfg.dataset_config,
                         heldout_split=cfg.split, seq_len=inner) if cfg.dataset else data.model_copy(update={"seq_len": inner}))
    sequences = heldout_sequences(source, tokenizer, cfg.eval_tokens)
    if not masked:
        return sequences
    cls, sep = (torch.full((len(sequences), 1), t, dtype=sequences.dtype) for t in (tokenizer.cls_token_id,
                                                                                   tokenizer.sep_token_id))
    return torch.cat([cls, sequences, sep], dim=1)


def pair_metrics(name: str, family: Family, masked: bool, sequences: Tensor, cfg: OffshelfConfig) -> pd.DataFrame:
    """Teacher, student, every interpolated size along `cfg.orders` and naive pruning (the teacher with
    the same layers removed) of one pair, in the layout of the held-out table with `task` = the pair's name."""
    tokenizer = family.tokenizer
    metric = "pseudo_perplexity" if masked else "perplexity"
    frame = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id} - {None}  # not scored
    rows = []
    def measure(model: nn.Module) -> dict[str, float]:
        if masked:
            return pseudo_perplexity(model, sequences, tokenizer.mask_token_id, frame, cfg.batch_size)
        return perplexity(model, sequences, cfg.batch_size, mixed_precision="no")

    for model, labels, result in measured_once(run_models(family, cfg.orders, family.undistilled()), measure):
        rows.append({**labels, **family.counts(model), "task": name, "metric": metric,
                     "value": result[metric], "stderr": result[metric] * result["nll_stderr"],
                     "batch_size": cfg.batch_size})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)
