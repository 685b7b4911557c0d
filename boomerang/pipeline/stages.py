"""The stages of a run as package functions. Each declares, beside its code, the config sections it reads
and the artefacts it reads and writes; the runner's stage lists, file names and cache keys all derive from
these declarations. Every stage runs without papermill; its numbered notebook calls it and tells the story.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from .. import artefacts as A
from ..artefacts import Artefact, figure, student_source
from ..config import RunConfig
from ..core.arch import num_layers, parameter_counts, ties_embeddings
from ..core.orders import FIXED_ORDERS
from ..core.patch import endpoint_gaps, export_round_trip, interpolants, unique_tensor_bytes
from ..core.prune import build_student, layout_from_config, read_layout, save_student
from ..device import resolve_run
from ..distill.train import train
from ..family import Family, interpolation_table
from ..io import write_csv, write_json
from ..measure.align import alignment_checks, alignment_table
from ..measure.baselines import layer_pruning_table
from ..measure.flops import flops_table
from ..measure.harness import harness_checks, lm_eval_table, panel_scores
from ..measure.offshelf import pair_family, pair_metrics, pair_sequences
from ..measure.cost import cost_table
from ..measure.models import run_family
from ..measure.curves import boomerang_checks, order_comparison, size_table
from ..measure.perplexity import heldout_table, measured_perplexities
from ..measure.search import Calibration, klpatch_order, optimum_table
from ..sources.student import check_released_student
from ..sources.teacher import load_teacher
from ..sources.text import heldout_sequences, train_batches
from . import docs, experiments_doc, plots, sweep_plots
from .claims import paper_claims
from .sweeps import PRESET, read_sweep

UNDISTILLED = "pruned, not distilled"


@dataclass(frozen=True)
class Stage:
    name: str  # also its notebook's name
    run: Callable[[RunConfig], Any]
    sections: tuple[str, ...]
    reads: tuple[Artefact, ...]
    writes: tuple[Artefact, ...]
    group: Literal["run", "experiments"]
    elsewhere: Callable[[RunConfig], list[Path]] | None = None  # files of other runs it reads


    @property
    def notebook(self) -> str:
        return f"{self.name}.ipynb"


STAGES: list[Stage] = []


def stage(name: str, sections: tuple[str, ...] = (), reads: tuple[Artefact, ...] = (),
          writes: tuple[Artefact, ...] = (), group: Literal["run", "experiments"] = "run",
          elsewhere: Callable[[RunConfig], list[Path]] | None = None):
    """Declare a stage function and register it, in definition order."""
    def register(fn):
        STAGES.append(Stage(name, fn, sections, reads, writes, group, elsewhere))
        return fn
    return register


def stages(group: str) -> list[Stage]:
    return [s for s in STAGES if s.group == group]


def _calibration(cfg: RunConfig, family: Family) -> Calibration:
    """The first `interpolate.calibration_tokens` of the training stream, with the teacher's predictions."""
    sequences = next(train_batches(cfg.data, family.tokenizer,
                                   max(1, cfg.interpolate.calibration_tokens // cfg.data.seq_len), cfg.seed))
    return Calibration(family.teacher, sequences, cfg.evaluate.batch_size, cfg.evaluate.mixed_precision)


# --- a run ----------------------------------------------------------------------------------------

@stage("01_prune", ("seed", "teacher", "prune"), writes=(A.STUDENT_INIT, A.LAYOUT))
def prune(cfg: RunConfig) -> dict[str, pd.DataFrame]:
    """The student's layout and, unless a distilled student is given, the pruned student itself, saved in
    the released format; the layout table and both models' parameter counts."""
    teacher, tokenizer = load_teacher(cfg.teacher)
    if cfg.prune.student:
        layout = read_layout(cfg.prune.student)
        student = check_released_student(cfg.prune.student, teacher, layout)
        shutil.rmtree(A.STUDENT_INIT.path(cfg), ignore_errors=True)  # not this run's: nothing to distil
    else:
        layout = layout_from_config(cfg.prune, num_layers(teacher.config))
        student = build_student(teacher, layout, cfg.prune.init, cfg.seed)
        save_student(student, layout, A.STUDENT_INIT.path(cfg), tokenizer)
    table = layout.table()
    write_csv(A.LAYOUT.path(cfg), table)
    tied = ties_embeddings(teacher.config)
    params = pd.DataFrame([{"model": name, **parameter_counts(model, tied)}
                           for name, model in (("teacher", teacher), ("student", student))])
    return {"layout": table, "params": params}


@stage("02_distill", ("data", "distill"), reads=(A.STUDENT_INIT,), writes=(A.STUDENT, A.DISTILL_LOG))
def distill(cfg: RunConfig) -> pd.DataFrame | None:
    """Distil the student, in `distill.num_processes` processes (launched here with torchrun, each reading
    this very config); the per-step log, or None for a released student."""
    if cfg.prune.student:
        return None
    if cfg.distill.num_processes == 1:
        train(cfg)
    else:
        resolved = A.RESOLVED_CONFIG.path(cfg)  # every process computes in the precision decided here
        write_json(resolved, resolve_run(cfg)[0].model_dump(mode="json"))
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                        str(cfg.distill.num_processes), "-m", "boomerang.distill", "--config", str(resolved)],
                       check=True)
    return pd.read_csv(A.DISTILL_LOG.path(cfg))


@stage("03_interpolate", ("interpolate", "evaluate"), reads=(A.STUDENT,), writes=(A.INTERPOLANTS, A.EXPORTS))
def interpolate(cfg: RunConfig) -> dict[str, Any]:
    """Every size along each order (KLPatch's chosen here, on calibration text), with checks that make the
    method's promises concrete: both endpoints reproduce teacher and student exactly, all sizes together
    own no tensors, an exported size reloads with identical logits."""
    family = Family.load(cfg.teacher, student_source(cfg))
    kls: list[float] = []
    if "klpatch" in cfg.interpolate.orders:
        family.chosen_orders["klpatch"], kls = klpatch_order(family, _calibration(cfg, family))
    table = interpolation_table(family, cfg.interpolate.orders)
    table["calibration_kl"] = [kls[k - 1] if o == "klpatch" and k else float("nan") for o, k in zip(table.order, table.k)]
    write_csv(A.INTERPOLANTS.path(cfg), table)
    sample = heldout_sequences(cfg.data, family.tokenizer, 2 * cfg.data.seq_len)
    gaps = endpoint_gaps(family.teacher, family.student, family.layout, sample)
    if any(gaps.values()):
        raise AssertionError(f"patched endpoints differ from teacher or student: {gaps}")
    models = [m for order in cfg.interpolate.orders for _, m in family.sweep(order)]
    memory = {"teacher + student (MiB)": unique_tensor_bytes([family.teacher, family.student]) / 2**20,
              f"with all {len(models)} sizes (MiB)": unique_tensor_bytes([family.teacher, family.student, *models]) / 2**20}
    del models
    shutil.rmtree(A.EXPORTS.path(cfg), ignore_errors=True)
    exports = []
    for order in cfg.interpolate.orders:
        for k in cfg.interpolate.export_k:
            spec = family.interpolants(order)[k]
            gap = export_round_trip(family.model(spec.blocks), A.EXPORTS.path(cfg) / f"{order}_k{k}",
                                    family.tokenizer, sample)
            if gap != 0:
                raise AssertionError(f"exported {order} k={k} reloads with logits {gap} away")
            exports.append({"order": order, "k": k, "num_layers": spec.num_layers, "max logit gap": gap})
    return {"interpolants": table, "endpoint gaps": gaps, "memory": memory, "exports": pd.DataFrame(exports)}


@stage("04_evaluate", ("evaluate",), reads=(A.STUDENT,),
       writes=(A.METRICS, A.CHECKS, figure("fig2_interpolation_vs_naive_pruning")))
def evaluate(cfg: RunConfig) -> dict[str, Any]:
    """Held-out perplexity of the teacher, the student, every size and naive pruning, one row per size; the
    boomerang checks; Fig. 2 for this run."""
    family, e = run_family(cfg), cfg.evaluate
    sequences = heldout_sequences(cfg.data, family.tokenizer, e.eval_tokens)
    metrics = heldout_table(family, sequences, cfg.interpolate.orders, e.batch_size, e.mixed_precision, e.naive_stride)
    write_csv(A.METRICS.path(cfg), metrics)
    checks = boomerang_checks(metrics, figure="2")
    write_csv(A.CHECKS.path(cfg), checks)
    return {"metrics": metrics, "sizes": size_table(metrics), "checks": checks, "figures": plots.save_all(
                {"fig2_interpolation_vs_naive_pruning": plots.boomerang_figure(metrics)}, cfg.figures_dir)}


@stage("05_lm_eval", ("lm_eval",), reads=(A.STUDENT,), writes=(A.LM_EVAL, A.LM_EVAL_CHECKS, A.LM_EVAL_SAMPLES))
def lm_eval(cfg: RunConfig) -> dict[str, pd.DataFrame]:
    """Every model of the run scored by lm-evaluation-harness in memory; per task, the checks."""
    samples = A.LM_EVAL_SAMPLES.path(cfg)
    shutil.rmtree(samples, ignore_errors=True)
    scored = lm_eval_table(cfg, run_family(cfg), samples if cfg.lm_eval.log_samples else None)
    write_csv(A.LM_EVAL.path(cfg), scored)
    checks = harness_checks(scored)
    write_csv(A.LM_EVAL_CHECKS.path(cfg), checks)
    return {"scores": scored, "checks": checks}


@stage("06_alignment", ("align",), reads=(A.STUDENT, A.METRICS),
       writes=(A.ALIGNMENT, A.ALIGNMENT_CHECKS, figure("alignment_cka"), figure("alignment_cosine"),
               figure("alignment_final_state_vs_perplexity")))
def alignment(cfg: RunConfig) -> dict[str, Any]:
    """CKA and aligned-layer cosines of the distilled and the undistilled student against the teacher, the
    final-state cosine of every size; the checks and their figures."""
    family = run_family(cfg)
    distilled = "distilled" if cfg.prune.init == "teacher" else f"distilled ({cfg.prune.init} init)"
    students = {UNDISTILLED: family.undistilled().student, distilled: family.student}
    sequences = heldout_sequences(cfg.data, family.tokenizer, cfg.align.eval_tokens)
    table = alignment_table(family, students, sequences, cfg.interpolate.orders, cfg.align.batch_size,
                            cfg.align.tokens_per_minibatch)
    write_csv(A.ALIGNMENT.path(cfg), table)
    checks = alignment_checks(table, reference=UNDISTILLED)
    write_csv(A.ALIGNMENT_CHECKS.path(cfg), checks)
    drawn = {"alignment_cka": plots.cka_figure(table), "alignment_cosine": plots.cosine_figure(table),
             "alignment_final_state_vs_perplexity": plots.final_cosine_figure(table, pd.read_csv(A.METRICS.path(cfg)))}
    return {"alignment": table, "checks": checks,
            "figures": plots.save_all(drawn, cfg.figures_dir)}


@stage("07_sizes", ("sizes", "evaluate"), reads=(A.STUDENT, A.INTERPOLANTS, A.METRICS),
       writes=(A.ORDERS, A.OPTIMUM, A.COST, figure("fig_orders"), figure("fig_frontier")))
def sizes(cfg: RunConfig) -> dict[str, Any]:
    """Beyond the paper, for a practitioner choosing a size: every order at every size (KLPatch against the
    fixed orders), the exact optimum of KLPatch's objective where trying every subset is affordable, and
    what each size costs to run on this device."""
    family = run_family(cfg)
    metrics = pd.read_csv(A.METRICS.path(cfg))
    orders = order_comparison(metrics, cfg.interpolate.orders)
    write_csv(A.ORDERS.path(cfg), orders)
    optimum = None
    if cfg.sizes.exhaustive_blocks:
        e = cfg.evaluate
        optimum = optimum_table(family, _calibration(cfg, family), cfg.interpolate.orders, cfg.sizes.exhaustive_blocks,
                                heldout_sequences(cfg.data, family.tokenizer, e.eval_tokens), e.batch_size,
                                e.mixed_precision, measured_perplexities(family, metrics, cfg.interpolate.orders))
        write_csv(A.OPTIMUM.path(cfg), optimum)
    else:
        A.OPTIMUM.path(cfg).unlink(missing_ok=True)
    cost = cost_table(family, cfg.interpolate.orders, cfg.sizes.cost_prompt_tokens, cfg.sizes.cost_new_tokens,
                      cfg.evaluate.mixed_precision)
    write_csv(A.COST.path(cfg), cost)
    drawn = {"fig_orders": plots.orders_figure(orders, optimum), "fig_frontier": plots.frontier_figure(metrics, cost)}
    return {"orders": orders, "optimum": optimum, "cost": cost,
            "figures": plots.save_all(drawn, cfg.figures_dir)}


def compared_results(cfg: RunConfig) -> list[Path]:
    """The results of the runs this run's record is set beside (`compare_with`)."""
    return [a.path(cfg.model_copy(update={"name": other})) for other in cfg.compare_with for a in docs.COMPARED]


@stage("08_report", ("compare_with",), reads=(A.DISTILL_LOG, A.METRICS, A.LM_EVAL, A.CHECKS, A.LM_EVAL_CHECKS,
                                            A.ALIGNMENT_CHECKS, A.RUN_RECORD),
       writes=(figure("distill_log"), figure("fig2_lm_eval"), A.RUN_DOC), elsewhere=compared_results)
def report(cfg: RunConfig) -> dict[str, Any]:
    """The distillation curves, Figs. 2-3 through lm-eval (every task, or the paper's averages) and the
    run's record in docs/, all drawn from results/ only. Every check of the run."""
    drawn = {}
    if A.DISTILL_LOG.path(cfg).exists() and not cfg.prune.student:
        drawn["distill_log"] = plots.distill_log_figure(pd.read_csv(A.DISTILL_LOG.path(cfg)))
    scores = pd.read_csv(A.LM_EVAL.path(cfg)) if A.LM_EVAL.path(cfg).exists() else None
    panels = panel_scores(scores) if scores is not None else None
    if panels is not None and len(panels):
        drawn["fig2_lm_eval"] = plots.harness_figure(panels)
    checks = docs.run_checks(cfg)
    docs.write_run_doc(cfg)
    return {"panels": panels, "checks": checks,
            "figures": plots.save_all(drawn, cfg.figures_dir)}


# --- experiments over a sweep ---------------------------------------------------------------------

@stage("09_layer_pruning", ("seed", "teacher", "data", "prune", "interpolate", "evaluate", "layer_pruning"),
       reads=(A.STUDENT,), writes=(A.LAYER_PRUNING, A.FLOPS), group="experiments")
def layer_pruning(cfg: RunConfig) -> dict[str, pd.DataFrame]:
    """ShortGPT and LaCo at every size the interpolation covers (Fig. 7), and the FLOPs of distilling
    every size separately against once (Table 3)."""
    teacher, tokenizer = load_teacher(cfg.teacher)
    layout = read_layout(student_source(cfg))
    sizes = sorted({s.num_layers for order in FIXED_ORDERS for s in interpolants(layout, order)
                    if s.num_layers < layout.num_teacher_layers})
    table = layer_pruning_table(cfg, teacher, tokenizer, sizes)
    write_csv(A.LAYER_PRUNING.path(cfg), table)
    d = cfg.distill
    tokens = d.steps * d.batch_size * d.grad_accum * d.num_processes * cfg.data.seq_len
    flops = flops_table(teacher, sizes, layout.num_teacher_layers, tokens, cfg.data.seq_len)
    write_csv(A.FLOPS.path(cfg), flops)
    return {"layer_pruning": table, "flops": flops}


@stage("10_offshelf_pairs", ("data", "offshelf"), writes=(A.OFFSHELF,), group="experiments")
def offshelf_pairs(cfg: RunConfig) -> pd.DataFrame | None:
    """Fig. 6: released distilled models interpolated with their teachers, no training of ours (the hub
    presets name the pairs; with none the stage writes nothing)."""
    o, tables = cfg.offshelf, []
    for name, pair in o.pairs.items():
        family, masked = pair_family(pair.teacher, pair.student, o.layers)
        tables.append(pair_metrics(name, family, masked, pair_sequences(o, cfg.data, family.tokenizer, masked), o))
    if not tables:
        A.OFFSHELF.path(cfg).unlink(missing_ok=True)  # a table from an earlier config with pairs would be stale
        return None
    table = pd.concat(tables, ignore_index=True)
    write_csv(A.OFFSHELF.path(cfg), table)
    return table


@stage("11_experiments", ("experiments",), reads=(A.METRICS, A.COST, A.LAYER_PRUNING, A.FLOPS, A.OFFSHELF),
       writes=(A.CLAIMS, A.EXPERIMENTS_DOC), group="experiments")
def experiments(cfg: RunConfig) -> dict[str, Any]:
    """The paper's comparative claims over the sweep's runs and one figure per paper figure, from results/
    only; the experiments' record in docs/."""
    sweep = read_sweep(cfg.experiments.sweep)
    runs = sweep.load_runs(cfg.root / "results")
    offshelf = pd.read_csv(A.OFFSHELF.path(cfg)) if A.OFFSHELF.path(cfg).exists() else None
    layer_pruning = pd.read_csv(A.LAYER_PRUNING.path(cfg))
    claims = paper_claims(sweep, runs, layer_pruning, pd.read_csv(A.FLOPS.path(cfg)), offshelf)
    write_csv(A.CLAIMS.path(cfg), claims)
    older = sweep.without_record(cfg.root / "results")
    drawn = sweep_plots.sweep_figures(sweep, runs, layer_pruning, offshelf, cfg.interpolate.orders, cfg.figures_dir, older)
    if A.COST.path(cfg).exists() and PRESET in runs:  # the frontier again, with ShortGPT and LaCo
        drawn["fig_frontier_baselines"] = plots.save(
            plots.frontier_figure(runs[PRESET], pd.read_csv(A.COST.path(cfg)), layer_pruning), cfg.figures_dir,
            "fig_frontier_baselines")
    readings = experiments_doc.claim_readings(sweep, claims)
    experiments_doc.write_experiments_doc(cfg, sweep, runs, claims, readings)
    return {"claims": claims, "readings": readings, "figures": drawn, "runs": sorted(runs)}
