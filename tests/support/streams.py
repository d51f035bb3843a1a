"""Streams and tars as the tests feed and read them: a pipe, tars written member by member,
and an archive's files."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final


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


# --- writing tarballs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    """A symbolic link member."""

    target: str


@dataclass(frozen=True, slots=True)
class Directory:
    """A directory member."""


DIR = Directory()


@dataclass(frozen=True, slots=True)
class Special:
    """A member that is neither a file, a directory nor a symbolic link."""

    type: bytes
    linkname: str = ""


Content = bytes | Link | Directory | Special
Entry = tuple[str, Content]

BLOCK: Final = 512
END: Final = b"\0" * (2 * BLOCK)


def tar_body(entries: Sequence[Entry]) -> bytes:
    """The members of a PAX tar, without the end-of-archive blocks (to append raw ones)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if isinstance(content, bytes):
                info.size = len(content)
                info.mode = 0o644
                out.addfile(info, io.BytesIO(content))
                continue
            if isinstance(content, Link):
                info.type = tarfile.SYMTYPE
                info.linkname = content.target
            elif isinstance(content, Directory):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            else:
                info.type = content.type
                info.linkname = content.linkname
            out.addfile(info)
        end = out.offset  # before close() appends the end-of-archive blocks
    return buf.getvalue()[:end]


def tar_bytes(entries: Sequence[Entry], tail: bytes = END) -> bytes:
    """A PAX tar of *entries* (mtime 0), ending in *tail*: the end-of-archive blocks."""
    return tar_body(entries) + tail


def write_tar_file(path: Path, members: Iterable[tuple[str, bytes]]) -> Path:
    """A tar of regular files written member by member, holding none of it in memory (for
    archives of very many members; names must fit a USTAR header)."""
    with path.open("wb") as out:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            out.write(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))
            out.write(data + b"\0" * (-len(data) % BLOCK))
        out.write(END)
    return path
