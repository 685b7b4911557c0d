import pytest
import torch

from boomerang.core.arch import decoder_layers
from boomerang.measure.baselines import block_influence, laco, merge_into_first, shortgpt
from boomerang.measure.flops import distillation_flops, flops_table, forward_flops_per_token
from tests.conftest import VOCAB, tiny_model


def make_identity(model, i):
    """Zero the layer's writes to the residual stream, so its output equals its input."""
    with torch.no_grad():
        decoder_layers(model)[i].self_attn.o_proj.weight.zero_()
        decoder_layers(model)[i].mlp.down_proj.weight.zero_()


def test_identity_layer_has_zero_block_influence_and_goes_first():
    model = tiny_model("llama", num_layers=6)
    make_identity(model, 3)
    sequences = torch.randint(0, VOCAB, (4, 12))
    bi = block_influence(model, sequences)
    assert bi[3] == pytest.approx(0, abs=1e-6)
    assert min(b for i, b in enumerate(bi) if i != 3) > 1e-3
    pruned = shortgpt(model, bi, 5)
    # removing an identity layer changes nothing
    with torch.no_grad():
        assert torch.allclose(pruned(sequences).logits, model(sequences).logits, atol=1e-5)
    kept = [l.self_attn.o_proj.weight for l in decoder_layers(pruned)]
    assert all(w is not decoder_layers(model)[3].self_attn.o_proj.weight for w in kept)


def test_merging_a_layer_with_copies_of_itself_changes_nothing():
    model = tiny_model("llama", num_layers=4)
    layer = decoder_layers(model)[1]
    merged = merge_into_first([layer, layer, layer])
    for (name, a), (_, b) in zip(merged.named_parameters(), layer.named_parameters()):
        assert torch.equal(a, b), name


def test_merge_adds_parameter_differences():
    model = tiny_model("llama", num_layers=4)
    a, b, c = (decoder_layers(model)[i] for i in (0, 1, 2))
    merged = merge_into_first([a, b, c])
    w = lambda layer: layer.mlp.up_proj.weight
    assert torch.allclose(w(merged), w(a) + (w(b) - w(a)) + (w(c) - w(a)))


def test_laco_reaches_every_size_and_keeps_shapes():
    model = tiny_model("llama", num_layers=8)
    sequences = torch.randint(0, VOCAB, (2, 10))
    for target in (7, 5, 3):
        pruned = laco(model, target, sequences, merge_layers=3, lowest=1, interval=2, threshold=0.5)
        assert len(decoder_layers(pruned)) == target == pruned.config.num_hidden_layers
        assert pruned(sequences).logits.shape == (2, 10, VOCAB)
    # the layers below `lowest` are untouched
    assert torch.equal(decoder_layers(pruned)[0].mlp.up_proj.weight, decoder_layers(model)[0].mlp.up_proj.weight)


def test_forward_flops_hand_count():
    model = tiny_model("llama", num_layers=6)  # hidden 32, intermediate 64, 4 heads of 8, 2 KV heads
    layer = 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 64 + 2 * 32  # q, k+v, o, gate/up/down, two norms
    head = 32 * VOCAB
    assert forward_flops_per_token(model, 6, 16) == 2 * (6 * layer + head) + 2 * 6 * 16 * 32
    assert distillation_flops(model, 3, 6, 100, 16) == 100 * (
        3 * forward_flops_per_token(model, 3, 16) + forward_flops_per_token(model, 6, 16))


def test_flops_table_saving_factor():
    model = tiny_model("llama", num_layers=6)
    table = flops_table(model, [3, 4, 5], 6, 1000, 16).set_index("num_layers").flops
    each = [distillation_flops(model, n, 6, 1000, 16) for n in (3, 4, 5)]
    assert table["saving factor"] == pytest.approx(sum(each) / each[0])
    assert 3 < table["saving factor"] < 3 * each[-1] / each[0]  # bigger sizes cost more than the smallest
