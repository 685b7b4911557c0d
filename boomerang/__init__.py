"""Boomerang distillation: prune a teacher, distil the student, patch teacher blocks back in.

Foundations (`config`, `io`, `device`, `machine`, `progress`, `provenance`, `artefacts`, `allocator`,
`core.orders`), the exact `core`, where models and text come from (`sources`), a teacher/student pair held once
(`family`), `distill`, `measure`, and the `pipeline` that runs it all from one config. Importing it changes
nothing in the process; distillation keeps the memory it frees for its next tensors (`allocator`).
"""
__version__ = "0.2.0"
