from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from boomerang.arch import decoder_layers
from boomerang.config import DistillConfig, load_config
from boomerang.distill import TeacherTail, distillation_loss, random_interpolant, teacher_forced_states, train
from boomerang.patch import patch
from boomerang.prune import Layout, build_student, layout_from_rule, load_student, prune_run
from boomerang.teacher import load_teacher
from tests.conftest import VOCAB, tiny_model


def outputs(model, x, mask):
    return model(input_ids=x, attention_mask=mask, output_hidden_states=True)


def test_kl_and_cosine_vanish_when_student_is_teacher():
    teacher = tiny_model("llama")
    layout = Layout(tuple(range(6)), 6)  # keep every layer: the student is the teacher
    student = build_student(teacher, layout).eval()
    x, mask = torch.randint(0, VOCAB, (2, 10)), torch.ones(2, 10, dtype=torch.long)
    _, terms = distillation_loss(outputs(student, x, mask), outputs(teacher, x, mask), x, mask,
                                 layout.alignment, DistillConfig())
    assert abs(terms["kl"]) < 1e-5 and abs(terms["cos"]) < 1e-5
    assert terms["ce"] > 0


def test_scale_aware_and_teacher_forced_terms_vanish_when_student_is_teacher():
    teacher = tiny_model("llama")
    layout = Layout(tuple(range(6)), 6)
    student = build_student(teacher, layout).eval()
    x, mask = torch.randint(0, VOCAB, (2, 10)), torch.ones(2, 10, dtype=torch.long)
    t_out = outputs(teacher, x, mask)
    forced = teacher_forced_states(student, t_out.hidden_states, layout.alignment, x, mask)
    cfg = DistillConfig(mse_weight=1.0, forced_weight=1.0)
    _, terms = distillation_loss(outputs(student, x, mask), t_out, x, mask, layout.alignment, cfg, forced)
    assert terms["mse"] < 1e-10 and terms["forced"] < 1e-10


def test_teacher_forcing_feeds_each_layer_its_blocks_teacher_input():
    teacher = tiny_model("llama")
    layout = layout_from_rule(6, 1, 2, 2)  # blocks [0,1] [2,3] [4] [5]
    student = build_student(teacher, layout).eval()
    x, mask = torch.randint(0, VOCAB, (1, 8)), torch.ones(1, 8, dtype=torch.long)
    with torch.no_grad():
        t_hidden = outputs(teacher, x, mask).hidden_states
        forced = teacher_forced_states(student, t_hidden, layout.alignment, x, mask)
        own = outputs(student, x, mask).hidden_states
    # student layer 2 is teacher layer 4; fed the teacher's input to layer 4 it reproduces layer 4's output
    assert torch.allclose(forced[3], t_hidden[5], atol=1e-5)
    assert not torch.allclose(own[3], t_hidden[5], atol=1e-3)


