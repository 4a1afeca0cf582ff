"""The ``fraudstream`` subcommands, grouped by what they work on."""
