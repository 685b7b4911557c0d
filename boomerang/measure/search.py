"""Which blocks to patch for a size, chosen on calibration text (beyond the paper's two fixed orders).

The objective, after the follow-up paper (*Understanding Layer Patching*, arXiv 2607.08170): the KL
divergence of the patched model's next-token distribution from the teacher's, averaged over real tokens.
`klpatch_order` is its greedy order, KLPatch: at each size, patch the remaining block whose patching alone
gives the lowest KL. `subset_kls` is the exact answer for the sizes where every subset can be tried: it
walks the subsets depth-first, one block at a time, so the student's and teacher's computation up to a
block is shared by every subset that agrees so far.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import Precision
from ..core.arch import adapter_for, assemble, decoder_layers, layer_output
from ..device import autocast
from ..family import Family
from ..progress import progress
from .perplexity import perplexity


class Calibration:
    """Calibration blocks and the teacher's log-probabilities on them, computed once."""

    def __init__(self, teacher: nn.Module, blocks: Tensor, batch_size: int, precision: Precision):
        self.device = next(teacher.parameters()).device
        self.batches = [b.to(self.device) for b in blocks.split(batch_size)]
        self.precision = precision
        self.teacher_logp = [self._logp(teacher(input_ids=b).logits) for b in self._run(lambda b: b)]

    def _run(self, fn):
        with torch.no_grad(), autocast(self.device, self.precision):
            return [fn(b) for b in self.batches]

    @staticmethod
    def _logp(logits: Tensor) -> Tensor:
        return F.log_softmax(logits.float(), dim=-1)

    def kl_of_logits(self, logits: Iterable[Tensor]) -> float:
        """KL(p_T ‖ p) per token, averaged over every calibration token (all are real: the text is packed)."""
        total, count = 0.0, 0
        for t_logp, s_logits in zip(self.teacher_logp, logits):
            s_logp = self._logp(s_logits)
            total += (t_logp.exp() * (t_logp - s_logp)).sum().item()
            count += t_logp.shape[0] * t_logp.shape[1]
        return total / count

    def kl(self, model: nn.Module) -> float:
        with torch.no_grad(), autocast(self.device, self.precision):
            return self.kl_of_logits(model(input_ids=b).logits for b in self.batches)


def klpatch_order(family: Family, calibration: Calibration) -> tuple[list[int], list[float]]:
    """KLPatch: the blocks in the order the greedy patches them, and the KL after each patch. Ties (a frozen
    one-layer block is its teacher layer, so patching it changes nothing) go to the lower block index."""
    chosen, kls = [], []
    remaining = list(range(family.layout.num_blocks))
    for _ in progress(range(len(remaining)), desc="KLPatch"):
        scores = {b: calibration.kl(family.model([*chosen, b])) for b in remaining}
        best = min(remaining, key=lambda b: (scores[b], b))
        chosen.append(best)
        kls.append(scores[best])
        remaining.remove(best)
    return chosen, kls


def subset_kls(family: Family, calibration: Calibration, counts: set[int]) -> dict[frozenset[int], float]:
    """The KL of every patched model whose number of patched multi-layer blocks is in `counts` (one-layer
    blocks patched or not: with both choices when they were trained, the student's layer when frozen,
    as patching would change nothing).

    Depth first over the blocks: each node runs one block (the student's layer or the teacher's layers) on
    its parent's hidden states, so subsets that agree on their first blocks share that computation; a leaf
    applies the final norm and head of whichever model supplies the last block. Rotary families only (the
    running state enters each layer without position embeddings being added again)."""
    teacher, student, layout = family.teacher, family.student, family.layout
    adapter = adapter_for(teacher)
    if adapter.rotary is None:
        raise NotImplementedError(f"{teacher.config.model_type!r} adds absolute position embeddings to its input; "
                                  "the exhaustive search runs block by block and needs rotary positions")
    multi = [len(b) > 1 for b in layout.blocks]
    frozen = [not m and _same_layer(family, i) for i, m in enumerate(multi)]
    left = [sum(multi[i:]) for i in range(len(multi) + 1)]  # multi-layer blocks from block i on
    parts = {(i, patched): _segment(family, i, patched) for i in range(layout.num_blocks) for patched in (False, True)}
    ends = {patched: _head(teacher if patched else student, adapter) for patched in (False, True)}
    results: dict[frozenset[int], float] = {}

    def visit(i: int, states: list[Tensor], chosen: tuple[int, ...], count: int) -> None:
        if not any(count <= c <= count + left[i] for c in counts):
            return
        if i == layout.num_blocks:
            last_patched = layout.num_blocks - 1 in chosen
            with torch.no_grad(), autocast(calibration.device, calibration.precision):
                logits = [ends[last_patched](h) for h in states]
            results[frozenset(chosen)] = calibration.kl_of_logits(logits)
            return
        for patched in ((False,) if frozen[i] else (False, True)):
            with torch.no_grad(), autocast(calibration.device, calibration.precision):
                nxt = [parts[i, patched](h, b) for h, b in zip(states, calibration.batches)]
            visit(i + 1, nxt, (*chosen, i) if patched else chosen, count + (patched and multi[i]))

    visit(0, [None] * len(calibration.batches), (), 0)
    return results


