"""The command line: click commands, shared options, and rendering (tables, trees, progress,
JSON). The entry point is :func:`cargohold.cli.main.main`."""
