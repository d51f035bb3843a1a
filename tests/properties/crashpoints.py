"""Run the cargohold CLI and kill it with SIGKILL at the N-th I/O operation.

Usage: ``python tests/properties/crashpoints.py N [--after] [--matching TEXT] -- <arguments>``
(the arguments of the cargohold command line)

Before ``cargohold.cli.main`` runs, the functions through which cargohold changes the disk are
wrapped (``os.write``, ``os.pwrite``, ``os.rename``, ``os.replace``, ``os.fsync``, ``os.unlink``,
``os.rmdir``, ``os.sendfile``, ``os.copy_file_range``, ``os.posix_fallocate``, ``os.open``,
``os.mkdir``, ``os.chmod``, ``shutil.rmtree`` and every SQLite ``execute``/``executemany``).
Each call counts as one instant; the N-th call kills the process with SIGKILL *before* the
operation is performed (with ``--after``: right after it returned).

With ``--matching TEXT`` only the operations whose description contains TEXT count: the N-th
of those kills, whatever other threads did meanwhile (a point in one thread's sequence).

With N = 0 nothing is killed: the command runs to its end and the number of instants (and a
one-line description of each) is written as JSON to the file named by ``$CRASHPOINTS_OUT``. In
a crashing run that file receives the description of the operation the process died at, so a
test can say precisely where a crash left a bad state.

The instants are deterministic for a given command and store: names made of random UUIDs
change, the sequence of operations does not.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from cargohold.cli import main as cli

T = TypeVar("T")

OUT_ENV = "CRASHPOINTS_OUT"

#: (module, attribute) pairs whose calls are instants.
WRAPPED: tuple[tuple[Any, str], ...] = (
    (os, "write"),
    (os, "pwrite"),
    (os, "rename"),
    (os, "replace"),
    (os, "fsync"),
    (os, "unlink"),
    (os, "rmdir"),
    (os, "sendfile"),
    (os, "copy_file_range"),
    (os, "posix_fallocate"),
    (os, "open"),
    (os, "mkdir"),
    (os, "chmod"),
    (shutil, "rmtree"),
)

_kill = os.kill
_getpid = os.getpid


class Crasher:
    """Counts instants and kills the process at the chosen one."""

    def __init__(self, target: int, after: bool, out: str | None, matching: str = "") -> None:
        self.target = target
        self.after = after
        self.out = out
        self.matching = matching
        self.count = 0
        self.ops: list[str] = []
        # cargohold writes and fsyncs staged blobs on background threads
        self.lock = threading.Lock()

    def around(self, what: str, call: Callable[[], T]) -> T:
        if self.matching not in what:
            return call()
        with self.lock:
            self.count += 1
            here = self.count
        if self.target == 0:
            self.ops.append(what)
            return call()
        if here == self.target and not self.after:
            self.die(what)
        try:
            return call()
        finally:
            # also when the call failed (an unlink of a file already gone, say): with
            # background threads, the N-th call is not always the same one
            if here == self.target:
                self.die(what)

    def die(self, what: str) -> None:
        if self.out:
            with open(self.out, "w") as f:  # the builtin open is not one of the wrapped calls
                json.dump({"instant": self.count, "after": self.after, "op": what}, f)
        _kill(_getpid(), signal.SIGKILL)
        os._exit(137)  # not reached: SIGKILL to oneself is delivered before kill() returns

    def report(self) -> None:
        if self.target == 0 and self.out:
            with open(self.out, "w") as f:
                json.dump({"count": self.count, "ops": self.ops}, f)


def _describe(name: str, args: Iterable[object]) -> str:
    shown = []
    for arg in args:
        if isinstance(arg, (str, os.PathLike)):
            parts = Path(os.fspath(arg)).parts
            shown.append("/".join(parts[-3:]))
        elif isinstance(arg, int):
            shown.append(str(arg))
        elif isinstance(arg, (bytes, bytearray, memoryview)):
            shown.append(f"<{len(arg)} bytes>")
    return f"{name}({', '.join(shown)})"


def _wrap_function(crasher: Crasher, module: Any, attribute: str) -> None:
    original = getattr(module, attribute)
    label = f"{module.__name__}.{attribute}"

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return crasher.around(_describe(label, args), lambda: original(*args, **kwargs))

    setattr(module, attribute, wrapper)


class _Connection:
    """A SQLite connection whose statements are instants."""

    def __init__(self, crasher: Crasher, connection: sqlite3.Connection) -> None:
        self._crasher = crasher
        self._connection = connection

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        return self._crasher.around(_sql_label(sql), lambda: self._connection.execute(sql, *args))

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        return self._crasher.around(
            _sql_label(sql), lambda: self._connection.executemany(sql, *args)
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def _sql_label(sql: str) -> str:
    return "sql(" + " ".join(sql.split()[:4]) + ")"


def install(crasher: Crasher) -> None:
    for module, attribute in WRAPPED:
        _wrap_function(crasher, module, attribute)
    connect = sqlite3.connect

    @functools.wraps(connect)
    def connecting(*args: Any, **kwargs: Any) -> Any:
        return _Connection(crasher, connect(*args, **kwargs))

    sqlite3.connect = connecting


USAGE = "usage: crashpoints.py N [--after] [--matching TEXT] -- <cargohold arguments>"


def parse(argv: list[str]) -> tuple[int, bool, str, list[str]]:
    if "--" not in argv:
        raise SystemExit(USAGE)
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    after = "--after" in options
    matching = ""
    if "--matching" in options:
        at = options.index("--matching")
        if at + 1 >= len(options):
            raise SystemExit(USAGE)
        matching = options[at + 1]
        del options[at : at + 2]
    numbers = [o for o in options if o != "--after"]
    if len(numbers) != 1 or int(numbers[0]) < 0:
        raise SystemExit(USAGE)
    return int(numbers[0]), after, matching, command


def main() -> None:
    target, after, matching, command = parse(sys.argv[1:])
    crasher = Crasher(target, after, os.environ.get(OUT_ENV), matching)
    install(crasher)
    try:
        cli.main(command)
    finally:
        crasher.report()


if __name__ == "__main__":
    main()
