"""CLI subcommands, one module each (encoder.py: the `encoder` group, whose subcommands share its models and tasks;
options.py: the flags they share, not a subcommand); llmtrunc.cli registers them."""
