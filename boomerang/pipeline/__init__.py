"""The stages of a run, the cached runner that executes their notebooks, sweeps, figures and docs."""
