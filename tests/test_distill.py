import math

import pandas as pd
import pytest
import torch

from boomerang import artefacts as A
from boomerang.config import DistillConfig, load_config
from boomerang.core.arch import decoder_layers, hidden_states
from boomerang.core.patch import patch
from boomerang.core.prune import Layout, build_student, layout_from_rule, load_student
from boomerang.distill.loss import Batch, Step, TailTerm, objective, total_loss
from boomerang.device import autocast
from boomerang.distill import train as train_module
from boomerang.distill.train import patch_aware_model, train
from boomerang.pipeline import stages
from tests.conftest import VOCAB, tiny_model


def step_of(model, teacher, x, mask, alignment) -> Step:
    hidden = lambda m: m(input_ids=x, attention_mask=mask, output_hidden_states=True).hidden_states  # noqa: E731
    return Step(Batch(x, mask), hidden(model), hidden(teacher), alignment, model.lm_head, "no")


@pytest.mark.parametrize("chunk_tokens", [0, 7])
def test_kl_and_cosine_vanish_when_student_is_teacher(chunk_tokens):
    teacher = tiny_model("llama")
    layout = Layout(tuple(range(6)), 6)  # keep every layer: the student is the teacher
    student = build_student(teacher, layout).eval()
    x, mask = torch.randint(0, VOCAB, (2, 10)), torch.ones(2, 10, dtype=torch.long)
    cfg = DistillConfig(chunk_tokens=chunk_tokens)
    _, terms = total_loss(objective(cfg, teacher, layout), step_of(student, teacher, x, mask, layout.alignment))
    assert abs(terms["kl"]) < 1e-5 and abs(terms["cos"]) < 1e-5
    assert terms["ce"] > 0
    assert terms["loss"] == pytest.approx(terms["ce"] + 0.1 * terms["kl"] + 2.0 * terms["cos"], rel=1e-6)


def test_terms_ignore_padded_positions():
    teacher = tiny_model("llama")
    layout = layout_from_rule(6, 1, 2, 2)
    student = build_student(teacher, layout).eval()
    x = torch.randint(0, VOCAB, (2, 10))
    mask = torch.ones_like(x)
    mask[1, 6:] = 0
    step = step_of(student, teacher, x, mask, layout.alignment)
    noise = lambda h: torch.where(mask[..., None].bool(), h, torch.randn_like(h) * 9)  # noqa: E731
    scrambled = Step(step.batch, tuple(map(noise, step.student)), tuple(map(noise, step.teacher)), step.alignment,
                     step.student_head, "no")  # every padded position of every state the loss reads
    terms = objective(DistillConfig(), teacher, layout)
    _, a = total_loss(terms, step)
    _, b = total_loss(terms, scrambled)
    for term in ("ce", "kl", "cos"):
        assert abs(a[term] - b[term]) < 1e-6, term


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
def test_the_tail_is_the_interpolant_patched_from_the_last_multi_layer_block(arch):
    teacher = tiny_model(arch)
    layout = layout_from_rule(6, 1, 2, 2)  # blocks [0,1] [2,3] [4] [5]: the tail is teacher layers 2 to 5
    student = build_student(teacher, layout).eval()
    x, mask = torch.randint(0, VOCAB, (2, 33)), torch.ones(2, 33, dtype=torch.long)
    tail = TailTerm(teacher, layout, DistillConfig(tail_weight=1.0))
    positions = tail.positions(33, "cpu")
    with torch.no_grad():
        hidden = student(input_ids=x, attention_mask=mask, output_hidden_states=True).hidden_states
        logits = tail.head(tail.final_states(hidden[tail.block], mask)[:, positions])
        patched = patch(teacher, student, layout, {1, 2, 3})(input_ids=x, attention_mask=mask).logits
    assert tail.block == 1 and positions.tolist() == [15, 31]
    assert torch.allclose(logits, patched[:, positions], atol=1e-5)


