"""Write one size of a run's family as a plain Hugging Face checkpoint: by number of layers, or the best
size within a parameter, latency or memory budget (latency and memory as measured on this device).

"Best" is the lowest held-out perplexity the run measured (`results/<run>/metrics.csv`) among the sizes of
its orders that fit; without a measured table, the largest size that fits along the first order.

    python -m boomerang.export --config configs/smollm2-cpu.yaml --layers 23 --order klpatch --out my-23
    python -m boomerang.export --config configs/smollm2-cpu.yaml --params 100e6 --out under-100m
    python -m boomerang.export --config configs/qwen3-4b-released.yaml --latency-ms 20 --out fast
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from . import artefacts as A
from .config import ConfigError, RunConfig, load_config, parse_overrides
from .core.patch import Interpolant, export
from .device import default_device
from .family import Family
from .measure.cost import cost_table
from .measure.models import run_family


def choose(cfg: RunConfig, family: Family, orders: list[str], layers: int | None = None, params: float | None = None,
           latency_ms: float | None = None, memory_mib: float | None = None) -> Interpolant:
    """The size to export: the one with `layers` layers, or the best within every budget given."""
    candidates = [spec for order in orders for spec in family.interpolants(order)]
    if layers is not None:
        candidates = [s for s in candidates if s.num_layers == layers]
    if params is not None:
        candidates = [s for s in candidates if family.counts(family.model(s.blocks))["params"] <= params]
    if latency_ms is not None or memory_mib is not None:
        cost = _cost_here(cfg, family, orders).set_index("num_layers")
        fits = cost.index[(cost.decode_ms_per_token <= (latency_ms or float("inf")))
                          & (cost.peak_memory_mib <= (memory_mib or float("inf")))]
        candidates = [s for s in candidates if s.num_layers in set(fits)]
    if not candidates:
        raise ConfigError("no size of this run fits the request; `--layers` takes one of "
                          f"{sorted({s.num_layers for o in orders for s in family.interpolants(o)})}")
    quality = _heldout(cfg)
    if quality is not None:
        return min(candidates, key=lambda s: quality.get((s.order, s.k), quality.get(("any", s.num_layers), float("inf"))))
    return max(candidates, key=lambda s: (s.num_layers, -s.k))


def check_out(out: str, replace: bool) -> None:
    """`--out` names a new or empty directory, or, with `--replace`, a directory the checkpoint replaces whole:
    writing a checkpoint over a directory removes what was in it."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {out} is a file; name a directory for the checkpoint")
    if path.is_dir() and any(path.iterdir()) and not replace:
        raise ConfigError(f"--out {out} is a directory that is not empty, and the checkpoint would replace "
                          "everything in it; name a new directory, or add --replace to replace it")


def _heldout(cfg: RunConfig) -> dict | None:
    """Held-out perplexity by (order, k), and the student's and teacher's by ("any", layers)."""
    if not A.METRICS.path(cfg).exists():
        return None
    m = pd.read_csv(A.METRICS.path(cfg)).query("task == 'heldout' and metric == 'perplexity'")
    sizes = {(r.order, int(r.k)): r.value for r in m[m.method == "interpolated"].itertuples()}
    ends = {("any", int(r.num_layers)): r.value for r in m[m.method.isin(["student", "teacher"])].itertuples()}
    return sizes | ends


def _cost_here(cfg: RunConfig, family: Family, orders: list[str]) -> pd.DataFrame:
    """The run's measured cost per size when it was measured on this kind of device; else measured now."""
    path = A.COST.path(cfg)
    if path.exists():
        cost = pd.read_csv(path)
        if set(cost.device) == {str(default_device())}:
            return cost
    print(f"measuring every size on {default_device()} ...", flush=True)
    return cost_table(family, orders, cfg.sizes.cost_prompt_tokens, cfg.sizes.cost_new_tokens,
                      cfg.evaluate.mixed_precision)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the run's preset (configs/)")
    parser.add_argument("--override", default="{}", help="JSON of dotted overrides, as for the pipeline")
    parser.add_argument("--out", required=True, help="directory of the checkpoint to write (new or empty)")
    parser.add_argument("--replace", action="store_true", help="replace --out and everything in it")
    parser.add_argument("--order", action="append", help="patch order(s) to choose from (default: the run's)")
    parser.add_argument("--layers", type=int)
    parser.add_argument("--params", type=float, help="at most this many parameters (training-time count)")
    parser.add_argument("--latency-ms", type=float, help="at most this decode latency per token, batch 1, here")
    parser.add_argument("--memory-mib", type=float, help="at most this peak memory, here")
    args = parser.parse_args(argv)
    try:
        check_out(args.out, args.replace)
        cfg = load_config(args.config, parse_overrides(args.override))
        orders = args.order or cfg.interpolate.orders
        unknown = set(orders) - set(cfg.interpolate.orders)
        if unknown:
            raise ConfigError(f"--order {sorted(unknown)}: the run has {cfg.interpolate.orders}")
        family = run_family(cfg)
        spec = choose(cfg, family, orders, args.layers, args.params, args.latency_ms, args.memory_mib)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    model = family.model(spec.blocks)
    export(model, args.out, family.tokenizer)
    counts = family.counts(model)
    print(f"{args.out}: {spec.num_layers} layers ({spec.order}, k = {spec.k}, blocks {list(spec.blocks)}), "
          f"{counts['params'] / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
