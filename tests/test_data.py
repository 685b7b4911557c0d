import struct
import zlib

import numpy as np
import pytest
import torch

from boomerang.config import DataConfig
from boomerang.sources import text
from boomerang.sources.archives import read_r_strings
from boomerang.sources.text import heldout_sequences, pack, split_corpus, text_dir_documents, train_batches


def r_character_vector(strings):
    """Serialise like R's saveRDS(version = 3) for a plain character vector (NA as None)."""
    out = b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8"
    out += struct.pack(">ii", 16, len(strings))
    for s in strings:
        if s is None:
            out += struct.pack(">ii", 9, -1)
        else:
            raw = s.encode()
            out += struct.pack(">ii", 0x00040009, len(raw)) + raw
    return out


def test_r_strings_decode():
    blob = zlib.decompress(zlib.compress(r_character_vector(["EMMA", "", None, "Émma Woodhouse"])))
    assert read_r_strings(blob) == ["EMMA", "", "", "Émma Woodhouse"]


def test_pack_drops_ragged_tail():
    assert pack(np.arange(10), 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def config(corpus_dir, **kw):
    return DataConfig(source="text_dir", path=str(corpus_dir), heldout_documents=["doc5"], seq_len=16, **kw)


def test_split_is_by_document(corpus_dir, tokenizer):
    split = split_corpus(config(corpus_dir), tokenizer)
    heldout_text = (corpus_dir / "doc5.txt").read_text()
    assert split["heldout"].size == len(tokenizer(heldout_text)["input_ids"]) + 1
    assert split["train"].size > 4 * split["heldout"].size
    with pytest.raises(ValueError, match="doc9"):
        split_corpus(DataConfig(source="text_dir", path=str(corpus_dir), heldout_documents=["doc9"]), tokenizer)


def test_batches_deterministic_resumable_and_disjoint(corpus_dir, tokenizer):
    cfg = config(corpus_dir)
    take = lambda it, n: [next(it) for _ in range(n)]
    a = take(train_batches(cfg, tokenizer, 4, seed=0), 6)
    assert all(torch.equal(x, y) for x, y in zip(a, take(train_batches(cfg, tokenizer, 4, seed=0), 6)))
    resumed = train_batches(cfg, tokenizer, 4, seed=0, state={"batches": 3})
    assert all(torch.equal(x, y) for x, y in zip(a[3:], take(resumed, 3)))
    assert not torch.equal(a[0], next(train_batches(cfg, tokenizer, 4, seed=1)))
    r0 = next(train_batches(cfg, tokenizer, 4, seed=0, rank=0, world_size=2))
    r1 = next(train_batches(cfg, tokenizer, 4, seed=0, rank=1, world_size=2))
    assert not set(map(tuple, r0.tolist())) & set(map(tuple, r1.tolist()))


def test_heldout_sequences_are_fixed(corpus_dir, tokenizer):
    cfg = config(corpus_dir)
    a, b = heldout_sequences(cfg, tokenizer, 64), heldout_sequences(cfg, tokenizer, 64)
    assert a.shape == (4, 16) and torch.equal(a, b)


def test_a_hub_stream_resumes_without_tokenising_what_it_had_taken(monkeypatch, tokenizer):
    """Resuming replays the documents already taken without tokenising them, then continues exactly where an
    uninterrupted stream would (the rehearsal reads a real streamed dataset, shuffled and split by process)."""
    docs = [" ".join(["the lady said"] * (5 + i % 7)) + f" {i}" for i in range(200)]
    monkeypatch.setattr(text, "hub_train_documents", lambda cfg, seed, rank, world: iter(docs))
    cfg = DataConfig(source="hub", seq_len=8, heldout_dataset="unused")
    straight = train_batches(cfg, tokenizer, 2, seed=0)
    [next(straight) for _ in range(5)]
    state = straight.state()
    rest = [next(straight) for _ in range(5)]

    class Counting:  # the tokenizer, counting the documents it tokenises
        eos_token_id, calls = tokenizer.eos_token_id, []

        def __call__(self, text, **kwargs):
            self.calls.append(text)
            return tokenizer(text, **kwargs)

    counting = Counting()
    resumed = train_batches(cfg, counting, 2, seed=0, state=state)
    assert counting.calls == []
    assert all(torch.equal(a, b) for a, b in zip(rest, [next(resumed) for _ in range(5)]))
    assert 0 < len(counting.calls) < len(docs) - state["documents"]  # only what the five batches needed


def test_undecodable_text_names_its_file(tmp_path):
    (tmp_path / "good.txt").write_text("fine")
    (tmp_path / "bad.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="bad.txt is not UTF-8"):
        text_dir_documents(tmp_path)


def test_a_token_cache_cut_short_is_built_again_not_read(corpus_dir, tokenizer):
    cfg = DataConfig(source="text_dir", path=str(corpus_dir), heldout_documents=["doc5"])
    first = split_corpus(cfg, tokenizer)
    (cached,) = [p for p in (text.cache_dir() / "tokens").glob("*/heldout.npy")
                 if np.array_equal(np.load(p), first["heldout"])]
    cached.write_bytes(cached.read_bytes()[:200])  # a write interrupted by hand, or a disk that filled up
    again = split_corpus(cfg, tokenizer)
    assert all(np.array_equal(first[k], again[k]) for k in first)
