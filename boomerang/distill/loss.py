"""The distillation objective as loss terms the training loop sums: the paper's logit term (CE + τ²·KL) and
cosine alignment, and this project's tail term.

A term reads a `Step`: the batch, the hidden states of the model being trained at its block boundaries
(the student's layers, or an interpolant's read where the student's blocks end), the teacher's hidden
states, and the trained model's LM head. Logits are made from final states by the heads inside the terms,
a chunk of tokens at a time (`distill.logits`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DistillConfig
from ..core.arch import adapter_for, assemble, hidden_states
from ..core.prune import Layout
from ..device import autocast
from .logits import logit_distillation_loss, reference_logit_distillation_loss

TAIL_STRIDE = 16  # the tail term reads every 16th position: its LM head dominates its cost on a CPU


@dataclass
class Batch:
    input_ids: Tensor
    mask: Tensor  # 1 for a real token, 0 for a pad

    @property
    def labels(self) -> Tensor:
        """Each position's next token; -100 at the last position and where the next one is a pad."""
        return F.pad(self.input_ids[:, 1:].masked_fill(self.mask[:, 1:] == 0, -100), (0, 1), value=-100)


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


def logit_loss(cfg: DistillConfig, student: Tensor, teacher: Tensor, student_head: nn.Module, teacher_head: nn.Module,
               labels: Tensor, mask: Tensor, precision: str) -> tuple[Tensor, Tensor, Tensor]:
    """`ce·CE + kl·τ²·KL` from final states and LM heads, the (tokens × vocabulary) logits made
    `distill.chunk_tokens` tokens at a time (all at once, the reference, at 0); and CE and τ²·KL."""
    args = (student, teacher, student_head, teacher_head, labels, mask)
    weights = dict(temperature=cfg.temperature, ce_weight=cfg.ce_weight, kl_weight=cfg.kl_weight)
    with autocast(student.device, precision):
        if cfg.chunk_tokens:
            return logit_distillation_loss(*args, **weights, chunk_size=cfg.chunk_tokens)
        return reference_logit_distillation_loss(*args, **weights)


class LogitTerm:
    """`ce·CE + kl·τ²·KL(p_T/τ ‖ p_S/τ)`: CE over the positions with a next token, KL over real tokens."""

    def __init__(self, cfg: DistillConfig, teacher: nn.Module):
        self.cfg = cfg
        self.teacher_head = teacher.get_submodule(adapter_for(teacher).head)

    def __call__(self, step: Step) -> tuple[Tensor, dict[str, float]]:
        loss, ce, kl = logit_loss(self.cfg, step.student[-1], step.teacher[-1], step.student_head, self.teacher_head,
                                  step.batch.labels, step.batch.mask, step.precision)
        return loss, {"ce": ce.item(), "kl": kl.item()}


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
    SmolLM2 that block is the one whose patching costs the most (docs/runs/smollm2-cpu.md). Training the
    state they receive through this term keeps every patched size between student and teacher.
    """

    def __init__(self, teacher: nn.Module, layout: Layout, cfg: DistillConfig):
        multi = [i for i, block in enumerate(layout.blocks) if len(block) > 1]
        if not multi:
            raise ValueError("distill.tail_weight needs a layout with a multi-layer block")
        if adapter_for(teacher).rotary is None:  # positions would be added to the fed state a second time
            raise NotImplementedError(f"distill.tail_weight needs rotary positions; {teacher.config.model_type!r} "
                                      "adds absolute position embeddings to its input")
        self.block = multi[-1]
        layers = [(teacher, j) for block in layout.blocks[self.block:] for j in block]
        self.model = assemble(teacher.config, layers, teacher, teacher).eval()
        self.head = teacher.get_submodule(adapter_for(teacher).head)
        self.cfg = cfg

    def positions(self, length: int, device) -> Tensor:
        """Every `TAIL_STRIDE`-th position, the first one with a next token however short the sequence."""
        return torch.arange(min(TAIL_STRIDE, length - 1) - 1, length, TAIL_STRIDE, device=device)

    def final_states(self, entering: Tensor, mask: Tensor) -> Tensor:
        """The tail's final (post-norm) states, fed the state entering its first block."""
        return hidden_states(self.model, attention_mask=mask, inputs_embeds=entering)[-1]

    def __call__(self, step: Step) -> tuple[Tensor, dict[str, float]]:
        positions = self.positions(step.batch.mask.shape[1], step.batch.mask.device)
        with autocast(step.student[-1].device, step.precision):
            final = self.final_states(step.student[self.block], step.batch.mask)[:, positions]
        loss, _, _ = logit_loss(self.cfg, final, step.teacher[-1][:, positions], self.head, self.head,
                                step.batch.labels[:, positions], step.batch.mask[:, positions], step.precision)
        return self.cfg.tail_weight * loss, {"tail": loss.item()}


def objective(cfg: DistillConfig, teacher: nn.Module, layout: Layout) -> list[Term]:
    """The terms the loop sums: the paper's, and the tail term when `distill.tail_weight` is set."""
    terms: list[Term] = [LogitTerm(cfg, teacher), CosineTerm(cfg)]
    if cfg.tail_weight:
        terms.append(TailTerm(teacher, layout, cfg))
    return terms


def total_loss(terms: list[Term], step: Step) -> tuple[Tensor, dict[str, float]]:
    """The sum of the terms and every logged value, the total first."""
    total, logged = None, {}
    for term in terms:
        value, values = term(step)
        total = value if total is None else total + value
        logged.update(values)
    return total, {"loss": total.item(), **logged}
