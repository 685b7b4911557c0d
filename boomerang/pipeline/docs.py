"""The records in docs/, generated from results/: templates hold the prose, every number comes from a table.

`docs/runs/<run>.md` is what a run shows (its stage 08); `experiments_doc` writes what a sweep shows (stage
11) with the rendering here. A preset whose recipe was searched for by hand links its record,
`docs/recipes/<run>.md`.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .. import artefacts as A
from ..config import REPO_ROOT, RunConfig
from ..io import write_text
from ..measure.curves import BETWEEN_TOLERANCE
from ..measure.harness import PRIMARY_METRIC
from .tables import markdown

TEMPLATES = REPO_ROOT / "docs" / "templates"
CHECK_TABLES = (A.CHECKS, A.LM_EVAL_CHECKS, A.ALIGNMENT_CHECKS)
RUN_DOC_STAGE, EXPERIMENTS_DOC_STAGE = "08_report", "11_experiments"  # the stages that write the docs
COMPARED = (A.METRICS, *CHECK_TABLES, A.RUN_RECORD)  # what a run's record reads of the runs it is set beside


def render(name: str, path: Path, **context) -> None:
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, keep_trailing_newline=True,
                      trim_blocks=True, lstrip_blocks=True)
    write_text(path, env.get_template(name).render(table=markdown, **context))


def relative(target: Path, doc: Path) -> str:
    """A link from `doc` to `target`."""
    return Path(os.path.relpath(target, doc.parent)).as_posix()


def perplexity_by_size(metrics: pd.DataFrame, order: str) -> pd.DataFrame:
    """Student, every interpolated size along `order` and the teacher, with naive pruning where it ran."""
    ppl = metrics[(metrics.task == "heldout") & (metrics.metric == "perplexity")]
    curve = ppl[(ppl.method.isin(["student", "teacher"])) | ((ppl.method == "interpolated") & (ppl.order == order))]
    naive = ppl[(ppl.method == "naive_pruned") & (ppl.order.isin([order, "none"]))]
    out = curve.assign(model=curve.method).sort_values(["num_layers", "k"])[
        ["model", "num_layers", "k", "authors_k", "params", "value"]].rename(columns={"value": "perplexity"})
    naive = naive.groupby("num_layers").value.last().rename("naive pruning")
    out = out.merge(naive, left_on="num_layers", right_index=True, how="left")
    out.loc[out.model != "interpolated", "naive pruning"] = float("nan")
    out["params"] = (out.params / 1e6).round(1)
    return out.rename(columns={"params": "params (M)", "authors_k": "authors' k"})


def lm_eval_by_model(scores: pd.DataFrame) -> pd.DataFrame:
    """Each model's primary metric on every task it was scored on."""
    primary = scores[scores.metric == scores.task.map(PRIMARY_METRIC)]
    wide = primary.pivot_table(index=["method", "order", "num_layers"], columns="task", values="value").reset_index()
    return wide.sort_values(["num_layers", "method"])


def run_checks(cfg: RunConfig) -> pd.DataFrame:
    """Every check of the run; the paper figure a check reproduces as written ("2"), empty where none."""
    tables = [pd.read_csv(a.path(cfg), dtype={"figure": str}, keep_default_na=False, na_values={"value": [""]})
              for a in CHECK_TABLES if a.path(cfg).exists()]
    return pd.concat(tables, ignore_index=True)


def how_it_ran(cfg: RunConfig, before: str | None = None) -> pd.DataFrame | None:
    """Each stage's seconds, precision, device and code version (`stages.csv`, written by the runner); with
    `before`, only the stages that precede that one (the stage writing a doc has no row of this run yet)."""
    path = A.RUN_RECORD.path(cfg)
    if not path.exists():
        return None
    record = pd.read_csv(path, keep_default_na=False, dtype=A.RUN_RECORD_TYPES)
    return record if before is None else record[record.stage < before].reset_index(drop=True)  # numbered names


def summary(record: pd.DataFrame) -> dict:
    """A run's record in one row: its precisions, devices, code versions and minutes in all."""
    return {"precision": ", ".join(sorted({p for p in record.precision if p})),
            "device": ", ".join(sorted(set(record.device))), "code": ", ".join(sorted(set(record.code))),
            "minutes": round(record.seconds.sum() / 60, 1)}


