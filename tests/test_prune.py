import pytest
import torch

from boomerang.core.arch import ADAPTERS, adapter_for
from boomerang.core.prune import Layout, build_student, layout_from_rule, load_student, save_student
from tests.conftest import ARCH_CONFIGS, tiny_model


@pytest.mark.parametrize("name, n, rule, expected", [
    ("Qwen3-4B/8B", 36, (1, 2, 2), [*range(0, 36, 2), 35]),
    ("Pythia-2.8B/6.9B", 32, (1, 2, 2), [*range(0, 32, 2), 31]),
    ("Llama-3.2-3B", 28, (2, 2, 1), [0, *range(1, 28, 2)]),
    ("SmolLM2-135M", 30, (1, 2, 2), [*range(0, 30, 2), 29]),
])
def test_paper_layouts(name, n, rule, expected):
    layout = layout_from_rule(n, *rule)
    assert list(layout.kept) == expected
    assert len(layout.kept) == {"Qwen3-4B/8B": 19, "Pythia-2.8B/6.9B": 17, "Llama-3.2-3B": 15, "SmolLM2-135M": 16}[name]
    assert sorted(layout.kept + tuple(layout.pruned)) == list(range(n))
    # blocks tile the teacher; each student output aligns with the output of its block's last layer
    assert [j for block in layout.blocks for j in block] == list(range(n))
    assert layout.alignment[0] == 0 and layout.alignment[-1] == n
    for i, block in enumerate(layout.blocks):
        assert layout.alignment[i + 1] == block[-1] + 1


# The authors' student sizes with their default keep_first 1, keep_last 2, counted by hand from their rule:
# stride points every `step` layers from layer `step` up to N - 2, each cutting the `step - 1` layers before
# it, every layer after the last point kept.
AUTHORS_STUDENT_LAYERS = {
    (28, 2): 15, (28, 3): 12, (28, 4): 10, (28, 5): 8,
    (32, 2): 17, (32, 3): 12, (32, 4): 11, (32, 5): 8,
    (36, 2): 19, (36, 3): 14, (36, 4): 12, (36, 5): 12,
}


@pytest.mark.parametrize("n, step", sorted(AUTHORS_STUDENT_LAYERS))
def test_remainder_layouts_match_the_authors(n, step):
    layout = layout_from_rule(n, 1, step, 2)
    assert layout.num_blocks == AUTHORS_STUDENT_LAYERS[n, step]
    assert all(1 <= len(b) <= step for b in layout.blocks)


def test_remainder_layers_stay_one_layer_blocks():
    """Qwen3-4B every 4th: the authors keep 0, 4, ..., 32 and then 33, 34, 35 one-to-one (12 layers)."""
    layout = layout_from_rule(36, 1, 4, 2)
    assert list(layout.kept) == [0, 4, 8, 12, 16, 20, 24, 28, 32, 33, 34, 35]
    assert [len(b) for b in layout.blocks] == [4] * 8 + [1] * 4


def test_invalid_layouts_are_rejected():
    with pytest.raises(ValueError):
        Layout((1, 2), 4)  # must start at layer 0
    with pytest.raises(ValueError):
        Layout((0, 3, 2), 4)
    with pytest.raises(ValueError):
        layout_from_rule(4, keep_first=3, step=2, keep_last=2)


def test_unsupported_architecture_names_the_supported_ones():
    class Config:
        model_type = "mamba"
    with pytest.raises(NotImplementedError, match="llama"):
        adapter_for(Config())


@pytest.mark.parametrize("arch", sorted(ARCH_CONFIGS))
def test_student_copies_kept_teacher_layers(arch):
    assert set(ADAPTERS) == set(ARCH_CONFIGS)
    teacher = tiny_model(arch)
    layout = layout_from_rule(6, 1, 2, 2)
    student = build_student(teacher, layout)
    t_layers, s_layers = teacher.get_submodule(ADAPTERS[arch].layers), student.get_submodule(ADAPTERS[arch].layers)
    for i, j in enumerate(layout.kept):
        for (name, a), (_, b) in zip(s_layers[i].state_dict().items(), t_layers[j].state_dict().items()):
            assert torch.equal(a, b), name
            assert a.data_ptr() != b.data_ptr()  # a copy, so training never touches the teacher


def test_random_init_has_same_shape_and_new_weights():
    teacher = tiny_model("llama")
    layout = layout_from_rule(6, 1, 2, 2)
    a, b = build_student(teacher, layout), build_student(teacher, layout, init="random", seed=1)
    shapes = {n: p.shape for n, p in a.named_parameters()}
    assert shapes == {n: p.shape for n, p in b.named_parameters()}
    assert not torch.equal(a.model.layers[1].mlp.up_proj.weight, b.model.layers[1].mlp.up_proj.weight)


def test_released_format_round_trip(tmp_path):
    teacher = tiny_model("qwen3")
    layout = layout_from_rule(6, 2, 2, 1)
    save_student(build_student(teacher, layout), layout, tmp_path / "s")
    meta = (tmp_path / "s" / "student_config.json").read_text()
    assert '"copied_teacher_layers"' in meta and '"pruned_teacher_layers"' in meta
    student, loaded = load_student(tmp_path / "s")
    assert loaded == layout
    assert student.config.num_hidden_layers == layout.num_blocks
