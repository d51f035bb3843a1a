"""The command line: click commands, shared options, and rendering (tables, trees, progress,
JSON). The entry point is :func:`cargohold.cli.main.main`; the root click group is
:data:`cargohold.cli.main.cli`, and each command group has a module of its own."""
