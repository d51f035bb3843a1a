#!/usr/bin/env python3
"""Where one cargohold command's time goes: the command runs in this process, unchanged, and
the first and last of the system calls that mark its phases are noted.

    python3 bench/phases.py ARGS...        (cargohold's own arguments)

At exit, prints one line on stderr, ``phases: {...}``: milliseconds since this script started
(the interpreter's start-up comes before that: time ``python3 -c pass`` for it) at which

- ``firstData``: the first byte moved: the kernel's copy of an archive member into the store
  (``copy_file_range``) or a connection to a registry (``connect``);
- ``lastBlobFsync``: the last ``fsync`` of a regular file (a blob made durable; directories
  are fsynced by the commit, and SQLite's own calls are below Python);
- ``end``: the command returned, its commit done.

So ``firstData`` is the start-up (module loading, opening the store, reading the archive's
index), ``lastBlobFsync - firstData`` the moving and hashing of the bytes, and ``end -
lastBlobFsync`` the commit. ``run.py --phases`` and ``registry.py --phases`` report medians
(``timing.run_observed`` and ``timing.summarise_phases``). The few modules this script imports
for itself are charged to the start-up (about 1 ms).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before anything else this script imports

import atexit  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import stat  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

marks: dict[str, float] = {}


def _first(name: str) -> None:
    marks.setdefault(name, time.perf_counter())


def _observe_copies() -> None:
    copy: Callable[..., int] = os.copy_file_range

    def copy_file_range(*args: Any, **kwargs: Any) -> int:
        _first("firstData")
        return copy(*args, **kwargs)

    os.copy_file_range = copy_file_range


def _observe_connections() -> None:
    connect = socket.socket.connect

    def observed(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _first("firstData")
        connect(self, address)

    socket.socket.connect = observed  # type: ignore[method-assign, assignment]


def _observe_fsyncs() -> None:
    for name in ("fsync", "fdatasync"):
        call: Callable[[int], None] = getattr(os, name)

        def observed(fd: int, call: Callable[[int], None] = call) -> None:
            call(fd)
            if stat.S_ISREG(os.fstat(fd).st_mode):
                marks["lastBlobFsync"] = time.perf_counter()

        setattr(os, name, observed)


def _report() -> None:
    marks.setdefault("end", time.perf_counter())
    line = {key: round((at - STARTED) * 1000, 1) for key, at in marks.items()}
    print("phases: " + json.dumps(line), file=sys.stderr)


def main() -> None:
    _observe_copies()
    _observe_connections()
    _observe_fsyncs()
    atexit.register(_report)
    from cargohold.cli.main import main as cargohold

    sys.argv[0] = "cargohold"  # run as the script does: with its arguments from sys.argv
    try:
        cargohold()
    finally:
        marks["end"] = time.perf_counter()


if __name__ == "__main__":
    main()