def test_the_tail_term_is_the_students_logit_loss_at_its_positions():
    teacher = tiny_model("llama")
    layout = layout_from_rule(6, 1, 2, 2)
    x, mask = torch.randint(0, VOCAB, (2, 32)), torch.ones(2, 32, dtype=torch.long)
    cfg = DistillConfig(tail_weight=1.0, kl_weight=0.0)
    terms = objective(cfg, teacher, layout)
    # the student is the teacher and the tail is fed the teacher's own state: no KL, the CE at the tail's
    # positions 15 and 31, of which the last has no next token
    student = build_student(teacher, layout).eval()
    with torch.no_grad():
        step = step_of(student, teacher, x, mask, layout.alignment)
        t_hidden = teacher(input_ids=x, attention_mask=mask, output_hidden_states=True).hidden_states
        step.student = (*step.student[:1], t_hidden[2], *step.student[2:])  # the teacher's state entering block 1
        _, logged = total_loss(terms, step)
        logits = teacher(input_ids=x).logits
    ce = torch.nn.functional.cross_entropy(logits[:, [15]].flatten(0, 1), x[:, [16]].flatten())
    assert abs(logged["tail"] - ce.item()) < 1e-5


def test_the_tail_refuses_absolute_positions_and_layouts_without_a_block():
    teacher, cfg = tiny_model("llama"), DistillConfig(tail_weight=1.0)
    with pytest.raises(ValueError, match="multi-layer"):
        TailTerm(teacher, Layout(tuple(range(6)), 6), cfg)
    with pytest.raises(NotImplementedError, match="gpt2"):
        TailTerm(tiny_model("gpt2"), layout_from_rule(6, 1, 2, 2), cfg)


def test_patch_aware_steps_run_random_interpolants_read_at_block_boundaries():
    teacher = tiny_model("llama", num_layers=10)
    layout = layout_from_rule(10, 1, 2, 2)  # blocks [0,1] [2,3] [4,5] [6,7] [8] [9]
    student = build_student(teacher, layout).eval()
    x, mask = torch.randint(0, VOCAB, (1, 8)), torch.ones(1, 8, dtype=torch.long)
    draws = [patch_aware_model(teacher, student, layout, 0.5, seed=0, draw=d) for d in range(200)]
    assert 0.35 < sum(b is not None for _, b in draws) / 200 < 0.65
    assert patch_aware_model(teacher, student, layout, 0.0, 0, 7) == (student, None)
    drawn = set()
    for model, bounds in (d for d in draws if d[1] is not None):
        widths = [b - a for a, b in zip(bounds, bounds[1:])]
        patched = [i for i, w in enumerate(widths) if w > 1]
        assert len(bounds) == len(layout.alignment) and bounds[-1] == len(decoder_layers(model))
        assert 1 <= len(patched) <= 3 and all(w == len(layout.blocks[i]) for i, w in enumerate(widths) if w > 1)
        drawn.add(tuple(patched))
        with torch.no_grad():
            mixed = model(input_ids=x, attention_mask=mask, output_hidden_states=True).hidden_states
            own = student(input_ids=x, attention_mask=mask, output_hidden_states=True).hidden_states
        # up to the first patched block the interpolant computes exactly what the student does
        for j in range(patched[0] + 1):
            assert torch.equal(mixed[bounds[j]], own[j])
    assert drawn > {(0,), (0, 1), (0, 1, 2), (3,), (2, 3), (1, 2, 3)}  # what the two patch orders build, and more
    assert patch_aware_model(teacher, student, layout, 0.5, seed=0, draw=3)[1] == draws[3][1]


def distil(run_config, name: str, interrupt_at: int | None = None, **distill) -> tuple[dict, pd.DataFrame]:
    """Prune and distil the tiny run under `name` (interrupted once at `interrupt_at`); the student's
    weights and the log."""
    cfg = load_config(run_config, {"name": name, "distill.steps": 6, "distill.checkpoint_every": 2,
                                   **{f"distill.{k}": v for k, v in distill.items()}})
    stages.prune(cfg)
    if interrupt_at:
        train(cfg, stop_after=interrupt_at)
        assert not A.STUDENT.path(cfg).exists()
    train(cfg)
    return load_student(A.STUDENT.path(cfg))[0].state_dict(), pd.read_csv(A.DISTILL_LOG.path(cfg))


@pytest.mark.parametrize("levers", [{}, {"patch_prob": 0.5, "tail_weight": 1.0}, {"gradient_checkpointing": True},
                                    {"chunk_tokens": 0}], ids=["paper", "cpu-preset", "checkpointing", "full-logits"])
