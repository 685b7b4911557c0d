"""The hub stand-ins resolve offline through unmodified transformers, huggingface_hub, datasets and lm-eval.

Every check that loads through HF code runs in a subprocess: HF_HOME and the offline flags are read when
transformers / datasets / huggingface_hub are first imported, and this process imported them long ago
(tests/conftest.py). The parent builds the cache, the child loads from it and prints one JSON line, and the
parent asserts on that, so a failure shows what was loaded.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from boomerang.standins import (CAUSAL_MODELS, LM_EVAL_TASKS, MASKED_MODELS, MMLU_SUBJECTS, OFFSHELF_LAYERS,
                                STUDENTS, build, write_model_repo)

RESULT = "@@RESULT@@"
# variables that would send the HF libraries somewhere other than HF_HOME
_CACHE_OVERRIDES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_DATASETS_CACHE",
                    "HF_ASSETS_CACHE", "HF_MODULES_CACHE")


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hf_home")
    build(path)
    return path


def run_offline(hf_home: Path, code: str, args: dict | None = None, timeout: int = 300) -> dict:
    """Run `code` in a fresh interpreter whose environment points every HF library at `hf_home`, offline.

    `code` reads `ARGS` and calls `emit(obj)` once. NLTK_DATA is a folder of its own, so on a machine with
    network lm-eval's ifeval downloads its tokenizer there and not into the user's nltk_data."""
    env = {k: v for k, v in os.environ.items() if k not in _CACHE_OVERRIDES}
    nltk_data = hf_home / "nltk_data"
    nltk_data.mkdir(exist_ok=True)
    env |= {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "NLTK_DATA": str(nltk_data), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "OMP_NUM_THREADS": "1"}
    prelude = ("import json, sys\nARGS = json.loads(sys.argv[1])\n"
               f"def emit(obj):\n    print({RESULT!r} + json.dumps(obj, default=float), flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code), json.dumps(args or {})],
                          env=env, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    assert proc.returncode == 0 and lines, (f"child failed ({proc.returncode}):\n"
                                            f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return json.loads(lines[-1][len(RESULT):])


@pytest.mark.rehearsal
def test_hub_cache_layout(tmp_path):
    snapshot = write_model_repo(tmp_path, "org/Some-Model", {"config.json": b"{}", "sub/w.bin": b"\x00\x01"})
    repo = tmp_path / "hub" / "models--org--Some-Model"
    commit = (repo / "refs" / "main").read_text()
    assert re.fullmatch(r"[0-9a-f]{40}", commit) and snapshot == repo / "snapshots" / commit
    for name in ("config.json", "sub/w.bin"):
        link = snapshot / name
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        blob = link.resolve()
        assert blob.parent == (repo / "blobs").resolve() and re.fullmatch(r"[0-9a-f]{64}", blob.name)
    # the commit follows from the content alone
    again = write_model_repo(tmp_path / "other", "org/Some-Model", {"sub/w.bin": b"\x00\x01", "config.json": b"{}"})
    assert again.name == commit
    assert write_model_repo(tmp_path, "org/Some-Model", {"config.json": b"{ }"}).name != commit


@pytest.mark.rehearsal
def test_build_is_deterministic(hf_home, tmp_path):
    first = build(tmp_path)
    second = build(hf_home)  # rewriting an existing cache changes nothing either
    assert {k: v for k, v in first.items() if k != "hf_home"} == {k: v for k, v in second.items() if k != "hf_home"}
    assert set(first["models"]) == set(CAUSAL_MODELS) | set(MASKED_MODELS)


MODELS_CHILD = r"""
import re
from pathlib import Path
import torch
from huggingface_hub import hf_hub_download, snapshot_download
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

