"""Distil the pruned student from the frozen teacher: one loop for one CPU, one GPU or several processes.

Several processes (`torchrun` sets them up) replicate the student (DDP) or shard
every decoder layer (FSDP, as the authors do), on GPUs or, for the offline rehearsal, on CPUs. Checkpoints
hold everything that shapes the rest of the run, so an interrupted run resumes to exactly the result of
an uninterrupted one; a non-finite loss stops the run before anything is saved.

    python -m boomerang.distill --config configs/smollm2-cpu.yaml
    torchrun --nproc_per_node 4 -m boomerang.distill --config configs/qwen3-4b.yaml
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel
from transformers import (AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase,
                          get_cosine_with_min_lr_schedule_with_warmup)

from ..allocator import retain_freed_memory
from ..artefacts import CHECKPOINTS, DISTILL_LOG, LOCK, STUDENT, STUDENT_INIT
from ..config import ConfigError, DistillConfig, RunConfig, load_config, parse_overrides
from ..core.arch import adapter_for, decoder_layers, hidden_states
from ..core.patch import patch
from ..core.prune import Layout, read_layout, save_student
from ..device import autocast, compute_dtype, default_device, precision_name, resolve
from ..io import exclusive, write_csv
from ..progress import note, progress
from ..provenance import code_digests
from ..sources.teacher import load_teacher
from ..sources.text import HubBatches, LocalBatches, train_batches
from . import checkpoint
from .checkpoint import Ranks
from .loss import Batch, Step, Term, objective, total_loss

TIMED = 3  # steps after the first (a warm-up) that the time estimate is taken from
LOG_COLUMNS = ["step", "tokens", "lr", "grad_norm", "loss", "ce", "kl", "cos", "tail", "extra_layers", "tokens_per_s"]


class Distilled(nn.Module):
    """The model being trained and the objective as one module, so that DDP and FSDP see a step's whole
    forward, the LM heads' use included. `reads` picks the hidden states at the student's block
    boundaries (an interpolant's); none: every one (the student's)."""

    def __init__(self, model: nn.Module, terms: list[Term], alignment: list[int], precision: str,
                 reads: list[int] | None = None):
        super().__init__()
        self.model = model  # the only registered module: the teacher's parts live in the terms
        self.terms, self.alignment, self.precision, self.reads = terms, alignment, precision, reads

    def forward(self, batch: Batch, teacher_hidden: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        with autocast(batch.input_ids.device, self.precision):  # the terms apply the heads
            hidden = hidden_states(self.model, batch.input_ids, batch.mask)
        if self.reads is not None:
            hidden = tuple(hidden[b] for b in self.reads)
        head = self.model.get_submodule(adapter_for(self.model).head)
        return total_loss(self.terms, Step(batch, hidden, teacher_hidden, self.alignment, head, self.precision))


def patch_aware_model(teacher, student, layout: Layout, probability: float, seed: int, draw: int):
    """For a patch-aware step: with `probability`, the student with a random number (one to all but one) of
    its multi-layer blocks, chosen at random, replaced by their teacher blocks, and the indices of its hidden
    states at the student's block boundaries; otherwise `(student, None)`. Seeded by `draw`, so a resumed run
    draws the same models."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + draw)
    multi = [i for i, block in enumerate(layout.blocks) if len(block) > 1]
    if len(multi) < 2 or torch.rand((), generator=g).item() >= probability:
        return student, None
    count = int(torch.randint(1, len(multi), (), generator=g))
    chosen = {multi[i] for i in torch.randperm(len(multi), generator=g)[:count].tolist()}
    boundaries = [0]
    for i, block in enumerate(layout.blocks):
        boundaries.append(boundaries[-1] + (len(block) if i in chosen else 1))
    return patch(teacher, student, layout, chosen).train(student.training), boundaries


def _cast_teacher_matrices(teacher: nn.Module, precision: str) -> None:
    """The frozen teacher's decoder matrices in the autocast dtype once, rather than at every product of every
    step (autocast caches casts only of weights that need gradients). Training runs the teacher's layers only
    under autocast, which would cast them to exactly this; embeddings, norms and the head stay as they are."""
    dtype = compute_dtype(precision, next(teacher.parameters()).device)
    if dtype is None:
        return
    for module in decoder_layers(teacher).modules():
        if isinstance(module, nn.Linear):
            module.to(dtype)


def _compile_layers(*models: nn.Module) -> None:
    """`torch.compile` every decoder layer in place: the interpolated models of patch-aware steps are built
    from these same layers, so they run compiled code too, and parameter names (checkpoints) stay as they are.
    The loss, which makes its logits a chunk at a time, stays eager."""
    for model in models:
        for layer in decoder_layers(model):
            layer.compile()


