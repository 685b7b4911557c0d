"""Distil the pruned student from the frozen teacher.

Loss (PAPER.md): `ce·CE + kl·τ²·KL(p_T/τ ‖ p_S/τ) + cos/|pairs|·Σ(1 − cos(h_S_i, h_T_align(i)))`, with KL and
cosine averaged over real (non-pad) tokens. One code path for one CPU, one GPU or several GPUs: run the
module under `accelerate launch` for DDP/FSDP. Checkpoints hold model, optimiser, scheduler, RNG and the
data position, so an interrupted run resumes to exactly the result of an uninterrupted one.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, get_cosine_with_min_lr_schedule_with_warmup

from .arch import adapter_for, assemble, decoder_layers
from .config import DistillConfig, RunConfig, load_config
from .data import train_batches
from .io import read_json, write_csv, write_json
from .patch import patch
from .prune import Layout, read_layout, save_student
from .teacher import default_device, load_teacher


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1)


def _relative_sq_error(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """‖h_S − h_T‖² / ‖h_T‖² per token, averaged over real tokens: unlike cosine it sees the norm."""
    s, t = student.float(), teacher.float()
    return _masked_mean((s - t).pow(2).sum(-1) / t.pow(2).sum(-1).clamp_min(1e-6), mask)


def _kl_to_teacher(t_logp: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor, tau: float) -> torch.Tensor:
    """τ²·KL(p_T/τ ‖ p/τ) averaged over real tokens."""
    logp = F.log_softmax(logits.float() / tau, dim=-1)
    return _masked_mean((t_logp.exp() * (t_logp - logp)).sum(-1), mask) * tau**2


def distillation_loss(
    student_out, teacher_out, input_ids: torch.Tensor, attention_mask: torch.Tensor,
    alignment: list[int], cfg: DistillConfig, forced_hidden: tuple[torch.Tensor, ...] | None = None,
    tail: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its terms. `alignment[j]` is the teacher hidden-state index for student index j;
    `forced_hidden` are the student's teacher-forced hidden states (see `teacher_forced_states`) and
    `tail` the logits of the teacher's tail run on the student's state, and their positions (`TeacherTail`)."""
    mask = attention_mask.float()
    s_logits, t_logits = student_out.logits.float(), teacher_out.logits.float()

    labels = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
    ce = F.cross_entropy(s_logits[:, :-1].flatten(0, 1), labels.flatten())

    t_logp = F.log_softmax(t_logits / cfg.temperature, dim=-1)
    kl = _kl_to_teacher(t_logp, s_logits, mask, cfg.temperature)

    s_hidden, t_hidden = student_out.hidden_states, teacher_out.hidden_states
    if len(s_hidden) != len(alignment):
        raise ValueError(f"student has {len(s_hidden)} hidden states, alignment maps {len(alignment)}")
    cos_terms = [
        _masked_mean(1 - F.cosine_similarity(s_hidden[j].float(), t_hidden[t].float(), dim=-1), mask)
        for j, t in enumerate(alignment)
    ]
    cos = torch.stack(cos_terms).sum() / len(cos_terms)

    total = cfg.ce_weight * ce + cfg.kl_weight * kl + cfg.cos_weight * cos
    terms = {"ce": ce.item(), "kl": kl.item(), "cos": cos.item()}
    if cfg.mse_weight:
        mse = torch.stack([_relative_sq_error(s_hidden[j], t_hidden[t], mask) for j, t in enumerate(alignment)]).mean()
        total = total + cfg.mse_weight * mse
        terms["mse"] = mse.item()
    if cfg.forced_weight:
        forced = torch.stack([_relative_sq_error(forced_hidden[j], t_hidden[t], mask)
                              for j, t in enumerate(alignment) if j > 0]).mean()
        total = total + cfg.forced_weight * forced
        terms["forced"] = forced.item()
    if cfg.tail_weight:
        tail_logits, positions = tail
        next_ids = F.pad(labels, (0, 1), value=-100)[:, positions]  # the last position has no next token
        tail_ce = F.cross_entropy(tail_logits.float().flatten(0, 1), next_ids.flatten())
        tail_kl = _kl_to_teacher(t_logp[:, positions], tail_logits, mask[:, positions], cfg.temperature)
        tail_loss = cfg.ce_weight * tail_ce + cfg.kl_weight * tail_kl  # the student's own logit terms
        total = total + cfg.tail_weight * tail_loss
        terms["tail"] = tail_loss.item()
    return total, {"loss": total.item(), **terms}


