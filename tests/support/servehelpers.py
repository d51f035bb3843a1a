"""Running ``cargohold serve`` in tests: a real process on a free port, ready when it says so.

The server prints ``listening on URL`` on stderr once its socket accepts; a thread reads
stderr line by line (so the access log never fills the pipe) and the test waits for that
line, never for a fixed time.
"""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from clisupport import clean_environment, command

#: How long a server may take to say it listens, or to stop after SIGTERM.
DEADLINE = 30.0
_LISTENING = re.compile(r"listening on (https?)://(\S+) ")


@dataclass
class Server:
    """A running ``cargohold serve`` and what it has written to stderr."""

    process: subprocess.Popen[bytes]
    scheme: str = ""
    netloc: str = ""
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    @property
    def port(self) -> int:
        return int(self.netloc.rpartition(":")[2])

    def read_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
            found = _LISTENING.search(line)
            if found and not self.ready.is_set():
                self.scheme, self.netloc = found.groups()
                self.ready.set()
        self.done.set()
        self.ready.set()  # the process ended without listening: stop waiting

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the server and wait for it to exit; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        status = self.process.wait(timeout=DEADLINE)
        self.done.wait(timeout=DEADLINE)
        return status

    def wait_for_line(self, text: str) -> str:
        """The first line of stderr containing *text*, once the server has written it (the
        access log line of a request comes after its response)."""
        with self.changed:
            self.changed.wait_for(
                lambda: any(text in line for line in self.lines) or self.done.is_set(),
                timeout=DEADLINE,
            )
            found = [line for line in self.lines if text in line]
        assert found, f"no line with {text!r} in:\n{self.log()}"
        return found[0]

    def log(self) -> str:
        return "\n".join(self.lines)


def start_server(
    root: Path, *args: str, namespace: str | None = None, open_files: int | None = None
) -> Server:
    """Start ``cargohold --root ROOT [-n NS] serve --addr 127.0.0.1:0 ARGS`` and wait until it
    listens; fails with its stderr when it exits first. *open_files* starts it with that soft
    limit on open files."""

    def limit() -> None:
        if open_files is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))

    argv = ["-n", namespace] if namespace else []
    if not any(a.startswith("--addr") for a in args):
        args = ("--addr", "127.0.0.1:0", *args)
    process = subprocess.Popen(
        command(root, *argv, "serve", *args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=clean_environment(),
        preexec_fn=limit,
    )
    server = Server(process)
    threading.Thread(target=server.read_stderr, daemon=True).start()
    if not server.ready.wait(timeout=DEADLINE) or not server.netloc:
        process.kill()
        process.wait()
        server.done.wait(timeout=DEADLINE)
        raise AssertionError(f"cargohold serve did not start:\n{server.log()}")
    return server


@contextmanager
def serving(
    root: Path, *args: str, namespace: str | None = None, open_files: int | None = None
) -> Iterator[Server]:
    """A server for the block; stopped (SIGTERM) after it."""
    server = start_server(root, *args, namespace=namespace, open_files=open_files)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()