def test_terms_ignore_padded_positions():
    teacher = tiny_model("llama")
    layout = layout_from_rule(6, 1, 2, 2)
    student = build_student(teacher, layout).eval()
    x = torch.randint(0, VOCAB, (2, 10))
    mask = torch.ones_like(x)
    mask[1, 6:] = 0
    s_out, t_out = outputs(student, x, mask), outputs(teacher, x, mask)

    def scrambled(out):  # change every padded position of every tensor the loss reads
        noise = lambda h: torch.where(mask[..., None].bool(), h, torch.randn_like(h) * 9)
        return SimpleNamespace(logits=noise(out.logits), hidden_states=tuple(noise(h) for h in out.hidden_states))

    _, a = distillation_loss(s_out, t_out, x, mask, layout.alignment, DistillConfig())
    _, b = distillation_loss(scrambled(s_out), scrambled(t_out), x, mask, layout.alignment, DistillConfig())
    for term in ("kl", "cos"):
        assert abs(a[term] - b[term]) < 1e-6, term


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_teacher_tail_is_the_interpolant_patched_from_the_last_multi_layer_block(family):
    teacher = tiny_model(family)
    layout = layout_from_rule(6, 1, 2, 2)  # blocks [0,1] [2,3] [4] [5]: the tail is teacher layers 2 to 5
    student = build_student(teacher, layout).eval()
    x, mask = torch.randint(0, VOCAB, (2, 12)), torch.ones(2, 12, dtype=torch.long)
    tail = TeacherTail(teacher, layout, stride=3)
    with torch.no_grad():
        logits, positions = tail.logits(outputs(student, x, mask).hidden_states, mask)
        patched = patch(teacher, student, layout, {1, 2, 3})(input_ids=x, attention_mask=mask).logits
    assert tail.block == 1 and positions.tolist() == [2, 5, 8, 11]
    assert torch.allclose(logits, patched[:, positions], atol=1e-5)
    t_out = outputs(teacher, x, mask)
    # the teacher's own logits as the tail's: no KL, so the term is the CE at those positions, of which the
    # last (11) has no next token
    _, terms = distillation_loss(t_out, t_out, x, mask, Layout(tuple(range(6)), 6).alignment,
                                 DistillConfig(tail_weight=1.0), tail=(t_out.logits[:, positions], positions))
    ce = torch.nn.functional.cross_entropy(t_out.logits[:, [2, 5, 8]].flatten(0, 1), x[:, [3, 6, 9]].flatten())
    assert abs(terms["tail"] - ce.item()) < 1e-5


def test_teacher_tail_refuses_absolute_positions_and_layouts_without_a_block():
    teacher = tiny_model("llama")
    with pytest.raises(ValueError, match="multi-layer"):
        TeacherTail(teacher, Layout(tuple(range(6)), 6))
    with pytest.raises(NotImplementedError, match="gpt2"):
        TeacherTail(tiny_model("gpt2"), layout_from_rule(6, 1, 2, 2))


@pytest.mark.parametrize("patch_draw", ["subsets", "ends"])
def test_patch_aware_steps_run_random_interpolants_read_at_block_boundaries(patch_draw):
    teacher = tiny_model("llama", num_layers=10)
    layout = layout_from_rule(10, 1, 2, 2)  # blocks [0,1] [2,3] [4,5] [6,7] [8] [9]
    student = build_student(teacher, layout).eval()
    x, mask = torch.randint(0, VOCAB, (1, 8)), torch.ones(1, 8, dtype=torch.long)
    cfg = DistillConfig(patch_prob=0.5, patch_draw=patch_draw)
    draws = [random_interpolant(teacher, student, layout, cfg, seed=0, draw=d) for d in range(200)]
    assert 0.35 < sum(b is not None for _, b in draws) / 200 < 0.65
    assert random_interpolant(teacher, student, layout, DistillConfig(), 0, 7) == (student, None)
    drawn = set()
    for model, bounds in (d for d in draws if d[1] is not None):
        widths = [b - a for a, b in zip(bounds, bounds[1:])]
        patched = [i for i, w in enumerate(widths) if w > 1]
        assert len(bounds) == len(layout.alignment) and bounds[-1] == len(decoder_layers(model))
        assert 1 <= len(patched) <= 3 and all(w == len(layout.blocks[i]) for i, w in enumerate(widths) if w > 1)
        drawn.add(tuple(patched))
        with torch.no_grad():
            mixed, own = outputs(model, x, mask).hidden_states, outputs(student, x, mask).hidden_states
        # up to the first patched block the interpolant computes exactly what the student does
        for j in range(patched[0] + 1):
            assert torch.equal(mixed[bounds[j]], own[j])
    ends = {(0,), (0, 1), (0, 1, 2), (3,), (2, 3), (1, 2, 3)}  # what the two patch orders build
    assert drawn == ends if patch_draw == "ends" else drawn > ends
    again = random_interpolant(teacher, student, layout, cfg, seed=0, draw=3)[1]
    assert again == draws[3][1]