def _optimizer(model: nn.Module, cfg: DistillConfig) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel over all tensors, not a loop over them); weight decay on matrices only (norms
    and biases are not decayed)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=True)


def _freeze(student, layout: Layout, cfg: DistillConfig) -> None:
    """Embeddings, final norm and head stay at the teacher's unless `train_embeddings`; a student layer
    whose block is one teacher layer is that layer in its own place, and with `freeze_unpruned_blocks` it
    stays so, which keeps the student's states consumable by real teacher layers."""
    adapter = adapter_for(student)
    if not cfg.train_embeddings:
        for path in (*adapter.embed, adapter.norm, adapter.head):
            student.get_submodule(path).requires_grad_(False)
    if cfg.freeze_unpruned_blocks:
        for i, block in enumerate(layout.blocks):
            if len(block) == 1:
                decoder_layers(student)[i].requires_grad_(False)


def _processes(cfg: DistillConfig) -> tuple[Ranks, torch.device]:
    """This process's place among those `torchrun` started (one when started alone)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    device = default_device()
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(dist.get_rank() if world > 1 else 0, world, world > 1 and cfg.parallel == "fsdp", device), device


def _wrap(distilled: Distilled, ranks: Ranks, device: torch.device) -> nn.Module:
    """Replicate (DDP) or shard every decoder layer and the rest (FSDP) across processes."""
    if ranks.world == 1:
        return distilled
    if ranks.sharded:
        for layer in decoder_layers(distilled.model):
            fully_shard(layer)
        return fully_shard(distilled)
    return DistributedDataParallel(distilled, device_ids=[device.index] if device.type == "cuda" else None)


def _no_sync(model: nn.Module, ranks: Ranks, last_micro: bool):
    """Gradient accumulation: processes exchange gradients only on a step's last micro-batch."""
    if ranks.world == 1 or last_micro:
        if ranks.sharded:
            model.set_requires_gradient_sync(True)
        return nullcontext()
    if ranks.sharded:
        model.set_requires_gradient_sync(False)
        return nullcontext()
    return model.no_sync()


def _mean(values: dict[str, float], ranks: Ranks) -> dict[str, float]:
    """The mean over processes of every logged value (not the main process's share)."""
    if ranks.world == 1:
        return values
    names = sorted(values)
    means = torch.tensor([values[n] for n in names], device=ranks.device, dtype=torch.float64)
    dist.all_reduce(means)
    return dict(zip(names, (means / ranks.world).tolist()))


def checkpoint_root(cfg: RunConfig):
    """Checkpoints are keyed by everything that shapes training, the code included, so that neither a
    changed config nor changed code ever resumes them."""
    code = hashlib.sha256(json.dumps(code_digests(train), sort_keys=True).encode()).hexdigest()[:16]
    return CHECKPOINTS.path(cfg) / cfg.digest("seed", "teacher", "prune", "data", "distill") / code


def train(cfg: RunConfig, stop_after: int | None = None, log=note) -> pd.DataFrame:
    """Distil `runs/<run>/student_init` into `runs/<run>/student`, logging every step to `distill_log.csv`;
    returns the log. Resumes from the newest checkpoint of the same config and code. `stop_after` ends the
    run early after that many steps (a real interruption resumes the same way). The process keeps the memory
    it frees for the next step's tensors (`allocator`)."""
    retain_freed_memory()
    d = cfg.distill
    run = _set_up(cfg)
    start, rows, batches = _resume(cfg, run, log)
    tokens_per_step = d.batch_size * d.grad_accum * run.ranks.world * cfg.data.seq_len
    last = d.steps if stop_after is None else min(d.steps, stop_after)
    clock = time.perf_counter()
    bar = progress(range(start, last), initial=start, total=d.steps, desc="distill", unit="step",
                   disable=not run.ranks.main)
    for step in bar:
        logged, grad_norm, lr = _step(cfg, run, batches, step)
        now = time.perf_counter()
        rows.append({"step": step + 1, "tokens": (step + 1) * tokens_per_step, "lr": lr, "grad_norm": grad_norm,
                     **logged, "tokens_per_s": (step + 1 - start) * tokens_per_step / (now - clock)})
        if run.ranks.main:
            bar.set_postfix({"loss": f"{logged['loss']:.3g}", "tokens/s": f"{rows[-1]['tokens_per_s']:.0f}"}, refresh=False)
            if step == start:  # the first step warms up
                warm = now
            if step == start + TIMED and last > step + 1:
                _estimate(log, cfg, last - step - 1, (now - warm) / TIMED, tokens_per_step, run.device)
        if (step + 1) % d.checkpoint_every == 0 or step + 1 == last:
            _save_progress(cfg, run, rows, batches, log)

    if last == d.steps:
        _save_distilled(cfg, run)
    run.ranks.barrier()
    if run.ranks.world > 1:
        dist.destroy_process_group()
    return _log_frame(rows)


