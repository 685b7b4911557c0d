"""Offline lm-eval tasks built from the held-out documents: no hub, no network.

Three tasks in the style of lm-eval's own, registered through its `include_path` as local YAML + JSONL:

- `boomerang_rolling`: rolling log-likelihood of whole passages (word / byte perplexity, bits per byte),
  like `wikitext`;
- `boomerang_lastword`: predict the last word of a paragraph (accuracy and perplexity), like LAMBADA;
- `boomerang_cloze`: pick a paragraph's true closing words among four (acc, acc_norm), like HellaSwag,
  the three distractors being the closing words of other paragraphs of the same document.

The files are a pure function of the held-out text, the item counts and the seed. To use them with the
lm-eval command line:

    python -m boomerang.measure.tasks --config configs/smollm2-cpu.yaml      # prints the task directory
    lm_eval --model hf --model_args pretrained=... --include_path <that directory> --tasks boomerang_offline
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from pathlib import Path

import yaml

from ..config import OfflineTasksConfig, load_config
from ..io import atomic_path, cache_dir
from ..sources.text import heldout_texts

TASK_NAMES = ("boomerang_rolling", "boomerang_lastword", "boomerang_cloze")
LAST_WORD = re.compile(r"^(.*\S)\s+([A-Za-z]{3,})[.!?;:,]?[\"'\u201d\u2019)]*$", re.S)


def paragraphs(text: str, min_words: int = 12) -> list[str]:
    """Blank-line separated paragraphs with whitespace collapsed; headings, stage directions and
    speaker names (too short) are left out."""
    out = []
    for chunk in re.split(r"\n\s*\n", text):
        para = " ".join(chunk.split())
        if len(para.split()) >= min_words and not para.startswith("["):
            out.append(para)
    return out


def _tail_words(text: str, n: int) -> str:
    words = text.split(" ")
    return " ".join(words[-n:])


def rolling_docs(paras: list[str], sizes: OfflineTasksConfig) -> list[dict]:
    """Consecutive paragraphs joined into passages of about `rolling_words` words, evenly spaced."""
    passages, current = [], []
    for para in paras:
        current.append(para)
        if sum(len(p.split()) for p in current) >= sizes.rolling_words:
            passages.append("\n\n".join(current))
            current = []
    return [{"text": p} for p in _evenly(passages, sizes.rolling_docs)]


def lastword_items(paras: list[str], sizes: OfflineTasksConfig, rng: random.Random) -> list[dict]:
    items = []
    for para in paras:
        match = LAST_WORD.match(para)
        if match and len(para.split()) >= 25:
            items.append({"context": _tail_words(match.group(1), sizes.max_context_words),
                          "target": match.group(2)})
    return _sample(items, sizes.lastword_items, rng)


def cloze_items(docs: list[list[str]], sizes: OfflineTasksConfig, rng: random.Random) -> list[dict]:
    """Context = a paragraph but its last `cloze_ending_words` words; the true ending = those words.
    Distractors are the closing words of other paragraphs of the same document (same style and names)
    at least three paragraphs away, so every ending has the same length and reads as a sentence's end."""
    n = sizes.cloze_ending_words
    candidates = []
    for d, paras in enumerate(docs):
        for i, para in enumerate(paras):
            words = para.split(" ")
            if len(words) >= n + 15:
                context = " ".join(words[:-n][-sizes.max_context_words:])
                candidates.append((d, i, context, " ".join(words[-n:])))
    items = []
    for d, i, context, ending in _sample(candidates, sizes.cloze_items, rng):
        others = sorted({e for dj, j, _, e in candidates if dj == d and abs(j - i) > 2 and e != ending})
        endings = [ending] + rng.sample(others, 3)
        rng.shuffle(endings)
        items.append({"context": context, "endings": endings, "label": endings.index(ending)})
    return items


def _evenly(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)] if n > 1 else items[:1]


def _sample(items: list, n: int, rng: random.Random) -> list:
    """`n` items chosen at random but kept in text order (a sample's order does not depend on n)."""
    if len(items) < n:
        raise ValueError(f"held-out text yields {len(items)} candidate items, {n} requested; "
                         "lower the count or hold out more documents")
    return [items[i] for i in sorted(rng.sample(range(len(items)), n))]


def task_specs(data_files: dict[str, Path]) -> dict[str, dict]:
    """The lm-eval YAML of each task, pointing at its local JSONL file."""
    def local(name: str) -> dict:
        return {"task": name, "tag": ["boomerang_offline"], "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(data_files[name])}}, "test_split": "test",
                "metadata": {"version": 1.0}}

    return {
        "boomerang_rolling": {**local("boomerang_rolling"), "output_type": "loglikelihood_rolling",
                              "doc_to_text": "", "doc_to_target": "{{text}}",
                              "metric_list": [
                                  {"metric": "word_perplexity", "aggregation": "weighted_perplexity",
                                   "higher_is_better": False},
                                  {"metric": "byte_perplexity", "aggregation": "weighted_perplexity",
                                   "higher_is_better": False},
                                  {"metric": "bits_per_byte", "aggregation": "bits_per_byte",
                                   "higher_is_better": False}]},
        "boomerang_lastword": {**local("boomerang_lastword"), "output_type": "loglikelihood",
                               "doc_to_text": "{{context}}", "doc_to_target": "{{' ' + target}}",
                               "metric_list": [
                                   {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
                                   {"metric": "acc", "aggregation": "mean", "higher_is_better": True}]},
        "boomerang_cloze": {**local("boomerang_cloze"), "output_type": "multiple_choice",
                            "doc_to_text": "{{context}}", "doc_to_choice": "endings", "doc_to_target": "label",
                            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                            for m in ("acc", "acc_norm")]},
    }


def build_tasks(texts: list[str], out_dir: str | Path, sizes: OfflineTasksConfig | None = None,
                seed: int = 0) -> Path:
    """Write the three tasks' JSONL and YAML files into a directory named by their content; returns it.

    An existing directory with the same key is reused, so every model of a run sees the same items."""
    sizes = sizes or OfflineTasksConfig()
    key = hashlib.sha256(json.dumps([texts, sizes.model_dump(), seed]).encode()).hexdigest()[:16]
    root = Path(out_dir) / key
    if (root / "boomerang_cloze.yaml").exists():
        return root
    docs = [paragraphs(text) for text in texts]
    paras = [p for doc in docs for p in doc]
    rng = random.Random(seed)
    items = {"boomerang_rolling": rolling_docs(paras, sizes),
             "boomerang_lastword": lastword_items(paras, sizes, rng),
             "boomerang_cloze": cloze_items(docs, sizes, rng)}
    with atomic_path(root) as tmp:
        tmp.mkdir(parents=True)
        for name, rows in items.items():
            (tmp / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        for name, spec in task_specs({n: root / f"{n}.jsonl" for n in TASK_NAMES}).items():
            (tmp / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the offline lm-eval tasks of a preset's held-out text.")
    parser.add_argument("--config", default="configs/smollm2-cpu.yaml")
    parser.add_argument("--out", default=None, help="parent directory (default: the cache's lm_eval_tasks/)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    print(build_tasks(heldout_texts(cfg.data), args.out or cache_dir() / "lm_eval_tasks", cfg.lm_eval.offline, cfg.seed))


if __name__ == "__main__":
    main()
