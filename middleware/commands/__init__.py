"""Subcommands of the `pgsift` CLI, one module per job."""
