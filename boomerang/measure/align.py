"""Representation alignment between models: linear CKA (full-batch and minibatch) and aligned-layer cosine.

These answer whether a distilled student's hidden states still look like the teacher's, which is what lets
teacher blocks be patched back in without further training. CKA compares whole layers up to rotation and
scale; the cosine checks the exact token-by-token match the distillation loss optimised.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.arch import hidden_states
from ..family import Family
from ..progress import progress
from .blockwise import Blockwise
from .checks import Claim, claims_frame


def _common_rows(*mats: Tensor) -> int:
    """The shared number of examples; CKA is only defined between representations of the same examples."""
    rows = {m.shape[0] for m in mats}
    if len(rows) != 1:
        raise ValueError(f"activation matrices must have the same number of rows, got {sorted(rows)}")
    return rows.pop()


def _gram(x: Tensor) -> Tensor:
    """Linear-kernel Gram matrix X Xᵀ between examples."""
    return x @ x.T


def _hollow_grams(acts: Sequence[Tensor]) -> Tensor:
    """Float64 linear Gram matrices with zeroed diagonals, stacked to (len(acts), n, n).

    The unbiased HSIC estimator is defined on Grams whose diagonals are removed; float64 because its terms
    nearly cancel.
    """
    if _common_rows(*acts) < 4:
        raise ValueError("the unbiased HSIC estimator needs at least 4 examples")
    device = acts[0].device
    grams = torch.stack([_gram(a.to(device, torch.float64)) for a in acts])
    grams.diagonal(dim1=1, dim2=2).zero_()
    return grams


def _hsic_grid(k: Tensor, l: Tensor) -> Tensor:
    """Unbiased HSIC (Song et al. 2012) for every pair of hollow Grams: (A, n, n) × (B, n, n) → (A, B).

    Uses tr(KL) = <K, L> and 1ᵀKL1 = (K1)·(L1) (Grams are symmetric), so a whole grid costs two matmuls and
    never materialises an (A, B, n, n) tensor.
    """
    n = k.shape[-1]
    trace = k.flatten(1) @ l.flatten(1).T
    row_k, row_l = k.sum(2), l.sum(2)
    totals = row_k.sum(1)[:, None] * row_l.sum(1)[None, :]
    cross = row_k @ row_l.T
    return (trace + totals / ((n - 1) * (n - 2)) - 2 * cross / (n - 2)) / (n * (n - 3))


def _normalise(hsic_kl: Tensor, hsic_kk: Tensor, hsic_ll: Tensor) -> Tensor:
    """CKA from cross and self HSIC terms: (A, B), (A,), (B,) → (A, B)."""
    return hsic_kl / torch.sqrt(hsic_kk[:, None] * hsic_ll[None, :])


def _centred(x: Tensor) -> Tensor:
    """Float64 copy with zero-mean columns, as the biased (feature-space) CKA requires."""
    x = x.to(torch.float64)
    return x - x.mean(0, keepdim=True)


@torch.no_grad()
def linear_cka(x: Tensor, y: Tensor, *, debiased: bool = False) -> float:
    """Linear CKA between activations (n, d1) and (n, d2) of the same n examples.

    The biased form (Kornblith et al. 2019) is inflated towards 1 when d is large relative to n; the
    debiased form (unbiased HSIC) stays near 0 for unrelated representations.
    """
    _common_rows(x, y)
    if debiased:
        k, l = _hollow_grams([x]), _hollow_grams([y])
        return _normalise(_hsic_grid(k, l), _hsic_grid(k, k).diagonal(), _hsic_grid(l, l).diagonal()).item()
    xc, yc = _centred(x), _centred(y)
    norm = torch.linalg.matrix_norm
    return (norm(yc.T @ xc) ** 2 / (norm(xc.T @ xc) * norm(yc.T @ yc))).item()


class MinibatchCKA:
    """Debiased linear CKA for a grid of layer pairs, accumulated over minibatches (Nguyen et al. 2021).

    Averaging unbiased HSIC estimates over minibatches gives an unbiased estimate of the full-data HSIC, so
    CKA over many tokens needs only one minibatch of activations in memory at a time.
    """

    def __init__(self, num_a: int, num_b: int) -> None:
        self.num_a, self.num_b = num_a, num_b
        self._hsic_kl = torch.zeros(num_a, num_b, dtype=torch.float64)
        self._hsic_kk = torch.zeros(num_a, dtype=torch.float64)
        self._hsic_ll = torch.zeros(num_b, dtype=torch.float64)
        self._batches = 0

    @torch.no_grad()
    def update(self, acts_a: Sequence[Tensor], acts_b: Sequence[Tensor]) -> None:
        """Add one minibatch: one (n_batch, d) tensor per layer of each side, for the same examples."""
        if (len(acts_a), len(acts_b)) != (self.num_a, self.num_b):
            raise ValueError(f"expected {self.num_a} and {self.num_b} layers, got {len(acts_a)} and {len(acts_b)}")
        _common_rows(*acts_a, *acts_b)
        k = _hollow_grams(acts_a)
        l = _hollow_grams(acts_b).to(k.device)
        self._hsic_kl += _hsic_grid(k, l).cpu()
        self._hsic_kk += _hsic_grid(k, k).diagonal().cpu()
        self._hsic_ll += _hsic_grid(l, l).diagonal().cpu()
        self._batches += 1

    def compute(self) -> np.ndarray:
        """(num_a, num_b) CKA from the minibatch-mean HSIC terms."""
        if self._batches == 0:
            raise ValueError("MinibatchCKA.compute called before any update")
        b = self._batches
        return _normalise(self._hsic_kl / b, self._hsic_kk / b, self._hsic_ll / b).numpy()


def masked_tokens(hidden: Tensor, mask: Tensor | None) -> Tensor:
    """(batch, seq, d) → (num_real_tokens, d), so pad positions never enter a statistic."""
    if mask is None:
        return hidden.reshape(-1, hidden.shape[-1])
    return hidden[mask.to(hidden.device).bool()]


@torch.no_grad()
def layer_cosine(student_hidden: Sequence[Tensor], teacher_hidden: Sequence[Tensor],
                 alignment: Sequence[int], mask: Tensor | None = None) -> list[float]:
    """Mean token cosine between student hidden state j and its aligned teacher state `alignment[j]`.

    This is the quantity the distillation cosine loss drives to 1, measured per layer.
    """
    cosines = []
    for j, t in enumerate(alignment):
        s = masked_tokens(student_hidden[j], mask).to(torch.float64)
        u = masked_tokens(teacher_hidden[t], mask).to(s.device, torch.float64)
        cosines.append(F.cosine_similarity(s, u, dim=-1).mean().item())
    return cosines


def _hidden_states(model: nn.Module, batch: Tensor) -> tuple[Tensor, ...]:
    """Every hidden state (embedding output … post-final-norm) of a padding-free batch."""
    return hidden_states(model, batch.to(next(model.parameters()).device))


@torch.no_grad()
def cka_grid(model_a: nn.Module, model_b: nn.Module, sequences: Tensor, batch_size: int = 8,
             tokens_per_minibatch: int = 512, seed: int = 0) -> np.ndarray:
    """Debiased minibatch CKA between every hidden state of `model_a` and every hidden state of `model_b`.

    Tokens are subsampled per batch (same positions for both models) because Gram matrices grow with the
    square of the token count; the seeded generator makes the grid reproducible.
    """
    generator = torch.Generator().manual_seed(seed)
    acc: MinibatchCKA | None = None
    for batch in progress(sequences.split(batch_size), desc="CKA", leave=False):
        hs_a, hs_b = _hidden_states(model_a, batch), _hidden_states(model_b, batch)
        keep = torch.randperm(batch.numel(), generator=generator)[:tokens_per_minibatch]
        if acc is None:
            acc = MinibatchCKA(len(hs_a), len(hs_b))
        acc.update([masked_tokens(h, None)[keep.to(h.device)] for h in hs_a],
                   [masked_tokens(h, None)[keep.to(h.device)] for h in hs_b])
    if acc is None:
        raise ValueError("cka_grid needs at least one sequence")
    return acc.compute()


@torch.no_grad()
def aligned_cosines(student: nn.Module, teacher: nn.Module, sequences: Tensor, alignment: Sequence[int],
                    batch_size: int = 8) -> list[float]:
    """`layer_cosine` over all tokens of `sequences`, each batch weighted by its token count."""
    totals, count = np.zeros(len(alignment)), 0
    for batch in progress(sequences.split(batch_size), desc="cosine", leave=False):
        cosines = layer_cosine(_hidden_states(student, batch), _hidden_states(teacher, batch), alignment)
        totals += batch.numel() * np.asarray(cosines)
        count += batch.numel()
    if count == 0:
        raise ValueError("aligned_cosines needs at least one sequence")
    return (totals / count).tolist()


ALIGNMENT_COLUMNS = ["model", "kind", "order", "k", "num_layers", "student_state", "teacher_state", "value"]


@torch.no_grad()
def final_states(model: nn.Module, sequences: Tensor, batch_size: int = 8) -> list[Tensor]:
    """The last (post-norm) hidden state of each batch, computed once so a sweep can reuse the teacher's."""
    return [_hidden_states(model, batch)[-1].float() for batch in sequences.split(batch_size)]


