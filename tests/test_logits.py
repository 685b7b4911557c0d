from types import SimpleNamespace

import pytest
import torch
from torch import nn

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from boomerang.distill.logits import logit_distillation_loss, reference_logit_distillation_loss

N, H_S, H_T, V = 23, 16, 24, 40  # N is prime: most chunk sizes leave a short last chunk


def heads(bias: bool, student_trained: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    student, teacher = nn.Linear(H_S, V, bias=bias), nn.Linear(H_T, V, bias=bias).requires_grad_(False)
    return student.requires_grad_(student_trained), teacher


def batch(seed: int = 0):
    """Hidden states, labels ignored at pads and sequence ends, and a KL mask with zeros elsewhere."""
    g = torch.Generator().manual_seed(seed)
    h_s = torch.randn(N, H_S, generator=g).requires_grad_()
    h_t = torch.randn(N, H_T, generator=g)
    labels = torch.randint(0, V, (N,), generator=g)
    labels[[0, 5, 11, 22]] = -100
    kl_mask = torch.ones(N)
    kl_mask[[1, 5, 17]] = 0  # position 5 is both; 0, 11, 22 are real but unlabelled (sequence ends)
    return h_s, h_t, labels, kl_mask


def loss_and_grads(loss_fn, h_s, h_t, student, teacher, labels, kl_mask, autocast=False, **kwargs):
    h_s.grad = None
    student.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss, ce, kl = loss_fn(h_s, h_t, student, teacher, labels, kl_mask, **kwargs)
    loss.backward()
    params = [p.grad for p in student.parameters() if p.requires_grad]
    return [loss.detach(), ce, kl, h_s.grad, *params]


def assert_matches_reference(h_s, h_t, student, teacher, labels, kl_mask, autocast=False, chunk_size=5, **weights):
    expected = loss_and_grads(reference_logit_distillation_loss, h_s, h_t, student, teacher, labels, kl_mask,
                              autocast, **weights)
    actual = loss_and_grads(logit_distillation_loss, h_s, h_t, student, teacher, labels, kl_mask, autocast,
                            chunk_size=chunk_size, **weights)
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.dtype == e.dtype and a.shape == e.shape
        if autocast and i >= 3:  # bf16 gradients, rounded in a different order: relative to the tensor's scale
            torch.testing.assert_close(a, e, rtol=2e-2, atol=1e-2 * float(e.abs().max()))
        else:  # values come from the same bf16 logits; fp32 ones would be off by ~1e-4 (see below)
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("chunk_size", [1, 4, 5, 23, 64])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_matches_reference(autocast, chunk_size, temperature):
    h_s, h_t, labels, kl_mask = batch()
    student, teacher = heads(bias=False)
    assert_matches_reference(h_s, h_t, student, teacher, labels, kl_mask, autocast, chunk_size,
                             temperature=temperature, ce_weight=1.0, kl_weight=0.1)


def test_autocast_puts_the_head_matmuls_in_bf16():
    h_s, h_t, labels, kl_mask = batch()
    student, teacher = heads(bias=True)
    values = [loss_and_grads(logit_distillation_loss, h_s, h_t, student, teacher, labels, kl_mask, autocast,
                             temperature=2.0)[:3] for autocast in (False, True)]
    for fp32, bf16 in zip(*values):
        assert not torch.allclose(fp32, bf16, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("student_trained", [True, False], ids=["trained-head", "frozen-head"])
@pytest.mark.parametrize("ce_weight,kl_weight", [(0.7, 0.3), (1.0, 0.0), (0.0, 1.0)])
def test_heads_and_weights_match_reference(autocast, bias, student_trained, ce_weight, kl_weight):
    h_s, h_t, labels, kl_mask = batch(seed=1)
    student, teacher = heads(bias, student_trained, seed=1)
    assert_matches_reference(h_s, h_t, student, teacher, labels, kl_mask, autocast, chunk_size=6,
                             temperature=2.0, ce_weight=ce_weight, kl_weight=kl_weight)


def test_teacher_head_as_student_head_gives_the_state_its_gradient_only():
    """The tail's use: the student's state is read through the teacher's own frozen head."""
    torch.manual_seed(2)
    head = nn.Linear(H_S, V, bias=False).requires_grad_(False)
    h_s, _, labels, kl_mask = batch(seed=2)
    h_t = torch.randn(N, H_S)
    assert_matches_reference(h_s, h_t, head, head, labels, kl_mask, temperature=2.0, kl_weight=0.5)
    assert head.weight.grad is None


@pytest.mark.parametrize("no_label,no_real", [(True, False), (False, True), (True, True)])
def test_nothing_labelled_or_real_gives_zero_terms(no_label, no_real):
    """A count of zero is clamped to one: the empty term is 0 with zero gradient (`F.cross_entropy` says nan)."""
    h_s, h_t, labels, kl_mask = batch(seed=3)
    if no_label:
        labels.fill_(-100)
    if no_real:
        kl_mask.zero_()
    student, teacher = heads(bias=True, seed=3)
    assert_matches_reference(h_s, h_t, student, teacher, labels, kl_mask, temperature=2.0)
    _, ce, kl = logit_distillation_loss(h_s, h_t, student, teacher, labels, kl_mask)
    assert (ce == 0) == no_label and (kl == 0) == no_real


def test_batched_inputs_are_flattened():
    h_s, h_t, labels, kl_mask = batch(seed=4)
    student, teacher = heads(bias=True, seed=4)
    h_s = h_s.detach()[:22].reshape(2, 11, H_S).requires_grad_()
    h_t, labels, kl_mask = h_t[:22].reshape(2, 11, H_T), labels[:22].reshape(2, 11), kl_mask[:22].reshape(2, 11)
    assert_matches_reference(h_s, h_t, student, teacher, labels, kl_mask, chunk_size=4)
    assert h_s.grad.shape == (2, 11, H_S)


def test_backward_scales_stored_gradients_by_grad_output():
    h_s, h_t, labels, kl_mask = batch(seed=4)
    student, teacher = heads(bias=True, seed=4)
    once = loss_and_grads(logit_distillation_loss, h_s, h_t, student, teacher, labels, kl_mask, chunk_size=4)
    thrice = loss_and_grads(lambda *args, **kw: [3 * x for x in logit_distillation_loss(*args, **kw)],
                            h_s, h_t, student, teacher, labels, kl_mask, chunk_size=4)
    for a, e in zip(thrice, once):
        torch.testing.assert_close(a, 3 * e)


def test_without_grad_mode_only_values_are_computed():
    h_s, h_t, labels, kl_mask = batch(seed=5)
    student, teacher = heads(bias=False, seed=5)
    with torch.no_grad():
        loss, ce, kl = logit_distillation_loss(h_s, h_t, student, teacher, labels, kl_mask, temperature=2.0)
        expected = reference_logit_distillation_loss(h_s, h_t, student, teacher, labels, kl_mask, temperature=2.0)
    assert not loss.requires_grad
    for a, e in zip((loss, ce, kl), expected):
        torch.testing.assert_close(a, e)


class MostVocabularyRows(TorchDispatchMode):
    """The most rows of any (rows × vocabulary) tensor that an operation creates (views, e.g. Wᵀ, create none)."""

    def __init__(self):
        super().__init__()
        self.rows = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in [] if func.is_view else tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.dim() and tensor.shape[-1] == V:
                self.rows = max(self.rows, tensor.numel() // V)
        return out


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_vocabulary_sized_tensors_exist_one_chunk_at_a_time(autocast):
    h_s, h_t, labels, kl_mask = batch(seed=7)
    student, teacher = heads(bias=True, seed=7)
    for loss_fn, most_rows in [(reference_logit_distillation_loss, N),  # the check sees full logits
                               (lambda *args, **kw: logit_distillation_loss(*args, **kw, chunk_size=4), 4)]:
        with MostVocabularyRows() as seen:
            loss_and_grads(loss_fn, h_s, h_t, student, teacher, labels, kl_mask, autocast, temperature=2.0)
        assert seen.rows == most_rows


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(6)
    n, h, v = 7, 4, 9
    h_s = torch.randn(n, h, dtype=torch.float64, generator=g, requires_grad=True)
    teacher = nn.Linear(h + 1, v, dtype=torch.float64).requires_grad_(False)
    h_t = torch.randn(n, h + 1, dtype=torch.float64, generator=g)
    labels = torch.tensor([3, -100, 0, 8, 5, -100, 1])
    kl_mask = torch.tensor([1, 1, 0, 1, 1, 1, 0])

    weight = torch.randn(v, h, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(v, dtype=torch.float64, generator=g, requires_grad=True)

    def loss(h_s, weight, bias):  # any object with `weight` and `bias` serves as a head
        student = SimpleNamespace(weight=weight, bias=bias)
        return logit_distillation_loss(h_s, h_t, student, teacher, labels, kl_mask, temperature=2.0,
                                       ce_weight=0.6, kl_weight=0.8, chunk_size=3)[0]

    assert torch.autograd.gradcheck(loss, (h_s, weight, bias))
