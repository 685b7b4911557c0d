"""Resumable distillation checkpoints, in safetensors and JSON only (nothing is unpickled).

A checkpoint holds the student and optimiser state (one copy when processes replicate them, each process's
shard under FSDP), every process's RNG and data position, the schedule and the log, so a resumed run ends
exactly where an uninterrupted one would. It is written into a partial directory and renamed when
complete; the last two are kept, so a checkpoint damaged after the fact falls back to the one before.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.tensor import DTensor

from ..io import read_json, write_json

KEEP = 2


@dataclass
class Ranks:
    """This process among the run's processes; `sharded` when FSDP splits the state between them."""

    rank: int = 0
    world: int = 1
    sharded: bool = False
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def all(self, flag: bool) -> bool:
        """Whether `flag` holds on every process (so that all take the same branch)."""
        if self.world == 1:
            return flag
        value = torch.tensor(int(flag), device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value)


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _distinct(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One entry per storage (tied embeddings are one tensor under two names): safetensors refuses
    aliases, and restoring one name restores both."""
    out, seen = {}, set()
    for name, t in tensors.items():
        t = _local(t).detach()
        where = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if where not in seen:
            seen.add(where)
            out[name] = t.contiguous()
    return out


def _flatten(osd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimiser state dict as tensors `fqn/name` plus its JSON-able rest (hyperparameters)."""
    tensors = {f"{fqn}/{key}": _local(value).detach().contiguous()
               for fqn, state in osd["state"].items() for key, value in state.items()}
    return tensors, {"param_groups": osd["param_groups"]}


def steps_saved(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, newest first."""
    return sorted((p for p in root.glob("step_*") if (p / "state.json").exists()), reverse=True)


def save(root: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ranks: Ranks,
         extra: dict, rank_state: dict) -> None:
    """Write checkpoint `step`: model and optimiser, this process's RNG and `rank_state` (its data position),
    and `extra` (schedule, log) from the main process."""
    target, partial = root / f"step_{step:07d}", root / f".step_{step:07d}.partial"
    if ranks.main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    ranks.barrier()
    msd, osd = get_state_dict(model, optimizer)
    tensors, rest = _flatten(osd)
    suffix = f"-rank{ranks.rank}" if ranks.sharded else ""
    if ranks.sharded or ranks.main:
        save_file(_distinct(msd), partial / f"model{suffix}.safetensors")
        save_file(tensors, partial / f"optimizer{suffix}.safetensors")
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    save_file(rng, partial / f"rng-rank{ranks.rank}.safetensors")
    write_json(partial / f"data-rank{ranks.rank}.json", rank_state)
    ranks.barrier()
    if ranks.main:
        write_json(partial / "state.json", {"step": step, "world": ranks.world, "sharded": ranks.sharded,
                                             "optimizer": rest, **extra})
        shutil.rmtree(target, ignore_errors=True)  # one that could not be read, which this run went back past
        os.replace(partial, target)
        for old in steps_saved(root)[KEEP:]:
            shutil.rmtree(old, ignore_errors=True)
    ranks.barrier()


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ranks: Ranks) -> tuple[dict, dict]:
    """Restore checkpoint `path` into `model` and `optimizer` (and this process's RNG); returns the main
    state and this process's data position. Raises ValueError naming the file that cannot be read."""
    try:
        state = read_json(path / "state.json")
        if (state["world"], state["sharded"]) != (ranks.world, ranks.sharded):
            raise ValueError(f"written by {state['world']} process(es) ({'sharded' if state['sharded'] else 'replicated'}),"
                             f" resumed by {ranks.world}")
        suffix = f"-rank{ranks.rank}" if ranks.sharded else ""
        saved_model = load_file(path / f"model{suffix}.safetensors")
        saved_optimizer = load_file(path / f"optimizer{suffix}.safetensors")
        rng = load_file(path / f"rng-rank{ranks.rank}.safetensors")
        rank_state = read_json(path / f"data-rank{ranks.rank}.json")
        msd, osd = get_state_dict(model, optimizer)  # templates, the optimiser's state initialised
        with torch.no_grad():
            for key, value in _distinct(msd).items():
                value.copy_(saved_model[key])
            for fqn, entries in osd["state"].items():
                for key, value in entries.items():
                    _local(value).copy_(saved_optimizer[f"{fqn}/{key}"])
        groups = state["optimizer"]["param_groups"]
        for group, saved in zip(osd["param_groups"], groups, strict=True):
            group.update({k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in saved.items()})
        set_state_dict(model, optimizer, model_state_dict=msd, optim_state_dict=osd)
    except (OSError, KeyError, ValueError, RuntimeError, SafetensorError) as err:
        raise ValueError(f"checkpoint {path} cannot be read: {err}") from None
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"])
    return state, rank_state


def resume(root: Path, model, optimizer, ranks: Ranks, log=print) -> tuple[dict, dict] | None:
    """The newest readable checkpoint under `root` restored, falling back to the one before when it is
    damaged (saying so); None when there is none. Every process takes the same decision."""
    saved = steps_saved(root)
    for i, path in enumerate(saved):
        try:
            restored, error = load(path, model, optimizer, ranks), None
        except ValueError as err:
            restored, error = None, err
        if ranks.all(error is None):
            if ranks.main:
                log(f"resuming from {path.name}")
            return restored
        if error is not None:
            log(f"{error}; " + (f"trying {saved[i + 1].name}" if i + 1 < len(saved) else "no checkpoint left"))
    if saved:
        raise RuntimeError(f"no checkpoint under {root} can be read; remove that directory to start this "
                           "distillation afresh")
    return None
