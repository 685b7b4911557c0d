"""Zero-shot interpolation: replace student layers by their whole teacher blocks, no training.

Patched models share the teacher's and the student's tensors, so a sweep over every k holds about
teacher + student in memory; `export` writes any of them as a plain HF checkpoint.
"""
from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from ..io import atomic_path
from .arch import assemble
from .orders import ORDERS
from .prune import Layout


def patch_order(num_blocks: int, order: str) -> list[int]:
    """Student layers in the order a fixed order patches them."""
    if order == "last_to_first":
        return list(range(num_blocks - 1, -1, -1))
    if order == "first_to_last":
        return list(range(num_blocks))
    if order in ORDERS:
        raise ValueError(f"{order!r} is chosen on calibration text (measure.search), not fixed by the layout")
    raise ValueError(f"unknown patch order {order!r}; choose one of {ORDERS}")


def patched_blocks(num_blocks: int, k: int, order: str) -> set[int]:
    if not 0 <= k <= num_blocks:
        raise ValueError(f"k must be in [0, {num_blocks}], got {k}")
    return set(patch_order(num_blocks, order)[:k])


def patch(teacher: PreTrainedModel, student: PreTrainedModel, layout: Layout, blocks: Iterable[int]) -> PreTrainedModel:
    """The student with each listed block replaced by its teacher layers (tensors shared, not copied)."""
    blocks = set(blocks)
    if not blocks <= set(range(layout.num_blocks)):
        raise ValueError(f"blocks {sorted(blocks)} outside 0..{layout.num_blocks - 1}")
    layers = []
    for i, teacher_layers in enumerate(layout.blocks):
        layers += [(teacher, j) for j in teacher_layers] if i in blocks else [(student, i)]
    first = teacher if 0 in blocks else student
    last = teacher if layout.num_blocks - 1 in blocks else student
    return assemble(teacher.config, layers, first, last).eval()


@dataclass(frozen=True)
class Interpolant:
    """One size along a patch order. `k` counts the student layers patched (this project's convention);
    `authors_k` is the authors' `--num-layers-to-patch` for the same model (see `authors_k`)."""

    order: str
    k: int
    blocks: tuple[int, ...]
    num_layers: int
    authors_k: int | None

    def name(self, method: str = "interp") -> str:
        """Its row name in the results tables; `naive` names the naive pruning of the same blocks."""
        return f"{method}_{self.order}_k{self.k}"


def authors_k(layout: Layout, order: str, k: int) -> int | None:
    """The authors' k for the model that patches the first `k` blocks of a fixed `order`, or None when
    their code builds no such model.

    Their k counts only multi-layer blocks: the single-layer blocks at the patched end of the order go in
    with the multi-layer ones, so their model for k is the longest prefix of the order holding k multi-layer
    blocks (last → first on Qwen3 or Pythia, theirs = this project's k − 2).
    """
    order_blocks = patch_order(layout.num_blocks, order)
    multi = [len(layout.blocks[i]) > 1 for i in order_blocks]
    if k < layout.num_blocks and not multi[k]:
        return None
    return sum(multi[:k])


def interpolants(layout: Layout, order: str, chosen: list[int] | None = None) -> list[Interpolant]:
    """Every size from the student (k = 0) to the teacher (k = M) along one patch order: a fixed order, or
    an order chosen on data, given as `chosen`, the blocks it patches in turn (which the authors' code does
    not build)."""
    fixed = chosen is None
    ordered = patch_order(layout.num_blocks, order) if fixed else list(chosen)
    if sorted(ordered) != list(range(layout.num_blocks)):
        raise ValueError(f"a patch order names every block once; got {ordered}")
    sizes = [len(b) for b in layout.blocks]
    out = []
    for k in range(layout.num_blocks + 1):
        blocks = set(ordered[:k])
        num = sum(sizes[i] if i in blocks else 1 for i in range(layout.num_blocks))
        out.append(Interpolant(order, k, tuple(sorted(blocks)), num, authors_k(layout, order, k) if fixed else None))
    return out


def export(model: PreTrainedModel, path: str | Path, tokenizer=None) -> None:
    """Write a self-contained checkpoint that `AutoModelForCausalLM.from_pretrained` loads as is."""
    with atomic_path(path) as out, _tied_if_equal(model):
        model.save_pretrained(out)
        if tokenizer is not None:
            tokenizer.save_pretrained(out)


@contextmanager
def _tied_if_equal(model: PreTrainedModel):
    """While it is written, a model whose LM head holds its input embedding's values is a tied model: the same
    function in one matrix fewer, on disk and once loaded. That is an interpolated model's case when the
    student's embedding was frozen (`distill.train_embeddings: false`) and the embedding and the head come
    from teacher and student; `assemble` leaves them apart, as training needs them."""
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    if (model.config.tie_word_embeddings or getattr(head, "bias", None) is not None
            or embed.weight.shape != head.weight.shape or not torch.equal(embed.weight, head.weight)):
        yield
        return
    own = head.weight
    model.config.tie_word_embeddings, head.weight = True, embed.weight
    try:
        yield
    finally:
        model.config.tie_word_embeddings, head.weight = False, own


@torch.no_grad()
def export_round_trip(model: PreTrainedModel, path: str | Path, tokenizer, input_ids: torch.Tensor) -> float:
    """Export `model`, load it back with plain `from_pretrained` on its device, and return the largest
    |logit| difference on `input_ids` (0 when the checkpoint stands on its own)."""
    export(model, path, tokenizer)
    reloaded = AutoModelForCausalLM.from_pretrained(str(path), dtype=model.dtype).to(model.device).eval()
    input_ids = input_ids.to(model.device)
    return (reloaded(input_ids).logits - model(input_ids).logits).abs().max().item()


def unique_tensor_bytes(models: Iterable[torch.nn.Module]) -> int:
    """Bytes of distinct storage behind all parameters and buffers of `models` (shared tensors once)."""
    seen: dict[int, int] = {}
    for model in models:
        for t in [*model.parameters(), *model.buffers()]:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


@torch.no_grad()
def endpoint_gaps(teacher, student, layout: Layout, input_ids: torch.Tensor) -> dict[str, float]:
    """Max |logit difference| of every block patched vs the teacher and none vs the student (both 0)."""
    input_ids = input_ids.to(teacher.device)
    full = patch(teacher, student, layout, range(layout.num_blocks))
    none = patch(teacher, student, layout, [])
    return {
        "k=M vs teacher": (full(input_ids).logits - teacher(input_ids).logits).abs().max().item(),
        "k=0 vs student": (none(input_ids).logits - student(input_ids).logits).abs().max().item(),
    }
