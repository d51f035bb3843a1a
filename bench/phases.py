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
lastBlobFsync`` the commit. ``run.py --phases`` and ``registry.py --phases`` report medians.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import stat
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

STARTED: Final = time.perf_counter()
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


def run_observed(args: Sequence[str | Path], env: Mapping[str, str]) -> dict[str, float]:
    """Run cargohold with *args* under this script (``sync`` first, untimed); its marks in
    milliseconds and ``wall``, the whole process's, from outside."""
    os.sync()
    argv = [sys.executable, str(Path(__file__).resolve()), *(str(arg) for arg in args)]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=dict(env), capture_output=True, check=False)
    wall = (time.perf_counter() - start) * 1000
    os.sync()
    lines = proc.stderr.decode(errors="replace").splitlines()
    found = [line for line in lines if line.startswith("phases: ")]
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"{' '.join(argv)}: status {proc.returncode}: {lines[-3:]}")
    return {**json.loads(found[-1].removeprefix("phases: ")), "wall": round(wall, 1)}


def summarise(samples: list[dict[str, float]], interpreter_ms: float) -> dict[str, float]:
    """Medians, in milliseconds: ``interpreter`` (given: ``python3 -c pass``), ``startUp``
    (to the first byte), ``data`` (to the last blob's fsync, or to the command's return if it
    wrote none), ``commit`` (to the command's return), ``exit`` (the rest of the wall time:
    the interpreter's exit and process teardown) and ``wall``."""

    def median(key: Callable[[dict[str, float]], float]) -> float:
        return round(statistics.median(key(s) for s in samples), 1)

    def moved(s: dict[str, float]) -> float:  # a command that writes no blob: its return
        return s.get("lastBlobFsync", s["end"])

    return {
        "interpreter": round(interpreter_ms, 1),
        "startUp": median(lambda s: s["firstData"]),
        "data": median(lambda s: moved(s) - s["firstData"]),
        "commit": median(lambda s: s["end"] - moved(s)),
        "exit": median(lambda s: s["wall"] - s["end"] - interpreter_ms),
        "wall": median(lambda s: s["wall"]),
    }


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
