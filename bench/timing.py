"""Running a command to completion and measuring it: wall time and its peak RSS."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final


class CommandError(Exception):
    """A measured command exited non-zero; the message carries the end of its stderr."""


LAUNCHER: Final = Path(__file__).resolve().parent / "launch.py"
#: Runs one cargohold command and notes when its phases begin and end.
PHASES: Final = Path(__file__).resolve().parent / "phases.py"


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


def run_observed(args: Sequence[str | Path], env: Mapping[str, str]) -> dict[str, float]:
    """Run cargohold with *args* under phases.py (``sync`` first, untimed); its marks in
    milliseconds and ``wall``, the whole process's, from outside."""
    os.sync()
    argv = [sys.executable, str(PHASES), *(str(arg) for arg in args)]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=dict(env), capture_output=True, check=False)
    wall = (time.perf_counter() - start) * 1000
    os.sync()
    lines = proc.stderr.decode(errors="replace").splitlines()
    found = [line for line in lines if line.startswith("phases: ")]
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"{' '.join(argv)}: status {proc.returncode}: {lines[-3:]}")
    return {**json.loads(found[-1].removeprefix("phases: ")), "wall": round(wall, 1)}


def summarise_phases(samples: list[dict[str, float]], interpreter_ms: float) -> dict[str, float]:
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
