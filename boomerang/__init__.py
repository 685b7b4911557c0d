"""Boomerang distillation: prune a teacher, distil the student, patch teacher blocks back in.

Modules, in pipeline order: `config` (typed presets), `teacher` and `data` (inputs), `arch` (family
adapters), `prune`, `distill`, `patch`, `evaluate`, `plots`, `pipeline` (papermill runner).
"""
__version__ = "0.1.0"
