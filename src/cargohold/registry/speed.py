"""The floor under a transfer's progress (curl's ``--speed-limit`` and ``--speed-time``).

A registry trickling bytes, or reading an upload a byte at a time, could otherwise hold a
transfer open forever: every body sent or received, error documents and tokens included, is
measured against the floor, and abandoned below it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Final

from ..errors import BelowSpeedFloor

__all__ = ["UPLOAD_PIECE", "SpeedMeter", "metered"]

#: An upload hands httpx pieces of at most this many bytes, so that its progress is seen (and
#: a registry reading too slowly is noticed) at least once per piece.
UPLOAD_PIECE: Final = 64 << 10


class SpeedMeter:
    """The floor on one body's progress: it fails when fewer than *limit* times *seconds*
    bytes move in the *seconds* after the body starts or last met that quota.

    Checked whenever bytes move and when a read or write times out, so a registry that sends
    (or reads) a byte now and then is abandoned within *seconds* of its last good stretch, or
    at the latest when the client's per-read timeout expires. One comparison per chunk: no
    history is kept.
    """

    __slots__ = ("_mark", "_moved", "_quota", "limit", "seconds")

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._quota = limit * seconds
        self._mark = time.monotonic()
        self._moved = 0

    def advance(self, n: int) -> None:
        """Count *n* bytes moved; raises :class:`BelowSpeedFloor` when the floor is not met."""
        self._moved += n
        if self._moved >= self._quota:
            self._mark, self._moved = time.monotonic(), 0
        elif self.expired():
            raise BelowSpeedFloor()

    def expired(self) -> bool:
        """Whether *seconds* have passed without the quota being met."""
        return time.monotonic() - self._mark >= self.seconds


def metered(chunks: Iterable[bytes], limit: int, seconds: float) -> Iterator[bytes]:
    """An upload body in pieces, its progress held to the floor (*limit* 0: none): httpx asks
    for the next piece once it has handed the previous one to the network. The floor starts
    at the first piece, not before the connection is made."""
    meter = SpeedMeter(limit, seconds) if limit else None
    sent = 0
    for chunk in chunks:
        for start in range(0, len(chunk), UPLOAD_PIECE):
            piece = chunk[start : start + UPLOAD_PIECE]
            yield piece
            sent += len(piece)
            if meter is not None:
                try:
                    meter.advance(len(piece))
                except BelowSpeedFloor:
                    raise BelowSpeedFloor(f"{sent} bytes sent") from None
