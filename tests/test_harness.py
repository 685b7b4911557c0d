import json
import math
from copy import deepcopy

import pytest
import torch

from boomerang.config import LmEvalConfig, OfflineTasksConfig, load_config
from boomerang.measure.harness import (Suite, harness_checks, harness_model, panel_scores, ratio_stderr, result_rows,
                                       task_manager)
from boomerang.core.patch import patch, patched_blocks
from boomerang.measure.tasks import TASK_NAMES, build_tasks, paragraphs
from tests.conftest import VOCAB
from tests.test_patch import trained_pair

SMALL_TASKS = OfflineTasksConfig(rolling_docs=3, rolling_words=60, lastword_items=6, cloze_items=5)


def heldout_text(corpus_dir) -> list[str]:
    return [(corpus_dir / "doc5.txt").read_text()]


def test_lm_eval_sees_the_models_own_logits_despite_retying(tokenizer):
    """lm-eval's HFLM calls `tie_weights()`. A patched model whose embedding is the student's and whose
    head is the teacher's must come through unchanged; declaring it tied would silently change it."""
    teacher, student, layout = trained_pair("llama")  # an architecture with tied embeddings
    model = patch(teacher, student, layout, patched_blocks(layout.num_blocks, 1, "last_to_first"))
    assert model.get_input_embeddings().weight is not model.lm_head.weight
    x = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        expected = model(x).logits
        lm = harness_model(model, tokenizer, LmEvalConfig(mixed_precision="no"))
        assert torch.equal(lm._model_call(x), expected)

        trap = deepcopy(model)
        trap.config.tie_word_embeddings = True
        harness_model(trap, tokenizer, LmEvalConfig(mixed_precision="no"))
        assert not torch.allclose(trap(x).logits, expected)  # the trap is real


def test_ratio_stderr_matches_the_plain_mean_when_weights_are_equal():
    values = [1.0, 2.0, 4.0, 7.0]
    pairs = [(v, 2.0) for v in values]
    mean = sum(values) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    assert ratio_stderr(pairs) == pytest.approx(sd / math.sqrt(4) / 2.0)


def test_task_files_are_deterministic(tmp_path, corpus_dir):
    texts = heldout_text(corpus_dir)
    a = build_tasks(texts, tmp_path / "a", SMALL_TASKS, seed=3)
    b = build_tasks(texts, tmp_path / "b", SMALL_TASKS, seed=3)
    c = build_tasks(texts, tmp_path / "c", SMALL_TASKS, seed=4)
    for name in TASK_NAMES:
        assert (a / f"{name}.jsonl").read_bytes() == (b / f"{name}.jsonl").read_bytes()
        assert (a / f"{name}.yaml").read_text() == (b / f"{name}.yaml").read_text().replace(str(b), str(a))
    assert (a / "boomerang_cloze.jsonl").read_bytes() != (c / "boomerang_cloze.jsonl").read_bytes()
    cloze = [json.loads(line) for line in (a / "boomerang_cloze.jsonl").read_text().splitlines()]
    assert len(cloze) == 5 and all(len(set(r["endings"])) == 4 for r in cloze)
    assert all(r["context"].split()[-1] for r in cloze)


def test_too_few_items_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="candidate items"):
        build_tasks(["One short paragraph only."], tmp_path, SMALL_TASKS)


def test_paragraphs_drop_speaker_names_and_stage_directions():
    text = "HAMLET.\n\n[Exit.]\n\n" + " ".join(["word"] * 20) + "\nmore words here"
    assert paragraphs(text) == [" ".join(["word"] * 20) + " more words here"]


