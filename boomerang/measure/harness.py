"""Score in-memory models with lm-evaluation-harness: the offline tasks here, the paper's suite on a GPU box.

Models are handed to lm-eval's `HFLM` as objects (no save/reload per size). `HFLM` calls
`model.tie_weights()`, which would copy the input embedding onto the LM head of a model that declares tied
embeddings; interpolated models whose embedding and head come from different sources therefore declare
them untied (see `arch.assemble`), and `tests/test_harness.py` checks the logits lm-eval sees.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from lm_eval.evaluator import evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

from ..config import LmEvalConfig, RunConfig
from ..device import compute_dtype
from ..family import Family
from ..io import cache_dir, write_json
from ..sources.text import heldout_texts
from .checks import Claim, claims_frame
from .models import METRIC_COLUMNS, measured_once, run_models
from .tasks import build_tasks

# The score drawn for each task, and how tasks are averaged into the paper's panels.
PRIMARY_METRIC = {
    "boomerang_rolling": "word_perplexity", "boomerang_lastword": "acc", "boomerang_cloze": "acc_norm",
    "wikitext": "word_perplexity",
    "arc_easy": "acc_norm", "arc_challenge": "acc_norm", "hellaswag": "acc_norm", "openbookqa": "acc_norm",
    "piqa": "acc_norm", "boolq": "acc", "winogrande": "acc", "race": "acc", "mmlu": "acc", "rte": "acc",
    "gsm8k_cot": "exact_match,strict-match", "ifeval": "prompt_level_strict_acc", "hendrycks_math": "exact_match",
}
TASK_GROUPS = {
    "classification average": ["arc_easy", "arc_challenge", "boolq", "hellaswag", "openbookqa", "piqa",
                               "winogrande", "race", "mmlu", "rte"],
    "generation average": ["gsm8k_cot", "ifeval", "hendrycks_math"],
}
PERPLEXITY_METRICS = ("word_perplexity", "byte_perplexity", "perplexity")


def task_manager(cfg: RunConfig) -> TaskManager:
    """lm-eval's task index, with the offline tasks built and registered when the run asks for them."""
    if not any(t.startswith("boomerang_") for t in cfg.lm_eval.tasks):
        return TaskManager()
    texts = heldout_texts(cfg.data)
    root = build_tasks(texts, cache_dir() / "lm_eval_tasks", cfg.lm_eval.offline, cfg.seed)
    # lm-eval's own index (thousands of YAML files, seconds to read) only when a task of its own is asked for
    defaults = not all(t.startswith("boomerang_") for t in cfg.lm_eval.tasks)
    return TaskManager(include_path=str(root), include_defaults=defaults)


class QuietHFLM(HFLM):
    """lm-eval's `HFLM` without its per-request progress bars (a run shows one bar over its models): they
    wrote a few hundred stderr lines per model into the executed notebook."""

    def loglikelihood(self, requests, disable_tqdm=True):
        return super().loglikelihood(requests, disable_tqdm=True)

    def loglikelihood_rolling(self, requests, disable_tqdm=True):
        return super().loglikelihood_rolling(requests, disable_tqdm=True)

    def _loglikelihood_tokens(self, requests, disable_tqdm=True, override_bs=None):
        return super()._loglikelihood_tokens(requests, disable_tqdm=True, override_bs=override_bs)

    def generate_until(self, requests, disable_tqdm=True):
        return super().generate_until(requests, disable_tqdm=True)


def harness_model(model: torch.nn.Module, tokenizer, cfg: LmEvalConfig) -> QuietHFLM:
    """The model for lm-eval, its matrix products in the run's mixed precision and its log-probabilities in
    float32 (in bf16 their sums round: a bf16 teacher and its student got the same wikitext perplexity)."""
    dtype = compute_dtype(cfg.mixed_precision, next(model.parameters()).device)
    mixed = None if dtype is None else str(dtype).removeprefix("torch.")
    return QuietHFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size, mixed_precision_dtype=mixed,
                     softmax_dtype="float32")


def ratio_stderr(pairs: list[tuple[float, float]]) -> float:
    """Standard error of Σa/Σb over items (a_i, b_i), by the delta method: the error bar of a
    corpus-level log-likelihood per word or per byte, which lm-eval leaves out."""
    n = len(pairs)
    if n < 2:
        return float("nan")
    total_a, total_b = sum(a for a, _ in pairs), sum(b for _, b in pairs)
    r = total_a / total_b
    residual = sum((a - r * b) ** 2 for a, b in pairs)
    return math.sqrt(n / (n - 1) * residual) / total_b


def _weighted_stderrs(samples: list[dict]) -> dict[str, float]:
    """Stderr of the weighted perplexities (word / byte) and bits per byte from per-document samples."""
    out = {}
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        pairs = [tuple(s[metric]) for s in samples if metric in s]
        if pairs:
            se = ratio_stderr(pairs)
            r = sum(a for a, _ in pairs) / sum(b for _, b in pairs)
            out[metric] = se / math.log(2) if metric == "bits_per_byte" else math.exp(-r) * se
    return out


