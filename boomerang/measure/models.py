"""A run's models: its family loaded from what its stages wrote, every model it evaluates with its row
labels, and each function among them measured once."""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TypeVar

import pandas as pd
from torch import nn

from ..artefacts import INTERPOLANTS, STUDENT, student_source
from ..config import ConfigError, RunConfig
from ..family import Family, recorded_orders
from ..progress import progress

METRIC_COLUMNS = ["model", "method", "order", "k", "authors_k", "num_layers", "params", "params_inference",
                  "task", "metric", "value", "stderr", "batch_size"]
T = TypeVar("T")


def run_family(cfg: RunConfig, device=None) -> Family:
    """A run's teacher and its distilled (or released) student, with the orders it chose on data (the
    blocks each patches in turn) as its `interpolants.csv` records them (none before stage 03 has run)."""
    if not cfg.prune.student and not STUDENT.path(cfg).exists():
        raise ConfigError(f"run {cfg.name!r} has no distilled student at {STUDENT.path(cfg)}; run the pipeline "
                          "first (`python -m boomerang.pipeline --config <its config>`)")
    family = Family.load(cfg.teacher, student_source(cfg), device)
    if INTERPOLANTS.path(cfg).exists():
        family.chosen_orders = recorded_orders(pd.read_csv(INTERPOLANTS.path(cfg)))
    return family


def run_models(family: Family, orders: list[str], naive: Family | None = None, size_stride: int = 1,
               naive_stride: int = 1, distinct_sizes: bool = False) -> Iterator[tuple[tuple, nn.Module, dict]]:
    """Every model a run evaluates, with its row labels: teacher, student, each `size_stride`-th
    intermediate size along each order, and, given the `naive` (undistilled) family, naive pruning at each
    `naive_stride`-th size (0 = none). Teacher and student rows carry `order = "none"`.

    By default every k in 1..M-1 is an intermediate size. With `distinct_sizes`, only layer counts strictly
    between the student's and the teacher's are: patching a one-layer block keeps the size, and when that
    layer was frozen at the teacher's the model is the student or the teacher again. Naive pruning always
    strides over the distinct sizes, since in the undistilled student a one-layer block is an exact copy of
    its teacher layer. Models are built lazily and share the family's tensors; each comes with a key that two
    models computing the same function share (`Family.identity`), so a measurement is made once per key
    (`measured_once`)."""
    layout = family.layout
    m, n = layout.num_blocks, layout.num_teacher_layers
    naive = naive if naive_stride > 0 else None
    ends = {"order": "none", "authors_k": None}
    yield ("distilled", family.identity(range(m))), family.teacher, {"model": "teacher", "method": "teacher", **ends,
                                                                     "k": m, "num_layers": n}
    yield ("distilled", frozenset()), family.student, {"model": "student", "method": "student", **ends, "k": 0,
                                                       "num_layers": m}
    if naive:
        yield ("naive", frozenset()), naive.student, {"model": "naive_pruned_k0", "method": "naive_pruned", **ends,
                                                      "k": 0, "num_layers": m}
    for order in orders:
        sizes = family.interpolants(order)[1:-1]
        distinct = [s for s in sizes if m < s.num_layers < n]
        naive_sizes = set(distinct[::naive_stride]) if naive else set()
        for i, spec in enumerate(progress(distinct if distinct_sizes else sizes, desc=f"sizes ({order})")):
            labels = {"order": order, "k": spec.k, "authors_k": spec.authors_k, "num_layers": spec.num_layers}
            if i % size_stride == 0:
                yield (("distilled", family.identity(spec.blocks)), family.model(spec.blocks),
                       {"model": spec.name(), "method": "interpolated", **labels})
            if spec in naive_sizes:
                yield (("naive", naive.identity(spec.blocks)), naive.model(spec.blocks),
                       {"model": spec.name("naive"), "method": "naive_pruned", **labels})


def measured_once(models: Iterable[tuple[Hashable, nn.Module, dict]], measure: Callable[[nn.Module], T]
                  ) -> Iterator[tuple[nn.Module, dict, T]]:
    """`measure(model)` for each of `models` (key, model, labels), made once per key: the same function
    built along two orders, or a patch that changes nothing, is measured once and reported under each label."""
    done: dict[Hashable, T] = {}
    for key, model, labels in models:
        if key not in done:
            done[key] = measure(model)
        yield model, labels, done[key]
