"""Which blocks to patch for a size, chosen on calibration text (beyond the paper's two fixed orders).

The objective, after the follow-up paper (*Understanding Layer Patching*, arXiv 2607.08170): the KL
divergence of the patched model's next-token distribution from the teacher's, averaged over real tokens.
`klpatch_order` is its greedy order, KLPatch: at each size, patch the remaining block whose patching alone
gives the lowest KL. `subset_kls` is the exact answer for the sizes where every subset can be tried. Both
run their candidates block by block (`measure.blockwise`), so candidates that agree on their first blocks
share that computation.
"""
from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import Precision
from ..device import autocast
from ..family import Family
from ..progress import progress
from .blockwise import Blockwise
from .perplexity import perplexity


class Calibration:
    """Calibration sequences and the teacher's log-probabilities on them, computed once."""

    def __init__(self, teacher: nn.Module, sequences: Tensor, batch_size: int, precision: Precision):
        self.device = next(teacher.parameters()).device
        self.batches = [b.to(self.device) for b in sequences.split(batch_size)]
        self.precision = precision
        with torch.no_grad(), autocast(self.device, precision):  # the teacher as the candidates compute
            self.teacher_logp = [_logp(teacher(input_ids=b).logits) for b in self.batches]
        self.teacher_p = [logp.exp() for logp in self.teacher_logp]

    def kls(self, family: Family, sets: Iterable[Iterable[int]], desc: str) -> dict[frozenset[int], float]:
        """KL(p_T ‖ p) per token, averaged over every calibration token (all are real: the text is packed), of
        each distinct model among the patched `sets`, keyed by `Family.identity`."""
        runner = Blockwise(family, self.precision)

        def kl_sum(key: frozenset[int], final: Tensor, i: int) -> float:
            with torch.no_grad(), autocast(self.device, self.precision):
                logits = runner.head(key)(final)
            # p_T·(log p_T − log p) in place in one buffer; summed pairwise (a BLAS dot over 50M fp32 terms
            # drifts by 1e-4 relative)
            return _logp(logits).neg_().add_(self.teacher_logp[i]).mul_(self.teacher_p[i]).sum().item()

        sums = runner.reduce(sets, self.batches, kl_sum, desc)
        tokens = sum(b.numel() for b in self.batches)
        return {key: sum(per_batch) / tokens for key, per_batch in sums.items()}


def _logp(logits: Tensor) -> Tensor:
    return F.log_softmax(logits.float(), dim=-1)


def klpatch_order(family: Family, calibration: Calibration) -> tuple[list[int], list[float]]:
    """KLPatch: the blocks in the order the greedy patches them, and the KL after each patch. Ties (a frozen
    one-layer block is its teacher layer, so patching it changes nothing) go to the lower block index."""
    chosen, kls = [], []
    remaining = list(range(family.layout.num_blocks))
    for _ in progress(range(len(remaining)), desc="KLPatch"):
        measured = calibration.kls(family, [[*chosen, b] for b in remaining], desc="KLPatch candidates")
        scores = {b: measured[family.identity([*chosen, b])] for b in remaining}
        best = min(remaining, key=lambda b: (scores[b], b))
        chosen.append(best)
        kls.append(scores[best])
        remaining.remove(best)
    return chosen, kls


def subset_kls(family: Family, calibration: Calibration, counts: set[int]) -> dict[frozenset[int], float]:
    """The KL of every patched model whose number of patched multi-layer blocks is in `counts`, keyed by
    `Family.identity` (one-layer blocks patched or not: both, where that makes a difference)."""
    blocks = family.layout.blocks
    multi = [i for i, b in enumerate(blocks) if len(b) > 1]
    singles = [i for i, b in enumerate(blocks) if len(b) == 1 and i not in family.inert_blocks]
    with_singles = [set(c) for r in range(len(singles) + 1) for c in combinations(singles, r)]
    sets = [set(c) | extra for n in sorted(counts) for c in combinations(multi, n) for extra in with_singles]
    return calibration.kls(family, sets, desc="every subset")


def optimum_table(family: Family, calibration: Calibration, orders: list[str], depth: int,
                  heldout: Tensor, batch_size: int, precision: Precision,
                  known: dict[frozenset[int], float] | None = None) -> pd.DataFrame:
    """At the sizes that patch up to `depth` multi-layer blocks, or all but `depth`: the subset of blocks
    with the lowest calibration KL, found by trying them all, against what each order patches at that size,
    by calibration KL and by held-out perplexity (taken from `known`, by `Family.identity`, where the run
    has measured it on the same text). Orders whose blocks at a size are the optimum's show a KL ratio of 1."""
    multi = [i for i, b in enumerate(family.layout.blocks) if len(b) > 1]
    if len({len(family.layout.blocks[i]) for i in multi}) > 1:
        raise NotImplementedError("the exhaustive search compares subsets of one size: it needs multi-layer blocks "
                                  "of one length")
    counts = {j for j in range(1, len(multi)) if j <= depth or j >= len(multi) - depth}
    kls = subset_kls(family, calibration, counts)
    ppl = dict(known or {})
    rows = []
    for j in sorted(counts):
        at_j = {s: kl for s, kl in kls.items() if len(s & set(multi)) == j}
        best = min(at_j, key=lambda s: (at_j[s], sorted(s)))
        layers = sum(len(family.layout.blocks[i]) if i in best else 1 for i in range(family.layout.num_blocks))
        candidates = {"optimum": best}
        for order in orders:
            spec = next(s for s in family.interpolants(order) if len(set(s.blocks) & set(multi)) == j)
            candidates[order] = family.identity(spec.blocks)
        for name, blocks in candidates.items():
            if blocks not in ppl:
                ppl[blocks] = perplexity(family.model(blocks), heldout, batch_size, precision)["perplexity"]
            rows.append({"multi_layer_blocks": j, "num_layers": layers, "choice": name, "blocks": sorted(blocks),
                         "calibration_kl": kls[blocks], "kl_ratio_to_optimum": kls[blocks] / at_j[best],
                         "heldout_perplexity": ppl[blocks]})
    return pd.DataFrame(rows)
