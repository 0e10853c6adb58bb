"""CLI subcommands, one module each; see llmtrunc.cli."""
