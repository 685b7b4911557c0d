"""The paper presets keep the paper's budget whatever the micro-batch: 500 steps of 2048 sequences of 2048 tokens."""
import pytest

from boomerang.config import load_config


def global_batch(cfg) -> int:
    d = cfg.distill
    return d.batch_size * d.grad_accum * d.num_processes


@pytest.mark.parametrize("preset", ["qwen3-4b", "pythia-2.8b", "llama-3.2-3b"])
def test_paper_presets_keep_the_papers_token_budget(preset):
    four_gpus = load_config(f"configs/{preset}.yaml")
    one_gpu = load_config(f"configs/{preset}.yaml", {"distill.num_processes": 1, "distill.grad_accum": 1024})
    for cfg in (four_gpus, one_gpu):  # the second is the single-GPU override the preset's header gives
        assert global_batch(cfg) == 2048 and cfg.data.seq_len == 2048 and cfg.distill.steps == 500
    assert '"distill.grad_accum": 1024' in (four_gpus.root / "configs" / f"{preset}.yaml").read_text()
