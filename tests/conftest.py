"""Tiny, fully offline fixtures: a generated corpus, a BPE tokenizer trained on it, random tiny models."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (AutoModelForCausalLM, BertConfig, GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, LlamaConfig,
                          MistralConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen3Config)

# The suite compares models it builds on the CPU; a GPU box opts in with BOOMERANG_DEVICE=cuda for the
# tests that load their models through the package (distillation, the notebooks).
os.environ.setdefault("BOOMERANG_DEVICE", "cpu")
# `make test` runs the suite in one worker per core (pytest-xdist): most of its time is single-threaded (the
# notebooks' kernels importing torch and transformers). Each worker, and the kernels it starts, computes on its
# share of the cores, so that workers do not oversubscribe them.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

VOCAB = 101
SMALL = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4)

ARCH_CONFIGS = {
    "llama": lambda n: LlamaConfig(vocab_size=VOCAB, num_hidden_layers=n, num_key_value_heads=2,
                                   tie_word_embeddings=True, **SMALL),
    "qwen2": lambda n: Qwen2Config(vocab_size=VOCAB, num_hidden_layers=n, num_key_value_heads=2,
                                   tie_word_embeddings=True, **SMALL),
    "qwen3": lambda n: Qwen3Config(vocab_size=VOCAB, num_hidden_layers=n, num_key_value_heads=2, head_dim=8,
                                   tie_word_embeddings=False, **SMALL),
    "mistral": lambda n: MistralConfig(vocab_size=VOCAB, num_hidden_layers=n, num_key_value_heads=2, **SMALL),
    "gpt_neox": lambda n: GPTNeoXConfig(vocab_size=VOCAB, num_hidden_layers=n, tie_word_embeddings=False, **SMALL),
    # BERT as a causal LM (BertLMHeadModel) exercises the masked-LM adapter of the DistilBERT -> BERT pair
    "bert": lambda n: BertConfig(vocab_size=VOCAB, num_hidden_layers=n, is_decoder=True, **SMALL),
    "gpt2": lambda n: GPT2Config(vocab_size=VOCAB, n_layer=n, n_embd=32, n_head=4, bos_token_id=0, eos_token_id=0),
}


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    os.environ["BOOMERANG_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def tiny_model(arch: str, num_layers: int = 6, seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(ARCH_CONFIGS[arch](num_layers)).eval()


WORDS = ("the a of and to in was her she he it that with for had not be his as you on but at my have "
         "all so which by mr said were this from very no could would been them they when what him "
         "more must will than one much such more lady house time know think miss sister day").split()


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    for d in range(6):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))).capitalize() + "."
                     for _ in range(400)]
        paragraphs = [" ".join(sentences[i:i + 5]) for i in range(0, len(sentences), 5)]
        (root / f"doc{d}.txt").write_text("\n\n".join(paragraphs))
    return root


@pytest.fixture(scope="session")
def tokenizer(corpus_dir):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - 2, special_tokens=["<eos>", "<unk>"])
    tok.train([str(p) for p in sorted(corpus_dir.glob("*.txt"))], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory, tokenizer) -> Path:
    path = tmp_path_factory.mktemp("teacher")
    model = tiny_model("llama", num_layers=6)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def released_gpt2_pair(tmp_path_factory, tokenizer) -> dict[str, str]:
    """A 12-layer GPT-2 and a 6-layer one on disk, standing in for GPT-2 and DistilGPT2 (offshelf.pairs)."""
    root = tmp_path_factory.mktemp("released")
    config = dict(vocab_size=len(tokenizer), n_embd=32, n_head=4)
    torch.manual_seed(0)
    for name, layers in (("gpt2", 12), ("distilgpt2", 6)):
        GPT2LMHeadModel(GPT2Config(n_layer=layers, **config)).save_pretrained(root / name)
    tokenizer.save_pretrained(root / "distilgpt2")
    return {"teacher": str(root / "gpt2"), "student": str(root / "distilgpt2")}


@pytest.fixture
def run_config(tmp_path, teacher_dir, corpus_dir) -> Path:
    """A complete preset for the tiny teacher; outputs go under tmp_path."""
    preset = {
        "name": "tiny",
        "seed": 0,
        "output_root": str(tmp_path),
        "teacher": {"source": "hub", "name": str(teacher_dir)},
        "data": {"source": "text_dir", "path": str(corpus_dir), "heldout_documents": ["doc5"], "seq_len": 32},
        "prune": {"keep_first": 1, "step": 2, "keep_last": 2},
        "distill": {"steps": 4, "batch_size": 2, "lr": 1e-3, "mixed_precision": "no", "checkpoint_every": 2,
                    "cos_weight": 2.0, "kl_weight": 0.1},
        "interpolate": {"orders": ["last_to_first", "first_to_last"], "export_k": [2]},
        "evaluate": {"eval_tokens": 256, "batch_size": 4, "mixed_precision": "no"},
        "lm_eval": {"mixed_precision": "no", "size_stride": 2, "naive_stride": 3,
                    "offline": {"rolling_docs": 3, "rolling_words": 60, "lastword_items": 6, "cloze_items": 5}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(preset))
    return path
