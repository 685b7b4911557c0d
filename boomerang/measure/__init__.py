"""What a run measures: perplexity, lm-eval scores, alignment, baselines, FLOPs, the checks they support."""
