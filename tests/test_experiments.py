"""A sweep of the tiny run: the preset, one variant, the layer-pruning baselines, an off-the-shelf pair and
the claims table; and the claims' rules on hand-made tables, by the roles the sweep file gives."""
import re

import pandas as pd
import pytest
import yaml

from boomerang import artefacts as A
from boomerang.config import ConfigError, load_config
from boomerang.measure.curves import interpolation_curve
from boomerang.pipeline import experiments_doc, sweep_plots
from boomerang.pipeline.claims import paper_claims
from boomerang.pipeline.experiments import run_sweep
from boomerang.pipeline.sweeps import read_sweep

FIGURES = {"fig2_random_init": {"paper": "2", "title": "initialisation", "reference": "pruning init",
                                 "paper_reports": "random weights fall off"},
           "fig8_student_size": {"paper": "8", "title": "student size", "reference": "every 2nd layer"}}


def write_sweep(path, preset, variants, **extra):
    path.write_text(yaml.safe_dump({"preset": str(preset), "common": {"lm_eval.tasks": []}, "figures": FIGURES,
                                    "variants": variants, **extra}))
    return path


def test_sweep_runs_variants_baselines_and_claims(run_config, tmp_path, released_gpt2_pair):
    preset = yaml.safe_load(run_config.read_text())
    preset["offshelf"] = {"pairs": {"tiny-gpt2": released_gpt2_pair}, "eval_tokens": 64, "seq_len": 16,
                          "batch_size": 4}
    run_config.write_text(yaml.safe_dump(preset))
    random_init = {"figure": "fig2_random_init", "roles": ["random_init"], "label": "random init",
                   "overrides": {"prune.init": "random"}}
    sweep = write_sweep(tmp_path / "sweep.yaml", run_config.name, {"random-init": random_init})
    outcome = run_sweep(sweep, log=lambda *_: None)
    cfg = load_config(run_config)
    assert set(outcome) == {"preset", "random-init", "experiments"}
    variant = pd.read_csv(tmp_path / "results" / "tiny--random-init" / "metrics.csv")
    assert set(variant.task) == {"heldout"}
    assert pd.read_csv(tmp_path / "results" / "tiny--random-init" / "lm_eval.csv").empty  # lm-eval off for variants
    # and its executed notebooks say so where the preset's would show lm-eval, rather than a blank cell
    executed = tmp_path / "results" / "tiny--random-init" / "notebooks"
    for notebook in ("05_lm_eval", "08_report"):
        assert "Not measured in this run: lm-eval (`lm_eval.tasks: []`)" in (executed / f"{notebook}.ipynb").read_text()

    pruning = pd.read_csv(A.LAYER_PRUNING.path(cfg))
    # the tiny layout spans sizes 4..5 below the 6-layer teacher
    assert set(pruning.method) == {"shortgpt", "laco"} and set(pruning.num_layers) == {4, 5}
    flops = pd.read_csv(A.FLOPS.path(cfg)).set_index("num_layers").flops
    assert float(flops["saving factor"]) > 2

    claims = pd.read_csv(A.CLAIMS.path(cfg))
    random_claim = claims[claims.claim.str.startswith("random-init")]
    assert len(random_claim) == 2 and set(random_claim.holds.astype(str)) <= {"True", "False"}
    assert set(random_claim.figure.astype(str)) == {"2"}
    offshelf = claims[claims.figure.astype(str) == "6"]
    assert len(offshelf) == 6 and set(offshelf.holds.astype(str)) <= {"True", "False"}  # 3 checks x 2 orders
    for name in ("fig2_random_init", "fig7_layer_pruning", "fig6_offshelf_tiny-gpt2"):
        assert (cfg.figures_dir / f"{name}.png").stat().st_size > 1000
    doc = A.EXPERIMENTS_DOC.path(cfg).read_text()
    assert "random-init interpolation is worse" in doc and "fig2_random_init.png" in doc
    assert "**What the paper reports:** random weights fall off" in doc

    again = run_sweep(sweep, log=lambda *_: None)
    assert set(again["random-init"].values()) == {"cached"}
    assert again["experiments"]["09_layer_pruning"] == "cached"
    # a dry run with a new variant setting names exactly the stages it would re-run
    random_init["overrides"]["distill.lr"] = 1e-4
    write_sweep(sweep, run_config.name, {"random-init": random_init})
    planned = run_sweep(sweep, log=lambda *_: None, dry_run=True)
    assert set(planned["preset"].values()) == {"cached"}
    assert [v == "cached" for v in planned["random-init"].values()] == [True] + [False] * 7  # 01_prune cached
    assert planned["experiments"]["11_experiments"] == "would run: forced"

    # every run's time, precision and code version in the doc; a run without that record was made by older
    # code, and the doc and the figures say so
    assert re.search(r"\| random-init +\| +fp32 +\| .*threads.* \| [0-9a-f]{7}", doc), doc
    (tmp_path / "results" / "tiny--random-init" / "stages.csv").unlink()
    run_sweep(sweep, only=(), log=lambda *_: None)
    assert re.search(r"\| random-init +\|[ |]+older code: no record of how it ran", A.EXPERIMENTS_DOC.path(cfg).read_text())
    s = read_sweep(sweep)
    assert s.without_record(tmp_path / "results") == {"random-init"}
    figures = sweep_plots.sweep_figures(s, s.load_runs(tmp_path / "results"), pruning, None, cfg.interpolate.orders,
                                  tmp_path / "figures-again", s.without_record(tmp_path / "results"))
    legend = [t.get_text() for t in figures["fig2_random_init"].legends[0].get_texts()]
    assert legend == ["pruning init", "random init (older code)"]