out, loaded = {}, {}
for repo, masked in ARGS["models"].items():
    model = (AutoModelForMaskedLM if masked else AutoModelForCausalLM).from_pretrained(repo).eval()
    tok = AutoTokenizer.from_pretrained(repo)
    c = model.config
    ids = tok("The old river was near the house.")["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    loaded[repo] = model
    out[repo] = {
        "class": type(model).__name__, "layers": c.num_hidden_layers, "dtype": str(model.dtype),
        "vocab_size": c.vocab_size, "tokenizer_len": len(tok), "max_id": max(tok.get_vocab().values()),
        "config_ids": [c.bos_token_id, c.eos_token_id], "tokenizer_ids": [tok.bos_token_id, tok.eos_token_id],
        "special": {k: getattr(tok, k) for k in ("bos_token", "eos_token", "pad_token", "cls_token", "sep_token",
                                                 "mask_token", "unk_token")},
        "first_id": ids[0], "rope": getattr(c, "rope_parameters", None),
        "tied": model.get_output_embeddings().weight is model.get_input_embeddings().weight,
        "finite": bool(torch.isfinite(logits.float()).all()), "logits_vocab": logits.shape[-1]}

students = {}
layer = re.compile(r"\.(layers|h)\.(\d+)\.")
for student, (teacher, kept) in ARGS["pairs"].items():
    meta = None
    if student in ARGS["students"]:
        meta = json.loads(Path(hf_hub_download(student, "student_config.json")).read_text())
    t_sd, s_sd = loaded[teacher].state_dict(), loaded[student].state_dict()
    diffs = []
    for key in s_sd:
        if layer.search(key):
            source = layer.sub(lambda m: f".{m.group(1)}.{kept[int(m.group(2))]}.", key, count=1)
            diffs.append((s_sd[key].float() - t_sd[source].float()).abs().mean().item())
    students[student] = {"student_config": meta, "mean_abs_diff": [min(diffs), max(diffs)],
                         "snapshot_files": sorted(p.name for p in Path(snapshot_download(student)).iterdir())}
emit({"models": out, "students": students})
"""


@pytest.mark.rehearsal
def test_models_load_offline_by_hub_name(hf_home):
    pairs = {s: [t, kept] for s, (t, kept) in STUDENTS.items()}
    pairs["distilbert/distilgpt2"] = ["openai-community/gpt2", OFFSHELF_LAYERS]
    models = {r: False for r in CAUSAL_MODELS} | {r: True for r in MASKED_MODELS}
    result = run_offline(hf_home, MODELS_CHILD, {"models": models, "pairs": pairs, "students": list(STUDENTS)})
    models = result["models"]
    for repo, (cls, layers) in (CAUSAL_MODELS | MASKED_MODELS).items():
        m = models[repo]
        assert (m["class"], m["layers"]) == (cls, layers), repo
        assert m["finite"] and m["logits_vocab"] == m["vocab_size"] >= m["tokenizer_len"] > m["max_id"], repo
    for repo in CAUSAL_MODELS:
        assert models[repo]["config_ids"][1] == models[repo]["tokenizer_ids"][1], repo  # eos agrees

    qwen, pythia = models["Qwen/Qwen3-4B-Base"], models["EleutherAI/pythia-2.8b"]
    llama = models["meta-llama/Llama-3.2-3B"]
    assert qwen["dtype"] == llama["dtype"] == "torch.bfloat16" and pythia["dtype"] == "torch.float16"
    assert qwen["tied"] and llama["tied"] and not pythia["tied"]
    assert qwen["special"]["eos_token"] == "<|endoftext|>" and qwen["special"]["bos_token"] is None
    assert qwen["config_ids"] == [qwen["tokenizer_ids"][1]] * 2
    assert qwen["rope"] == {"rope_type": "default", "rope_theta": 1000000.0}
    assert pythia["special"]["eos_token"] == pythia["special"]["bos_token"] == "<|endoftext|>"
    assert pythia["config_ids"] == [0, 0] and pythia["rope"]["partial_rotary_factor"] == 0.25
    assert llama["special"]["bos_token"] == "<|begin_of_text|>" and llama["special"]["eos_token"] == "<|end_of_text|>"
    assert llama["config_ids"] == llama["tokenizer_ids"] and llama["first_id"] == llama["tokenizer_ids"][0]
    assert {k: llama["rope"][k] for k in ("rope_type", "factor", "rope_theta", "original_max_position_embeddings")} \
        == {"rope_type": "llama3", "factor": 32.0, "rope_theta": 500000.0, "original_max_position_embeddings": 8192}
    bert = models["google-bert/bert-base-uncased"]
    assert [bert["special"][k] for k in ("cls_token", "sep_token", "mask_token", "pad_token", "unk_token")] == \
        ["[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]"] and bert["first_id"] == 101
    assert models["openai-community/gpt2"]["special"]["eos_token"] == "<|endoftext|>"

    for student, info in result["students"].items():
        low, high = info["mean_abs_diff"]
        assert 1e-3 < low and high < 0.05, (student, info["mean_abs_diff"])  # teacher layers + small noise
        if student in STUDENTS:
            teacher, kept = STUDENTS[student]
            pruned = sorted(set(range(CAUSAL_MODELS[teacher][1])) - set(kept))
            assert info["student_config"] == {"copied_teacher_layers": kept, "pruned_teacher_layers": pruned}
            assert {"student_config.json", "model.safetensors", "config.json"} <= set(info["snapshot_files"])


DATA_CHILD = r"""
import datasets
from datasets.distributed import split_dataset_by_node

pile_id = "EleutherAI/the_pile_deduplicated"
texts = datasets.load_dataset(pile_id, split="train")["text"]
stream = datasets.load_dataset(pile_id, split="train", streaming=True)
shuffled = [r["text"] for r in stream.shuffle(seed=0, buffer_size=100).take(20)]
shards = [[r["text"] for r in split_dataset_by_node(stream, rank=k, world_size=2)] for k in range(2)]
out = {"pile": {"rows": len(texts), "stream_type": type(stream).__name__,
                "head_matches": [r["text"] for r in stream.take(3)] == texts[:3],
                "skip_matches": next(iter(stream.skip(7)))["text"] == texts[7],
                "shuffled_known": set(shuffled) <= set(texts), "shuffled_moved": shuffled != texts[:20],
                "shard_sizes": [len(s) for s in shards],
                "shards_partition": sorted(shards[0] + shards[1]) == sorted(texts),
                "words": [min(len(t.split()) for t in texts), max(len(t.split()) for t in texts)]}}
for config in ("wikitext-103-raw-v1", "wikitext-2-raw-v1"):
    dd = datasets.load_dataset("Salesforce/wikitext", config)
    lines = dd["test"]["text"]
    streamed = [r["text"] for r in datasets.load_dataset("Salesforce/wikitext", config, split="test", streaming=True)]
    out[config] = {"splits": {k: len(v) for k, v in dd.items()}, "empty": lines.count(""),
                   "headings": sum(l.startswith(" = ") and l.endswith(" = \n") for l in lines),
                   "stream_matches": streamed == lines}
out["schemas"] = {}
for repo, config in ARGS["schemas"]:
    dd = datasets.load_dataset(repo, config)
    features = next(iter(dd.values())).features
    out["schemas"][f"{repo}:{config}"] = {"splits": sorted(dd), "features": {k: repr(v) for k, v in features.items()}}
emit(out)
"""


@pytest.mark.rehearsal
def test_datasets_load_offline_and_stream(hf_home):
    schemas = [["allenai/ai2_arc", "ARC-Challenge"], ["aps/super_glue", "boolq"], ["nyu-mll/glue", "rte"],
               ["baber/piqa", None], ["cais/mmlu", "anatomy"], ["google/IFEval", None], ["EleutherAI/race", "high"],
               ["EleutherAI/hendrycks_math", "precalculus"],
               ["EleutherAI/wikitext_document_level", "wikitext-2-raw-v1"]]
    out = run_offline(hf_home, DATA_CHILD, {"schemas": schemas})
    pile = out["pile"]
    assert pile["rows"] == 600 and pile["stream_type"] == "IterableDataset"
    assert 50 <= pile["words"][0] <= pile["words"][1] <= 200
    assert pile["head_matches"] and pile["skip_matches"] and pile["shuffled_known"] and pile["shuffled_moved"]
    assert pile["shard_sizes"] == [300, 300] and pile["shards_partition"]
    for config in ("wikitext-103-raw-v1", "wikitext-2-raw-v1"):
        w = out[config]
        assert set(w["splits"]) == {"train", "validation", "test"} and w["stream_matches"]
        assert w["empty"] > 0 and w["headings"] > 0
    s = out["schemas"]
    assert s["allenai/ai2_arc:ARC-Challenge"]["features"]["choices"] == \
        "{'text': List(Value('string')), 'label': List(Value('string'))}"
    assert s["aps/super_glue:boolq"]["features"]["label"] == "ClassLabel(names=['False', 'True'])"
    assert s["nyu-mll/glue:rte"]["features"]["label"] == "ClassLabel(names=['entailment', 'not_entailment'])"
    assert s["baber/piqa:None"]["features"]["label"] == "ClassLabel(names=['0', '1'])"
    assert s["cais/mmlu:anatomy"]["features"]["answer"] == "ClassLabel(names=['A', 'B', 'C', 'D'])"
    assert s["cais/mmlu:anatomy"]["splits"] == ["dev", "test", "validation"]
    assert s["google/IFEval:None"]["splits"] == ["train"]
    assert "num_sentences" in s["google/IFEval:None"]["features"]["kwargs"]
    assert s["EleutherAI/race:high"]["splits"] == ["test"]
    assert s["EleutherAI/wikitext_document_level:wikitext-2-raw-v1"]["features"] == {"page": "Value('string')"}


LM_EVAL_CHILD = r"""
import time
t0 = time.time()
import nltk
from transformers import AutoModelForCausalLM, AutoTokenizer
import lm_eval
from lm_eval.evaluator import evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

GEN = {"max_gen_toks": 8}  # a random model otherwise generates up to the task's cap (ifeval: 1280 tokens)
def lm(repo):
    # The repo's weights are bf16, which from_pretrained keeps; HFLM then sums bf16 log-probs (0.25 apart at -40,
    # 16 apart at -4000), so wikitext gave teacher and student the same perplexity. float32 log-softmax it is.
    return HFLM(pretrained=AutoModelForCausalLM.from_pretrained(repo), tokenizer=AutoTokenizer.from_pretrained(repo),
                batch_size=4, softmax_dtype="float32")
def metrics(res):
    return {task: {k: v for k, v in r.items() if "," in k and "_stderr" not in k and isinstance(v, (int, float))}
            for task, r in res["results"].items()}
def run(model, tasks, **kw):
    return metrics(lm_eval.simple_evaluate(model=model, tasks=tasks, task_manager=tm, gen_kwargs=dict(GEN),
                                           bootstrap_iters=0, log_samples=False, verbosity="ERROR", **kw))

timing = {}
t = time.time(); tm = TaskManager(); timing["index"] = time.time() - t
teacher, student = lm(ARGS["teacher"]), lm(ARGS["student"])
tasks = [task for task in ARGS["tasks"] if task != "ifeval"]
t = time.time(); simple = run(teacher, tasks, limit=2); timing["simple_evaluate"] = time.time() - t

# ifeval: the second row needs nltk's punkt_tab, which lm-eval only tries to download when it is imported
ifeval = {}
try:
    ifeval["limit2"] = run(teacher, ["ifeval"], limit=2)["ifeval"]
except LookupError as e:
    ifeval["limit2_error"] = [type(e).__name__, str(e)]
try:
    nltk.data.find("tokenizers/punkt_tab")
    ifeval["has_punkt_tab"] = True
except LookupError:
    ifeval["has_punkt_tab"] = False
ifeval["no_nltk_rows"] = run(teacher, ["ifeval"], samples={"ifeval": ARGS["ifeval_rows"]})["ifeval"]

# one task dict for several models: what simple_evaluate does to the tasks, done once, then evaluate() per model
t = time.time(); task_dict = tm.load(ARGS["reuse_tasks"]); timing["task_dict"] = time.time() - t
for task in task_dict["tasks"].values():
    if task.get_config("output_type") == "generate_until":
        task.set_config(key="generation_kwargs", value=dict(GEN), update=True)
    if task.get_config("num_fewshot") is None:
        task.set_config(key="num_fewshot", value=0)
    task.set_fewshot_seed(seed=1234)  # simple_evaluate's default fewshot_random_seed
reused = {}
for name, model in (("teacher", teacher), ("student", student)):
    t = time.time()
    reused[name] = metrics(evaluate(model, task_dict, limit=2, bootstrap_iters=0, log_samples=False,
                                    verbosity="ERROR"))
    timing[f"evaluate_{name}"] = time.time() - t
timing["total"] = time.time() - t0
emit({"simple": simple, "ifeval": ifeval, "reused": reused, "timing": timing})
"""

PRIMARY = {"arc_easy": "acc,none", "arc_challenge": "acc,none", "boolq": "acc,none", "hellaswag": "acc_norm,none",
           "openbookqa": "acc,none", "piqa": "acc,none", "winogrande": "acc,none", "race": "acc,none",
           "mmlu": "acc,none", "rte": "acc,none", "gsm8k_cot": "exact_match,flexible-extract",
           "ifeval": "prompt_level_strict_acc,none", "hendrycks_math": "exact_match,none",
           "wikitext": "word_perplexity,none"}
# the task-dict reuse check: loglikelihood, generation (fixed few-shot), a group of generation tasks, rolling
REUSE_TASKS = ["arc_easy", "gsm8k_cot", "hendrycks_math", "wikitext"]


@pytest.mark.rehearsal
def test_lm_eval_tasks_run_offline(hf_home):
    out = run_offline(hf_home, LM_EVAL_CHILD, {
        "teacher": "Qwen/Qwen3-4B-Base", "student": "Harvard-DCML/boomerang-qwen3-2.3B", "tasks": LM_EVAL_TASKS,
        "reuse_tasks": REUSE_TASKS, "ifeval_rows": [0, 2, 3, 4]}, timeout=600)
    print("lm-eval timing (s):", {k: round(v, 1) for k, v in out["timing"].items()})
    simple = out["simple"]
    for task in LM_EVAL_TASKS:
        if task != "ifeval":
            value = simple[task][PRIMARY[task]]
            assert math.isfinite(value) and ((value > 0) if task == "wikitext" else (0 <= value <= 1)), (task, value)
    assert {f"mmlu_{s}" for s in MMLU_SUBJECTS} <= set(simple)  # every subject config of the group ran

    ifeval = out["ifeval"]
    if ifeval["has_punkt_tab"]:  # a machine that had it, or could download it, runs ifeval in full
        assert 0 <= ifeval["limit2"][PRIMARY["ifeval"]] <= 1
    else:  # offline, a row that counts sentences or words fails on the tokenizer lm-eval could not download
        kind, message = ifeval["limit2_error"]
        assert kind == "LookupError" and "Resource 'punkt_tab' not found" in message, message
    assert 0 <= ifeval["no_nltk_rows"][PRIMARY["ifeval"]] <= 1  # the rest of ifeval works offline

    reused = out["reused"]
    assert set(reused["teacher"]) >= set(REUSE_TASKS)
    assert reused["teacher"] == {t: simple[t] for t in reused["teacher"]}  # one task dict, evaluate() per model
    # and the first run does not use the dict up (nor leave its answers in it)
    assert reused["student"]["wikitext"] != reused["teacher"]["wikitext"]