@dataclass
class _Training:
    """What the steps of a run share. Fields only: the code that uses them stays in functions, which
    `checkpoint_root` hashes (it follows functions, not methods)."""

    ranks: Ranks
    device: torch.device
    teacher: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    student: PreTrainedModel
    layout: Layout
    terms: list[Term]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    checkpoints: Path


def _set_up(cfg: RunConfig) -> _Training:
    """Everything a step needs, refused before any model loads when the run cannot distil."""
    d = cfg.distill
    if not (STUDENT_INIT.path(cfg) / "config.json").exists():
        raise ConfigError(f"run {cfg.name!r} has no pruned student to distil ({STUDENT_INIT.path(cfg)}): run stage "
                          f"01_prune first, e.g. python -m boomerang.pipeline --config <this config>, which runs "
                          "every stage in order")
    ranks, device = _processes(d)
    if ranks.world != d.num_processes:
        raise ConfigError(f"distill.num_processes is {d.num_processes} but {ranks.world} process(es) were started")
    torch.manual_seed(cfg.seed)

    teacher, tokenizer = load_teacher(cfg.teacher, device)
    _cast_teacher_matrices(teacher, d.mixed_precision)
    student, layout = _load_student(cfg, device)
    if d.compile:
        _compile_layers(teacher, student)
    terms = objective(d, teacher, layout)
    model = _wrap(Distilled(student, terms, layout.alignment, d.mixed_precision), ranks, device)
    optimizer = _optimizer(model, d)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, math.ceil(d.warmup_frac * d.steps), d.steps, min_lr_rate=d.min_lr_frac)
    return _Training(ranks, device, teacher, tokenizer, student, layout, terms, model, optimizer, scheduler,
                     checkpoint_root(cfg))


def _load_student(cfg: RunConfig, device: torch.device) -> tuple[PreTrainedModel, Layout]:
    """The pruned student to train, in fp32: these are the optimiser's weights, and autocast makes the
    low-precision copies."""
    student = AutoModelForCausalLM.from_pretrained(str(STUDENT_INIT.path(cfg)), dtype=torch.float32).to(device)
    layout = read_layout(STUDENT_INIT.path(cfg))
    student.train()
    if cfg.distill.gradient_checkpointing:  # transformers renamed it late in 5.x; the old name warns from then on
        enable = getattr(student, "activation_checkpointing_enable", None) or student.gradient_checkpointing_enable
        enable({"use_reentrant": False})
    _freeze(student, layout, cfg.distill)
    return student, layout


def _resume(cfg: RunConfig, run: _Training, log) -> tuple[int, list[dict], LocalBatches | HubBatches]:
    """The first step to run, the log so far and the batches from there: a resumed run continues exactly
    where the checkpoint left off, the data included."""
    d, ranks = cfg.distill, run.ranks
    start, rows, data_state = 0, [], None
    restored = checkpoint.resume(run.checkpoints, run.model, run.optimizer, ranks, log)
    if restored is not None:
        state, data_state = restored
        run.scheduler.load_state_dict(state["scheduler"])
        start, rows = state["step"], state["log"]
    batches = train_batches(cfg.data, run.tokenizer, d.batch_size, cfg.seed, ranks.rank, ranks.world, data_state)
    return start, rows, batches


def _step(cfg: RunConfig, run: _Training, batches: LocalBatches | HubBatches, step: int
          ) -> tuple[dict[str, float], float, float]:
    """One optimiser step: the logged values (means over micro-batches and processes), the gradient norm and
    the learning rate it used. A non-finite loss or gradient stops the run before the update reaches the weights."""
    logged = _mean(_accumulate_gradients(cfg, run, batches, step), run.ranks)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.distill.grad_clip)
    grad_norm = float(grad_norm.full_tensor() if isinstance(grad_norm, DTensor) else grad_norm)
    if not all(map(math.isfinite, [*logged.values(), grad_norm])):
        saved = checkpoint.steps_saved(run.checkpoints)
        raise FloatingPointError(
            f"distillation step {step + 1}: non-finite loss or gradient ({logged}, grad norm {grad_norm}); "
            f"nothing was saved or recorded. " + (f"{saved[0].name} remains to resume from once the cause is "
            f"fixed (e.g. a lower distill.lr or a higher distill.temperature)" if saved else "No checkpoint yet."))
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return logged, grad_norm, lr


