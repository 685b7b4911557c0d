"""What a size costs is measured in a process of its own: its peak memory is its own, not its parent's."""
import torch

from boomerang.measure.cost import fresh_processes, measure, peak_memory_mib
from tests.conftest import tiny_model

MIB = 2**20


def _allocate(mib: int, queue) -> None:
    before = peak_memory_mib("cpu")
    buffer = torch.ones(mib * MIB // 4)
    queue.put(peak_memory_mib("cpu") - before)
    del buffer


def test_a_fresh_process_sees_its_own_peak_memory_under_a_bigger_parent():
    parent = torch.ones(768 * MIB // 4)  # the parent's peak is far above the child's
    ctx = fresh_processes()
    queue = ctx.Queue()
    child = ctx.Process(target=_allocate, args=(128, queue))
    child.start()
    child.join()
    assert 120 < queue.get() < 200, "the child's peak should be its own 128 MiB"
    del parent


def test_an_exported_model_is_measured_alone(tmp_path):
    model = tiny_model("llama")
    model.save_pretrained(tmp_path)
    cost = measure(tmp_path, prompt_tokens=16, new_tokens=4, precision="no")
    assert cost["prefill_tokens_per_s"] > 0 and cost["decode_ms_per_token"] > 0 and cost["device"] == "cpu"
    assert 0 <= cost["peak_memory_mib"] < 500