def _feed(hidden: torch.Tensor):
    def replace_input(module, args, kwargs):
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}
    return replace_input


def teacher_forced_states(student, teacher_hidden, alignment: list[int], input_ids, attention_mask):
    """The student's hidden states when each layer i is fed the teacher's input to block i.

    Output i+1 is then what student layer i makes of exactly what teacher block i receives, which is the
    drop-in-replacement property that patching relies on.
    """
    layers = decoder_layers(student)
    hooks = [layer.register_forward_pre_hook(_feed(teacher_hidden[alignment[i]]), with_kwargs=True)
             for i, layer in enumerate(layers)]
    try:
        return student(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
    finally:
        for hook in hooks:
            hook.remove()


class TeacherTail:
    """The teacher's layers from the student's last multi-layer block on, with its final norm and head.

    Fed the student's hidden state entering that block, it gives the logits of the smallest interpolant
    that patching last → first builds with more layers than the student, without re-running the student's
    layers below the block. On SmolLM2 that block is the one whose patching costs the most (notebook 2):
    the student's own layer there learns from the CE on the training text, the teacher's layers do not,
    so the tail is trained on the student's logit loss (`distill.tail_weight`) through the layers below.
    The KL is read at every `stride`-th position: on CPU the LM head over SmolLM2's 49k-token vocabulary
    costs far more than the tail's layers (a student step takes 1.75 s forward and backward; the tail adds
    1.1 s at every position, 0.1 s at every 16th).
    """

    def __init__(self, teacher, layout: Layout, stride: int = 16):
        multi = [i for i, block in enumerate(layout.blocks) if len(block) > 1]
        if not multi:
            raise ValueError("distill.tail_weight needs a layout with a multi-layer block")
        if adapter_for(teacher).rotary is None:  # positions would be added to the fed state a second time
            raise NotImplementedError(f"distill.tail_weight needs rotary positions; {teacher.config.model_type!r} "
                                      "adds absolute position embeddings to its input")
        self.block = multi[-1]
        layers = [(teacher, j) for block in layout.blocks[self.block:] for j in block]
        self.model = assemble(teacher.config, layers, teacher, teacher).eval()
        self.stride = stride

    def logits(self, student_hidden: tuple[torch.Tensor, ...], attention_mask: torch.Tensor):
        """Logits and their positions; `student_hidden[i]` is the state entering student block i."""
        length = attention_mask.shape[1]  # the first position is one with a next token, however short
        positions = torch.arange(min(self.stride, length - 1) - 1, length, self.stride, device=attention_mask.device)
        out = self.model(inputs_embeds=student_hidden[self.block], attention_mask=attention_mask,
                         logits_to_keep=positions)
        return out.logits, positions


def random_interpolant(teacher, student, layout: Layout, d: DistillConfig, seed: int, draw: int):
    """For a patch-aware step: with probability `d.patch_prob`, the student with a random number (one to all
    but one) of its multi-layer blocks replaced by their teacher blocks, and the indices of its hidden
    states at the student's block boundaries; otherwise `(student, None)`. `d.patch_draw` "subsets" picks
    the blocks at random, "ends" takes the first or the last ones (what the two patch orders build).
    Seeded by `draw`, so a resumed run draws the same models."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + draw)
    multi = [i for i, block in enumerate(layout.blocks) if len(block) > 1]
    if len(multi) < 2 or torch.rand((), generator=g).item() >= d.patch_prob:
        return student, None
    count = int(torch.randint(1, len(multi), (), generator=g))
    if d.patch_draw == "subsets":
        chosen = {multi[i] for i in torch.randperm(len(multi), generator=g)[:count].tolist()}
    else:
        from_last = bool(torch.randint(2, (), generator=g))
        chosen = set(multi[-count:] if from_last else multi[:count])
    boundaries = [0]
    for i, block in enumerate(layout.blocks):
        boundaries.append(boundaries[-1] + (len(block) if i in chosen else 1))
    return patch(teacher, student, layout, chosen).train(student.training), boundaries


def _optimizer(model: torch.nn.Module, cfg: DistillConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (norms and biases are not decayed)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def _freeze_embeddings_and_head(model) -> None:
    adapter = adapter_for(model)
    for path in (*adapter.embed, adapter.norm, adapter.head):
        model.get_submodule(path).requires_grad_(False)


def _freeze_unpruned_blocks(model, layout) -> None:
    """A block of one teacher layer is already the teacher's layer in its own place; keeping it frozen
    keeps the student's representations consumable by real teacher layers, which patching relies on."""
    for i, block in enumerate(layout.blocks):
        if len(block) == 1:
            decoder_layers(model)[i].requires_grad_(False)


def _latest_checkpoint(ckpt_root: Path) -> Path | None:
    done = sorted(p for p in ckpt_root.glob("step_*") if (p / "state.json").exists())
    return done[-1] if done else None


def train(
    cfg: RunConfig, init_dir: str | Path, out_dir: str | Path, log_path: str | Path,
    stop_after: int | None = None,
) -> pd.DataFrame:
    """Distil the student saved in `init_dir` into `out_dir`; returns the per-step log.

    Resumes from the newest checkpoint of the same config under `out_dir`'s sibling `checkpoints/`.
    `stop_after` ends the run early after that many steps (a real interruption resumes the same way).
    """
    d = cfg.distill
    out_dir, log_path = Path(out_dir), Path(log_path)
    # Checkpoints are keyed by everything that shapes training, so a changed config never resumes them.
    ckpt_root = out_dir.parent / "checkpoints" / cfg.digest("seed", "teacher", "prune", "data", "distill")
    mixed = d.mixed_precision if d.mixed_precision in ("bf16", "fp16") else "no"
    accelerator = Accelerator(mixed_precision=mixed, cpu=default_device().type == "cpu")
    if d.forced_weight and accelerator.num_processes > 1:
        raise NotImplementedError("distill.forced_weight runs a second forward pass, which DDP/FSDP "
                                  "does not allow before backward; use it with one process")
    if d.patch_prob and accelerator.num_processes > 1:
        raise NotImplementedError("distill.patch_prob runs models that DDP/FSDP does not wrap; "
                                  "use it with one process")
    torch.manual_seed(cfg.seed)

    teacher, tokenizer = load_teacher(cfg.teacher, accelerator.device)
    # fp32 master weights whatever the teacher's dtype; bf16 enters through autocast.
    student = AutoModelForCausalLM.from_pretrained(str(init_dir), dtype=torch.float32)
    layout = read_layout(init_dir)
    student.train()
    if d.gradient_checkpointing:  # transformers renamed it late in 5.x; the old name warns from then on
        enable = getattr(student, "activation_checkpointing_enable", None) or student.gradient_checkpointing_enable
        enable({"use_reentrant": False})
    if not d.train_embeddings:
        _freeze_embeddings_and_head(student)
    if d.freeze_unpruned_blocks:
        _freeze_unpruned_blocks(student, layout)
    optimizer = _optimizer(student, d)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, math.ceil(d.warmup_frac * d.steps), d.steps, min_lr_rate=d.min_lr_frac)
    student, optimizer = accelerator.prepare(student, optimizer)
    tail = TeacherTail(teacher, layout) if d.tail_weight else None

    start, rows = 0, []
    latest = _latest_checkpoint(ckpt_root)
    if latest is not None:
        accelerator.load_state(str(latest))
        state = read_json(latest / "state.json")
        scheduler.load_state_dict(state["scheduler"])
        start, rows = state["step"], state["log"]
        accelerator.print(f"resuming from {latest.name}")

    batches = train_batches(cfg.data, tokenizer, d.batch_size, cfg.seed, start=start * d.grad_accum,
                            rank=accelerator.process_index, world_size=accelerator.num_processes)
    tokens_per_step = d.batch_size * d.grad_accum * accelerator.num_processes * cfg.data.seq_len
    last = d.steps if stop_after is None else min(d.steps, stop_after)
    bar = tqdm(range(start, last), initial=start, total=d.steps, desc="distill",
               disable=not accelerator.is_main_process)
    clock = time.perf_counter()
    for step in bar:
        terms_sum: dict[str, float] = {}
        for micro in range(d.grad_accum):
            input_ids = next(batches).to(accelerator.device)
            mask = torch.ones_like(input_ids)
            sync = nullcontext() if micro == d.grad_accum - 1 else accelerator.no_sync(student)
            with sync:
                with torch.no_grad(), accelerator.autocast():
                    t_out = teacher(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
                model, boundaries = student, None
                if d.patch_prob:
                    model, boundaries = random_interpolant(teacher, accelerator.unwrap_model(student), layout,
                                                           d, cfg.seed, step * d.grad_accum + micro)
                if boundaries is None:
                    s_out = student(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
                else:
                    with accelerator.autocast():
                        out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
                    s_out = SimpleNamespace(logits=out.logits,
                                            hidden_states=tuple(out.hidden_states[b] for b in boundaries))
                forced = None
                if d.forced_weight:
                    with accelerator.autocast():
                        forced = teacher_forced_states(accelerator.unwrap_model(student), t_out.hidden_states,
                                                       layout.alignment, input_ids, mask)
                tail_out = None
                if tail is not None:
                    with accelerator.autocast():
                        tail_out = tail.logits(s_out.hidden_states, mask)
                loss, terms = distillation_loss(s_out, t_out, input_ids, mask, layout.alignment, d, forced,
                                                tail_out)
                if d.patch_prob:
                    terms["extra_layers"] = 0 if boundaries is None else boundaries[-1] - layout.num_blocks
                accelerator.backward(loss / d.grad_accum)
            for name, value in terms.items():
                terms_sum[name] = terms_sum.get(name, 0.0) + value / d.grad_accum
        if accelerator.num_processes > 1:  # log the mean over processes, not rank 0's share
            names = sorted(terms_sum)
            means = accelerator.reduce(torch.tensor([terms_sum[n] for n in names], device=accelerator.device), "mean")
            terms_sum = dict(zip(names, means.tolist()))
        grad_norm = accelerator.clip_grad_norm_(student.parameters(), d.grad_clip)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        elapsed = time.perf_counter() - clock
        rows.append({"step": step + 1, "tokens": (step + 1) * tokens_per_step, "lr": lr,
                     "grad_norm": float(grad_norm), **terms_sum,
                     "tokens_per_s": (step + 1 - start) * tokens_per_step / elapsed})
        bar.set_postfix({k: f"{terms_sum[k]:.3g}" for k in ("loss", "ce", "kl", "cos")})
        done = step + 1 == last
        if accelerator.is_main_process and ((step + 1) % d.checkpoint_every == 0 or done):
            write_csv(log_path, pd.DataFrame(rows))
        if (step + 1) % d.checkpoint_every == 0 or (done and step + 1 < d.steps):
            _save_checkpoint(accelerator, ckpt_root, step + 1, scheduler, rows)

    if last == d.steps:
        accelerator.wait_for_everyone()
        state_dict = accelerator.get_state_dict(student)  # every rank takes part (FSDP gathers shards)
        if accelerator.is_main_process:
            save_student(accelerator.unwrap_model(student), layout, out_dir, tokenizer, state_dict=state_dict)
            shutil.rmtree(ckpt_root.parent, ignore_errors=True)
    return pd.DataFrame(rows)


def _save_checkpoint(accelerator, ckpt_root: Path, step: int, scheduler, rows) -> None:
    """Every process writes its part into a partial directory; only a complete one is renamed."""
    target, partial = ckpt_root / f"step_{step:07d}", ckpt_root / f".step_{step:07d}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(partial / "state.json", {"step": step, "scheduler": scheduler.state_dict(), "log": rows})
        os.replace(partial, target)
        for old in ckpt_root.glob("step_*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def main() -> None:
    """`accelerate launch -m boomerang.distill --config configs/X.yaml` for several GPUs."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--override", default="{}", help="JSON dict of dotted overrides")
    args = parser.parse_args()
    cfg = load_config(args.config, json.loads(args.override))
    train(cfg, cfg.run_dir / "student_init", cfg.run_dir / "student", cfg.results_dir / "distill_log.csv")


if __name__ == "__main__":
    main()
