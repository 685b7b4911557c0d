"""A sweep of the tiny run: the preset, one variant, the layer-pruning baselines, an off-the-shelf pair and
the claims table."""
import pandas as pd
import pytest
import yaml

from boomerang.claims import paper_claims
from boomerang.evaluate import interpolation_curve
from boomerang.config import load_config
from boomerang.experiments import read_sweep, run_sweep


def test_sweep_runs_variants_baselines_and_claims(run_config, tmp_path, released_gpt2_pair):
    preset = yaml.safe_load(run_config.read_text())
    preset["offshelf"] = {"pairs": {"tiny-gpt2": released_gpt2_pair}, "eval_tokens": 64,
                          "seq_len": 16, "batch_size": 4}
    run_config.write_text(yaml.safe_dump(preset))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"preset": run_config.name, "common": {"lm_eval.tasks": []},
                                     "variants": {"random-init": {"prune.init": "random"}}}))
    outcome = run_sweep(sweep, log=lambda *_: None)
    cfg = load_config(run_config)
    assert set(outcome) == {"preset", "random-init", "experiments"}
    variant = pd.read_csv(tmp_path / "results" / "tiny--random-init" / "metrics.csv")
    assert set(variant.task) == {"heldout"}  # lm-eval switched off for variants

    pruning = pd.read_csv(cfg.results_dir / "layer_pruning.csv")
    # the tiny layout spans sizes 4..5 below the 6-layer teacher
    assert set(pruning.method) == {"shortgpt", "laco"} and set(pruning.num_layers) == {4, 5}
    flops = pd.read_csv(cfg.results_dir / "flops.csv").set_index("num_layers").flops
    assert float(flops["saving factor"]) > 2

    claims = pd.read_csv(cfg.results_dir / "claims.csv")
    random_claim = claims[claims.claim.str.startswith("random-init")]
    assert len(random_claim) == 2 and set(random_claim.holds.astype(str)) <= {"True", "False"}
    assert (claims[claims.claim.str.contains("every 4th")].holds == "not run").all()
    offshelf = claims[claims.figure == "6"]
    assert len(offshelf) == 6 and set(offshelf.holds.astype(str)) <= {"True", "False"}  # 3 checks x 2 orders
    for name in ("fig2_random_init", "fig7_layer_pruning", "fig6_offshelf_tiny-gpt2"):
        assert (cfg.figures_dir / f"{name}.png").stat().st_size > 1000

    again = run_sweep(sweep, log=lambda *_: None)
    assert set(again["random-init"].values()) == {"cached"}
    assert again["experiments"]["08_layer_pruning"] == "cached"
    # a dry run with a new variant setting names exactly the stages it would re-run
    sweep.write_text(yaml.safe_dump({"preset": run_config.name, "common": {"lm_eval.tasks": []},
                                     "variants": {"random-init": {"prune.init": "random", "distill.lr": 1e-4}}}))
    planned = run_sweep(sweep, log=lambda *_: None, dry_run=True)
    assert set(planned["preset"].values()) == {"cached"}
    assert [v == "cached" for v in planned["random-init"].values()] == [True] + [False] * 6
    assert planned["experiments"]["10_experiments"] == "would run: forced"


def test_claims_rules_on_a_hand_made_table():
    def run(student, interp, teacher=10.0, naive=1000.0):
        rows = [{"method": "student", "order": "none", "k": 0, "num_layers": 2, "value": student},
                {"method": "teacher", "order": "none", "k": 3, "num_layers": 5, "value": teacher}]
        for k, v in enumerate(interp, 1):
            rows += [{"method": "interpolated", "order": "first_to_last", "k": k, "num_layers": 2 + k, "value": v},
                     {"method": "naive_pruned", "order": "first_to_last", "k": k, "num_layers": 2 + k, "value": naive}]
        return pd.DataFrame(rows)

    runs = {"preset": run(40, [30, 20]), "every-4th": run(60, [70, 20]), "random-init": run(500, [400, 100])}
    claims = paper_claims(runs).set_index("claim")
    assert claims.filter(like="naive pruning", axis=0).holds.item() is True
    assert claims.filter(like="every 4th", axis=0).holds.item() is True  # rho -0.4 > -0.9
    assert claims.filter(like="random-init", axis=0).value.item() == 5.0  # min(400/30, 100/20)
    assert claims.filter(like="every 3rd", axis=0).holds.item() == "not run"
    assert claims.filter(like="released distilled models", axis=0).holds.item() == "not run"

    # ablations measured against a named reference run; naive pruning still against the preset
    runs = {"preset": run(40, [30, 20], naive=60.0), "paper-recipe": run(50, [80, 20]),
            "random-init": run(500, [400, 100])}
    claims = paper_claims(runs, reference="paper-recipe").set_index("claim")
    assert claims.filter(like="random-init", axis=0).value.item() == 5.0  # min(400/80, 100/20)
    assert claims.filter(like="naive pruning", axis=0).value.item() == 2.0  # min(60/30, 60/20)
    missing = paper_claims({"preset": runs["preset"], "random-init": runs["random-init"]}, reference="paper-recipe")
    assert missing.set_index("claim").filter(like="random-init", axis=0).holds.item() == "not run"
    # a claim on a variant's own curve does not wait for the reference
    alone = paper_claims({"preset": runs["preset"], "every-4th": run(60, [70, 20])}, reference="paper-recipe")
    assert alone.set_index("claim").filter(like="every 4th", axis=0).holds.item() is True


def test_a_sweep_names_an_existing_reference(tmp_path, run_config):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"preset": str(run_config), "reference": "paper-recipe",
                                     "variants": {"paper-recipe": {"distill.patch_prob": 0.0}}}))
    assert read_sweep(sweep).reference == "paper-recipe"
    assert read_sweep(sweep).run_config("paper-recipe").name.endswith("--paper-recipe")
    sweep.write_text(yaml.safe_dump({"preset": str(run_config), "reference": "typo", "variants": {}}))
    with pytest.raises(ValueError, match="reference 'typo'"):
        read_sweep(sweep)


def test_a_curve_runs_from_the_student_itself_to_the_teacher():
    """Patches of one-layer blocks keep the end sizes; once trained they are other models, not the ends."""
    ends = [("student", 0, 2, 40.0), ("teacher", 4, 5, 10.0)]
    patched = [("interpolated", 1, 2, 400.0), ("interpolated", 2, 3, 30.0), ("interpolated", 3, 4, 20.0),
               ("interpolated", 4, 5, 12.0)]
    table = pd.DataFrame([{"method": m, "order": "none" if m != "interpolated" else "first_to_last", "k": k,
                           "num_layers": n, "value": v} for m, k, n, v in ends + patched])
    curve = interpolation_curve(table, "first_to_last")
    assert list(curve.method) == ["student", "interpolated", "interpolated", "teacher"]
    assert list(curve.value) == [40.0, 30.0, 20.0, 10.0]
