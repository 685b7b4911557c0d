import pytest
import torch
from transformers import AutoModelForCausalLM

from boomerang.core.orders import FIXED_ORDERS
from boomerang.core.patch import (export, export_round_trip, interpolants, patch, patched_blocks,
                                  unique_tensor_bytes)
from boomerang.core.prune import build_student, layout_from_rule, load_student, save_student
from boomerang.family import Family
from tests.conftest import ARCH_CONFIGS, VOCAB, tiny_model


def trained_pair(arch):
    """A teacher and a student whose weights have moved away from the teacher's."""
    teacher = tiny_model(arch)
    layout = layout_from_rule(6, 1, 2, 2)
    student = build_student(teacher, layout).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return teacher, student, layout


@pytest.mark.parametrize("order", FIXED_ORDERS)
@pytest.mark.parametrize("arch", sorted(ARCH_CONFIGS))
def test_endpoints_reproduce_teacher_and_student_exactly(arch, order):
    teacher, student, layout = trained_pair(arch)
    x = torch.randint(0, VOCAB, (2, 9))
    m = layout.num_blocks
    with torch.no_grad():
        assert torch.equal(patch(teacher, student, layout, patched_blocks(m, m, order))(x).logits, teacher(x).logits)
        assert torch.equal(patch(teacher, student, layout, patched_blocks(m, 0, order))(x).logits, student(x).logits)
        middle = patch(teacher, student, layout, patched_blocks(m, 2, order))(x).logits
        assert not torch.allclose(middle, teacher(x).logits) and not torch.allclose(middle, student(x).logits)


def test_orders_and_sizes():
    layout = layout_from_rule(6, 1, 2, 2)  # kept 0, 2, 4, 5 -> blocks [0,1] [2,3] [4] [5]
    assert [s.num_layers for s in interpolants(layout, "last_to_first")] == [4, 4, 4, 5, 6]
    assert [s.num_layers for s in interpolants(layout, "first_to_last")] == [4, 5, 6, 6, 6]
    assert patched_blocks(4, 1, "first_to_last") == {0}
    with pytest.raises(ValueError):
        patched_blocks(4, 5, "last_to_first")
    with pytest.raises(ValueError):
        patched_blocks(4, 1, "middle_out")
    with pytest.raises(ValueError, match="calibration"):  # an order chosen on data is not fixed by the layout
        patched_blocks(4, 1, "klpatch")
    chosen = interpolants(layout, "klpatch", [2, 0, 3, 1])
    assert [s.blocks for s in chosen] == [(), (2,), (0, 2), (0, 2, 3), (0, 1, 2, 3)]
    assert [s.num_layers for s in chosen] == [4, 4, 5, 5, 6] and {s.authors_k for s in chosen} == {None}


@pytest.mark.parametrize("arch", ["llama", "gpt_neox", "gpt2"])
def test_sweep_shares_tensors(arch):
    teacher, student, layout = trained_pair(arch)
    family = Family(teacher, student, layout, None)
    models = [m for order in FIXED_ORDERS for _, m in family.sweep(order)]
    assert unique_tensor_bytes([teacher, student, *models]) == unique_tensor_bytes([teacher, student])


def test_a_family_gives_a_size_by_layers_or_parameter_budget():
    teacher, student, layout = trained_pair("llama")  # blocks [0,1] [2,3] [4] [5]: 4 to 6 layers
    family = Family(teacher, student, layout, None)
    spec, model = family.at_layers(5, "first_to_last")
    assert spec.blocks == (0,) and len(model.model.layers) == 5
    with pytest.raises(ValueError, match="sizes: \\[4, 5, 6\\]"):
        family.at_layers(7, "first_to_last")
    budget = family.counts(family.at_layers(5, "last_to_first")[1])["params"]
    spec, model = family.under_params(budget, "last_to_first")
    assert spec.num_layers == 5 and family.counts(model)["params"] <= budget
    assert unique_tensor_bytes([teacher, student, model]) == unique_tensor_bytes([teacher, student])
    with pytest.raises(ValueError, match="even the student"):
        family.under_params(10, "last_to_first")


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gpt2"])
def test_export_round_trip(arch, tmp_path):
    teacher, student, layout = trained_pair(arch)
    model = patch(teacher, student, layout, {2, 3})  # embedding from student, head from teacher
    export(model, tmp_path / "m")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    x = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        assert torch.equal(reloaded(x).logits, model(x).logits)
    assert export_round_trip(model, tmp_path / "again", None, x) == 0.0


@pytest.mark.parametrize("arch", ["llama", "gpt2"])  # architectures that tie (the tiny Qwen3 here does not)
def test_an_embedding_and_head_of_equal_values_are_exported_once(arch, tmp_path):
    """A student trained with its embedding frozen keeps the teacher's: an interpolated model taking its
    embedding from one and its head from the other is written tied, as the same function."""
    teacher, student, layout = trained_pair(arch)
    with torch.no_grad():
        student.get_input_embeddings().weight.copy_(teacher.get_input_embeddings().weight)
    model = patch(teacher, student, layout, {2, 3})  # embedding from student, head from teacher
    head = model.get_output_embeddings().weight
    assert head is not model.get_input_embeddings().weight and not model.config.tie_word_embeddings
    export(model, tmp_path / "m")
    assert model.get_output_embeddings().weight is head and not model.config.tie_word_embeddings  # left as it was
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert reloaded.get_output_embeddings().weight is reloaded.get_input_embeddings().weight
    x = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        assert torch.equal(reloaded(x).logits, model(x).logits)
    untied = patch(teacher, trained_pair(arch)[1], layout, {2, 3})
    export(untied, tmp_path / "untied")
    weights = lambda name: sum(f.stat().st_size for f in (tmp_path / name).glob("*.safetensors"))  # noqa: E731
    saved = weights("untied") - weights("m")
    assert 0 <= saved - head.numel() * head.element_size() < 512  # one matrix, and its entry in the header


def test_students_load_where_the_run_puts_its_models(tmp_path, monkeypatch):
    teacher, student, layout = trained_pair("llama")
    save_student(student, layout, tmp_path / "s")
    assert load_student(tmp_path / "s")[0].device.type == "cpu"  # conftest: BOOMERANG_DEVICE=cpu
    monkeypatch.setenv("BOOMERANG_DEVICE", "meta")  # a device every machine has
    assert {p.device.type for p in load_student(tmp_path / "s")[0].parameters()} == {"meta"}
    assert load_student(tmp_path / "s", device="cpu")[0].device.type == "cpu"


def test_released_student_patches_unchanged(tmp_path):
    teacher, student, layout = trained_pair("llama")
    save_student(student, layout, tmp_path / "released")
    loaded, loaded_layout = load_student(tmp_path / "released")
    x = torch.randint(0, VOCAB, (1, 7))
    with torch.no_grad():
        for k in range(layout.num_blocks + 1):
            blocks = patched_blocks(layout.num_blocks, k, "last_to_first")
            assert torch.equal(patch(teacher, loaded.eval(), loaded_layout, blocks)(x).logits,
                               patch(teacher, student, layout, blocks)(x).logits)
