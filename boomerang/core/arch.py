"""Architecture adapters: where each architecture keeps the parts that pruning and patching move.

Everything else in the package is architecture-agnostic and addresses modules through this one table.
"""
from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel


@dataclass(frozen=True)
class Adapter:
    layers: str  # the ModuleList of decoder layers
    embed: tuple[str, ...]  # modules that produce the first hidden state
    norm: str  # final norm applied before the LM head
    head: str  # LM head
    rotary: str | None  # shared rotary embedding (no parameters, only buffers)
    num_layers_key: str  # config attribute holding the layer count


_LLAMA_LIKE = Adapter(
    layers="model.layers",
    embed=("model.embed_tokens",),
    norm="model.norm",
    head="lm_head",
    rotary="model.rotary_emb",
    num_layers_key="num_hidden_layers",
)

ADAPTERS: dict[str, Adapter] = {
    "llama": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "gpt_neox": Adapter(
        layers="gpt_neox.layers",
        embed=("gpt_neox.embed_in",),
        norm="gpt_neox.final_layer_norm",
        head="lm_head",
        rotary="gpt_neox.rotary_emb",
        num_layers_key="num_hidden_layers",
    ),
    # masked LM (the paper's DistilBERT -> BERT pair): the prediction head's transform plays the final norm
    "bert": Adapter(
        layers="bert.encoder.layer",
        embed=("bert.embeddings",),
        norm="cls.predictions.transform",
        head="cls.predictions.decoder",
        rotary=None,
        num_layers_key="num_hidden_layers",
    ),
    "gpt2": Adapter(
        layers="transformer.h",
        embed=("transformer.wte", "transformer.wpe"),
        norm="transformer.ln_f",
        head="lm_head",
        rotary=None,
        num_layers_key="n_layer",
    ),
}


def adapter_for(model_or_config) -> Adapter:
    config = getattr(model_or_config, "config", model_or_config)
    try:
        return ADAPTERS[config.model_type]
    except KeyError:
        raise NotImplementedError(
            f"architecture {config.model_type!r} is not supported; supported: {sorted(ADAPTERS)}"
        ) from None


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    return model.get_submodule(adapter_for(model).layers)


def hidden_states(model: nn.Module, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                  inputs_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Every hidden state (embedding output ... final post-norm state), from the model without its LM head
    (even on no token, the head's weights are cast to the autocast dtype on every call) and without a KV
    cache (nothing reads it, and a compiled layer would be traced again for each layer's cache)."""
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                            output_hidden_states=True, use_cache=False).hidden_states


def layer_output(output) -> torch.Tensor:
    """The hidden state a decoder layer returns (some architectures return it first in a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def num_layers(config) -> int:
    return getattr(config, adapter_for(config).num_layers_key)


def ties_embeddings(config) -> bool:
    """Whether the architecture shares its input embedding with its LM head. Read from the teacher's config
    rather than from tensor identity, so that interpolated models whose embedding and head come from
    different models are counted like teacher and student."""
    return bool(getattr(config, "tie_word_embeddings", False))


def parameter_counts(model: nn.Module, tied: bool) -> dict[str, int]:
    """Training-time count (with `tied`, an embedding shared with the LM head counted once) and
    inference-time count (both)."""
    adapter = adapter_for(model)
    parts = [decoder_layers(model), model.get_submodule(adapter.norm), *(model.get_submodule(p) for p in adapter.embed)]
    body = sum(p.numel() for part in parts for p in part.parameters())
    head = model.get_submodule(adapter.head).weight.numel()
    return {"params": body + (0 if tied else head), "params_inference": body + head}


def _share_or_copy(dst: nn.Module, src: nn.Module, copy: bool) -> None:
    """Point every parameter and buffer of `dst` at the matching tensor of `src` (cloned if `copy`)."""
    src_modules = dict(src.named_modules())
    for name, module in dst.named_modules():
        other = src_modules[name]
        for key, param in other._parameters.items():
            if param is not None and copy:
                param = nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)
            module._parameters[key] = param
        for key, buf in other._buffers.items():
            module._buffers[key] = buf.clone() if (copy and buf is not None) else buf


def _share_tied_aliases(model: PreTrainedModel) -> None:
    """Give a parameter that is another's alias (e.g. BERT's `cls.predictions.bias` and its decoder's bias)
    the tensor its partner already holds."""
    tied_keys = getattr(type(model), "_tied_weights_keys", None)
    for a, b in (tied_keys.items() if isinstance(tied_keys, dict) else ()):
        pa, pb = model.get_parameter(a), model.get_parameter(b)
        if pa.is_meta != pb.is_meta:
            target, source = (a, pb) if pa.is_meta else (b, pa)
            owner, _, name = target.rpartition(".")
            model.get_submodule(owner)._parameters[name] = source


def assemble(
    template_config,
    layers: Sequence[tuple[nn.Module, int]],
    first: nn.Module,
    last: nn.Module,
    copy: bool = False,
) -> PreTrainedModel:
    """Build a model whose i-th decoder layer is `layers[i] = (source_model, source_layer_index)`.

    The embedding comes from `first`, the final norm and LM head from `last`. With `copy=False` the new
    model shares the sources' tensors, so any number of assembled models cost no extra memory. Input and
    output embeddings stay tied only when one model supplies both and the architecture ties them.
    """
    adapter = adapter_for(template_config)
    config = deepcopy(template_config)
    setattr(config, adapter.num_layers_key, len(layers))
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [src.config.layer_types[j] for src, j in layers]
    tied = bool(getattr(template_config, "tie_word_embeddings", False)) and first is last
    config.tie_word_embeddings = tied
    with torch.device("meta"):
        model = type(first)._from_config(config, dtype=first.dtype)

    for position, (src, j) in enumerate(layers):
        _share_or_copy(decoder_layers(model)[position], decoder_layers(src)[j], copy)
    for path in adapter.embed:
        _share_or_copy(model.get_submodule(path), first.get_submodule(path), copy)
    _share_or_copy(model.get_submodule(adapter.norm), last.get_submodule(adapter.norm), copy)
    if adapter.rotary:
        _share_or_copy(model.get_submodule(adapter.rotary), last.get_submodule(adapter.rotary), copy)
    head = model.get_submodule(adapter.head)
    _share_or_copy(head, last.get_submodule(adapter.head), copy)
    if tied:
        head._parameters["weight"] = model.get_input_embeddings().weight
    _share_tied_aliases(model)

    left_on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left_on_meta:
        raise RuntimeError(f"adapter for {config.model_type!r} misses tensors: {left_on_meta[:5]}")
    return model.train(first.training)
