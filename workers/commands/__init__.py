"""The `pgsift worker` and `pgsift warm` subcommands: the CLI entry points of the workers."""
