"""Running the real command line in tests, and seeding stores for it."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

from cargohold.operations.store import Store
from imagefactory import ArchiveBuilder

ERROR_PREFIX = "cargohold: error: "


def clean_environment() -> dict[str, str]:
    """This process's environment without CARGOHOLD_* variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}


def command(root: Path | None, *args: str) -> list[str]:
    """The argument list of ``python -m cargohold [--root ROOT] ARGS...``."""
    base = [sys.executable, "-m", "cargohold"]
    if root is not None:
        base += ["--root", str(root)]
    return [*base, *args]


#: Linux capabilities that let root ignore file permissions: DAC_OVERRIDE, DAC_READ_SEARCH
#: and FOWNER (see capabilities(7)).
_PERMISSION_OVERRIDES = (1, 2, 3)
_PR_CAPBSET_DROP = 24


def _bound_by_permissions() -> None:
    """In a child about to exec: give up, for good, what lets root ignore permission bits.

    Dropped from the bounding set, the capabilities are not granted again at exec, so the
    command runs as a user that a read-only file or directory stops. (Running it as another
    uid is not enough where the interpreter lives in root's home.) Nothing to do when the
    tests do not run as root: permission bits stop an ordinary user already.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in _PERMISSION_OVERRIDES:
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run(
    root: Path | None,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    bound_by_permissions: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m cargohold`` with a clean environment (no CARGOHOLD_* variables);
    with *bound_by_permissions*, as a user whom file permissions stop (also under root)."""
    environment = clean_environment()
    environment.update(env or {})
    return subprocess.run(
        command(root, *args),
        input=stdin,
        capture_output=True,
        env=environment,
        cwd=cwd,
        timeout=60,
        check=False,
        preexec_fn=_bound_by_permissions if bound_by_permissions else None,
    )


def run_on_terminal(
    root: Path | None, *args: str, columns: int = 80, stdout_piped: bool = False
) -> tuple[int, str, bytes]:
    """Run ``python -m cargohold`` on a pseudo-terminal *columns* wide (stdin, stderr, and
    stdout unless *stdout_piped*): its exit status, what the terminal received, and what
    went to the pipe. The terminal is read until the child's side closes (EOF, or EIO on
    Linux), which happens when the process exits, so no timing is involved."""
    environment = clean_environment()
    environment["TERM"] = "xterm-256color"
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_INTERACTIVE"):
        environment.pop(name, None)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    with tempfile.TemporaryFile() as piped:
        try:
            proc = subprocess.Popen(
                command(root, *args),
                stdin=slave,
                stdout=piped if stdout_piped else slave,
                stderr=slave,
                env=environment,
                close_fds=True,
            )
        finally:
            os.close(slave)
        output = read_terminal(master, proc)
        piped.seek(0)
        return proc.returncode, output, piped.read()


#: Escape sequences a terminal display sends (CSI, OSC, and two-character ones).
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


def read_terminal(master: int, proc: subprocess.Popen[bytes]) -> str:
    """All a child wrote to a pseudo-terminal, read until its side is closed (EOF, or EIO on
    Linux: when the process exits, so no timing is involved); closes *master*, reaps *proc*."""
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        proc.wait(timeout=60)
    return b"".join(chunks).decode(errors="replace")


def screen_lines(output: str) -> list[str]:
    """The lines a terminal display drew, escape sequences removed, each redraw on its own."""
    return [line for line in re.split(r"[\r\n]+", ANSI.sub("", output)) if line.strip()]


def lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


def assert_one_error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The process failed the cargohold way: exit 1, one ``cargohold: error:`` line, no trace."""
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    [line] = stderr.splitlines()
    assert line.startswith(ERROR_PREFIX), line
    return line


def archive(path: Path, *names: str, files: dict[str, bytes] | None = None) -> Path:
    builder = ArchiveBuilder()
    desc = builder.image(files=files)
    for name in names:
        builder.add(desc, name=name)
    return builder.write(path)


def stored_names(root: Path, namespace: str = "default") -> list[str]:
    with Store(root, namespace) as store:
        return [info.record.name for info in store.list_images()]


def seed(root: Path, tmp_path: Path, *names: str) -> None:
    """Put images under *names* into the store through the library (fast, in-process)."""
    with Store(root) as store:
        for i, name in enumerate(names):
            store.import_archive(archive(tmp_path / f"seed{i}.tar", name, files={"n": bytes([i])}))
