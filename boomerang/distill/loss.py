"""The distillation objective as loss terms the training loop sums: the paper's logit term (CE + τ²·KL) and
cosine alignment, and this project's tail term.

A term reads a `Step`: the batch, the hidden states of the model being trained at its block boundaries
(the student's layers, or an interpolant's read where the student's blocks end), the teacher's hidden
states, and both LM heads. Logits are made from the final states by the heads inside the terms, so no
model output is ever faked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DistillConfig
from ..core.arch import adapter_for, assemble
from ..core.prune import Layout
from ..device import autocast

TAIL_STRIDE = 16  # the tail term reads every 16th position: its LM head dominates its cost on a CPU


@dataclass
class Batch:
    input_ids: Tensor
    mask: Tensor  # 1 for a real token, 0 for a pad

    @property
    def labels(self) -> Tensor:
        """Next-token targets of positions 0..T-2; -100 where the next position is a pad."""
        return self.input_ids[:, 1:].masked_fill(self.mask[:, 1:] == 0, -100)


@dataclass
class Step:
    """What the terms read. `student[j]` is aligned with `teacher[alignment[j]]`; both end in the final
    post-norm state, which the LM heads turn into logits under `precision` autocast."""

    batch: Batch
    student: tuple[Tensor, ...]
    teacher: tuple[Tensor, ...]
    alignment: list[int]
    student_head: nn.Module
    precision: str


class Term(Protocol):
    """A weighted part of the loss; returns its value and what it logs."""

    def __call__(self, step: Step) -> tuple[Tensor, dict[str, float]]: ...


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1)


def _kl_to_teacher(t_logp: Tensor, logits: Tensor, mask: Tensor, tau: float) -> Tensor:
    """τ²·KL(p_T/τ ‖ p/τ) averaged over real tokens."""
    logp = F.log_softmax(logits.float() / tau, dim=-1)
    return _masked_mean((t_logp.exp() * (t_logp - logp)).sum(-1), mask) * tau**2


class LogitTerm:
    """`ce·CE + kl·τ²·KL(p_T/τ ‖ p_S/τ)`: CE over the positions with a next token, KL over real tokens.
    Keeps the teacher's log-probabilities for the tail term, which reads them at its positions."""

    def __init__(self, cfg: DistillConfig, teacher: nn.Module):
        self.ce_weight, self.kl_weight, self.tau = cfg.ce_weight, cfg.kl_weight, cfg.temperature
        self.teacher_head = teacher.get_submodule(adapter_for(teacher).head)
        self.teacher_logp: Tensor | None = None

    def __call__(self, step: Step) -> tuple[Tensor, dict[str, float]]:
        with autocast(step.student[-1].device, step.precision):
            s_logits, t_logits = step.student_head(step.student[-1]), self.teacher_head(step.teacher[-1])
        s_logits, t_logits = s_logits.float(), t_logits.float()
        labels, mask = step.batch.labels, step.batch.mask.float()
        ce = F.cross_entropy(s_logits[:, :-1].flatten(0, 1), labels.flatten())
        self.teacher_logp = F.log_softmax(t_logits / self.tau, dim=-1)
        kl = _kl_to_teacher(self.teacher_logp, s_logits, mask, self.tau)
        return self.ce_weight * ce + self.kl_weight * kl, {"ce": ce.item(), "kl": kl.item()}


class CosineTerm:
    """`cos/|pairs|·Σ_j (1 − cos(h_S_j, h_T_alignment[j]))` over real tokens: every student state, the
    embedding output and the final post-norm state included, pulled towards its teacher state."""

    def __init__(self, cfg: DistillConfig):
        self.weight = cfg.cos_weight

    def __call__(self, step: Step) -> tuple[Tensor, dict[str, float]]:
        if len(step.student) != len(step.alignment):
            raise ValueError(f"{len(step.student)} student hidden states, alignment maps {len(step.alignment)}")
        mask = step.batch.mask.float()
        terms = [_masked_mean(1 - F.cosine_similarity(step.student[j].float(), step.teacher[t].float(), dim=-1), mask)
                 for j, t in enumerate(step.alignment)]
        cos = torch.stack(terms).sum() / len(terms)
        return self.weight * cos, {"cos": cos.item()}


class TailTerm:
    """Beyond the paper: the teacher's layers from the student's last multi-layer block on, with its final
    norm and head, run on the student's state entering that block, and read with the student's own logit
    loss (CE + kl·τ²·KL) at every `TAIL_STRIDE`-th position.

    That model is the smallest interpolant last → first with more layers than the student. The student's
    layer standing for that block learns from the training text; the teacher's layers never do, and on
    SmolLM2 that block is the one whose patching costs the most (docs/recipe-search.md). Training the
    state they receive through this term keeps every patched size between student and teacher.
    """

    def __init__(self, teacher: nn.Module, layout: Layout, logit: LogitTerm, cfg: DistillConfig):
        multi = [i for i, block in enumerate(layout.blocks) if len(block) > 1]
        if not multi:
            raise ValueError("distill.tail_weight needs a layout with a multi-layer block")
        if adapter_for(teacher).rotary is None:  # positions would be added to the fed state a second time
            raise NotImplementedError(f"distill.tail_weight needs rotary positions; {teacher.config.model_type!r} "
                                      "adds absolute position embeddings to its input")
        self.block = multi[-1]
        layers = [(teacher, j) for block in layout.blocks[self.block:] for j in block]
        self.model = assemble(teacher.config, layers, teacher, teacher).eval()
        self.logit, self.weight = logit, cfg.tail_weight

    def positions(self, length: int, device) -> Tensor:
        """Every `TAIL_STRIDE`-th position, the first one with a next token however short the sequence."""
        return torch.arange(min(TAIL_STRIDE, length - 1) - 1, length, TAIL_STRIDE, device=device)

    def logits(self, entering: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        positions = self.positions(mask.shape[1], mask.device)
        return self.model(inputs_embeds=entering, attention_mask=mask, logits_to_keep=positions).logits, positions

    def __call__(self, step: Step) -> tuple[Tensor, dict[str, float]]:
        with autocast(step.student[-1].device, step.precision):
            tail_logits, positions = self.logits(step.student[self.block], step.batch.mask)
        batch, tau = step.batch, self.logit.tau
        next_ids = F.pad(batch.labels, (0, 1), value=-100)[:, positions]  # the last position has no next token
        ce = F.cross_entropy(tail_logits.float().flatten(0, 1), next_ids.flatten())
        kl = _kl_to_teacher(self.logit.teacher_logp[:, positions], tail_logits, batch.mask.float()[:, positions], tau)
        loss = self.logit.ce_weight * ce + self.logit.kl_weight * kl
        return self.weight * loss, {"tail": loss.item()}


def objective(cfg: DistillConfig, teacher: nn.Module, layout: Layout) -> list[Term]:
    """The terms the loop sums, in order: the logit term first (the tail term reads the teacher's
    log-probabilities it keeps)."""
    logit = LogitTerm(cfg, teacher)
    terms: list[Term] = [logit, CosineTerm(cfg)]
    if cfg.tail_weight:
        terms.append(TailTerm(teacher, layout, logit, cfg))
    return terms


def total_loss(terms: list[Term], step: Step) -> tuple[Tensor, dict[str, float]]:
    """The sum of the terms and every logged value, the total first."""
    total, logged = None, {}
    for term in terms:
        value, values = term(step)
        total = value if total is None else total + value
        logged.update(values)
    return total, {"loss": total.item(), **logged}
