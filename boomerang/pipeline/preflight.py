"""Checks before anything expensive runs: does the teacher fit the layout or the released student, and is
the text there, readable and long enough? Each failure names its cause and what to change."""
from __future__ import annotations

import difflib
import os

import torch
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

from ..config import ConfigError, RunConfig
from ..core.arch import adapter_for, num_layers
from ..core.prune import Layout, layout_from_config, read_layout
from ..device import default_device
from ..measure.harness import task_manager
from ..sources.student import check_student_config
from ..sources.teacher import teacher_path
from ..sources.text import pack, split_corpus

def released_layout(student: str) -> Layout:
    """The layout of `prune.student`, a local directory or a hub id (on the hub, or in its cache offline);
    what is missing is said with the key, not as a download's traceback."""
    try:
        return read_layout(student)
    except (OSError, ValueError) as err:  # hub errors (not found, offline, a malformed id) are OSErrors
        offline = " (offline: HF_HUB_OFFLINE is set, so only the hub cache is looked in)" \
            if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise ConfigError(f"prune.student = {student!r} is neither a directory holding student_config.json nor a "
                          f"hub model that has one{offline}: {type(err).__name__}: {str(err).splitlines()[0]}") from None


def preflight(cfg: RunConfig, log=print) -> None:
    """What a run needs from its inputs, checked from configs and text before any model is loaded."""
    source = teacher_path(cfg.teacher)
    teacher_config = check_teacher(cfg, source)
    check_layout(cfg, teacher_config)
    check_processes(cfg)
    if cfg.data.source != "hub":  # a streamed dataset is checked as it is read; the GPU box has the hub
        check_text(cfg, source, log)
    check_tasks(cfg)


def check_teacher(cfg: RunConfig, source: str) -> PretrainedConfig:
    """The teacher's config, refused when no adapter knows its architecture: the other checks and every
    stage need one."""
    teacher_config = AutoConfig.from_pretrained(source)
    try:
        adapter_for(teacher_config)
    except NotImplementedError as err:
        raise ConfigError(f"teacher {cfg.teacher.name}: {err}") from None
    return teacher_config


def check_layout(cfg: RunConfig, teacher_config: PretrainedConfig) -> None:
    """The released student fits the teacher, or the pruning rule fits its layers and prunes some."""
    n = num_layers(teacher_config)
    if cfg.prune.student:
        layout = released_layout(cfg.prune.student)
        check_student_config(teacher_config, AutoConfig.from_pretrained(cfg.prune.student), layout, cfg.prune.student)
        return
    try:
        layout = layout_from_config(cfg.prune, n)
    except ValueError as err:
        raise ConfigError(f"prune: {err} (the teacher has {n} layers)") from None
    if not layout.pruned:
        raise ConfigError(f"prune keeps all {n} teacher layers: there is nothing to distil or interpolate")


def check_processes(cfg: RunConfig) -> None:
    """A run that distils on GPUs starts one process per GPU, so it cannot ask for more than there are."""
    d, gpus = cfg.distill, torch.cuda.device_count()
    if not cfg.prune.student and default_device().type == "cuda" and d.num_processes > gpus:  # it distils
        raise ConfigError(f"distill.num_processes is {d.num_processes} but this machine has {gpus} GPU(s): "
                          f"distillation runs one process per GPU; set it to at most {gpus} and raise "
                          f"distill.grad_accum to keep the global batch")


def check_text(cfg: RunConfig, source: str, log) -> None:
    """The local text splits as configured and holds a held-out sequence and a global batch of training
    sequences; evaluations asking for more held-out tokens than there are get a warning, not an error."""
    d, seq = cfg.distill, cfg.data.seq_len
    tokenizer = AutoTokenizer.from_pretrained(source)
    try:
        split = split_corpus(cfg.data, tokenizer)
    except ValueError as err:  # it names an undecodable file or an unknown held-out document, and the key
        raise ConfigError(str(err)) from None
    held_out, train = len(pack(split["heldout"], seq)), len(pack(split["train"], seq))
    if held_out == 0:
        raise ConfigError(f"the held-out documents {cfg.data.heldout_documents} have {split['heldout'].size} tokens, "
                          f"fewer than one sequence of data.seq_len = {seq}")
    if train < d.batch_size * d.num_processes:
        raise ConfigError(f"the training text has {train} sequences of {seq} tokens, fewer than one global batch of "
                          f"{d.batch_size * d.num_processes}")
    for section in ("evaluate", "align"):
        wanted = getattr(cfg, section).eval_tokens
        if wanted > held_out * seq:
            log(f"WARNING: {section}.eval_tokens = {wanted} but the held-out text has {held_out * seq} tokens in "
                "sequences: every sequence is used")


def check_tasks(cfg: RunConfig) -> None:
    """Every `lm_eval.tasks` name is a task, group or tag of lm-eval's index or of this project's offline
    tasks (built here, which checks `lm_eval.offline` against the held-out text); a misspelt one is named
    with its closest matches, before any stage runs."""
    if not cfg.lm_eval.tasks:
        return
    try:
        known = task_manager(cfg).all_tasks
    except ValueError as err:
        raise ConfigError(f"lm_eval.offline: {err}") from None
    for name in cfg.lm_eval.tasks:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=5)
            raise ConfigError(f"lm_eval.tasks names {name!r}, which is no task, group or tag that lm-eval or this "
                              f"project knows" + (f"; close: {close}" if close else ""))
