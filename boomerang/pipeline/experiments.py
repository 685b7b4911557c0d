"""The paper's baselines and ablations as a sweep of pipeline runs over one preset, then the experiment
stages: `09_layer_pruning` (ShortGPT, LaCo, FLOPs), `10_offshelf_pairs` (released distilled models and
their teachers, hub presets only) and `11_experiments` (one figure per paper figure, `claims.csv`).

Each variant is the ordinary pipeline under the run name `<preset>--<variant>`, so every stage is cached
per variant and the teacher, the text and the token cache are shared.

    python -m boomerang.pipeline.experiments --sweep configs/sweeps/smollm2-cpu.yaml [--only random-init ...]
    python -m boomerang.pipeline.experiments --only      # no variant: baselines, figures, claims
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..config import ConfigError, load_config, parse_overrides
from . import runner
from .preflight import preflight
from .stages import stages
from .sweeps import PRESET, read_sweep


def run_sweep(path: str | Path, only: tuple[str, ...] | None = None, force: tuple[str, ...] = (),
              overrides: dict | None = None, log=print, dry_run: bool = False) -> dict[str, dict[str, str]]:
    """Run the preset, the variants (all, or those in `only`; `()` for none) and the experiment stages;
    `force` re-runs the named stages of every run (e.g. `08_report` to redraw after a plotting change),
    `overrides` apply to every run (e.g. `output_root`). `dry_run` runs nothing and says what would run."""
    overrides = overrides or {}
    sweep = read_sweep(path)
    unknown = set(only or ()) - set(sweep.variants)
    if unknown:
        raise ConfigError(f"unknown variant(s) {sorted(unknown)}; the sweep has {sorted(sweep.variants)}")
    chosen = [name for name in sweep.variants if only is None or name in only]
    for name in chosen:  # every run's config is checked before the first one starts, and what it reads too
        try:  # (a dry run reads no teacher it would have to build)
            cfg = load_config(sweep.preset, {**overrides, **sweep.overrides(name)})
            if not dry_run:
                preflight(cfg, lambda line, name=name: log(f"variant {name}: {line}"))
        except ConfigError as err:
            raise ConfigError(f"sweep {Path(path).name}, variant {name!r}: {err}") from None
    if not dry_run:  # 09 and 10 run after every variant: what they read is checked before the first
        preflight(load_config(sweep.preset, {**overrides, "experiments.sweep": str(sweep.path)}), log, "experiments")
    run_stages = set(force) & {s.name for s in stages("run")}
    outcome = {PRESET: runner.run(sweep.preset, overrides, force=tuple(run_stages), log=log, dry_run=dry_run)}
    for i, name in enumerate(sweep.variants, 1):
        if name not in chosen:
            continue
        log(f"=== variant {i}/{len(sweep.variants)}: {name}")
        outcome[name] = runner.run(sweep.preset, {**overrides, **sweep.overrides(name)}, force=tuple(run_stages),
                                   log=log, dry_run=dry_run)
    # 11_experiments reads every run of the sweep, which no cache key of its own covers: it always runs
    experiment_force = ("11_experiments", *(set(force) - run_stages))
    outcome["experiments"] = runner.run(sweep.preset, {**overrides, "experiments.sweep": str(sweep.path)},
                                        force=experiment_force, group="experiments", log=log, dry_run=dry_run)
    return outcome


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", default="configs/sweeps/smollm2-cpu.yaml")
    parser.add_argument("--only", nargs="*", default=None,
                        help="variants to run (default: all; `--only` alone: none, just the baselines and figures)")
    parser.add_argument("--force", nargs="*", default=(), help="stage names to re-run in every run, e.g. 08_report")
    parser.add_argument("--override", default="{}", help="JSON of dotted overrides for every run of the sweep")
    parser.add_argument("--dry-run", action="store_true", help="say which stages of which runs would run; run nothing")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    only = None if args.only is None else tuple(args.only)
    try:
        outcome = run_sweep(args.sweep, only, tuple(args.force), parse_overrides(args.override), dry_run=args.dry_run)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    print(json.dumps(outcome, indent=2))
    print(f"experiments finished in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
