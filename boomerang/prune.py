"""Prune a teacher into a student: keep the first layer of each contiguous block of teacher layers.

A `Layout` is the single source of truth for which teacher layers each student layer stands for (its
block) and which teacher hidden state each student hidden state is distilled towards (its alignment).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from .arch import assemble, num_layers
from .config import PruneConfig
from .io import atomic_path, read_json, write_json
from .teacher import default_device

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
    """Keep the first `keep_first` layers, then every `step`-th layer, then the last `keep_last` layers.

    The last of the first kept layers starts a block of `step` layers, so (1, 2, 2) on 36 layers keeps
    0, 2, ..., 34, 35 and (2, 2, 1) on 28 layers keeps 0, 1, 3, ..., 25, 27.
    """
    n = num_teacher_layers
    if keep_first < 1 or step < 1 or keep_last < 0 or keep_first + keep_last > n:
        raise ValueError(f"invalid layout rule keep_first={keep_first}, step={step}, keep_last={keep_last} for {n} layers")
    head = list(range(keep_first))
    middle = list(range(keep_first - 1 + step, n - keep_last, step))
    tail = list(range(n - keep_last, n))
    return Layout(tuple(sorted(set(head + middle + tail))), n)


def layout_from_config(cfg: PruneConfig, num_teacher_layers: int) -> Layout:
    if cfg.layers is not None:
        return Layout(tuple(cfg.layers), num_teacher_layers)
    return layout_from_rule(num_teacher_layers, cfg.keep_first, cfg.step, cfg.keep_last)


def build_student(teacher: PreTrainedModel, layout: Layout, init: str = "teacher", seed: int = 0) -> PreTrainedModel:
    """A fresh student holding copies of the kept teacher layers, or the same shape at random."""
    if layout.num_teacher_layers != num_layers(teacher.config):
        raise ValueError(f"layout is for {layout.num_teacher_layers} layers, teacher has {num_layers(teacher.config)}")
    if init not in ("teacher", "random"):
        raise ValueError(f"prune.init must be 'teacher' or 'random', got {init!r}")
    student = assemble(teacher.config, [(teacher, j) for j in layout.kept], teacher, teacher, copy=init == "teacher")
    if init == "random":  # same architecture (config), fresh weights
        torch.manual_seed(seed)
        student = AutoModelForCausalLM.from_config(student.config, dtype=teacher.dtype).to(teacher.device)
    return student.train().requires_grad_(True)


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
    """Layout of a saved student: a local directory or a hub id holding `student_config.json`."""
    local = Path(path_or_id) / STUDENT_CONFIG
    if not local.exists():
        from huggingface_hub import hf_hub_download

        local = Path(hf_hub_download(str(path_or_id), STUDENT_CONFIG))
    meta = read_json(local)
    kept, pruned = meta["copied_teacher_layers"], meta["pruned_teacher_layers"]
    return Layout(tuple(kept), len(kept) + len(pruned))


def load_student(path_or_id: str | Path, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> tuple[PreTrainedModel, Layout]:
    """Load a student saved by `save_student` or released on the hub, on `device` (default: the teacher's,
    `teacher.default_device()`); the pair patches unchanged."""
    model = AutoModelForCausalLM.from_pretrained(str(path_or_id), dtype=dtype)
    return model.to(device or default_device()), read_layout(path_or_id)


def distilled_student(cfg) -> str | Path:
    """Where the distilled student lives: a released one (`prune.student`) or this run's output."""
    return cfg.prune.student or cfg.run_dir / "student"


def prune_run(cfg, teacher, tokenizer) -> Layout:
    """Stage 1 of a run: write `runs/<name>/student_init` (or adopt a released student's layout)."""
    out = cfg.run_dir / "student_init"
    if cfg.prune.student:
        return read_layout(cfg.prune.student)
    layout = layout_from_config(cfg.prune, num_layers(teacher.config))
    save_student(build_student(teacher, layout, cfg.prune.init, cfg.seed), layout, out, tokenizer)
    return layout
