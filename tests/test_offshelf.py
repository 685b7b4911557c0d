import math

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM, GPT2Config, GPT2LMHeadModel

from boomerang.offshelf import DISTIL_LAYERS, distilbert_as_bert, pseudo_perplexity
from boomerang.patch import ORDERS, patch, patched_blocks
from boomerang.prune import Layout

VOCAB, MASK = 50, 3


def tiny_bert(layers=12):
    torch.manual_seed(0)
    return BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=layers,
                                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)).eval()


def tiny_distilbert():
    torch.manual_seed(1)
    return DistilBertForMaskedLM(DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=6, n_heads=4, hidden_dim=64,
                                                  max_position_embeddings=64)).eval()


def test_distilbert_rewritten_as_bert_computes_the_same_function():
    distil = tiny_distilbert()
    x = torch.randint(4, VOCAB, (2, 11))
    with torch.no_grad():
        assert torch.allclose(distilbert_as_bert(distil)(input_ids=x).logits, distil(input_ids=x).logits, atol=1e-5)


@pytest.mark.parametrize("order", ORDERS)
def test_distilbert_to_bert_patching_endpoints(order):
    teacher, student = tiny_bert(), distilbert_as_bert(tiny_distilbert())
    layout = Layout(DISTIL_LAYERS, 12)
    x = torch.randint(4, VOCAB, (2, 9))
    m = layout.num_blocks
    with torch.no_grad():
        assert torch.equal(patch(teacher, student, layout, patched_blocks(m, m, order))(input_ids=x).logits,
                           teacher(input_ids=x).logits)
        assert torch.equal(patch(teacher, student, layout, patched_blocks(m, 0, order))(input_ids=x).logits,
                           student(input_ids=x).logits)
        assert len(patch(teacher, student, layout, patched_blocks(m, 2, order)).bert.encoder.layer) > 6


def test_distilgpt2_to_gpt2_patching_endpoints():
    config = dict(vocab_size=VOCAB, n_embd=32, n_head=4)
    torch.manual_seed(0)
    teacher, student = GPT2LMHeadModel(GPT2Config(n_layer=12, **config)).eval(), GPT2LMHeadModel(GPT2Config(n_layer=6, **config)).eval()
    layout = Layout(DISTIL_LAYERS, 12)
    x = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        assert torch.equal(patch(teacher, student, layout, range(6))(input_ids=x).logits, teacher(input_ids=x).logits)
        assert torch.equal(patch(teacher, student, layout, [])(input_ids=x).logits, student(input_ids=x).logits)


def test_pseudo_perplexity_matches_a_plain_loop_and_a_uniform_model():
    model = tiny_bert(layers=2)
    ids = torch.randint(4, VOCAB, (2, 7))
    ids[:, 0] = 1  # a [CLS]-like token that is not scored
    got = pseudo_perplexity(model, ids, MASK, skip_ids={1}, batch_size=4)
    nll = []
    with torch.no_grad():
        for seq in ids:
            for i in range(1, len(seq)):
                masked = seq.clone()
                masked[i] = MASK
                nll.append(-torch.log_softmax(model(input_ids=masked[None]).logits[0, i], -1)[seq[i]].item())
    assert got["pseudo_perplexity"] == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-5)

    with torch.no_grad():
        model.cls.predictions.decoder.weight.zero_()
        model.cls.predictions.decoder.bias.zero_()
    assert pseudo_perplexity(model, ids, MASK, skip_ids={1})["pseudo_perplexity"] == pytest.approx(VOCAB)
