"""Progress of long operations: the events the library reports (the CLI renders them).

The library reports events to a :class:`Progress` (the default does nothing), so import,
export and later pull/push stay free of any display code; the CLI chooses a renderer.
"""

from __future__ import annotations


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


class Relay(Progress):
    """Passes every event on to *inner*: the base of a progress that watches or adjusts some
    events of an operation (counting the bytes read, supplying a known total) and leaves the
    rendering to the one it wraps."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner

    def start(self, title: str, total: int | None) -> None:
        self.inner.start(title, total)

    def update(self, done: int) -> None:
        self.inner.update(done)

    def blob_start(self, name: str, size: int) -> None:
        self.inner.blob_start(name, size)

    def blob_advance(self, n: int) -> None:
        self.inner.blob_advance(n)

    def blob_finish(self) -> None:
        self.inner.blob_finish()

    def finish(self) -> None:
        self.inner.finish()


#: Blobs at least this large get their own progress line.
BLOB_PROGRESS_THRESHOLD = 32 << 20