def _accumulate_gradients(cfg: RunConfig, run: _Training, batches: LocalBatches | HubBatches, step: int
                          ) -> dict[str, float]:
    """A step's gradients over `grad_accum` micro-batches, and this process's mean of their logged values."""
    d, device = cfg.distill, run.device
    logged: dict[str, float] = {}
    for micro in range(d.grad_accum):
        input_ids = next(batches).to(device)
        batch = Batch(input_ids, torch.ones_like(input_ids))
        with torch.no_grad(), autocast(device, d.mixed_precision):
            teacher_hidden = hidden_states(run.teacher, input_ids, batch.mask)
        trained, reads = _trained_model(cfg, run, step * d.grad_accum + micro)
        with _no_sync(run.model, run.ranks, micro == d.grad_accum - 1):
            loss, values = trained(batch, teacher_hidden)
            if d.patch_prob:
                values["extra_layers"] = 0 if reads is None else reads[-1] - run.layout.num_blocks
            (loss / d.grad_accum).backward()
        for name, value in values.items():
            logged[name] = logged.get(name, 0.0) + value / d.grad_accum
    return logged


def _trained_model(cfg: RunConfig, run: _Training, draw: int) -> tuple[nn.Module, list[int] | None]:
    """The module a micro-batch trains and the student block boundaries it reads (None: the student's own):
    with `patch_prob`, sometimes an interpolant, which shares the student's parameters."""
    d = cfg.distill
    if not d.patch_prob:
        return run.model, None
    interpolant, reads = patch_aware_model(run.teacher, run.student, run.layout, d.patch_prob, cfg.seed, draw)
    if reads is None:
        return run.model, None
    return Distilled(interpolant, run.terms, run.layout.alignment, d.mixed_precision, reads), reads


def _save_progress(cfg: RunConfig, run: _Training, rows: list[dict], batches: LocalBatches | HubBatches,
                   log) -> None:
    """The log so far, and a checkpoint unless this was the last step (the student is saved instead)."""
    latest = rows[-1]
    steps_done = latest["step"]
    if run.ranks.main:
        write_csv(DISTILL_LOG.path(cfg), _log_frame(rows))
        values = ", ".join(f"{k} {latest[k]:.4g}" for k in ("loss", "ce", "kl", "cos") if k in latest)
        log(f"step {steps_done}/{cfg.distill.steps}: {values}, {latest['tokens_per_s']:.0f} tokens/s")
    if steps_done < cfg.distill.steps:
        checkpoint.save(run.checkpoints, steps_done, run.model, run.optimizer, run.ranks,
                        {"scheduler": run.scheduler.state_dict(), "log": rows}, batches.state())


def _save_distilled(cfg: RunConfig, run: _Training) -> None:
    """The finished student, gathered whole from every process; its checkpoints are no longer needed."""
    state_dict = get_model_state_dict(run.student, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if run.ranks.main:
        save_student(run.student, run.layout, STUDENT.path(cfg), run.tokenizer, state_dict=state_dict)
        shutil.rmtree(CHECKPOINTS.path(cfg), ignore_errors=True)


def _estimate(log, cfg: RunConfig, steps_left: int, step_seconds: float, tokens_per_step: int, device) -> None:
    """What the rest of the run will take on this machine, from measured steps."""
    precision = precision_name(resolve(cfg.distill.mixed_precision, device))
    minutes = steps_left * step_seconds / 60
    left = f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.1f} min"
    log(f"distilling {steps_left} more steps of {tokens_per_step:,} tokens in {precision} "
        f"on {device.type}: {step_seconds:.2f} s a step here, so about {left} more")


def _log_frame(rows: list[dict]) -> pd.DataFrame:
    """The log with its columns in one order, however a resumed run's rows were stored."""
    frame = pd.DataFrame(rows)
    return frame[[c for c in LOG_COLUMNS if c in frame] + sorted(set(frame) - set(LOG_COLUMNS))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--override", default="{}", help='JSON of dotted overrides, e.g. \'{"distill.steps": 10}\'')
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, parse_overrides(args.override))
        first = os.environ.get("RANK", "0") == "0"  # torchrun's other processes are the first one's
        with exclusive(LOCK.path(cfg), f"run {cfg.name!r}") if first else nullcontext():
            train(cfg)
    except ConfigError as err:
        sys.exit(f"error: {err}")
