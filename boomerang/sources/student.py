"""Released students (the authors' format: a checkpoint with `student_config.json`), loaded for a teacher
and checked to belong to it: same architecture and widths, a layout spanning its layers, copied layers that still
resemble the teacher's."""
from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from ..config import ConfigError
from ..core.arch import decoder_layers, num_layers
from ..core.prune import Layout


RESEMBLANCE = 0.5  # a distilled layer keeps a cosine far above this to the teacher layer it was copied from


def _shape(config) -> tuple:
    return config.model_type, config.hidden_size, config.vocab_size


def check_student_config(teacher_config, student_config, layout: Layout, where: str) -> None:
    """A student in the released format belongs to this teacher: same architecture and widths, its
    `student_config.json` spans the teacher's layers, its checkpoint has one layer per copied layer."""
    if _shape(student_config) != _shape(teacher_config):
        raise ConfigError(f"{where}: student (architecture, hidden size, vocabulary) {_shape(student_config)} "
                          f"does not match the teacher's {_shape(teacher_config)}")
    if layout.num_teacher_layers != num_layers(teacher_config):
        raise ConfigError(f"{where}: its student_config.json spans {layout.num_teacher_layers} teacher layers, the "
                          f"teacher has {num_layers(teacher_config)}")
    if num_layers(student_config) != layout.num_blocks:
        raise ConfigError(f"{where}: the checkpoint has {num_layers(student_config)} layers, its student_config.json "
                          f"copies {layout.num_blocks}")


@torch.no_grad()
def resemblance(student: PreTrainedModel, teacher: PreTrainedModel, layout: Layout) -> list[float]:
    """Cosine between each student layer's weight matrices and those of the teacher layer it claims to copy
    (norm weights, near 1 in any model, are left out)."""
    out = []
    for i, j in enumerate(layout.kept):
        s, t = decoder_layers(student)[i].state_dict(), decoder_layers(teacher)[j].state_dict()
        matrices = [k for k in s if s[k].ndim >= 2]
        a = torch.cat([s[k].flatten().float() for k in matrices])
        b = torch.cat([t[k].flatten().float().to(a.device) for k in matrices])
        out.append(torch.nn.functional.cosine_similarity(a, b, dim=0).item())
    return out


def check_released_student(path: str, teacher: PreTrainedModel, layout: Layout, log=print) -> PreTrainedModel:
    """Load a released student for this teacher, and warn when the layers it claims to have copied do not
    resemble the teacher's (a student of another teacher of the same shape)."""
    student = AutoModelForCausalLM.from_pretrained(str(path), dtype=teacher.dtype).to(teacher.device).eval()
    check_student_config(teacher.config, student.config, layout, str(path))
    cosines = resemblance(student, teacher, layout)
    unlike = [layout.kept[i] for i, c in enumerate(cosines) if c < RESEMBLANCE]
    if unlike:
        log(f"WARNING: {path}: the student's layers copied from teacher layers {unlike} do not resemble them "
            f"(weight cosine < {RESEMBLANCE}; lowest {min(cosines):.2f}). Is it a student of this teacher? "
            "Interpolated models will be meaningless otherwise.")
    return student
