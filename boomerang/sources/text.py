"""Text for distillation and held-out evaluation.

Offline default (`public_domain`, see `public_domain`): Austen and Shakespeare, split into train and
held-out *by document*. Hub presets stream a dataset (The Pile, deduplicated) with `datasets`.

Documents are packed into fixed-length sequences with an EOS between them, so every position is a real token
(the authors instead truncate or pad each document to 2048 tokens). The loss code still honours an
attention mask for padded inputs.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from datasets import load_dataset
from datasets.distributed import split_dataset_by_node

from ..config import ConfigError, DataConfig
from ..io import atomic_path, cache_dir, manifest_problem, write_manifest
from ..progress import progress
from .public_domain import public_domain_documents


def document_separator(tokenizer) -> int:
    """The token closing each document: EOS, or [SEP] for an encoder such as BERT that has none."""
    token = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if token is None:
        raise ValueError(f"{type(tokenizer).__name__} has neither an EOS nor a SEP token to separate documents")
    return token


def tokenize_documents(texts: list[str], tokenizer) -> list[int]:
    """Documents as one token stream with a separator (EOS) after each."""
    eos = document_separator(tokenizer)
    ids: list[int] = []
    for text in progress(texts, desc="tokenising", leave=False):
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids.append(eos)
    return ids


def _tokenizer_tag(tokenizer) -> str:
    return f"{type(tokenizer).__name__}-{len(tokenizer)}-{document_separator(tokenizer)}"


def text_dir_documents(path: str | Path) -> dict[str, str]:
    """Every `*.txt` under `path`, named by its path without the suffix; undecodable files are named."""
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"data.path {root} is not a directory")
    docs = {}
    for p in sorted(root.rglob("*.txt")):
        try:
            docs[str(p.relative_to(root).with_suffix(""))] = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{p} is not UTF-8 text ({err.reason} at byte {err.start}); convert it, e.g. "
                              f"`iconv -f latin1 -t utf-8`, or move it out of data.path") from None
    if not docs:
        raise ConfigError(f"data.path {root} holds no .txt files")
    return docs


def documents(cfg: DataConfig) -> dict[str, str]:
    if cfg.source == "public_domain":
        return public_domain_documents()
    if cfg.source == "text_dir":
        return text_dir_documents(cfg.path)
    raise ValueError(f"data.source {cfg.source!r} has no local documents")


def split_corpus(cfg: DataConfig, tokenizer) -> dict[str, np.ndarray]:
    """Train and held-out token streams of a local corpus, split by document and cached on disk."""
    docs = documents(cfg)
    missing = set(cfg.heldout_documents) - set(docs)
    if missing:
        raise ConfigError(f"data.heldout_documents must name documents of the corpus; unknown: "
                          f"{sorted(missing)}; available: {sorted(docs)}")
    content = hashlib.sha256()
    for name in sorted(docs):
        content.update(f"{name in cfg.heldout_documents}:{name}:".encode() + docs[name].encode())
    key = f"{_tokenizer_tag(tokenizer)}-{content.hexdigest()[:16]}"
    root = cache_dir() / "tokens" / key
    if manifest_problem(root) is not None:
        train = [t for n, t in docs.items() if n not in cfg.heldout_documents]
        split = {"train": tokenize_documents(train, tokenizer),
                 "heldout": tokenize_documents([docs[n] for n in cfg.heldout_documents], tokenizer)}
        with atomic_path(root) as out:
            out.mkdir()
            for name, ids in split.items():
                np.save(out / f"{name}.npy", np.asarray(ids, dtype=np.int32))
            write_manifest(out)
    return {name: np.load(root / f"{name}.npy") for name in ("train", "heldout")}


def pack(stream: np.ndarray, seq_len: int) -> torch.Tensor:
    """Cut a token stream into `(num_sequences, seq_len)` sequences, dropping the ragged tail."""
    n = stream.size // seq_len
    return torch.from_numpy(stream[: n * seq_len].astype(np.int64)).view(n, seq_len)


# --- training batches ------------------------------------------------------------------------------

class LocalBatches:
    """Micro-batches of a local corpus: each epoch a seeded permutation of its sequences, the `world_size`
    processes taking disjoint slices. Its state is the number of micro-batches taken, so a resumed run
    continues with exactly the data an uninterrupted one would have seen."""

    def __init__(self, cfg: DataConfig, tokenizer, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 state: dict | None = None):
        self.sequences = pack(split_corpus(cfg, tokenizer)["train"], cfg.seq_len)
        self.per_epoch = len(self.sequences) // (batch_size * world_size)
        if self.per_epoch == 0:
            raise ConfigError(f"the training text has {len(self.sequences)} sequences of {cfg.seq_len} tokens, "
                              f"fewer than one global batch of {batch_size * world_size}")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.taken = (state or {}).get("batches", 0)

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        epoch, i = divmod(self.taken, self.per_epoch)
        order = torch.randperm(len(self.sequences), generator=torch.Generator().manual_seed(self.seed + epoch))
        offset = (i * self.world_size + self.rank) * self.batch_size
        self.taken += 1
        return self.sequences[order[offset: offset + self.batch_size]]

    def state(self) -> dict:
        return {"batches": self.taken}


def hub_train_documents(cfg: DataConfig, seed: int, rank: int = 0, world_size: int = 1) -> Iterator[str]:
    """This process's share of the streamed training text: `skip_documents` skipped, shuffled through a
    seeded buffer of `shuffle_buffer` documents, then split between processes (each reads its own shards
    when their number divides evenly, else every `world_size`-th document)."""
    stream = load_dataset(cfg.dataset, cfg.dataset_config, split="train", streaming=True).skip(cfg.skip_documents)
    if cfg.shuffle_buffer:
        stream = stream.shuffle(seed=seed, buffer_size=cfg.shuffle_buffer)
    if world_size > 1:
        stream = split_dataset_by_node(stream, rank=rank, world_size=world_size)
    return (row[cfg.text_field] for row in stream)


class HubBatches:
    """Micro-batches packed from this process's share of a streamed dataset.

    Its state is the number of documents taken and the tokens carried over into the next batch. A resumed
    run replays the documents it had taken without tokenising them (reading is cheap, tokenising is the
    hours), so it continues with exactly the data an uninterrupted run would have seen."""

    def __init__(self, cfg: DataConfig, tokenizer, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 state: dict | None = None):
        self.documents = hub_train_documents(cfg, seed, rank, world_size)
        self.tokenizer, self.eos = tokenizer, document_separator(tokenizer)
        self.shape = (batch_size, cfg.seq_len)
        self.taken, self.carry = 0, []
        if state:
            for _ in progress(range(state["documents"]), desc="replaying the stream", leave=False):
                self._next_document()
            self.carry = list(state["carry"])

    def _next_document(self) -> str:
        try:
            text = next(self.documents)
        except StopIteration:
            raise ConfigError(f"the training stream ended after {self.taken} documents of this process; "
                              "lower distill.steps or data.skip_documents, or stream a larger dataset") from None
        self.taken += 1
        return text

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        need = self.shape[0] * self.shape[1]
        while len(self.carry) < need:
            self.carry += self.tokenizer(self._next_document(), add_special_tokens=False)["input_ids"] + [self.eos]
        batch, self.carry = self.carry[:need], self.carry[need:]
        return torch.tensor(batch).view(self.shape)

    def state(self) -> dict:
        return {"documents": self.taken, "carry": self.carry}


def train_batches(cfg: DataConfig, tokenizer, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                  state: dict | None = None) -> LocalBatches | HubBatches:
    """Micro-batches of shape `(batch_size, seq_len)`, deterministic in `seed`, for one of `world_size`
    processes, resumed from a batches' `state()`."""
    kind = HubBatches if cfg.source == "hub" else LocalBatches
    return kind(cfg, tokenizer, batch_size, seed, rank, world_size, state)


