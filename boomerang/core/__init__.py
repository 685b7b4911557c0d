"""The exact core: architecture adapters, pruning a teacher into a student, patching teacher blocks back in."""
