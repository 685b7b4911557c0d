"""End-to-end checks on the real SmolLM2-135M teacher (fetched from PyPI): `make test-slow`."""
import pytest
import torch

from boomerang.config import load_config
from boomerang.sources.text import heldout_sequences
from boomerang.measure.perplexity import perplexity
from boomerang.core.patch import endpoint_gaps
from boomerang.core.prune import build_student, layout_from_config
from boomerang.sources.teacher import load_teacher

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cpu_default():
    cfg = load_config("configs/smollm2-cpu.yaml")
    teacher, tokenizer = load_teacher(cfg.teacher)
    return cfg, teacher, tokenizer


def test_teacher_is_the_real_pretrained_model(cpu_default):
    cfg, teacher, tokenizer = cpu_default
    assert teacher.config.num_hidden_layers == 30 and teacher.num_parameters() == 134_515_008
    ppl = perplexity(teacher, heldout_sequences(cfg.data, tokenizer, 4096))["perplexity"]
    assert 20 < ppl < 80  # a random model of this vocabulary would score ~49k


def test_patching_the_real_teacher_is_exact(cpu_default):
    cfg, teacher, tokenizer = cpu_default
    layout = layout_from_config(cfg.prune, 30)
    student = build_student(teacher, layout).eval()
    with torch.no_grad():
        for p in student.parameters():
            p.mul_(1.01)
    sample = heldout_sequences(cfg.data, tokenizer, 512)[:1, :64]
    assert endpoint_gaps(teacher, student, layout, sample) == {"k=M vs teacher": 0.0, "k=0 vs student": 0.0}