def test_a_bad_variant_stops_the_sweep_before_any_run(run_config, tmp_path):
    sweep = write_sweep(tmp_path / "sweep.yaml", run_config.name, {"fine": {"overrides": {"distill.steps": 2}},
                                                                   "typo": {"overrides": {"distill.stepz": 2}}})
    with pytest.raises(ConfigError, match=r"sweep sweep.yaml, variant 'typo': tiny.yaml: unknown key 'distill.stepz'"):
        run_sweep(sweep, log=lambda *_: None)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def curve(student, interp, teacher=10.0, naive=1000.0, order="first_to_last"):
    rows = [{"method": "student", "order": "none", "k": 0, "num_layers": 2, "value": student},
            {"method": "teacher", "order": "none", "k": 3, "num_layers": 5, "value": teacher}]
    for k, v in enumerate(interp, 1):
        rows += [{"method": "interpolated", "order": order, "k": k, "num_layers": 2 + k, "value": v},
                 {"method": "naive_pruned", "order": order, "k": k, "num_layers": 2 + k, "value": naive}]
    return pd.DataFrame(rows)


def test_claims_follow_the_roles_of_the_sweep_file(tmp_path, run_config):
    variants = {"paper-recipe": {},
                "random-init": {"figure": "fig2_random_init", "roles": ["random_init"]},
                "every-4th": {"figure": "fig8_student_size", "roles": ["does_not_interpolate"], "label": "every 4th layer"},
                "every-3rd": {"figure": "fig8_student_size", "roles": ["interpolates"], "label": "every 3rd layer"}}
    sweep = read_sweep(write_sweep(tmp_path / "s.yaml", run_config, variants))
    runs = {"preset": curve(40, [30, 20]), "every-4th": curve(60, [70, 20]), "random-init": curve(500, [400, 100])}
    claims = paper_claims(sweep, runs).set_index("claim")
    assert claims.filter(like="naive pruning", axis=0).holds.item() is True
    assert claims.filter(like="every 4th", axis=0).holds.item() is True  # rho -0.4 > -0.9
    assert claims.filter(like="every 4th", axis=0).figure.item() == "8"
    assert claims.filter(like="random-init", axis=0).value.item() == 5.0  # min(400/30, 100/20): the preset is the default reference
    assert claims.filter(like="every 3rd", axis=0).holds.item() == "not run"
    assert claims.filter(like="released distilled models", axis=0).holds.item() == "not run"

    # ablations measured against a named reference run; naive pruning still against the preset
    sweep = read_sweep(write_sweep(tmp_path / "r.yaml", run_config, variants, reference="paper-recipe"))
    runs = {"preset": curve(40, [30, 20], naive=60.0), "paper-recipe": curve(50, [80, 20]),
            "random-init": curve(500, [400, 100])}
    claims = paper_claims(sweep, runs).set_index("claim")
    assert claims.filter(like="random-init", axis=0).value.item() == 5.0  # min(400/80, 100/20)
    assert claims.filter(like="naive pruning", axis=0).value.item() == 2.0  # min(60/30, 60/20)
    missing = paper_claims(sweep, {"preset": runs["preset"], "random-init": runs["random-init"]})
    assert missing.set_index("claim").filter(like="random-init", axis=0).holds.item() == "not run"
    # a claim on a variant's own curve does not wait for the reference
    alone = paper_claims(sweep, {"preset": runs["preset"], "every-4th": curve(60, [70, 20])})
    assert alone.set_index("claim").filter(like="every 4th", axis=0).holds.item() is True
    # an order the preset has and a variant never ran (made before the order existed) is not run for it
    klpatch = curve(40, [25, 15], order="klpatch").query("method not in ['student', 'teacher']")
    claims = paper_claims(sweep, {"preset": pd.concat([runs["preset"], klpatch]), "every-4th": curve(60, [70, 20])})
    every_4th = claims[claims.claim.str.contains("every 4th")].set_index("scope").holds
    assert every_4th.to_dict() == {"first_to_last": True, "klpatch": "not run"}


