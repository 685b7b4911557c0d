"""Precision chosen by the hardware: `auto` is bf16 only where the device computes it natively, an explicit
bf16 that the CPU would compute ~100x slower is refused before anything runs, and the choice is made once."""
import json
import os
import subprocess
import sys

import pytest
import torch

from boomerang import device, machine
from boomerang.config import ConfigError, load_config
from boomerang.pipeline import runner

AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2"}  # oneDNN without its bf16 kernels, as on a CPU with AVX2 alone


@pytest.fixture
def cpu_rates(monkeypatch):
    """Pretend this CPU's matrix products run at the given (fp32, bf16) GFLOP/s."""
    def pretend(fp32: float, lower: float):
        device.auto_precision.cache_clear()
        monkeypatch.setattr(device, "rates", lambda kind, precision: (fp32 * 1e9, lower * 1e9))
    yield pretend
    device.auto_precision.cache_clear()


def test_auto_is_fp32_where_bf16_is_slow_and_bf16_where_it_is_native(run_config, cpu_rates):
    cfg = load_config(run_config, {"distill.mixed_precision": "auto", "evaluate.mixed_precision": "auto",
                                   "teacher.dtype": "auto"})
    cpu_rates(61, 0.6)  # an AVX2-only laptop
    slow, notes = device.resolve_run(cfg, "cpu")
    assert (slow.distill.mixed_precision, slow.evaluate.mixed_precision, slow.lm_eval.mixed_precision) == ("no",) * 3
    assert slow.teacher.dtype == "float32"
    assert notes == ["teacher.dtype: auto -> float32 weights",
                     "distill, evaluate: auto -> fp32 (bf16 matrix products run at 0.6 GFLOP/s here against 61 in "
                     "fp32: no native bf16)", "lm_eval: fp32"]
    assert device.compute_dtype("auto", "cpu") is None
    cpu_rates(200, 340)  # AMX
    fast, _ = device.resolve_run(cfg, "cpu")
    assert (fast.distill.mixed_precision, fast.evaluate.mixed_precision, fast.lm_eval.mixed_precision) == \
        ("bf16", "bf16", "no") and fast.teacher.dtype == "bfloat16"
    assert device.compute_dtype("auto", "cpu") is torch.bfloat16


def test_an_explicit_bf16_that_this_cpu_runs_slowly_is_refused_naming_both_rates_and_how_to_insist(
        run_config, cpu_rates, monkeypatch):
    cfg = load_config(run_config, {"evaluate.mixed_precision": "bf16"})
    cpu_rates(61, 0.6)
    with pytest.raises(ConfigError, match=r"evaluate.mixed_precision = 'bf16' on this cpu: bf16 matrix products run "
                       r"at 0.6 GFLOP/s here against 61 in fp32: no native bf16; its matrix products would run 102x "
                       r"slower than in fp32. Use 'auto' \(or 'no'\), or set BOOMERANG_ALLOW_SLOW_PRECISION=1"):
        device.resolve_run(cfg, "cpu")
    with pytest.raises(ConfigError, match="BOOMERANG_ALLOW_SLOW_PRECISION"):  # the runner, before any stage
        runner.run(run_config, {"evaluate.mixed_precision": "bf16"}, log=lambda *_: None, dry_run=True)
    monkeypatch.setenv(device.INSIST, "1")
    assert device.resolve_run(cfg, "cpu")[0].evaluate.mixed_precision == "bf16"


def test_a_cpu_limited_to_avx2_is_measured_as_having_no_bf16():
    """The real slow path, not a pretended one: oneDNN limited to AVX2 runs bf16 products far below fp32."""
    probe = "from boomerang.device import native; ok, why = native('cpu'); print(ok, why)"
    out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **AVX2_ONLY}, capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("False bf16 matrix products run at") and out.rstrip().endswith("no native bf16"), out


def test_a_run_record_names_every_limit_put_on_the_cpu(cpu_rates, monkeypatch):
    cpu_rates(61, 0.6)
    for key in machine.ISA_LIMITS:
        monkeypatch.delenv(key, raising=False)
    assert machine.describe("cpu").endswith(" threads, no bf16 units")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert machine.describe("cpu").endswith("no bf16 units (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2)")


def test_no_stage_reaches_the_machine_in_words():
    """The record's wording is no part of any result: changing it re-runs no stage."""
    for stage in runner.STAGES:
        notebook = json.loads((runner.NOTEBOOKS / stage.notebook).read_text())
        code = runner.code_digests(stage.run) | runner.helper_digests(notebook, stage)
        assert code and not [name for name in code if name.startswith(machine.__name__)], stage.name


def test_the_runner_decides_once_and_hands_the_decision_to_every_stage(run_config, cpu_rates):
    cpu_rates(61, 0.6)
    cfg, overrides = runner.decide_precision(load_config(run_config, {"lm_eval.mixed_precision": "auto"}),
                                             {"lm_eval.mixed_precision": "auto"}, log=lambda *_: None)
    assert overrides == {"distill.mixed_precision": "no", "evaluate.mixed_precision": "no",
                         "lm_eval.mixed_precision": "no", "teacher.dtype": "float32"}
    assert load_config(run_config, overrides) == cfg


def test_peak_flops_are_measured_in_the_dtype_the_run_computes_in(monkeypatch, cpu_rates):
    cpu_rates(61, 0.6)
    measured = []
    monkeypatch.setattr(device, "matmul_rate", lambda d, dtype, seconds, size: measured.append((dtype, size)) or 1e12)
    device.peak_flops.cache_clear()
    for precision, dtype in (("auto", torch.float32), ("bf16", torch.bfloat16)):
        measured.clear()
        assert device.peak_flops("cpu", precision) == 1e12
        assert {d for d, _ in measured} == {dtype} and [s for _, s in measured] == [256, 512, 1024, 2048]
    device.peak_flops.cache_clear()
