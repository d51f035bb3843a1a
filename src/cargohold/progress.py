"""Progress of long operations: what the library reports, and how a terminal shows it.

The library reports events to a :class:`Progress` (the default does nothing), so import,
export and later pull/push stay free of any display code; the CLI chooses a renderer.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO, TextIO

import rich.progress
from rich.console import Console, RenderableType
from rich.text import Text


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


# -- rich ------------------------------------------------------------------------------------
#
# Rich's columns are shared by every task of a display, so the columns below look at the
# task's "kind" field (overall or blob) and at whether the total is known, and leave out what
# does not apply instead of drawing a pulsing bar or a "-:--:--" that means nothing.

_OVERALL = "overall"
_BLOB = "blob"


def _is_final(task: rich.progress.Task) -> bool:
    return bool(task.fields.get("final"))


def _average_speed(task: rich.progress.Task) -> float | None:
    elapsed = task.finished_time if task.finished else task.elapsed
    if not elapsed:
        return None
    return task.completed / elapsed


class _BarColumn(rich.progress.ProgressColumn):
    def __init__(self, width: int) -> None:
        super().__init__()
        self._bar = rich.progress.BarColumn(bar_width=width)

    def render(self, task: rich.progress.Task) -> RenderableType:
        if task.total is None:
            return Text("")
        return self._bar.render(task)


class _PercentColumn(rich.progress.ProgressColumn):
    def render(self, task: rich.progress.Task) -> RenderableType:
        if task.total is None:
            return Text("")
        return Text(f"{task.percentage:>3.0f}%", style="progress.percentage")


class _SizeColumn(rich.progress.ProgressColumn):
    def render(self, task: rich.progress.Task) -> RenderableType:
        done = human_size(task.completed)
        if task.total is None:
            return Text(done, style="progress.download")
        return Text(f"{done} of {human_size(task.total)}", style="progress.download")


class _SpeedColumn(rich.progress.ProgressColumn):
    def render(self, task: rich.progress.Task) -> RenderableType:
        if task.fields.get("kind") != _OVERALL:
            return Text("")
        # Once done, the average over the whole run is the figure worth keeping on screen;
        # while running, Rich's recent-window estimate follows the current throughput.
        speed = _average_speed(task) if task.finished or _is_final(task) else task.speed
        if speed is None:
            return Text("")
        return Text(f"{human_size(speed)}/s", style="progress.data.speed")


class _TimeColumn(rich.progress.ProgressColumn):
    def render(self, task: rich.progress.Task) -> RenderableType:
        if task.fields.get("kind") != _OVERALL or task.total is None:
            return Text("")
        if task.finished:
            return Text(f"in {_duration(task.finished_time or 0.0)}", style="progress.elapsed")
        if _is_final(task):
            return Text(f"in {_duration(task.elapsed or 0.0)}", style="progress.elapsed")
        return Text(_eta(task.time_remaining), style="progress.remaining")


class RichProgress(Progress):
    """An animated display for a person at a terminal.

    The overall line stays on screen when the operation ends, as a record of what happened;
    the per-blob lines are scaffolding and disappear as each blob finishes.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._display: rich.progress.Progress | None = None
        self._task: rich.progress.TaskID | None = None
        self._blob: rich.progress.TaskID | None = None

    def start(self, title: str, total: int | None) -> None:
        if self._display is not None:
            self.finish()
        display = rich.progress.Progress(
            rich.progress.TextColumn("{task.description}"),
            _BarColumn(30),
            _PercentColumn(),
            _SizeColumn(),
            _SpeedColumn(),
            _TimeColumn(),
            console=self._console,
            transient=False,
            refresh_per_second=8,
        )
        self._task = display.add_task(title, total=total, kind=_OVERALL)
        self._display = display
        display.start()

    def update(self, done: int) -> None:
        if self._display is not None and self._task is not None:
            self._display.update(self._task, completed=done)

    def blob_start(self, name: str, size: int) -> None:
        if self._display is None:
            return
        if self._blob is not None:
            self.blob_finish()
        self._blob = self._display.add_task(f"  {short_name(name)}", total=size, kind=_BLOB)
        # Draw the new line now rather than at the next tick, so even a blob that is quickly
        # done is seen to have passed.
        self._display.refresh()

    def blob_advance(self, n: int) -> None:
        if self._display is not None and self._blob is not None:
            self._display.advance(self._blob, n)

    def blob_finish(self) -> None:
        if self._display is not None and self._blob is not None:
            self._display.remove_task(self._blob)
        self._blob = None

    def finish(self) -> None:
        display, self._display = self._display, None
        if display is None:
            return
        try:
            if self._blob is not None:
                display.remove_task(self._blob)
            if self._task is not None:
                display.stop_task(self._task)
                display.update(self._task, final=True)
        finally:
            self._blob = None
            self._task = None
            display.stop()


# -- plain -----------------------------------------------------------------------------------


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
        self._stream.write(line + "\n")
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
        return RichProgress(Console(file=err))
    return Progress()
