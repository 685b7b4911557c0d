import pandas as pd
import pytest
import torch

from boomerang.measure.align import (MinibatchCKA, aligned_cosines, alignment_checks, cka_grid, layer_cosine, linear_cka,
                                     masked_tokens)
from tests.conftest import VOCAB, tiny_model


def gaussian(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def correlated_pair(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Y = X W + noise: clearly but not perfectly aligned representations."""
    x = gaussian(n, 16, seed=seed)
    return x, x @ gaussian(16, 24, seed=seed + 1) + 2 * gaussian(n, 24, seed=seed + 2)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_of_a_matrix_with_itself_is_one(debiased):
    x = gaussian(40, 12)
    assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling(debiased):
    x, y = correlated_pair(60)
    q, _ = torch.linalg.qr(gaussian(24, 24, seed=7))
    reference = linear_cka(x, y, debiased=debiased)
    assert 0.2 < reference < 0.99  # a non-trivial value, so invariance is a real check
    assert linear_cka(x, y @ q, debiased=debiased) == pytest.approx(reference, abs=1e-9)
    assert linear_cka(3.5 * x, y, debiased=debiased) == pytest.approx(reference, abs=1e-9)
    assert linear_cka(x, 0.01 * y, debiased=debiased) == pytest.approx(reference, abs=1e-9)


def test_debiased_cka_of_independent_gaussians_is_near_zero_while_biased_is_not():
    x, y = gaussian(64, 256, seed=1), gaussian(64, 256, seed=2)
    assert abs(linear_cka(x, y, debiased=True)) < 0.1
    assert linear_cka(x, y, debiased=False) > 0.3


def test_minibatch_cka_matches_full_batch_debiased_cka():
    x, y = correlated_pair(2048, seed=3)
    unrelated = gaussian(2048, 8, seed=9)
    acc = MinibatchCKA(num_a=2, num_b=1)
    for xb, yb, ub in zip(x.split(256), y.split(256), unrelated.split(256)):
        acc.update([xb, ub], [yb])
    grid = acc.compute()
    assert grid.shape == (2, 1)
    assert grid[0, 0] == pytest.approx(linear_cka(x, y, debiased=True), abs=0.05)
    assert abs(grid[1, 0]) < 0.05


def test_mismatched_example_counts_raise():
    with pytest.raises(ValueError):
        linear_cka(gaussian(10, 4), gaussian(11, 4))
    with pytest.raises(ValueError):
        linear_cka(gaussian(3, 4), gaussian(3, 4), debiased=True)
    with pytest.raises(ValueError):
        MinibatchCKA(1, 1).update([gaussian(10, 4)], [gaussian(12, 4)])


def test_a_model_is_perfectly_aligned_with_itself():
    model = tiny_model("llama")
    sequences = torch.randint(0, VOCAB, (4, 16), generator=torch.Generator().manual_seed(0))
    cosines = aligned_cosines(model, model, sequences, alignment=list(range(7)), batch_size=2)
    assert cosines == pytest.approx([1.0] * 7, abs=1e-6)
    grid = cka_grid(model, model, sequences, batch_size=2, tokens_per_minibatch=24)
    assert grid.shape == (7, 7)
    assert (grid.diagonal() > 0.99).all()


def test_masked_positions_are_ignored():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    student = [gaussian(2, 5, 8, seed=s) for s in range(3)]
    teacher = [h.clone() for h in student]
    for h in teacher:
        h[mask == 0] = gaussian(int((mask == 0).sum()), 8, seed=99)  # scramble only the pad positions
    assert masked_tokens(student[0], mask).shape == (7, 8)
    assert masked_tokens(student[0], None).shape == (10, 8)
    assert layer_cosine(student, teacher, [0, 1, 2], mask) == pytest.approx([1.0] * 3, abs=1e-12)
    assert max(layer_cosine(student, teacher, [0, 1, 2])) < 0.9


def test_alignment_checks_say_which_states_fail():
    """Student state s is mapped to teacher state 2s; the distilled student's CKA peaks there except at
    state 2 (peak at teacher state 1), and its cosine is above the undistilled one's where they differ."""
    rows = []
    for model, cos, off in (("undistilled", [1.0, 0.5, 0.4], {}), ("distilled", [1.0, 0.7, 0.6], {2: 1})):
        rows += [{"model": model, "kind": "cosine", "student_state": s, "teacher_state": 2 * s, "value": c}
                 for s, c in enumerate(cos)]
        rows += [{"model": model, "kind": "cka", "student_state": s, "teacher_state": t,
                  "value": 1.0 if t == off.get(s, 2 * s) else 0.1} for s in range(3) for t in range(5)]
    checks = alignment_checks(pd.DataFrame(rows), reference="undistilled").set_index(["claim", "scope"])
    cosine = checks.loc[("cosine above the undistilled student at every aligned state (min gap)", "distilled")]
    assert cosine.holds and cosine["where it fails"] == "" and abs(cosine.value - 0.2) < 1e-9
    cka = checks.loc[("CKA peaks within one layer of the alignment map (fraction of states)", "distilled")]
    assert not cka.holds and abs(cka.value - 2 / 3) < 1e-9
    assert cka["where it fails"] == "student states 2 peak at teacher states 1 (mapped to 4)"
    assert checks.loc[("CKA peaks within one layer of the alignment map (fraction of states)", "undistilled")].holds
