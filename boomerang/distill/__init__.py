"""Distillation: the objective's loss terms, resumable checkpoints, and the training loop."""
