"""Many patched models of one family over the same batches, run block by block: models that agree on their
first blocks share that computation. A sweep along an order shares the student's (last → first) or the
teacher's (first → last) lower blocks, and an exhaustive search over subsets of blocks shares most of its
work (`make benchmark` sets it against running each model whole: `docs/benchmarks.md`).

Each block runs as a model of its own (the student's layer, or the teacher's layers of the block) on the
state its predecessor left, one batch at a time, so memory holds one batch's state per block. That needs
rotary positions: an architecture that adds position embeddings to its input would add them again at every
block, so there each model runs whole, once per distinct function (`Family.identity`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch
from torch import Tensor, nn

from ..config import Precision
from ..core.arch import adapter_for, assemble, decoder_layers, hidden_states, layer_output
from ..device import autocast
from ..family import Family
from ..progress import progress

R = TypeVar("R")


class Blockwise:
    """The final post-norm states of patched models of `family`, batch by batch, for a reducer that may apply
    the model's LM head (`head`: the teacher's when its last block is patched, else the student's)."""

    def __init__(self, family: Family, precision: Precision):
        self.family, self.precision = family, precision
        self.device = next(family.teacher.parameters()).device
        self.by_block = adapter_for(family.teacher).rotary is not None
        self._segments: dict[tuple[int, bool], Callable] = {}

    def head(self, key: frozenset[int]) -> nn.Module:
        return self._last(key, "head")

    def reduce(self, sets: Iterable[Iterable[int]], batches: list[Tensor], fn: Callable[[frozenset[int], Tensor, int], R],
               desc: str = "models") -> dict[frozenset[int], list[R]]:
        """`fn(key, final_states, i)` for every batch `batches[i]` and every distinct `Family.identity` among
        `sets`; per key, the list of what it returned, batch by batch."""
        keys = sorted({self.family.identity(s) for s in sets}, key=sorted)
        results: dict[frozenset[int], list[R]] = {k: [] for k in keys}
        for i in progress(range(len(batches)), desc=f"{desc}: {len(keys)} models, batch", leave=False):
            for key, final in self.final_states(keys, batches[i].to(self.device)):
                results[key].append(fn(key, final, i))
        return results

    def final_states(self, keys: list[frozenset[int]], batch: Tensor) -> Iterator[tuple[frozenset[int], Tensor]]:
        """Each key's final post-norm states on one batch, depth first over the blocks."""
        if self.by_block:
            yield from self._visit(0, None, keys, batch)
            return
        for key in keys:
            yield key, self._run(lambda: hidden_states(self.family.model(key), batch)[-1])

    def _visit(self, i: int, state: Tensor | None, keys: list[frozenset[int]], batch: Tensor):
        if i == self.family.layout.num_blocks:
            (key,) = keys  # keys that agree on every block are one key
            yield key, self._run(lambda: self._last(key, "norm")(state))
            return
        for patched in (False, True):
            group = [k for k in keys if (i in k) == patched]
            if group:
                yield from self._visit(i + 1, self._run(lambda: self._segment(i, patched)(state, batch)), group, batch)

    def _run(self, fn: Callable[[], Tensor]) -> Tensor:
        with torch.no_grad(), autocast(self.device, self.precision):
            return fn()

    def _last(self, key: frozenset[int], part: str) -> nn.Module:
        """The final norm or LM head of the model that supplies the last block."""
        source = self.family.teacher if self.family.layout.num_blocks - 1 in key else self.family.student
        return source.get_submodule(getattr(adapter_for(source), part))

    def _segment(self, i: int, patched: bool) -> Callable[[Tensor | None, Tensor], Tensor]:
        """Block i as a function of the state entering it (of the token ids, for block 0): the student's layer i
        or the teacher's layers of the block, with the embedding of the same model at block 0. Returns the
        output of its last layer, before any final norm."""
        if (i, patched) not in self._segments:
            f = self.family
            source, layers = (f.teacher, f.layout.blocks[i]) if patched else (f.student, [i])
            model = assemble(f.teacher.config, [(source, j) for j in layers], source, source).eval()
            captured = []
            decoder_layers(model)[-1].register_forward_hook(lambda m, args, out: captured.append(layer_output(out)))

            def run(state: Tensor | None, ids: Tensor) -> Tensor:
                model.base_model(**({"input_ids": ids} if state is None else {"inputs_embeds": state}))
                return captured.pop()
            self._segments[i, patched] = run
        return self._segments[i, patched]
