"""Distillation in two CPU processes, for real: DDP and FSDP give the student a single process gives with
the same global batch, and an FSDP run killed mid-way resumes to the uninterrupted result."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest
import torch

from boomerang import artefacts as A
from boomerang.config import REPO_ROOT, load_config
from boomerang.core.prune import load_student
from boomerang.distill.checkpoint import steps_saved
from boomerang.distill.train import checkpoint_root, train
from boomerang.pipeline import stages

STEPS = {"distill.steps": 6, "distill.checkpoint_every": 2, "distill.batch_size": 2}


def launch(run_config, overrides: dict) -> subprocess.Popen:
    """`torchrun` of the distillation module in two processes."""
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "boomerang.distill", "--config", str(run_config), "--override", json.dumps(overrides)],
                            cwd=REPO_ROOT, env={**os.environ, "BOOMERANG_DEVICE": "cpu"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def two_processes(run_config, overrides: dict) -> dict:
    """Prune, distil in two processes; the student's weights."""
    overrides = {**STEPS, "distill.num_processes": 2, **overrides}
    stages.prune(load_config(run_config, overrides))
    proc = launch(run_config, overrides)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-6000:]
    return load_student(A.STUDENT.path(load_config(run_config, overrides)))[0].state_dict()


@pytest.mark.rehearsal
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_give_the_single_process_student(run_config, parallel):
    cfg = load_config(run_config, {**STEPS, "name": "single", "distill.grad_accum": 2})  # the same global batch
    stages.prune(cfg)
    train(cfg)
    single = load_student(A.STUDENT.path(cfg))[0].state_dict()
    student = two_processes(run_config, {"name": parallel, "distill.parallel": parallel})
    assert student.keys() == single.keys()
    for name in single:
        torch.testing.assert_close(student[name], single[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.rehearsal
def test_an_fsdp_run_killed_mid_way_resumes_to_the_uninterrupted_result(run_config):
    overrides = {**STEPS, "distill.num_processes": 2, "distill.parallel": "fsdp", "distill.steps": 12}
    cfg = load_config(run_config, {**overrides, "name": "killed"})
    stages.prune(cfg)
    proc = launch(run_config, {**overrides, "name": "killed"})
    root = checkpoint_root(cfg)
    while not steps_saved(root) and proc.poll() is None:
        time.sleep(0.1)
    launcher = psutil.Process(proc.pid)
    for process in [*launcher.children(recursive=True), launcher]:  # every process of the run, mid-way
        process.kill()
    proc.wait()
    assert not A.STUDENT.path(cfg).exists(), "the run finished before it could be killed"
    killed_at = steps_saved(root)[0].name
    resumed = launch(run_config, {**overrides, "name": "killed"})
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0 and f"resuming from {killed_at}" in out, out[-6000:]
    straight = two_processes(run_config, {**overrides, "name": "straight"})
    killed = load_student(A.STUDENT.path(cfg))[0].state_dict()
    for name in straight:
        assert torch.equal(killed[name], straight[name]), name
