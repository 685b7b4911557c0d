"""KLPatch picks the block a known construction says it must, and the depth-first exhaustive search gives
every subset the KL that building and running that patched model gives."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from boomerang.core.arch import decoder_layers, hidden_states
from boomerang.core.prune import Layout, build_student
from boomerang.device import autocast
from boomerang.family import Family
from boomerang.measure.blockwise import Blockwise
from boomerang.measure.search import Calibration, klpatch_order, subset_kls
from tests.conftest import VOCAB, tiny_model


def calibration(teacher) -> Calibration:
    return Calibration(teacher, torch.randint(0, VOCAB, (4, 12), generator=torch.Generator().manual_seed(0)), 2, "no")


@torch.no_grad()
def whole_model_kl(calib: Calibration, model) -> float:
    """The reference: KL(p_T ‖ p) per token from the whole patched model's logits."""
    total = 0.0
    for t_logp, batch in zip(calib.teacher_logp, calib.batches):
        logp = F.log_softmax(model(input_ids=batch).logits.float(), dim=-1)
        total += (t_logp.exp() * (t_logp - logp)).sum().item()
    return total / sum(b.numel() for b in calib.batches)


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
    assert whole_model_kl(calibration(teacher), family.model([1])) > 1e-3  # the other two-layer block does not
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
    expected = {frozenset(s): whole_model_kl(calib, family.model(s)) for n in (1, 2)
                for s in itertools.combinations(multi, n)}
    assert found.keys() == expected.keys()  # frozen one-layer blocks are not tried both ways
    assert found == expected  # block by block computes exactly what each whole model does

    with torch.no_grad():  # a trained one-layer block is tried both ways
        for p in decoder_layers(student)[4].parameters():
            p.add_(0.05 * torch.randn_like(p))
    family = Family(teacher, student, layout, None)
    found = subset_kls(family, calib, counts={1})
    assert found == pytest.approx({frozenset(s) | extra: whole_model_kl(calib, family.model(set(s) | extra))
                                   for s in itertools.combinations(multi, 1) for extra in (set(), {4})}, rel=1e-5)


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gpt_neox", "gpt2"])
def test_block_by_block_gives_every_patched_model_its_own_final_states_exactly(arch):
    # gpt2 adds position embeddings to its input: its models run whole, once per distinct function
    teacher, layout = tiny_model(arch, 8), Layout((0, 1, 3, 5, 7), 8)
    student = build_student(teacher, layout).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in decoder_layers(student)[2].parameters():
            p.add_(0.05 * torch.randn_like(p))
    family = Family(teacher, student, layout, None)
    sets = [set(s) for r in range(6) for s in itertools.combinations(range(5), r)]
    batches = list(torch.randint(0, VOCAB, (6, 17)).split(4))
    for precision in ("no", "bf16"):
        runner = Blockwise(family, precision)
        found = runner.reduce(sets, batches, lambda key, final, i: final)
        assert found.keys() == {family.identity(s) for s in sets}  # blocks 0 and 4 are inert: 8 functions
        for key, finals in found.items():
            with torch.no_grad(), autocast("cpu", precision):
                expected = [hidden_states(family.model(key), b)[-1] for b in batches]
            assert all(torch.equal(a, b) for a, b in zip(finals, expected)), (precision, sorted(key))
