"""Prune a teacher into a student: keep the first layer of each contiguous block of teacher layers.

A `Layout` is the single source of truth for which teacher layers each student layer stands for (its
block) and which teacher hidden state each student hidden state is distilled towards (its alignment).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from huggingface_hub import hf_hub_download
from transformers import AutoModelForCausalLM, PreTrainedModel

from ..config import PruneConfig
from ..device import default_device
from ..io import atomic_path, read_json, write_json
from .arch import assemble, num_layers

STUDENT_CONFIG = "student_config.json"


@dataclass(frozen=True)
class Layout:
    """`kept[i]` is the teacher layer that initialises student layer i; `num_teacher_layers` is N."""

    kept: tuple[int, ...]
    num_teacher_layers: int

    def __post_init__(self):
        kept, n = self.kept, self.num_teacher_layers
        if not kept or kept[0] != 0 or list(kept) != sorted(set(kept)) or kept[-1] >= n:
            raise ValueError(f"kept layers must be strictly increasing, start at 0 and be < {n}; got {kept}")

    @property
    def num_blocks(self) -> int:
        return len(self.kept)

    @property
    def pruned(self) -> list[int]:
        return sorted(set(range(self.num_teacher_layers)) - set(self.kept))

    @property
    def blocks(self) -> list[list[int]]:
        """Teacher layers each student layer replaces: from its kept layer up to the next kept one."""
        ends = [*self.kept[1:], self.num_teacher_layers]
        return [list(range(start, end)) for start, end in zip(self.kept, ends)]

    @property
    def alignment(self) -> list[int]:
        """Teacher `hidden_states` index for each student `hidden_states` index (0..M).

        Index 0 is the embedding output; index i+1 the output of student layer i, aligned with the output
        of the last teacher layer of its block; the final entry is the post-norm state for both models.
        """
        return [*self.kept, self.num_teacher_layers]

    def table(self) -> pd.DataFrame:
        """One row per student layer: its teacher block and the teacher state its output is aligned to."""
        return pd.DataFrame({
            "student_layer": range(self.num_blocks),
            "teacher_block": [str(b) for b in self.blocks],
            "block_size": [len(b) for b in self.blocks],
            "aligned_teacher_hidden_state": self.alignment[1:],
        })


def layout_from_rule(num_teacher_layers: int, keep_first: int = 1, step: int = 2, keep_last: int = 2) -> Layout:
    """The authors' rule: keep the first `keep_first` layers; then stride points every `step` layers from
    layer `keep_first + step - 1` up to layer N − `keep_last`, each cutting the `step − 1` layers before it;
    every layer after the last stride point is kept one-to-one.

    (1, 2, 2) on 36 layers keeps 0, 2, ..., 34, 35; (2, 2, 1) on 28 keeps 0, 1, 3, ..., 27. When the step
    leaves a remainder the remainder layers stay blocks of one layer: (1, 4, 2) on 36 keeps 0, 4, ..., 32,
    33, 34, 35 (12 layers, as the authors' code builds it).
    """
    n = num_teacher_layers
    if keep_first < 1 or step < 1 or keep_last < 0 or keep_first + keep_last > n:
        raise ValueError(f"invalid layout rule keep_first={keep_first}, step={step}, keep_last={keep_last} "
                         f"for {n} layers")
    points = range(keep_first + step - 1, n - keep_last + 1, step)
    cut = {layer for point in points for layer in range(point - step + 1, point)}
    return Layout(tuple(j for j in range(n) if j not in cut), n)


def layout_from_config(cfg: PruneConfig, num_teacher_layers: int) -> Layout:
    if cfg.layers is not None:
        return Layout(tuple(cfg.layers), num_teacher_layers)
    return layout_from_rule(num_teacher_layers, cfg.keep_first, cfg.step, cfg.keep_last)


def _check_fits(teacher: PreTrainedModel, layout: Layout) -> None:
    if layout.num_teacher_layers != num_layers(teacher.config):
        raise ValueError(f"layout is for {layout.num_teacher_layers} layers, teacher has {num_layers(teacher.config)}")


def build_student(teacher: PreTrainedModel, layout: Layout, init: str = "teacher", seed: int = 0) -> PreTrainedModel:
    """A fresh student holding copies of the kept teacher layers (`init` "teacher"), or the same
    architecture with fresh weights ("random")."""
    _check_fits(teacher, layout)
    student = assemble(teacher.config, [(teacher, j) for j in layout.kept], teacher, teacher, copy=init == "teacher")
    if init == "random":
        torch.manual_seed(seed)
        student = AutoModelForCausalLM.from_config(student.config, dtype=teacher.dtype).to(teacher.device)
    return student.train().requires_grad_(True)


def pruned_teacher(teacher: PreTrainedModel, layout: Layout) -> PreTrainedModel:
    """The teacher with the pruned layers removed and no training, sharing the teacher's tensors: the
    undistilled student, whose patched sizes are naive layer pruning."""
    _check_fits(teacher, layout)
    return assemble(teacher.config, [(teacher, j) for j in layout.kept], teacher, teacher).eval()


def save_student(student: PreTrainedModel, layout: Layout, path: str | Path, tokenizer=None,
                 state_dict: dict | None = None) -> None:
    """Save in the released students' format: an HF checkpoint plus `student_config.json`."""
    with atomic_path(path) as out:
        student.save_pretrained(out, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        write_json(out / STUDENT_CONFIG, {
            "copied_teacher_layers": list(layout.kept),
            "pruned_teacher_layers": layout.pruned,
        })


def read_layout(path_or_id: str | Path) -> Layout:
    """Layout of a saved student: a local directory or a hub id holding `student_config.json`, whose two
    lists must together be the teacher's layers 0..N-1, each once."""
    local = Path(path_or_id) / STUDENT_CONFIG
    if not local.exists():
        local = Path(hf_hub_download(str(path_or_id), STUDENT_CONFIG))
    meta = read_json(local)
    try:
        kept, pruned = meta["copied_teacher_layers"], meta["pruned_teacher_layers"]
        n = len(kept) + len(pruned)
        if sorted(kept + pruned) != list(range(n)):
            raise ValueError(f"copied {kept} and pruned {pruned} are not the layers 0..{n - 1}, each once")
        return Layout(tuple(kept), n)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{local}: not a student_config.json of the released format ({err}); expected the "
                         "ascending lists copied_teacher_layers and pruned_teacher_layers") from None


def load_student(path_or_id: str | Path, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> tuple[PreTrainedModel, Layout]:
    """Load a student saved by `save_student` or released on the hub, on `device` (default:
    `default_device()`, where the teacher goes too); the pair patches unchanged."""
    layout = read_layout(path_or_id)
    model = AutoModelForCausalLM.from_pretrained(str(path_or_id), dtype=dtype)
    if num_layers(model.config) != layout.num_blocks:
        raise ValueError(f"{path_or_id}: the checkpoint has {num_layers(model.config)} layers but its "
                         f"{STUDENT_CONFIG} copies {layout.num_blocks} teacher layers")
    return model.to(device or default_device()), layout