def test_offline_tasks_run_through_lm_eval(tmp_path, corpus_dir, tokenizer, monkeypatch, run_config, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config(run_config)
    teacher, student, layout = trained_pair("llama")
    suite = Suite(["boomerang_offline"], task_manager(cfg), cfg.lm_eval)
    rows, output = suite.score(teacher, tokenizer)
    assert "requests" not in capsys.readouterr().err  # no per-request progress bars in executed notebooks
    got = {(r["task"], r["metric"]): r for r in rows}
    assert set(got) == {("boomerang_rolling", m) for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")} | {
        ("boomerang_lastword", "perplexity"), ("boomerang_lastword", "acc"),
        ("boomerang_cloze", "acc"), ("boomerang_cloze", "acc_norm")}
    assert len(output["samples"]["boomerang_cloze"]) == 5
    # a random model over a 101-token vocabulary: per-byte perplexity far above 1, stderr present
    assert got[("boomerang_rolling", "byte_perplexity")]["value"] > 1.5
    assert all(math.isfinite(r["stderr"]) and r["stderr"] >= 0 for r in rows)
    # word perplexity from lm-eval equals exp(-Σ loglik / Σ words) over its own per-document samples
    pairs = [s["word_perplexity"] for s in output["samples"]["boomerang_rolling"]]
    ll, words = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    assert got[("boomerang_rolling", "word_perplexity")]["value"] == pytest.approx(math.exp(-ll / words))
    # the suite is loaded once: another model gets its own scores, and the first its own again
    assert suite.score(student, tokenizer)[0] != rows
    assert suite.score(teacher, tokenizer)[0] == rows


def test_group_subtasks_fold_into_the_group():
    output = {"results": {"mmlu": {"acc,none": 0.3, "acc_stderr,none": 0.01, "alias": "mmlu"},
                          "mmlu_law": {"acc,none": 0.2, "acc_stderr,none": 0.02},
                          "gsm8k_cot": {"exact_match,strict-match": 0.1, "exact_match_stderr,strict-match": 0.01}},
              "group_subtasks": {"mmlu": ["mmlu_law"]}}
    rows = result_rows(output)
    assert [(r["task"], r["metric"]) for r in rows] == [("mmlu", "acc"), ("gsm8k_cot", "exact_match,strict-match")]


def _metrics_row(model, method, task, metric, value, stderr, params, order="none"):
    return {"model": model, "method": method, "order": order, "k": 0, "authors_k": 0, "num_layers": 1, "params": params,
            "params_inference": params, "task": task, "metric": metric, "value": value, "stderr": stderr,
            "batch_size": 4}


def test_checks_and_panels_from_a_table():
    import pandas as pd

    rows = [_metrics_row("teacher", "teacher", "boomerang_lastword", "acc", 0.40, 0.02, 30),
            _metrics_row("student", "student", "boomerang_lastword", "acc", 0.20, 0.02, 10),
            _metrics_row("i1", "interpolated", "boomerang_lastword", "acc", 0.25, 0.02, 15, "first_to_last"),
            _metrics_row("i2", "interpolated", "boomerang_lastword", "acc", 0.17, 0.02, 20, "first_to_last"),
            _metrics_row("i3", "interpolated", "boomerang_lastword", "acc", 0.10, 0.02, 25, "first_to_last"),
            _metrics_row("teacher", "teacher", "heldout", "perplexity", 40.0, 1.0, 30)]
    metrics = pd.DataFrame(rows)
    checks = harness_checks(metrics[metrics.task != "heldout"]).set_index("claim").value
    assert checks.iloc[0] == pytest.approx(0.2 / math.hypot(0.02, 0.02))
    assert checks.iloc[1] == pytest.approx(2 / 3)  # 0.17 is within 2 stderr of 0.20, 0.10 is not
    panels = panel_scores(metrics)
    assert set(panels.panel) == {"boomerang_lastword"} and len(panels) == 5


def test_rows_without_bootstrapped_stderr_are_kept():
    """lm-eval writes "N/A" for a standard error it did not bootstrap (`lm_eval.bootstrap_iters: 0`)."""
    output = {"results": {"arc_easy": {"acc,none": 0.5, "acc_stderr,none": "N/A", "alias": "arc_easy"}}}
    (row,) = result_rows(output)
    assert row["value"] == 0.5 and math.isnan(row["stderr"])