def side_by_side(cfg: RunConfig, other: str) -> dict[str, pd.DataFrame] | None:
    """This run beside run `other` (the same preset in another precision, say): held-out perplexity of every
    model both measured, every check, and each stage's time; None when `other` has no results."""
    there = cfg.model_copy(update={"name": other})
    if not A.METRICS.path(there).exists():
        return None
    names = (cfg.name, other)
    keys = ["method", "order", "k", "num_layers"]

    def perplexities(run: RunConfig) -> pd.DataFrame:
        m = pd.read_csv(A.METRICS.path(run))
        return m[(m.task == "heldout") & (m.metric == "perplexity")][keys + ["value"]]

    ppl = perplexities(cfg).merge(perplexities(there), on=keys, suffixes=names)
    ppl = ppl.rename(columns={f"value{n}": n for n in names}).sort_values(["order", "k", "method"])
    ppl["ratio"] = ppl[other] / ppl[cfg.name]
    checks = run_checks(cfg).merge(run_checks(there), on=["claim", "scope", "rule"], how="outer", suffixes=names)
    checks = checks[["claim", "scope", "rule"] + [f"{c}{n}" for n in names for c in ("value", "holds")]]
    checks.columns = ["claim", "scope", "rule"] + [f"{c} ({n})" for n in names for c in ("value", "holds")]
    records = {n: how_it_ran(r, before=RUN_DOC_STAGE) for n, r in zip(names, (cfg, there))}
    runs = pd.DataFrame([{"run": n, **summary(r)} for n, r in records.items() if r is not None and len(r)])
    times = None
    if all(r is not None for r in records.values()):
        times = pd.concat({n: r.set_index("stage").seconds for n, r in records.items()}, axis=1).reset_index()
        times.columns = ["stage"] + [f"{n} (s)" for n in names]
    return {"runs": runs, "times": times, "perplexity": ppl, "checks": checks}


def write_run_doc(cfg: RunConfig) -> Path:
    """docs/runs/<run>.md from the run's results/ and figures/."""
    doc = A.RUN_DOC.path(cfg)
    metrics = pd.read_csv(A.METRICS.path(cfg))
    ppl = metrics[(metrics.task == "heldout") & (metrics.metric == "perplexity")]
    ends = ppl[ppl.method.isin(["student", "teacher"])].set_index("method")
    read = lambda a: pd.read_csv(a.path(cfg)) if a.path(cfg).exists() else None  # noqa: E731
    log, scores, layout = read(A.DISTILL_LOG), read(A.LM_EVAL), read(A.LAYOUT)
    recipe = cfg.root / "docs" / "recipes" / f"{cfg.name}.md"  # hand-written, where a preset has one
    figures = {a: relative(cfg.figures_dir / f"{a}.png", doc)
               for a in ("fig2_interpolation_vs_naive_pruning", "fig2_lm_eval", "alignment_cka", "alignment_cosine",
                         "alignment_final_state_vs_perplexity", "fig_orders", "fig_frontier", "distill_log")
               if (cfg.figures_dir / f"{a}.png").exists()}
    render("run.md.j2", doc, cfg=cfg, ends=ends, layout=layout, log=log, comparison=read(A.ORDERS),
            optimum=read(A.OPTIMUM), cost=read(A.COST),
            orders={o: perplexity_by_size(metrics, o) for o in cfg.interpolate.orders},
            checks=read(A.CHECKS), lm_eval=lm_eval_by_model(scores) if scores is not None and len(scores) else None,
            lm_eval_checks=read(A.LM_EVAL_CHECKS), alignment_checks=read(A.ALIGNMENT_CHECKS), figures=figures,
            tolerance=BETWEEN_TOLERANCE, recipe=f"docs/recipes/{cfg.name}.md" if recipe.exists() else None,
            recipe_link=relative(recipe, doc), ran=how_it_ran(cfg, before=RUN_DOC_STAGE),
            compared={other: side_by_side(cfg, other) for other in cfg.compare_with})
    return doc


