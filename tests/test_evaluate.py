import math

import pandas as pd
import pytest
import torch

from boomerang.core.arch import parameter_counts
from boomerang.core.patch import patch
from boomerang.core.prune import Layout, build_student
from boomerang.family import Family
from boomerang.measure.models import measured_once, run_models
from boomerang.measure.curves import boomerang_checks, size_table
from boomerang.measure.perplexity import perplexity
from tests.conftest import VOCAB, tiny_model


def test_perplexity_is_the_plain_mean_token_nll_and_a_uniform_model_has_the_vocabulary_size():
    model = tiny_model("gpt_neox")  # untied: the head can be zeroed alone
    sequences = torch.randint(0, VOCAB, (6, 700))  # longer than one chunk of the head
    with torch.no_grad():
        logits = model(input_ids=sequences).logits
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), sequences[:, 1:].flatten(), reduction="none")
    result = perplexity(model, sequences, batch_size=4, mixed_precision="no")
    assert result["nll"] == pytest.approx(nll.view(6, -1).mean(1).mean().item(), rel=1e-6)
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()
    result = perplexity(model, sequences, batch_size=4, mixed_precision="no")
    assert math.isclose(result["perplexity"], VOCAB, rel_tol=1e-5)
    assert result["nll_stderr"] < 1e-6


def test_parameter_counts_tied_and_untied():
    model = tiny_model("llama")  # tied embeddings
    total = sum(p.numel() for p in model.parameters())  # torch counts the shared matrix once
    embed = model.get_input_embeddings().weight.numel()
    assert parameter_counts(model, tied=True) == {"params": total, "params_inference": total + embed}
    neox = tiny_model("gpt_neox")
    n = sum(p.numel() for p in neox.parameters())
    assert parameter_counts(neox, tied=False) == {"params": n, "params_inference": n}


def test_checks_detect_a_boomerang_and_its_absence():
    def table(interp, naive):
        rows = [{"method": "teacher", "order": "none", "k": 4, "num_layers": 8, "value": 10.0},
                {"method": "student", "order": "none", "k": 0, "num_layers": 4, "value": 20.0}]
        rows += [{"method": "interpolated", "order": "o", "k": k, "num_layers": 4 + k, "value": v}
                 for k, v in enumerate(interp, start=1)]
        rows += [{"method": "naive_pruned", "order": "o", "k": k, "num_layers": 4 + k, "value": naive}
                 for k in range(1, 4)]
        return pd.DataFrame(rows).assign(task="heldout", metric="perplexity")

    good = boomerang_checks(table([17.0, 14.0, 12.0], naive=1e4)).set_index("claim").holds
    assert good.all()
    bad = boomerang_checks(table([30.0, 9.0, 25.0], naive=40.0)).set_index("claim")
    assert not bad.holds.any()
    assert bad["where it fails"].tolist() == ["outside the band at 5, 6, 7 layers", "rises at 5, 7 layers",
                                              "4.44x at 6 layers"]
    assert (boomerang_checks(table([17.0, 14.0, 12.0], naive=1e4))["where it fails"] == "").all()


def test_checks_count_only_sizes_strictly_between_student_and_teacher():
    """Patching a one-layer block keeps the student's (or teacher's) size; such a patch is not an
    intermediate size, however good or bad it is."""
    rows = [{"method": "teacher", "order": "none", "k": 5, "num_layers": 8, "value": 10.0},
            {"method": "student", "order": "none", "k": 0, "num_layers": 4, "value": 20.0}]
    sizes = [(1, 4, 500.0), (2, 5, 17.0), (3, 6, 14.0), (4, 7, 12.0), (5, 8, 0.5)]  # k=1, k=5 keep the end sizes
    rows += [{"method": "interpolated", "order": "o", "k": k, "num_layers": n, "value": v} for k, n, v in sizes]
    rows += [{"method": "naive_pruned", "order": "o", "k": k, "num_layers": n, "value": 1e4} for k, n, _ in sizes]
    checks = boomerang_checks(pd.DataFrame(rows).assign(task="heldout", metric="perplexity")).set_index("claim")
    assert checks.loc["intermediate sizes between student and teacher", "value"] == 1.0  # 3 of 3, not 3 of 5
    assert math.isclose(checks.loc["perplexity falls with size (Spearman rho)", "value"], -1.0)
    assert checks.loc["naive pruning worse at middle sizes (min ratio)", "value"] == 1e4 / 14.0  # 6 layers only


