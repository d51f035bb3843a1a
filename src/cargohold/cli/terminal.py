"""Progress on a terminal, drawn with rich: imported only when a terminal will show it, as
rich takes longer to import than a re-import of an archive whose blobs are all stored takes."""

from __future__ import annotations

import rich.progress
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Column
from rich.text import Text

from ..progress import Progress
from .text import terminal_safe
from .units import duration, eta, human_size, short_name

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


def _one_line() -> Column:
    """A column that never wraps: a wrapped cell turns the display into fragments over
    many lines, redrawn on every tick; a cell cut with "…" keeps each line whole."""
    return Column(no_wrap=True, overflow="ellipsis")


#: What the columns other than the bar usually take: a 14-character label, "100%",
#: "512.0 MiB of 1.2 GiB", "98.7 MiB/s", "eta 0:00:00" and the spaces between, with room to
#: spare; an unusually wide cell is cut with "…" rather than wrapped.
_TEXT_WIDTH = 66


def _bar_width(console_width: int) -> int:
    """The bar takes what the other columns leave, between 5 and 30 columns."""
    return max(5, min(30, console_width - _TEXT_WIDTH))


class _BarColumn(rich.progress.ProgressColumn):
    def __init__(self, width: int) -> None:
        super().__init__(table_column=_one_line())
        self._bar = rich.progress.BarColumn(bar_width=width)

    def render(self, task: rich.progress.Task) -> RenderableType:
        if task.total is None:
            return Text("")
        return self._bar.render(task)


class _PercentColumn(rich.progress.ProgressColumn):
    def __init__(self) -> None:
        super().__init__(table_column=_one_line())

    def render(self, task: rich.progress.Task) -> RenderableType:
        if task.total is None:
            return Text("")
        return Text(f"{task.percentage:>3.0f}%", style="progress.percentage")


class _SizeColumn(rich.progress.ProgressColumn):
    def __init__(self) -> None:
        super().__init__(table_column=_one_line())

    def render(self, task: rich.progress.Task) -> RenderableType:
        done = human_size(task.completed)
        if task.total is None:
            return Text(done, style="progress.download")
        return Text(f"{done} of {human_size(task.total)}", style="progress.download")


class _SpeedColumn(rich.progress.ProgressColumn):
    def __init__(self) -> None:
        super().__init__(table_column=_one_line())

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
    def __init__(self) -> None:
        super().__init__(table_column=_one_line())

    def render(self, task: rich.progress.Task) -> RenderableType:
        if task.fields.get("kind") != _OVERALL or task.total is None:
            return Text("")
        if task.finished:
            return Text(f"in {duration(task.finished_time or 0.0)}", style="progress.elapsed")
        if _is_final(task):
            return Text(f"in {duration(task.elapsed or 0.0)}", style="progress.elapsed")
        return Text(eta(task.time_remaining), style="progress.remaining")


def _description(text: str) -> str:
    """A task description: the text column reads it as rich markup, and a blob's name may be
    a member name the archive chose."""
    return escape(terminal_safe(text))


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
            rich.progress.TextColumn("{task.description}", table_column=_one_line()),
            _BarColumn(_bar_width(self._console.width)),
            _PercentColumn(),
            _SizeColumn(),
            _SpeedColumn(),
            _TimeColumn(),
            console=self._console,
            transient=False,
            refresh_per_second=8,
        )
        self._task = display.add_task(_description(title), total=total, kind=_OVERALL)
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
        self._blob = self._display.add_task(
            _description(f"  {short_name(name)}"), total=size, kind=_BLOB
        )
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
