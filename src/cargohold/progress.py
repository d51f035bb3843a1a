"""Progress of long operations: what the library reports, and how a terminal shows it.

The library reports events to a :class:`Progress` (the default does nothing), so import,
export and later pull/push stay free of any display code; the CLI chooses a renderer.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, TextIO

from .text import terminal_safe

if TYPE_CHECKING:
    pass


class Progress:
    """Receives progress events; every method is a no-op here, renderers override them.

    An operation calls :meth:`start` once with its total in bytes (None when unknown, as for
    a pipe), :meth:`update` with the bytes done so far, and :meth:`finish` at the end. Large
    blobs get their own line between :meth:`blob_start` and :meth:`blob_finish`, with
    :meth:`blob_advance` for the bytes of that blob that passed since the last call.
    """

    def start(self, title: str, total: int | None) -> None:
        """An operation begins; *total* bytes of work, when known."""

    def update(self, done: int) -> None:
        """*done* bytes of the operation's total are finished (monotonic)."""

    def blob_start(self, name: str, size: int) -> None:
        """A blob of *size* bytes large enough to show on its own begins."""

    def blob_advance(self, n: int) -> None:
        """*n* more bytes of the current blob passed."""

    def blob_finish(self) -> None:
        """The current blob is done."""

    def finish(self) -> None:
        """The operation ended (successfully or not): renderers clean up the terminal."""


#: Blobs at least this large get their own progress line.
BLOB_PROGRESS_THRESHOLD = 32 << 20


def human_size(size: float) -> str:
    """Binary units, because blob and disk sizes are powers of two far more often than not."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def short_name(name: str) -> str:
    """A digest is unreadable at full length; 12 hex digits identify a blob in practice."""
    algorithm, sep, encoded = name.partition(":")
    if sep and len(encoded) > 12:
        return f"{algorithm}:{encoded[:12]}"
    return name


def _duration(seconds: float) -> str:
    """Short operations read best in seconds, long ones on a clock."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "eta -:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"eta {hours}:{minutes:02d}:{secs:02d}" if hours else f"eta {minutes}:{secs:02d}"


class PlainProgress(Progress):
    """Progress as ordinary lines, for logs and CI where animation turns into garbage.

    A line at most every *interval* seconds keeps a long job visibly alive without flooding
    the log; the final line is the one worth reading afterwards.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._title: str | None = None
        self._total: int | None = None
        self._done = 0
        self._started = 0.0
        self._last_time = 0.0
        self._last_done = 0

    def start(self, title: str, total: int | None) -> None:
        if self._title is not None:
            self.finish()
        self._title = title
        self._total = total
        self._done = 0
        self._started = self._last_time = self._clock()
        self._last_done = 0

    def update(self, done: int) -> None:
        if self._title is None:
            return
        self._done = done
        self._maybe_report()

    def blob_advance(self, n: int) -> None:
        # A single large blob can take long between two update() calls; the clock is still
        # worth checking so that the log does not go quiet for that long.
        if self._title is not None:
            self._maybe_report()

    def finish(self) -> None:
        title, self._title = self._title, None
        if title is None:
            return
        elapsed = self._clock() - self._started
        # Only what was done: finish() cannot tell success from failure, and a successful run
        # may legitimately stop short of the total (a tar's trailing padding goes unread).
        line = f"{title}: {human_size(self._done)} in {_duration(elapsed)}"
        if elapsed > 0:
            line += f", {human_size(self._done / elapsed)}/s"
        self._write(line)

    def _maybe_report(self) -> None:
        now = self._clock()
        if now - self._last_time < self._interval:
            return
        # The speed since the previous line, not since the start, so a stall shows as one.
        speed = (self._done - self._last_done) / (now - self._last_time)
        self._last_time, self._last_done = now, self._done
        if self._total is None:
            amount = human_size(self._done)
        else:
            percent = 100 if self._total <= 0 else min(100, self._done * 100 // self._total)
            amount = f"{human_size(self._done)} of {human_size(self._total)} ({percent}%)"
        self._write(f"{self._title}: {amount}, {human_size(speed)}/s")

    def _write(self, line: str) -> None:
        self._stream.write(terminal_safe(line) + "\n")
        self._stream.flush()


# -- choice ----------------------------------------------------------------------------------

#: The values of the CLI's ``--progress`` option.
MODES = ("auto", "plain", "none")


def _isatty(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):  # closed or detached
        return False


def make_progress(
    mode: str,
    *,
    quiet: bool = False,
    stdout_isatty: bool | None = None,
    stderr_isatty: bool | None = None,
    stream: TextIO | None = None,
) -> Progress:
    """The renderer for a ``--progress`` *mode*.

    "auto" animates only when stdout and stderr are both terminals: with stdout redirected,
    the run is a script's or a pipeline's and the terminal, if any, belongs to someone who
    did not ask for a display; a dumb terminal cannot redraw lines. The isatty arguments
    default to the real streams and exist so that the choice can be tested.
    """
    if mode not in MODES:
        raise ValueError(f"unknown progress mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "none" or quiet:
        return Progress()
    err = stream if stream is not None else sys.stderr
    if mode == "plain":
        return PlainProgress(err)
    if stdout_isatty is None:
        stdout_isatty = _isatty(sys.stdout)
    if stderr_isatty is None:
        stderr_isatty = _isatty(err)
    if stdout_isatty and stderr_isatty and os.environ.get("TERM") != "dumb":
        from rich.console import Console

        from .terminal import RichProgress

        return RichProgress(Console(file=err))
    return Progress()


def __getattr__(name: str) -> Any:
    """``RichProgress`` lives in :mod:`cargohold.terminal`, imported on first use."""
    if name == "RichProgress":
        from .terminal import RichProgress

        return RichProgress
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