def test_the_size_table_lists_each_layer_count_once_whatever_each_order_calls_k():
    """Orders number their sizes differently (KLPatch's k = 1 may add a layer where another order's keeps the
    student's size); the table a reader sees is by layer count, student to teacher, one row each."""
    rows = [{"method": "teacher", "order": "none", "k": 3, "num_layers": 7, "value": 10.0, "params": 70},
            {"method": "student", "order": "none", "k": 0, "num_layers": 4, "value": 20.0, "params": 40}]
    rows += [{"method": "interpolated", "order": "a", "k": k, "num_layers": n, "value": v, "params": 10 * n}
             for k, n, v in [(1, 4, 20.0), (2, 5, 16.0), (3, 7, 10.0)]]  # k = 1 patches a one-layer block
    rows += [{"method": "interpolated", "order": "b", "k": k, "num_layers": n, "value": v, "params": 10 * n}
             for k, n, v in [(1, 5, 15.0), (2, 6, 12.0), (3, 7, 10.0)]]
    rows += [{"method": "naive_pruned", "order": o, "k": 1, "num_layers": 5, "value": v, "params": 50}
             for o, v in (("a", 900.0), ("b", 700.0))]
    table = size_table(pd.DataFrame(rows).assign(task="heldout", metric="perplexity"))
    assert list(table.layers) == [4, 5, 6, 7]
    assert list(table.model) == ["student", "interpolated", "interpolated", "teacher"]
    assert list(table["params (M)"] * 1e6) == [40, 50, 60, 70]
    assert table.a.tolist()[:2] == [20.0, 16.0] and math.isnan(table.a[2]) and table.b.tolist()[1:] == [15.0, 12.0, 10.0]
    assert table["naive pruning"][1] == 700.0 and table["naive pruning"].isna().sum() == 3


def test_run_models_strides_over_sizes_strictly_between_student_and_teacher():
    # SmolLM2's layout in miniature: teacher layers 0, 1, 3, 5, 7 of 8 -> blocks [0], [1, 2], [3, 4], [5, 6], [7]
    teacher, layout = tiny_model("llama", 8), Layout((0, 1, 3, 5, 7), 8)
    student = build_student(teacher, layout).eval()
    family = Family(teacher, student, layout, tokenizer=None)

    def sizes(method, **kwargs):
        labels = [l for _, _, l in run_models(family, ["first_to_last"], family, **kwargs)]
        return [l["num_layers"] for l in labels if l["method"] == method]

    assert sizes("interpolated") == [5, 6, 7, 8]  # k = 1..4: patching block [0] keeps the student's size
    assert sizes("interpolated", distinct_sizes=True) == [6, 7]
    assert sizes("interpolated", distinct_sizes=True, size_stride=2) == [6]
    assert sizes("naive_pruned", distinct_sizes=True, naive_stride=2) == [5, 6]  # k = 0, then every 2nd size
    assert sizes("naive_pruned", naive_stride=0) == []
    # naive pruning skips k = 1 either way: in the undistilled student block [0] is a copy of teacher layer 0
    assert sizes("naive_pruned") == [5, 6, 7]
    x = torch.randint(0, VOCAB, (1, 9))
    with torch.no_grad():
        assert torch.equal(patch(teacher, student, layout, {0})(x).logits, student(x).logits)
    assert sizes("naive_pruned", naive_stride=2) == [5, 6]
    # the authors' k: first -> last their count patches block [0] along with the first multi-layer block
    specs = [l for _, _, l in run_models(family, ["first_to_last"]) if l["method"] == "interpolated"]
    assert [(l["k"], l["authors_k"]) for l in specs] == [(1, 0), (2, 1), (3, 2), (4, None)]


def test_a_patch_that_changes_no_tensor_has_the_identity_of_the_model_without_it_and_is_measured_once():
    teacher, layout = tiny_model("llama", 8), Layout((0, 1, 3, 5, 7), 8)
    student = build_student(teacher, layout).eval()  # blocks [0] and [7] are copies of teacher layers 0 and 7
    family = Family(teacher, student, layout, tokenizer=None)
    assert family.inert_blocks == {0, 4}
    x = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        assert torch.equal(family.model({0, 2, 4})(x).logits, family.model({2})(x).logits)
    with torch.no_grad():  # a trained last layer, or a trained embedding, makes its block count
        student.model.layers[4].mlp.up_proj.weight.add_(0.01)
        student.model.embed_tokens.weight.add_(0.01)
    family = Family(teacher, student, layout, tokenizer=None)
    assert family.inert_blocks == set() and family.identity({0, 2, 4}) == {0, 2, 4}

    family = Family(teacher, build_student(teacher, layout).eval(), layout, tokenizer=None)
    sequences = torch.randint(0, VOCAB, (3, 12))
    calls = []
    def counted(model):
        calls.append(model)
        return perplexity(model, sequences, 2, "no")
    models = list(run_models(family, ["first_to_last", "last_to_first"], family.undistilled()))
    rows = list(measured_once(models, counted))
    assert len(rows) == len(models) and len(calls) == len({key for key, _, _ in models}) < len(models)
    for model, labels, result in rows:  # every label gets what measuring its own model gives
        assert result == perplexity(model, sequences, 2, "no"), labels["model"]
