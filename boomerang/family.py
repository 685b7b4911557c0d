"""A teacher and a student distilled from it, held once: every size between them is built from their
tensors (shared, not copied), so any number of interpolated models cost no memory of their own. Ask for a
size by its number of layers or a parameter budget; `measure.cost` measures latency and memory per size."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .config import TeacherConfig
from .core.arch import adapter_for, decoder_layers, parameter_counts, ties_embeddings
from .core.orders import FIXED_ORDERS
from .core.patch import Interpolant, interpolants, patch
from .core.prune import Layout, load_student, pruned_teacher
from .sources.teacher import load_teacher


@dataclass
class Family:
    teacher: PreTrainedModel
    student: PreTrainedModel
    layout: Layout
    tokenizer: PreTrainedTokenizerBase
    chosen_orders: dict[str, list[int]] = field(default_factory=dict)  # orders chosen on data: blocks patched in turn

    @classmethod
    def load(cls, teacher: TeacherConfig, student: str | Path, device=None) -> Family:
        """The teacher of a run's config and a student in the released format (a directory or a hub id),
        both in eval mode on `device` (default: `device.default_device()`), the student in the teacher's
        dtype. The authors' released students load the same way."""
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

    @cached_property
    def inert_blocks(self) -> frozenset[int]:
        """Blocks whose patching changes nothing the model computes with: one teacher layer that the student
        holds unchanged (frozen at the teacher's, or the undistilled student), and for the first or last
        block the embedding or the final norm and head unchanged too. Compared tensor by tensor."""
        adapter, student, teacher = adapter_for(self.teacher), self.student, self.teacher
        ends = {0: adapter.embed, self.layout.num_blocks - 1: (adapter.norm, adapter.head)}
        inert = set()
        for i, block in enumerate(self.layout.blocks):
            pairs = [(decoder_layers(student)[i], decoder_layers(teacher)[block[0]])] if len(block) == 1 else []
            pairs += [(student.get_submodule(p), teacher.get_submodule(p)) for p in ends.get(i, ())]
            if len(block) == 1 and all(_same_tensors(a, b) for a, b in pairs):
                inert.add(i)
        return frozenset(inert)

    def identity(self, blocks: Iterable[int]) -> frozenset[int]:
        """The patched blocks that make a difference: two sets with one identity build the same function,
        so anything measured on one holds for the other."""
        return frozenset(blocks) - self.inert_blocks

    def interpolants(self, order: str) -> list[Interpolant]:
        """Every size along `order`, student (k = 0) to teacher (k = M)."""
        return interpolants(self.layout, order, self.chosen_orders.get(order))

    def sweep(self, order: str) -> Iterator[tuple[Interpolant, PreTrainedModel]]:
        """Every size along `order`, built one at a time."""
        for spec in self.interpolants(order):
            yield spec, self.model(spec.blocks)

    def counts(self, model: PreTrainedModel) -> dict[str, int]:
        return parameter_counts(model, self.tied)

    def at_layers(self, num_layers: int, order: str) -> tuple[Interpolant, PreTrainedModel]:
        """The size along `order` with `num_layers` layers (the one patching fewest blocks, when several do)."""
        for spec in self.interpolants(order):
            if spec.num_layers == num_layers:
                return spec, self.model(spec.blocks)
        sizes = sorted({s.num_layers for s in self.interpolants(order)})
        raise ValueError(f"no size of {num_layers} layers along {order}; sizes: {sizes}")

    def under_params(self, params: float, order: str, inference: bool = False) -> tuple[Interpolant, PreTrainedModel]:
        """The largest size along `order` within a parameter budget (training-time count, or inference-time
        with the LM head counted apart from a tied embedding)."""
        key = "params_inference" if inference else "params"
        fitting = [(spec, model) for spec, model in self.sweep(order) if self.counts(model)[key] <= params]
        if not fitting:
            raise ValueError(f"even the student has more than {params:,.0f} parameters ({key})")
        return max(fitting, key=lambda sm: (sm[0].num_layers, -sm[0].k))

    def undistilled(self) -> Family:
        """The same family before distillation: the teacher with the pruned layers removed (tensors shared),
        whose patched sizes are naive layer pruning."""
        return Family(self.teacher, pruned_teacher(self.teacher, self.layout), self.layout, self.tokenizer,
                      self.chosen_orders)


def interpolation_table(family: Family, orders: list[str]) -> pd.DataFrame:
    """Size of every interpolated model along each order (built, counted, discarded), with both
    conventions of k."""
    rows = [{"order": order, "k": spec.k, "authors_k": spec.authors_k, "num_layers": spec.num_layers,
             "patched_blocks": list(spec.blocks), **family.counts(model)}
            for order in orders for spec, model in family.sweep(order)]
    return pd.DataFrame(rows)


def recorded_orders(table: pd.DataFrame) -> dict[str, list[int]]:
    """Every order chosen on data, as the blocks it patches in turn, read back from an interpolation table
    (order, k, patched_blocks): the block each size adds to the one before."""
    orders = {}
    for order, rows in table[~table.order.isin(FIXED_ORDERS)].groupby("order"):
        sets = [set(json.loads(b)) for b in rows.sort_values("k").patched_blocks]
        orders[order] = [next(iter(after - before)) for before, after in zip(sets, sets[1:])]
    return orders


def _same_tensors(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)
