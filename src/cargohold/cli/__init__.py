"""The command line: click commands, shared options, and rendering (tables, trees, progress,
JSON). ``main`` is the entry point."""

from .main import main

__all__ = ["main"]
