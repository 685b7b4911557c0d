import math

import pytest
import torch
from transformers import (BertConfig, BertForMaskedLM, BertTokenizerFast, DistilBertConfig, DistilBertForMaskedLM,
                          GPT2Config, GPT2LMHeadModel)

from boomerang.config import DataConfig, OffshelfConfig
from boomerang.measure.perplexity import perplexity
from boomerang.sources.pairs import distilbert_as_bert
from boomerang.measure.offshelf import (DISTIL_LAYERS, pair_family, pair_metrics, pair_sequences,
                                pseudo_perplexity)
from boomerang.core.orders import FIXED_ORDERS
from boomerang.core.patch import patch, patched_blocks
from boomerang.core.prune import Layout
from tests.conftest import WORDS

VOCAB, MASK = 50, 3


def tiny_bert(layers=12, vocab=VOCAB):
    torch.manual_seed(0)
    return BertForMaskedLM(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=layers,
                                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)).eval()


def tiny_distilbert(vocab=VOCAB):
    torch.manual_seed(1)
    return DistilBertForMaskedLM(DistilBertConfig(vocab_size=vocab, dim=32, n_layers=6, n_heads=4, hidden_dim=64,
                                                  max_position_embeddings=64)).eval()


def test_distilbert_rewritten_as_bert_computes_the_same_function():
    distil = tiny_distilbert()
    x = torch.randint(4, VOCAB, (2, 11))
    with torch.no_grad():
        assert torch.allclose(distilbert_as_bert(distil)(input_ids=x).logits, distil(input_ids=x).logits, atol=1e-5)


@pytest.mark.parametrize("order", FIXED_ORDERS)
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


HELDOUT = dict(source="text_dir", heldout_documents=["doc5"])
SCORED = OffshelfConfig(eval_tokens=64, seq_len=16, batch_size=16)


def bert_tokenizer():
    """An uncased WordPiece tokenizer holding every word of the test corpus."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + sorted(set(WORDS))
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)})


def rows_per_pair(num_blocks=6, orders=2):
    """teacher, student, naive k0, then per order every intermediate size interpolated and naive pruning at
    the sizes strictly between the endpoints: DistilBERT's layout ends in a one-layer block (layer 11), so
    in each order one patch keeps an endpoint's size and its naive model would be that endpoint again."""
    return 3 + orders * ((num_blocks - 1) + (num_blocks - 2))


def test_released_masked_pair_from_disk_scored_at_every_size(tmp_path, corpus_dir):
    words = bert_tokenizer()
    distil = tiny_distilbert(len(words))
    tiny_bert(vocab=len(words)).save_pretrained(tmp_path / "bert")
    distil.save_pretrained(tmp_path / "distilbert")
    words.save_pretrained(tmp_path / "distilbert")
    family, masked = pair_family(str(tmp_path / "bert"), str(tmp_path / "distilbert"), list(DISTIL_LAYERS))
    teacher, tokenizer = family.teacher, family.tokenizer
    assert masked and isinstance(family.student, BertForMaskedLM)

    sequences = pair_sequences(SCORED, DataConfig(path=str(corpus_dir), **HELDOUT), tokenizer, masked)
    assert sequences.shape == (4, 16)
    assert (sequences[:, 0] == tokenizer.cls_token_id).all() and (sequences[:, -1] == tokenizer.sep_token_id).all()

    table = pair_metrics("bert", family, masked, sequences, SCORED)
    assert len(table) == rows_per_pair() and set(table.metric) == {"pseudo_perplexity"}
    assert tokenizer.unk_token_id not in sequences  # every word of the text is scored
    frame = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    ends = table[table.order == "none"].set_index("method")
    assert ends.value["teacher"] == pseudo_perplexity(teacher, sequences, tokenizer.mask_token_id, frame,
                                                      16)["pseudo_perplexity"]
    assert ends.value["student"] == pytest.approx(pseudo_perplexity(distil, sequences, tokenizer.mask_token_id,
                                                                    frame)["pseudo_perplexity"], rel=1e-5)
    interp = table[table.method == "interpolated"]
    assert interp.params.between(ends.params["student"], ends.params["teacher"]).all()
    for _, one_order in interp.groupby("order"):
        assert one_order.sort_values("k").params.is_monotonic_increasing


def test_released_causal_pair_scored_by_perplexity(corpus_dir, released_gpt2_pair):
    family, masked = pair_family(released_gpt2_pair["teacher"], released_gpt2_pair["student"], list(DISTIL_LAYERS))
    assert not masked
    sequences = pair_sequences(SCORED, DataConfig(path=str(corpus_dir), **HELDOUT), family.tokenizer, masked)
    table = pair_metrics("gpt2", family, masked, sequences, SCORED)
    assert len(table) == rows_per_pair() and set(table.metric) == {"perplexity"}
    teacher_row = table[table.method == "teacher"].iloc[0]
    assert teacher_row.value == perplexity(family.teacher, sequences, 16, mixed_precision="no")["perplexity"]
