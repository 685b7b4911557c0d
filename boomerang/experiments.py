"""The paper's baselines and ablations as sweeps of pipeline runs over one preset, then one figures notebook.

A sweep file (configs/sweeps/) names a preset and variants, each a dict of overrides. Each variant is the
ordinary pipeline under the run name `<preset>--<variant>`, so every stage is cached per variant and the
teacher, the text and the token cache are shared. The ablations are compared with the sweep's `reference`:
the preset's own run, or a variant (the CPU sweep's `paper-recipe`, the paper's loss without the preset's
patch-aware steps and tail term). Then `08_layer_pruning` (ShortGPT, LaCo, FLOPs), `09_offshelf_pairs`
(released distilled models and their teachers, hub presets only) and `10_experiments` (one figure per paper
figure, `claims.csv`) run on the preset.

    python -m boomerang.experiments --sweep configs/sweeps/smollm2-cpu.yaml [--only random-init ...]
    python -m boomerang.experiments --only      # no variant: layer-pruning baselines, figures, claims
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import pipeline
from .config import REPO_ROOT, RunConfig, load_config

EXPERIMENT_STAGES = (
    pipeline.Stage("08_layer_pruning.ipynb", ("seed", "teacher", "data", "prune", "evaluate", "layer_pruning")),
    pipeline.Stage("09_offshelf_pairs.ipynb", ("data", "offshelf")),
    pipeline.Stage("10_experiments.ipynb", ()),
)


@dataclass(frozen=True)
class Sweep:
    """A sweep file: the preset, overrides common to every variant, the variants, and the run the ablations
    are compared with (`reference`: a variant's name, or "preset")."""

    preset: str
    common: dict
    variants: dict[str, dict]
    reference: str = "preset"

    def overrides(self, label: str) -> dict:
        """What turns the preset into run `label` ("preset" or a variant): its run name included."""
        if label == "preset":
            return {}
        return {**self.common, **self.variants[label], "name": variant_name(self.preset, label)}

    def run_config(self, label: str) -> RunConfig:
        return load_config(self.preset, self.overrides(label))


def read_sweep(path: str | Path) -> Sweep:
    path = Path(path) if Path(path).exists() else REPO_ROOT / path
    sweep = yaml.safe_load(path.read_text())
    unknown = set(sweep) - {"preset", "common", "variants", "reference"}
    if unknown or "preset" not in sweep:
        raise ValueError(f"{path}: a sweep has `preset`, `common`, `variants` and `reference`; got {sorted(sweep)}")
    variants = sweep.get("variants") or {}
    reference = sweep.get("reference", "preset")
    if reference != "preset" and reference not in variants:
        raise ValueError(f"{path}: reference {reference!r} is neither 'preset' nor a variant ({sorted(variants)})")
    preset = str((path.parent / sweep["preset"]).resolve())
    return Sweep(preset, sweep.get("common") or {}, variants, reference)


def variant_name(preset: str, variant: str) -> str:
    return f"{load_config(preset).name}--{variant}"


def run_sweep(path: str | Path, only: tuple[str, ...] | None = None, force: tuple[str, ...] = (),
              log=print, dry_run: bool = False) -> dict[str, dict[str, str]]:
    """Run the preset, the variants (all, or those in `only`; `()` for none) and the experiment notebooks;
    `force` re-runs the named stages of every run (e.g. `07_figures` to redraw after a plotting change).
    `dry_run` runs nothing and says what would run."""
    sweep = read_sweep(path)
    unknown = set(only or ()) - set(sweep.variants)
    if unknown:
        raise SystemExit(f"unknown variant(s) {sorted(unknown)}; the sweep has {sorted(sweep.variants)}")
    outcome = {"preset": pipeline.run(sweep.preset, force=force, log=log, dry_run=dry_run)}
    for i, name in enumerate(sweep.variants, 1):
        if only is not None and name not in only:
            continue
        log(f"=== variant {i}/{len(sweep.variants)}: {name}")
        outcome[name] = pipeline.run(sweep.preset, sweep.overrides(name), force=force, log=log,
                                     dry_run=dry_run)
    outcome["experiments"] = pipeline.run(sweep.preset, {"experiments.sweep": str(Path(path).resolve())},
                                          force=("10_experiments", *force), stages=EXPERIMENT_STAGES, log=log,
                                          dry_run=dry_run)
    return outcome


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", default="configs/sweeps/smollm2-cpu.yaml")
    parser.add_argument("--only", nargs="*", default=None,
                        help="variants to run (default: all; `--only` alone: none, just the figures)")
    parser.add_argument("--force", nargs="*", default=(), help="stage names to re-run in every run, e.g. 07_figures")
    parser.add_argument("--dry-run", action="store_true", help="say which stages of which runs would run; run nothing")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    only = None if args.only is None else tuple(args.only)
    print(json.dumps(run_sweep(args.sweep, only, tuple(args.force), dry_run=args.dry_run), indent=2))
    print(f"experiments finished in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