@torch.no_grad()
def final_state_cosine(model: nn.Module, reference: Sequence[Tensor], sequences: Tensor, batch_size: int = 8) -> float:
    """Mean token cosine between a model's final hidden state and precomputed `reference` states."""
    total, count = 0.0, 0
    for batch, ref in zip(sequences.split(batch_size), reference):
        final = _hidden_states(model, batch)[-1].float()
        total += F.cosine_similarity(final, ref.to(final.device), dim=-1).sum().item()
        count += batch.numel()
    return total / count


def alignment_table(family: Family, students: dict[str, nn.Module], sequences: Tensor, orders: Sequence[str],
                    batch_size: int = 8, tokens_per_minibatch: int = 512) -> pd.DataFrame:
    """CKA grids and aligned-layer cosines of each of `students` against the family's teacher, and the
    final-state cosine of every interpolated model of the family."""
    teacher, layout = family.teacher, family.layout
    rows = []
    for name, student in students.items():
        grid = cka_grid(student, teacher, sequences, batch_size, tokens_per_minibatch)
        rows += [{"model": name, "kind": "cka", "student_state": i, "teacher_state": j, "value": float(v)}
                 for (i, j), v in np.ndenumerate(grid)]
        cosines = aligned_cosines(student, teacher, sequences, layout.alignment, batch_size)
        rows += [{"model": name, "kind": "cosine", "student_state": i, "teacher_state": t, "value": c}
                 for i, (t, c) in enumerate(zip(layout.alignment, cosines))]
    reference = final_states(teacher, sequences, batch_size)
    sizes = [(order, spec) for order in orders for spec in family.interpolants(order)]
    runner = Blockwise(family, "no")
    sums = runner.reduce([spec.blocks for _, spec in sizes], list(sequences.split(batch_size)),
                         desc="final-state cosine",
                         fn=lambda key, final, i: F.cosine_similarity(final.float(), reference[i].to(final.device),
                                                                      dim=-1).sum().item())
    for order, spec in sizes:
        rows.append({"model": spec.name(), "kind": "final_cosine", "order": order, "k": spec.k,
                     "num_layers": spec.num_layers,
                     "value": sum(sums[family.identity(spec.blocks)]) / sequences.numel()})
    return pd.DataFrame(rows, columns=ALIGNMENT_COLUMNS)