def test_unknown_or_idle_patch_draw_is_refused():
    with pytest.raises(ValueError, match="patch_draw"):
        DistillConfig(patch_draw="middle")
    with pytest.raises(ValueError, match="patch_prob"):  # no patch-aware steps to draw for
        DistillConfig(patch_draw="ends")


@pytest.mark.parametrize("patch_prob, tail_weight, checkpointing",  # the paper's; the CPU preset's; on a GPU box
                         [(0.0, 0.0, False), (0.5, 1.0, False), (0.0, 0.0, True)])
def test_resumed_run_equals_uninterrupted_run(run_config, tmp_path, patch_prob, tail_weight, checkpointing):
    def distil(name, interrupt_at=None):
        cfg = load_config(run_config, {"name": name, "distill.steps": 6, "distill.checkpoint_every": 2,
                                       "distill.patch_prob": patch_prob, "distill.tail_weight": tail_weight,
                                       "distill.gradient_checkpointing": checkpointing})
        teacher, tok = load_teacher(cfg.teacher)
        prune_run(cfg, teacher, tok)
        args = (cfg, cfg.run_dir / "student_init", cfg.run_dir / "student", cfg.results_dir / "log.csv")
        if interrupt_at:
            train(*args, stop_after=interrupt_at)
            assert not (cfg.run_dir / "student").exists()
        train(*args)
        return load_student(cfg.run_dir / "student")[0], pd.read_csv(cfg.results_dir / "log.csv")

    straight, log_a = distil("straight")
    resumed, log_b = distil("resumed", interrupt_at=3)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    cols = (["step", "tokens", "lr", "loss", "ce", "kl", "cos", "grad_norm"] + (["extra_layers"] if patch_prob else [])
            + (["tail"] if tail_weight else []))
    pd.testing.assert_frame_equal(log_a[cols], log_b[cols])
    if patch_prob:  # some steps ran an interpolant (its extra teacher layers), some the student
        assert set(log_a.extra_layers) == {0, 1}
    else:  # batches differ per step: compare the mean
        assert log_a.loss.iloc[1:].mean() < log_a.loss.iloc[0]
    if tail_weight:  # the tail term is logged at every step (NaN compares False)
        assert (log_a["tail"] > 0).all()


def test_two_processes_share_the_work(run_config):
    """The `accelerate`/DDP path: two CPU processes (gloo) each take their own slice of every batch."""
    import os
    import subprocess
    import sys

    cfg = load_config(run_config, {"name": "ddp"})
    teacher, tok = load_teacher(cfg.teacher)
    prune_run(cfg, teacher, tok)
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "BOOMERANG_DEVICE": "cpu"}  # two processes, one GPU at most
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "boomerang.distill",
                    "--config", str(run_config), "--override", '{"name": "ddp"}'],
                   check=True, env=env, capture_output=True)
    log = pd.read_csv(cfg.results_dir / "distill_log.csv")
    assert log.tokens.iloc[0] == 2 * cfg.distill.batch_size * cfg.data.seq_len
    assert len(log) == cfg.distill.steps and (cfg.run_dir / "student" / "student_config.json").exists()


def test_gradient_checkpointing_changes_memory_not_numbers(run_config):
    students = []
    for checkpointing in (False, True):
        cfg = load_config(run_config, {"name": f"checkpointing-{checkpointing}", "distill.steps": 3,
                                       "distill.gradient_checkpointing": checkpointing})
        teacher, tok = load_teacher(cfg.teacher)
        prune_run(cfg, teacher, tok)
        train(cfg, cfg.run_dir / "student_init", cfg.run_dir / "student", cfg.results_dir / "log.csv")
        students.append(load_student(cfg.run_dir / "student")[0].state_dict())
    assert students[0].keys() == students[1].keys()
    for name in students[0]:
        assert torch.equal(students[0][name], students[1][name]), name
