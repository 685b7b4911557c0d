import math

import pandas as pd
import torch

from boomerang.evaluate import boomerang_checks, parameter_counts, perplexity
from tests.conftest import VOCAB, tiny_model


class Uniform(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        return type("Out", (), {"logits": torch.zeros(*input_ids.shape, VOCAB) + self.w})()


def test_uniform_model_has_vocabulary_perplexity():
    blocks = torch.randint(0, VOCAB, (6, 12))
    result = perplexity(Uniform(), blocks, batch_size=4, mixed_precision="no")
    assert math.isclose(result["perplexity"], VOCAB, rel_tol=1e-5)
    assert result["nll_stderr"] < 1e-6


def test_parameter_counts_tied_and_untied():
    model = tiny_model("llama")  # tied embeddings
    total = sum(p.numel() for p in model.parameters())  # torch counts the shared matrix once
    embed = model.get_input_embeddings().weight.numel()
    assert parameter_counts(model, tied_family=True) == {"params": total, "params_inference": total + embed}
    neox = tiny_model("gpt_neox")
    n = sum(p.numel() for p in neox.parameters())
    assert parameter_counts(neox, tied_family=False) == {"params": n, "params_inference": n}


def test_checks_detect_a_boomerang_and_its_absence():
    def table(interp, naive):
        rows = [{"method": "teacher", "order": "none", "k": 4, "num_layers": 8, "value": 10.0},
                {"method": "student", "order": "none", "k": 0, "num_layers": 4, "value": 20.0}]
        rows += [{"method": "interpolated", "order": "o", "k": k, "num_layers": 4 + k, "value": v}
                 for k, v in enumerate(interp, start=1)]
        rows += [{"method": "naive_pruned", "order": "o", "k": k, "num_layers": 4 + k, "value": naive}
                 for k in range(1, 4)]
        return pd.DataFrame(rows).assign(task="heldout", metric="perplexity")

    good = boomerang_checks(table([17.0, 14.0, 12.0], naive=1e4)).set_index("claim").holds
    assert good.all()
    bad = boomerang_checks(table([30.0, 9.0, 25.0], naive=40.0)).set_index("claim").holds
    assert not bad.any()
