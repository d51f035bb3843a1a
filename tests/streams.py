"""Streams and tars as the tests feed and read them: a pipe, and an archive's files."""

from __future__ import annotations

import os
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def pipe_reader(data: bytes) -> Iterator[BinaryIO]:
    """A non-seekable stream of *data*: the read end of a pipe a thread writes into."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(write_fd, view) :]
        except BrokenPipeError:
            pass  # the reader gave up early (a rejected archive): nothing left to do
        finally:
            os.close(write_fd)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    reader = os.fdopen(read_fd, "rb")
    try:
        assert not reader.seekable()
        yield reader
    finally:
        reader.close()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the pipe writer never finished"


def tar_members(path: Path) -> dict[str, bytes]:
    """The regular files of the tar at *path*, by name without a leading ``./``."""
    files: dict[str, bytes] = {}
    with tarfile.open(path) as archive:
        for member in archive.getmembers():
            if member.isfile():
                extracted = archive.extractfile(member)
                assert extracted is not None
                files[member.name.removeprefix("./")] = extracted.read()
    return files