def result_rows(output: dict) -> list[dict]:
    """Tidy rows (task, metric, value, stderr) from lm-eval's output; a group's subtasks are
    folded into the group's own row, a filter other than `none` is kept in the metric name."""
    subtasks = {t for members in output.get("group_subtasks", {}).values() for t in members}
    rows = []
    for task, scores in output["results"].items():
        if task in subtasks:
            continue
        weighted = _weighted_stderrs(output.get("samples", {}).get(task, []))
        for key, value in scores.items():
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            stderr = scores.get(f"{metric}_stderr,{filt}")  # "N/A" without bootstrap, absent for some
            stderr = stderr if isinstance(stderr, (int, float)) else weighted.get(metric, float("nan"))
            rows.append({"task": task, "metric": metric if filt == "none" else f"{metric},{filt}",
                         "value": float(value), "stderr": float(stderr)})
    return rows


class Suite:
    """lm-eval's tasks, loaded once and configured as `simple_evaluate` configures them, then run on every
    model of a run: loading the paper's suite (mmlu alone is 57 datasets) costs minutes, scoring a model on
    a few items each costs seconds. Every model sees the same items and the same few-shot examples."""

    def __init__(self, tasks: list[str], manager: TaskManager, cfg: LmEvalConfig, seed: int = 0):
        logging.getLogger("lm_eval").setLevel(logging.ERROR)  # its notes that a model object is no hub name
        self.loaded, self.cfg, self.seed = manager.load(tasks), cfg, seed
        for task in self.loaded["tasks"].values():
            if task.get_config("output_type") == "generate_until" and cfg.max_gen_toks:
                task.set_config(key="generation_kwargs", value={"max_gen_toks": cfg.max_gen_toks}, update=True)
            if cfg.num_fewshot is not None and task.get_config("num_fewshot") != 0:
                task.set_config(key="num_fewshot", value=cfg.num_fewshot)
            elif task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)

    def score(self, model: torch.nn.Module, tokenizer) -> tuple[list[dict], dict]:
        """Tidy rows and lm-eval's raw output for one in-memory model."""
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        for task in self.loaded["tasks"].values():
            task.set_fewshot_seed(seed=self.seed)
        with contextlib.redirect_stdout(io.StringIO()):  # lm-eval prints "bootstrapping for stddev" per metric
            output = evaluate(lm=harness_model(model, tokenizer, self.cfg), task_dict=self.loaded,
                              limit=self.cfg.limit, bootstrap_iters=self.cfg.bootstrap_iters, log_samples=True)
        return result_rows(output), output


def lm_eval_table(cfg: RunConfig, family: Family, samples_dir: str | Path | None = None) -> pd.DataFrame:
    """lm-eval scores of every model `run_models` yields under `cfg.lm_eval`, in the layout of the held-out
    table. With `samples_dir`, lm-eval's per-sample logs are kept there, one JSON file per model."""
    e = cfg.lm_eval
    if not e.tasks:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    suite = Suite(e.tasks, task_manager(cfg), e, cfg.seed)
    rows = []
    models = run_models(family, e.orders or cfg.interpolate.orders, family.undistilled(), e.size_stride,
                        e.naive_stride, distinct_sizes=True)
    for model, labels, (scored, output) in measured_once(models, lambda m: suite.score(m, family.tokenizer)):
        base = {**labels, **family.counts(model), "batch_size": e.batch_size}
        rows += [{**base, **r} for r in scored]
        if samples_dir is not None:
            write_json(Path(samples_dir) / f"{labels['model']}.json", output["samples"])
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def panel_scores(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per model and panel: the average of primary metrics over each of the paper's task groups
    (when all of its tasks were scored), and each other task's primary metric, as in the paper's Figs. 2-3."""
    m = metrics[metrics.task != "heldout"]
    primary = m[m.metric == m.task.map(PRIMARY_METRIC)]
    keys = ["model", "method", "order", "k", "num_layers", "params", "params_inference"]
    frames = []
    for group, tasks in TASK_GROUPS.items():
        part = primary[primary.task.isin(tasks)]
        complete = part.groupby(keys).filter(lambda g: set(g.task) == set(tasks))
        if len(complete):
            avg = complete.groupby(keys, as_index=False).value.mean()
            frames.append(avg.assign(panel=group, metric="mean of primary metrics", stderr=float("nan")))
    in_group = {t for tasks in TASK_GROUPS.values() for t in tasks}
    single = primary[~primary.task.isin(in_group)]
    frames.append(single.assign(panel=single.task)[keys + ["panel", "metric", "value", "stderr"]])
    return pd.concat(frames, ignore_index=True)


def harness_checks(metrics: pd.DataFrame, sigmas: float = 2.0) -> pd.DataFrame:
    """Per task's primary metric: does the teacher beat the student by more than `sigmas` standard errors
    of their difference, and what fraction of interpolated sizes lies between the two (within `sigmas`
    of the size's own standard error, so sampling noise alone does not count as falling outside)."""
    claims = []
    for task, p in metrics.groupby("task"):
        metric = PRIMARY_METRIC.get(task)
        p = p[p.metric == metric]
        if p.empty or not {"teacher", "student"} <= set(p.method):
            continue
        sign = -1 if metric in PERPLEXITY_METRICS else 1
        t, s = (p[p.method == who].iloc[0] for who in ("teacher", "student"))
        gap = sign * (t.value - s.value) / math.hypot(t.stderr, s.stderr)
        lo, hi = sorted([t.value, s.value])
        interp = p[p.method == "interpolated"]
        margin = sigmas * interp.stderr.fillna(0)
        between = ((interp.value >= lo - margin) & (interp.value <= hi + margin)).mean()
        claims += [Claim(f"{task}: teacher beats student ({metric}, in stderr of the gap)", gap, f"> {sigmas:g}"),
                   Claim(f"{task}: interpolated sizes between student and teacher", between, ">= 0.9")]
    return claims_frame(claims)