def _same_layer(family: Family, i: int) -> bool:
    """Whether student layer i is its (one) teacher layer, unchanged."""
    s = decoder_layers(family.student)[i].state_dict()
    t = decoder_layers(family.teacher)[family.layout.blocks[i][0]].state_dict()
    return all(torch.equal(s[k], t[k].to(s[k].device)) for k in s)


def _segment(family: Family, i: int, patched: bool):
    """Block i as a function of the state entering it (of the token ids, for block 0): the student's layer i
    or the teacher's layers of the block, with the embedding of the same model at block 0. Returns the
    output of its last layer, before any final norm."""
    source, layers = (family.teacher, family.layout.blocks[i]) if patched else (family.student, [i])
    model = assemble(family.teacher.config, [(source, j) for j in layers], source, source).eval()
    captured = []
    decoder_layers(model)[-1].register_forward_hook(lambda m, args, out: captured.append(layer_output(out)))

    def run(hidden: Tensor | None, ids: Tensor) -> Tensor:
        inputs = {"input_ids": ids} if hidden is None else {"inputs_embeds": hidden}
        model(**inputs, logits_to_keep=torch.empty(0, dtype=torch.long, device=ids.device))
        return captured.pop()
    return run


def _head(source: nn.Module, adapter) -> Callable[[Tensor], Tensor]:
    norm, head = source.get_submodule(adapter.norm), source.get_submodule(adapter.head)
    return lambda hidden: head(norm(hidden))


def optimum_table(family: Family, calibration: Calibration, orders: list[str], depth: int,
                  heldout: Tensor, batch_size: int, precision: Precision) -> pd.DataFrame:
    """At the sizes that patch up to `depth` multi-layer blocks, or all but `depth`: the subset of blocks
    with the lowest calibration KL, found by trying them all, against what each order patches at that size,
    by calibration KL and by held-out perplexity. Orders whose blocks at a size are the optimum's show a
    KL ratio of 1."""
    multi = [i for i, b in enumerate(family.layout.blocks) if len(b) > 1]
    if len({len(family.layout.blocks[i]) for i in multi}) > 1:
        raise NotImplementedError("the exhaustive search compares subsets of one size: it needs multi-layer blocks "
                                  "of one length")
    counts = {j for j in range(1, len(multi)) if j <= depth or j >= len(multi) - depth}
    kls = subset_kls(family, calibration, counts)
    trained_singles = {i for i, b in enumerate(family.layout.blocks) if len(b) == 1} & {i for s in kls for i in s}
    rows = []
    for j in sorted(counts):
        at_j = {s: kl for s, kl in kls.items() if len(s & set(multi)) == j}
        best = min(at_j, key=lambda s: (at_j[s], sorted(s)))
        layers = sum(len(family.layout.blocks[i]) if i in best else 1 for i in range(family.layout.num_blocks))
        candidates = {"optimum": best}
        for order in orders:
            spec = next(s for s in family.interpolants(order) if len(set(s.blocks) & set(multi)) == j)
            candidates[order] = frozenset(b for b in spec.blocks if b in multi or b in trained_singles)
        for name, blocks in candidates.items():
            ppl = perplexity(family.model(blocks), heldout, batch_size, precision)["perplexity"]
            rows.append({"multi_layer_blocks": j, "num_layers": layers, "choice": name, "blocks": sorted(blocks),
                         "calibration_kl": kls[blocks], "kl_ratio_to_optimum": kls[blocks] / at_j[best],
                         "heldout_perplexity": ppl})
    return pd.DataFrame(rows)
