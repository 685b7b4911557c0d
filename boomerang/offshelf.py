"""Off-the-shelf pairs (the paper's Fig. 6): interpolate between a released distilled model and its
teacher with no training of ours. DistilBERT and DistilGPT2 were initialised from teacher layers
[0, 2, 4, 7, 9, 11] of BERT-base and GPT-2; DistilBERT is first rewritten as a BERT model (same maths,
other parameter names) so that the ordinary patching applies.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import BertConfig, BertForMaskedLM

DISTIL_LAYERS = (0, 2, 4, 7, 9, 11)  # of distilbert/distilbert-base-uncased and distilbert/distilgpt2
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
    nll = []
    for seq in input_ids:
        positions = [i for i, t in enumerate(seq.tolist()) if t not in skip_ids]
        masked = seq.repeat(len(positions), 1)
        masked[range(len(positions)), positions] = mask_token_id
        for rows in torch.arange(len(positions)).split(batch_size):
            logits = model(input_ids=masked[rows]).logits
            at = torch.tensor(positions)[rows]
            logp = F.log_softmax(logits[rows - rows[0], at].float(), dim=-1)
            nll.append(-logp.gather(1, seq[at].unsqueeze(1)).squeeze(1))
    per_token = torch.cat(nll)
    mean = per_token.mean().item()
    return {"nll": mean, "nll_stderr": per_token.std().item() / math.sqrt(len(per_token)),
            "pseudo_perplexity": math.exp(mean)}