def test_a_resumed_run_equals_an_uninterrupted_one(run_config, levers):
    straight, log_a = distil(run_config, "straight", **levers)
    resumed, log_b = distil(run_config, "resumed", interrupt_at=3, **levers)
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    pd.testing.assert_frame_equal(log_a.drop(columns="tokens_per_s"), log_b.drop(columns="tokens_per_s"))
    assert list(log_a.columns) == list(log_b.columns)  # one column order, resumed or not
    if levers.get("patch_prob"):  # some steps ran an interpolant (its extra teacher layers), some the student
        assert set(log_a.extra_layers) == {0, 1} and (log_a["tail"] > 0).all()
    else:
        assert log_a.loss.iloc[1:].mean() < log_a.loss.iloc[0]


def test_gradient_checkpointing_changes_memory_not_numbers(run_config):
    plain, _ = distil(run_config, "plain")
    checkpointed, _ = distil(run_config, "checkpointed", gradient_checkpointing=True)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        assert torch.equal(plain[name], checkpointed[name]), name


@pytest.mark.parametrize("levers", [{"patch_prob": 0.5, "tail_weight": 1.0}, {"gradient_checkpointing": True}],
                         ids=["cpu-preset", "checkpointing"])
def test_compiled_layers_change_speed_not_numbers(run_config, levers):
    """The compiled run's losses and student match the eager run's to float rounding (the compiler fuses
    products and reductions in another order), patch-aware steps' interpolated models included."""
    eager, log_eager = distil(run_config, "eager", **levers)
    torch._dynamo.reset()
    compiled, log_compiled = distil(run_config, "compiled", compile=True, **levers)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the layers did run compiled
    assert eager.keys() == compiled.keys()
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-4, atol=1e-5, msg=name)
    pd.testing.assert_frame_equal(log_compiled.drop(columns=["tokens_per_s", "grad_norm"]),
                                  log_eager.drop(columns=["tokens_per_s", "grad_norm"]), rtol=1e-4, atol=1e-6)
    if levers.get("patch_prob"):
        assert set(log_compiled.extra_layers) == {0, 1}


def test_the_chunked_objective_equals_the_full_logits_one_with_its_gradients():
    """Every term (the tail included), τ ≠ 1 and pads: values and the student's gradients agree."""
    teacher = tiny_model("llama")
    layout = layout_from_rule(6, 1, 2, 2)
    x = torch.randint(0, VOCAB, (2, 40))
    mask = torch.ones_like(x)
    mask[1, 30:] = 0
    results = []
    for chunk_tokens in (0, 7):
        student = build_student(teacher, layout).train()
        cfg = DistillConfig(chunk_tokens=chunk_tokens, temperature=2.0, tail_weight=0.5)
        loss, logged = total_loss(objective(cfg, teacher, layout), step_of(student, teacher, x, mask, layout.alignment))
        loss.backward()
        results.append((logged, {n: p.grad for n, p in student.named_parameters() if p.grad is not None}))
    (full, full_grads), (chunked, chunked_grads) = results
    assert full.keys() == chunked.keys() and full_grads.keys() == chunked_grads.keys()
    # a KL near 0 is a difference of log-probabilities of size log V: fp32 kernels that sum in another order
    # (AVX2 against AVX-512) move it by a few of their ulps, which is more than 1e-5 of the KL itself
    ulps = 8 * torch.finfo(torch.float32).eps * math.log(VOCAB)
    for term in full:
        assert chunked[term] == pytest.approx(full[term], rel=1e-5, abs=ulps), term
    for name in full_grads:
        torch.testing.assert_close(chunked_grads[name], full_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_teacher_matrices_cast_once_give_what_autocast_gives():
    teacher = tiny_model("qwen3", 4)
    x = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad(), autocast("cpu", "bf16"):
        before = hidden_states(teacher, x)
    train_module._cast_teacher_matrices(teacher, "bf16")
    assert decoder_layers(teacher)[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert teacher.model.norm.weight.dtype == teacher.lm_head.weight.dtype == torch.float32
    with torch.no_grad(), autocast("cpu", "bf16"):
        after = hidden_states(teacher, x)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
