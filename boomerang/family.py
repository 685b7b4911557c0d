"""A teacher and a student distilled from it, held once: every size between them is built from their
tensors (shared, not copied), so any number of interpolated models cost no memory of their own."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .config import TeacherConfig
from .core.arch import parameter_counts, ties_embeddings
from .core.patch import Interpolant, interpolants, patch
from .core.prune import Layout, load_student, pruned_teacher
from .sources.teacher import load_teacher


@dataclass
class Family:
    teacher: PreTrainedModel
    student: PreTrainedModel
    layout: Layout
    tokenizer: PreTrainedTokenizerBase

    @classmethod
    def load(cls, teacher: TeacherConfig, student: str | Path, device=None) -> Family:
        """The teacher of a run's config and a student in the released format (a directory or a hub id),
        both in eval mode on `device` (default: `device.default_device()`), the student in the teacher's
        dtype."""
        teacher_model, tokenizer = load_teacher(teacher, device)
        student_model, layout = load_student(student, dtype=teacher_model.dtype, device=teacher_model.device)
        return cls(teacher_model, student_model.eval(), layout, tokenizer)

    @property
    def tied(self) -> bool:
        """Whether the family ties input embedding and LM head (counts a training-time parameter once)."""
        return ties_embeddings(self.teacher.config)

    def model(self, blocks: Iterable[int]) -> PreTrainedModel:
        """The student with the listed blocks replaced by their teacher layers."""
        return patch(self.teacher, self.student, self.layout, blocks)

    def sweep(self, order: str) -> Iterator[tuple[Interpolant, PreTrainedModel]]:
        """Every size along `order`, student (k = 0) to teacher (k = M), built one at a time."""
        for spec in interpolants(self.layout, order):
            yield spec, self.model(spec.blocks)

    def counts(self, model: PreTrainedModel) -> dict[str, int]:
        return parameter_counts(model, self.tied)

    def undistilled(self) -> Family:
        """The same family before distillation: the teacher with the pruned layers removed (tensors shared),
        whose patched sizes are naive layer pruning."""
        return Family(self.teacher, pruned_teacher(self.teacher, self.layout), self.layout, self.tokenizer)
