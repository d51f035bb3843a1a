"""Archives read from stdin and written to stdout (``-``): a terminal there is a forgotten
redirection, refused before anything is read or written."""

from __future__ import annotations

import os
import sys

from ..errors import CargoholdError


def refuse_terminal_stdin(source: str) -> None:
    """An archive read from a terminal is a forgotten redirection, not something to wait for
    (docker load and podman load refuse it too)."""
    if source == "-" and sys.stdin.isatty():
        raise CargoholdError(
            "refusing to read an archive from a terminal; redirect stdin from a file or a pipe"
        )


def refuse_terminal_stdout(out: str) -> None:
    """Archive bytes on a terminal garble it and help nobody (docker save refuses too)."""
    if out == "-" and sys.stdout.isatty():
        raise CargoholdError("refusing to write an archive to a terminal; redirect stdout")


def is_stdout(out: str) -> bool:
    """Whether the output is stdout: ``-``, or a name of it (``/dev/stdout``, ``/dev/fd/1``)."""
    if out == "-":
        return True
    try:
        named, stdout = os.stat(out), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return False
    return (named.st_dev, named.st_ino) == (stdout.st_dev, stdout.st_ino)