# --- held-out text ---------------------------------------------------------------------------------

def _hub_heldout_documents(cfg: DataConfig) -> Iterator[str]:
    """`heldout_dataset`'s split, or the head of the training stream (the documents training skips)."""
    if cfg.heldout_dataset:
        rows = load_dataset(cfg.heldout_dataset, cfg.heldout_config, split=cfg.heldout_split, streaming=True)
    else:
        rows = load_dataset(cfg.dataset, cfg.dataset_config, split="train",
                            streaming=True).take(cfg.stream_heldout_documents)
    return (row[cfg.text_field] for row in rows if row[cfg.text_field].strip())


def heldout_texts(cfg: DataConfig, max_chars: int = 2_000_000) -> list[str]:
    """The held-out documents as text (for a hub source, its first documents up to `max_chars`)."""
    if cfg.source != "hub":
        docs = documents(cfg)
        return [docs[name] for name in cfg.heldout_documents]
    texts, total = [], 0
    for text in _hub_heldout_documents(cfg):
        texts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return texts


def heldout_sequences(cfg: DataConfig, tokenizer, num_tokens: int) -> torch.Tensor:
    """Evaluation sequences spread evenly over the held-out text (the same sequences for every model)."""
    if cfg.source != "hub":
        sequences = pack(split_corpus(cfg, tokenizer)["heldout"], cfg.seq_len)
    else:
        ids, wanted = [], max(1, num_tokens // cfg.seq_len) * cfg.seq_len
        eos = document_separator(tokenizer)
        for text in _hub_heldout_documents(cfg):
            ids += tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
            if len(ids) >= wanted:
                break
        sequences = pack(np.asarray(ids, dtype=np.int64), cfg.seq_len)
    if len(sequences) == 0:
        raise ConfigError(f"the held-out text has fewer than data.seq_len = {cfg.seq_len} tokens; hold out longer "
                          "documents or lower data.seq_len")
    wanted = max(1, min(len(sequences), num_tokens // cfg.seq_len))
    return sequences[torch.linspace(0, len(sequences) - 1, wanted).round().long()]
