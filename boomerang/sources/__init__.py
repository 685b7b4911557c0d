"""Where models and text come from: the teacher (a PyPI wheel's GGUF or the hub) and the training text."""
