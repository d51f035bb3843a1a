"""Progress shown as plain lines for logs, and the choice of a renderer for ``--progress``."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO, TextIO

from ..progress import Progress
from .text import terminal_safe
from .units import duration, human_size


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
        self._skipped = 0
        self._started = 0.0
        self._last_time = 0.0
        self._last_done = 0

    def start(self, title: str, total: int | None) -> None:
        if self._title is not None:
            self.finish()
        self._title = title
        self._total = total
        self._done = 0
        self._skipped = 0
        self._started = self._last_time = self._clock()
        self._last_done = 0

    def update(self, done: int) -> None:
        if self._title is None:
            return
        if self._total is not None and done == self._total and self._done > 0:
            # An archive's reader reports what it read as it reads (the headers first), and
            # what it did not read (stored members passed over, the end padding) as one
            # jump to the total at the end.
            self._skipped = done - self._done
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
        # Bytes passed over without reading them (members whose blobs are stored) are not a
        # speed: a run that read hardly anything says so instead of "3.2 GiB/s".
        read = self._done - self._skipped
        line = f"{title}: {human_size(self._done)} in {duration(elapsed)}"
        if self._skipped > read:
            line += f", {human_size(read)} read: the rest was skipped (already stored)"
        elif elapsed > 0:
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


def isatty(stream: IO[str] | None) -> bool:
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

    "auto" animates whenever stderr is a terminal, where the display goes: stdout may well
    be a pipe (``image export - | ssh host cargohold image import -``) while someone watches
    the terminal; a dumb terminal cannot redraw lines. *stdout_isatty* is accepted and no
    longer decides. The isatty arguments default to the real streams and exist so that the
    choice can be tested.
    """
    if mode not in MODES:
        raise ValueError(f"unknown progress mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "none" or quiet:
        return Progress()
    err = stream if stream is not None else sys.stderr
    if mode == "plain":
        return PlainProgress(err)
    del stdout_isatty
    if stderr_isatty is None:
        stderr_isatty = isatty(err)
    if stderr_isatty and os.environ.get("TERM") != "dumb":
        from rich.console import Console

        from .terminal import RichProgress

        return RichProgress(Console(file=err))
    return Progress()
