"""The exact core: family adapters, pruning a teacher into a student, patching teacher blocks back in."""
