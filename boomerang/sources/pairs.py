"""The released distilled models of the paper's Fig. 6 and their teachers, loaded so that the ordinary
patching applies: DistilBERT is rewritten as a BERT model (the same function under BERT's parameter names),
DistilGPT2 is a GPT-2 already."""
from __future__ import annotations

import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, BertConfig,
                          BertForMaskedLM, PreTrainedModel, PreTrainedTokenizerBase)

from ..device import default_device

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


def load_pair(teacher: str, student: str, dtype: torch.dtype = torch.float32, device: str | torch.device | None = None
              ) -> tuple[PreTrainedModel, PreTrainedModel, PreTrainedTokenizerBase, bool]:
    """A released pair (hub ids or local paths) in eval mode on `device` (default: `default_device()`), the
    student's tokenizer, and whether it is a masked LM. A DistilBERT student comes back rewritten as BERT."""
    device = device or default_device()
    masked = AutoConfig.from_pretrained(student).model_type == "distilbert"
    auto = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    teacher_model = auto.from_pretrained(teacher, dtype=dtype).to(device).eval()
    student_model = auto.from_pretrained(student, dtype=dtype).eval()
    if masked:
        student_model = distilbert_as_bert(student_model)
    return teacher_model, student_model.to(device), AutoTokenizer.from_pretrained(student), masked
