"""KLPatch picks the block a known construction says it must, and the depth-first exhaustive search gives
every subset the KL that building and running that patched model gives."""
import itertools

import pytest
import torch

from boomerang.core.arch import decoder_layers
from boomerang.core.prune import Layout, build_student
from boomerang.family import Family
from boomerang.measure.search import Calibration, klpatch_order, subset_kls
from tests.conftest import VOCAB, tiny_model


def calibration(teacher) -> Calibration:
    return Calibration(teacher, torch.randint(0, VOCAB, (4, 12), generator=torch.Generator().manual_seed(0)), 2, "no")


def test_klpatch_first_patches_the_block_that_restores_the_teacher():
    teacher = tiny_model("llama", 6)
    with torch.no_grad():  # teacher layer 3 writes nothing: block [2, 3] is layer 2 alone
        decoder_layers(teacher)[3].self_attn.o_proj.weight.zero_()
        decoder_layers(teacher)[3].mlp.down_proj.weight.zero_()
    layout = Layout((0, 2, 4, 5), 6)  # blocks [0, 1] [2, 3] [4] [5]
    family = Family(teacher, build_student(teacher, layout).eval(), layout, None)
    # the student is the teacher without layers 1 and 3; patching block 0 puts layer 1 back: the teacher
    order, kls = klpatch_order(family, calibration(teacher))
    assert order[0] == 0 and kls[0] == pytest.approx(0, abs=1e-6)
    assert calibration(teacher).kl(family.model([1])) > 1e-3  # the other two-layer block does not
    assert sorted(order) == [0, 1, 2, 3]


def test_the_exhaustive_search_agrees_with_brute_force():
    teacher = tiny_model("llama", 8)
    layout = Layout((0, 1, 3, 5, 7), 8)  # blocks [0] [1, 2] [3, 4] [5, 6] [7]
    student = build_student(teacher, layout).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for i in (1, 2, 3):  # distil-like changes; the one-layer blocks (layers 0 and 7) stay the teacher's
            for p in decoder_layers(student)[i].parameters():
                p.add_(0.05 * torch.randn_like(p))
    family, calib = Family(teacher, student, layout, None), calibration(teacher)
    found = subset_kls(family, calib, counts={1, 2})
    multi = [1, 2, 3]
    expected = {frozenset(s): calib.kl(family.model(s)) for n in (1, 2) for s in itertools.combinations(multi, n)}
    assert found.keys() == expected.keys()  # frozen one-layer blocks are not tried both ways
    for subset, kl in expected.items():
        assert found[subset] == pytest.approx(kl, rel=1e-5), sorted(subset)
