"""Sending a blob: the ``Range`` a client asks for, and a response that hands the bytes of
the blob's open file to the kernel (``sendfile``) instead of reading them through Python.

One range is served (``bytes=A-B``, ``bytes=A-``, ``bytes=-N``), which is what a client
resuming a download asks for. A header that is not one valid range is ignored and the whole
blob is sent, as RFC 9110 allows; a range that starts past the end is answered 416.
"""

from __future__ import annotations

import asyncio
import re
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from ..errors import ApiError
from .content import Blob
from .pacing import unpace_loopback

_RANGE: Final = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")


def requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``(start, end)`` (end exclusive) of the one range *header* asks for in a blob of
    *size* bytes; None for the whole blob. ApiError 416 when it cannot be satisfied."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None  # not one valid range: ignored
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        length = int(last)
        if length == 0:
            raise _unsatisfiable(size)
        return max(size - length, 0), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if last != "" and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(
        416,
        "RANGE_NOT_SATISFIABLE",
        f"the range starts past the end of the blob ({size} bytes)",
        {"Content-Range": f"bytes */{size}"},
    )


class BlobResponse(web.StreamResponse):
    """Bytes [*start*, *end*) of an open blob file, sent with ``loop.sendfile``: zero-copy on
    a plain socket; through TLS asyncio reads and writes small chunks itself, so memory stays
    flat either way. The file is closed when the response ends, however it ends. A client on
    this machine gets the bytes without the kernel's pacing (see :mod:`.pacing`)."""

    def __init__(self, blob: Blob, start: int, end: int, status: int) -> None:
        super().__init__(status=status)
        self._blob = blob
        self._first = start
        self._last = end
        self.content_length = end - start

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            writer = await super().prepare(request)
            if request.method == "HEAD" or self._last <= self._first:
                return writer
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("connection lost")
            unpace_loopback(transport.get_extra_info("socket"))
            count = self._last - self._first
            await asyncio.get_running_loop().sendfile(
                transport, self._blob.file, self._first, count
            )
            await super().write_eof()
            return writer
        finally:
            self._blob.file.close()