def alignment_checks(alignment: pd.DataFrame, reference: str) -> pd.DataFrame:
    """What the paper's explanation predicts, from `alignment.csv`, for every model but `reference` (the
    undistilled student):

    - its per-layer cosine is above the reference's at every aligned state where the two differ (states
      whose layers are the teacher's own, frozen, are identical in both);
    - CKA peaks near the alignment map: for each student state, the teacher state of highest CKA is within
      one layer of the state it is aligned to.
    """
    cos = alignment[alignment.kind == "cosine"].pivot(index="student_state", columns="model", values="value")
    claims = []
    for name in [c for c in cos.columns if c != reference]:
        gap = cos[name] - cos[reference]
        differs = gap.abs() > 1e-6  # a state below the reference differs too, so its gap is the minimum
        value = float(gap[differs].min()) if differs.any() else 0.0
        below = ", ".join(str(s) for s in gap[differs & (gap <= 0)].index)
        claims.append(Claim("cosine above the undistilled student at every aligned state (min gap)", value, "> 0",
                            name, detail=f"at or below it at student states {below}"))
    cka = alignment[alignment.kind == "cka"]
    targets = alignment[alignment.kind == "cosine"].groupby(["model", "student_state"]).teacher_state.first()
    for name, grid in cka.groupby("model", sort=False):
        best = grid.loc[grid.groupby("student_state").value.idxmax()].set_index("student_state").teacher_state
        off = (best - targets.loc[name]).abs()
        far = off.index[off > 1]
        listed = lambda values: ", ".join(f"{v:g}" for v in values)  # noqa: E731
        claims.append(Claim("CKA peaks within one layer of the alignment map (fraction of states)",
                            float((off <= 1).mean()), ">= 1", name,
                            detail=f"student states {listed(far)} peak at teacher states {listed(best[far])} "
                                   f"(mapped to {listed(targets.loc[name][far])})"))
    return claims_frame(claims)
