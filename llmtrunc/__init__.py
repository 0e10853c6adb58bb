"""llmtrunc: how much of a model's ability survives when dimensions of its final representation are removed."""

__version__ = "0.1.0"
