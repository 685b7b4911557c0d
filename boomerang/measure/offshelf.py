"""Off-the-shelf pairs (the paper's Fig. 6): interpolate between a released distilled model and its
teacher with no training of ours. DistilBERT and DistilGPT2 were initialised from teacher layers
[0, 2, 4, 7, 9, 11] of BERT-base and GPT-2; DistilBERT is first rewritten as a BERT model (same maths,
other parameter names) so that the ordinary patching applies.
"""
from __future__ import annotations

import math

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, BertConfig,
                          BertForMaskedLM)

from ..config import DataConfig, OffshelfConfig
from ..core.arch import num_layers
from ..core.prune import Layout
from ..device import default_device
from ..family import Family
from ..sources.text import heldout_blocks
from .perplexity import METRIC_COLUMNS, measured_once, perplexity, run_models

DISTIL_LAYERS = tuple(OffshelfConfig().layers)  # (0, 2, 4, 7, 9, 11): DistilBERT's and DistilGPT2's
# DistilBERT parameter name -> BERT parameter name (per layer, then embeddings and MLM head)
_LAYER_NAMES = {
    "attention.q_lin": "attention.self.query", "attention.k_lin": "attention.self.key",
    "attention.v_lin": "attention.self.value", "attention.out_lin": "attention.output.dense",
    "sa_layer_norm": "attention.output.LayerNorm", "ffn.lin1": "intermediate.dense",
    "ffn.lin2": "output.dense", "output_layer_norm": "output.LayerNorm",
}
_OTHER_NAMES = {
    "distilbert.embeddings.word_embeddings": "bert.embeddings.word_embeddings",
    "distilbert.embeddings.position_embeddings": "bert.embeddings.position_embeddings",
    "distilbert.embeddings.LayerNorm": "bert.embeddings.LayerNorm",
    "vocab_transform": "cls.predictions.transform.dense",
    "vocab_layer_norm": "cls.predictions.transform.LayerNorm",
    "vocab_projector": "cls.predictions.decoder",
}


@torch.no_grad()
def distilbert_as_bert(model: nn.Module) -> BertForMaskedLM:
    """The same function as a `DistilBertForMaskedLM`, as a `BertForMaskedLM`.

    DistilBERT has no token-type embedding, so BERT's is set to zero (every token is type 0)."""
    c = model.config
    config = BertConfig(
        vocab_size=c.vocab_size, hidden_size=c.dim, num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
        intermediate_size=c.hidden_dim, hidden_act=c.activation, max_position_embeddings=c.max_position_embeddings,
        layer_norm_eps=1e-12, pad_token_id=c.pad_token_id, tie_word_embeddings=True,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    bert = BertForMaskedLM(config).to(model.dtype).eval()
    source = dict(model.named_parameters())
    names = {f"distilbert.transformer.layer.{i}.{a}": f"bert.encoder.layer.{i}.{b}"
             for i in range(c.n_layers) for a, b in _LAYER_NAMES.items()} | _OTHER_NAMES
    for src, dst in names.items():
        for kind in ("weight", "bias"):
            if f"{src}.{kind}" in source:
                bert.get_parameter(f"{dst}.{kind}").copy_(source[f"{src}.{kind}"])
    bert.cls.predictions.bias.copy_(source["vocab_projector.bias"])
    bert.bert.embeddings.token_type_embeddings.weight.zero_()
    return bert


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


def load_pair(teacher: str, student: str, layers: list[int], dtype: torch.dtype = torch.float32,
              device: str | torch.device | None = None) -> tuple[Family, bool]:
    """A released pair (hub ids or local paths) as a family whose student was initialised from teacher
    `layers`, on `device` (default: `default_device()`), and whether it is a masked LM. A DistilBERT
    student comes back rewritten as BERT, so that it patches like any other family."""
    device = device or default_device()
    masked = AutoConfig.from_pretrained(student).model_type == "distilbert"
    auto = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    teacher_model = auto.from_pretrained(teacher, dtype=dtype).to(device).eval()
    student_model = auto.from_pretrained(student, dtype=dtype).eval()
    if masked:
        student_model = distilbert_as_bert(student_model)
    layout = Layout(tuple(layers), num_layers(teacher_model.config))
    return Family(teacher_model, student_model.to(device), layout, AutoTokenizer.from_pretrained(student)), masked


def eval_blocks(cfg: OffshelfConfig, data: DataConfig, tokenizer, masked: bool) -> Tensor:
    """`eval_tokens` of text in blocks of `seq_len`, from `cfg.dataset` or else the run's held-out text;
    a masked LM's blocks are framed by its [CLS] ... [SEP], as in pre-training."""
    inner = cfg.seq_len - 2 if masked else cfg.seq_len
    source = (DataConfig(source="hub", heldout_dataset=cfg.dataset, heldout_config=cfg.dataset_config,
                         heldout_split=cfg.split, seq_len=inner) if cfg.dataset else data.model_copy(update={"seq_len": inner}))
    blocks = heldout_blocks(source, tokenizer, cfg.eval_tokens)
    if not masked:
        return blocks
    cls, sep = (torch.full((len(blocks), 1), t, dtype=blocks.dtype) for t in (tokenizer.cls_token_id,
                                                                             tokenizer.sep_token_id))
    return torch.cat([cls, blocks, sep], dim=1)


def pair_metrics(name: str, family: Family, masked: bool, blocks: Tensor, cfg: OffshelfConfig) -> pd.DataFrame:
    """Teacher, student, every interpolated size along `cfg.orders` and naive pruning (the teacher with
    the same layers removed) of one pair, in the layout of the held-out table with `task` = the pair's name."""
    tokenizer = family.tokenizer
    metric = "pseudo_perplexity" if masked else "perplexity"
    frame = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id} - {None}  # not scored
    rows = []
    def measure(model: nn.Module) -> dict[str, float]:
        if masked:
            return pseudo_perplexity(model, blocks, tokenizer.mask_token_id, frame, cfg.batch_size)
        return perplexity(model, blocks, cfg.batch_size, mixed_precision="no")

    for model, labels, result in measured_once(run_models(family, cfg.orders, family.undistilled()), measure):
        rows.append({**labels, **family.counts(model), "task": name, "metric": metric,
                     "value": result[metric], "stderr": result[metric] * result["nll_stderr"],
                     "batch_size": cfg.batch_size})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)
