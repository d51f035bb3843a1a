"""Running a command to completion and measuring it: wall time and its peak RSS."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final


class CommandError(Exception):
    """A measured command exited non-zero; the message carries the end of its stderr."""


LAUNCHER: Final = Path(__file__).resolve().parent / "launch.py"


def timed_run(
    argv: Sequence[str | Path],
    *,
    pipe_from: Path | None = None,
    stdin_from: Path | None = None,
    stdout: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[float, int]:
    """Run *argv* to completion; returns (wall seconds, peak RSS in bytes) of that process.

    The command is spawned, timed (``time.perf_counter``) and reaped (``os.wait4``) by
    launch.py, a process small enough not to inflate the command's ``ru_maxrss``. With
    *pipe_from*, the command reads that file from a pipe, as in ``cat FILE | argv``: the time
    runs from starting ``cat`` until both have exited, the RSS is *argv*'s alone. With
    *stdin_from*, standard input is that file, as in ``argv < FILE``. Standard output goes to
    *stdout* (a file) or nowhere; a non-zero exit raises :class:`CommandError`.
    """
    command = [str(part) for part in argv]
    with tempfile.NamedTemporaryFile(prefix="bench-stderr-") as errors:
        request = {
            "argv": command,
            "env": dict(env if env is not None else os.environ),
            "stdout": str(stdout) if stdout is not None else None,
            "stderr": errors.name,
            "pipe_from": str(pipe_from) if pipe_from is not None else None,
            "stdin_from": str(stdin_from) if stdin_from is not None else None,
        }
        launcher = subprocess.Popen(
            [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(request)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # so that an interruption stops the command with it
        )
        try:
            report, launch_errors = launcher.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
            raise
        tail = Path(errors.name).read_bytes().decode(errors="replace")[-3000:]
    if launcher.returncode != 0:
        problem = launch_errors.decode(errors="replace").strip().splitlines()[-1:]
        raise CommandError(f"launching {' '.join(command)} failed: {''.join(problem)}\n{tail}")
    result = json.loads(report)
    if result["status"] != 0 or result["feeder_status"] != 0:
        what = "cat" if result["status"] == 0 else command[0]
        status = result["status"] or result["feeder_status"]
        source = f" < {pipe_from}" if pipe_from else ""
        raise CommandError(
            f"{' '.join(command)}{source}: {what} exited with status {status}\n{tail}"
        )
    return float(result["seconds"]), int(result["max_rss"])


def run_checked(
    argv: Sequence[str | Path], env: Mapping[str, str] | None = None, timeout: float = 600
) -> str:
    """Run an unmeasured helper command; its stdout, or :class:`CommandError` with its stderr."""
    command = [str(part) for part in argv]
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise CommandError(
            f"{' '.join(command)}: exited with status {result.returncode}\n{result.stderr[-3000:]}"
        )
    return result.stdout