def test_a_sweep_names_existing_runs_figures_and_roles(tmp_path, run_config):
    ok = write_sweep(tmp_path / "s.yaml", run_config, {"paper-recipe": {"overrides": {"distill.patch_prob": 0.0}}},
                     reference="paper-recipe")
    assert read_sweep(ok).run_config("paper-recipe").name.endswith("--paper-recipe")
    for bad, message in [({"reference": "typo"}, "reference 'typo'"),
                         ({"variants": {"v": {"figure": "fig99"}}}, "figure 'fig99'"),
                         ({"variants": {"v": {"roles": ["new_role"]}}}, "roles"),
                         ({"variants": {"v": {"overides": {}}}}, "overides")]:
        extra = {"variants": {}, **bad}
        path = write_sweep(tmp_path / "bad.yaml", run_config, extra.pop("variants"), **extra)
        with pytest.raises(ConfigError, match=message):
            read_sweep(path)


def test_a_curve_runs_from_the_student_itself_to_the_teacher():
    """Patches of one-layer blocks keep the end sizes; once trained they are other models, not the ends."""
    ends = [("student", 0, 2, 40.0), ("teacher", 4, 5, 10.0)]
    patched = [("interpolated", 1, 2, 400.0), ("interpolated", 2, 3, 30.0), ("interpolated", 3, 4, 20.0),
               ("interpolated", 4, 5, 12.0)]
    table = pd.DataFrame([{"method": m, "order": "none" if m != "interpolated" else "first_to_last", "k": k,
                           "num_layers": n, "value": v} for m, k, n, v in ends + patched])
    curve_ = interpolation_curve(table, "first_to_last")
    assert list(curve_.method) == ["student", "interpolated", "interpolated", "teacher"]
    assert list(curve_.value) == [40.0, 30.0, 20.0, 10.0]


def test_a_verdict_shows_enough_digits_to_tell_its_value_from_the_threshold():
    claims = pd.DataFrame({"claim": ["a", "b", "c"], "rule": ["> 1", "> 1", "<= -0.9"], "scope": "first_to_last",
                           "value": [1.001075, 0.998987, -0.66667], "holds": [True, False, False]})
    cells = experiments_doc.verdicts(claims).first_to_last.tolist()
    assert cells == ["1.001: holds", "0.999: fails", "-0.667: fails"]


def test_the_doc_reads_each_figures_claims_beside_the_paper(tmp_path, run_config):
    figures = {**FIGURES, "fig8_student_size": {**FIGURES["fig8_student_size"], "paper_reports": "it interpolates",
                                                "to_settle": "more steps"}}
    variants = {"every-3rd": {"figure": "fig8_student_size", "roles": ["interpolates"], "label": "every 3rd layer"},
                "random-init": {"figure": "fig2_random_init", "roles": ["random_init"]}}
    sweep = read_sweep(write_sweep(tmp_path / "s.yaml", run_config, variants, figures=figures,
                                   readings={"7": {"paper_reports": "it beats ShortGPT"}}))
    klpatch = curve(40, [25, 15], order="klpatch").query("method not in ['student', 'teacher']")
    runs = {"preset": pd.concat([curve(40, [30, 20]), klpatch]), "every-3rd": curve(60, [70, 20])}
    readings = experiments_doc.claim_readings(sweep, paper_claims(sweep, runs))
    size = readings["8"]  # rho -0.8 along first_to_last: fails; no KLPatch curve for the variant
    assert size["reading"].paper_reports == "it interpolates" and size["fails"]
    assert size["runs"] == ["preset", "every-3rd"]
    assert size["verdicts"].to_dict("records") == [
        {"claim": "a student from every 3rd layer still interpolates (Spearman rho)", "rule": "<= -0.9",
         "first_to_last": "-0.8: fails", "klpatch": "not run"}]
    assert readings["2"]["runs"] == ["preset", "random-init"] and readings["2"]["reading"].paper_reports == \
        "random weights fall off"
    assert readings["6"]["reading"].paper_reports == "" and not readings["6"]["fails"]  # not run: nothing fails
    assert sweep.reading("7").paper_reports == "it beats ShortGPT"
