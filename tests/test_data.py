import struct
import zlib

import numpy as np
import pytest
import torch

from boomerang.config import DataConfig
from boomerang.data import _read_r_strings, heldout_blocks, pack, split_corpus, train_batches


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
    assert _read_r_strings(blob) == ["EMMA", "", "", "Émma Woodhouse"]


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
    assert all(torch.equal(x, y) for x, y in zip(a[3:], take(train_batches(cfg, tokenizer, 4, seed=0, start=3), 3)))
    assert not torch.equal(a[0], next(train_batches(cfg, tokenizer, 4, seed=1)))
    r0 = next(train_batches(cfg, tokenizer, 4, seed=0, rank=0, world_size=2))
    r1 = next(train_batches(cfg, tokenizer, 4, seed=0, rank=1, world_size=2))
    assert not set(map(tuple, r0.tolist())) & set(map(tuple, r1.tolist()))


def test_heldout_blocks_are_fixed(corpus_dir, tokenizer):
    cfg = config(corpus_dir)
    a, b = heldout_blocks(cfg, tokenizer, 64), heldout_blocks(cfg, tokenizer, 64)
    assert a.shape == (4, 16) and torch.equal(a, b)
