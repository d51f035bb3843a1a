#!/usr/bin/env python3
"""The floor: the least work a verified import of a tar archive must do, in Python.

Reads the archive's members in one pass (tarfile stream mode), and for each regular member reads
it in 1 MiB chunks with ``readinto``, hashes every chunk with sha256, writes it to a file of its
own in OUTDIR and fsyncs that file (cargohold fsyncs every blob). Nothing else: no names checked,
no documents parsed, no digests compared, no renames.

``--threads 1`` (the default) does it all in one thread. ``--threads 2`` overlaps the two halves:
the main thread reads and hashes, a second thread writes and fsyncs (hashlib and os.write both
release the GIL), with a few buffers passed between them.

Usage: ``python3 bench/floor.py ARCHIVE|- OUTDIR [--threads 1|2]``; prints what it did.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import queue
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final, cast

CHUNK: Final = 1 << 20
#: Buffers in flight between the reading and the writing thread.
DEPTH: Final = 4
_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _write_all(fd: int, data: memoryview) -> None:
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])


def _regular_members(source: IO[bytes]) -> Iterator[io.BufferedReader]:
    """The data of each regular member, in one pass (tarfile stream mode)."""
    with tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK) as tar:
        for member in tar:
            if member.isreg():
                data = tar.extractfile(member)
                assert data is not None
                yield cast(io.BufferedReader, data)  # tarfile's ExFileObject


def floor_single(source: IO[bytes], outdir: Path) -> tuple[int, int]:
    """Read, hash, write and fsync every member in one thread; returns (members, bytes)."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    members = total = 0
    for data in _regular_members(source):
        hasher = hashlib.sha256()
        fd = os.open(outdir / f"{members:06d}", _FLAGS, 0o600)
        try:
            while n := data.readinto(view):
                chunk = view[:n]
                hasher.update(chunk)
                _write_all(fd, chunk)
                total += n
            os.fsync(fd)
        finally:
            os.close(fd)
        members += 1
    return members, total


class _Writer(threading.Thread):
    """Writes the chunks the reader hands over, fsyncs and closes each file at its end."""

    def __init__(self) -> None:
        super().__init__(name="floor-writer", daemon=True)
        self.free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(DEPTH):
            self.free.put(bytearray(CHUNK))
        #: (fd, buffer, length) to write; (fd, None, 0) to fsync and close; None to stop.
        self.work: queue.Queue[tuple[int, bytearray | None, int] | None] = queue.Queue()
        self.error: BaseException | None = None

    def run(self) -> None:
        while (job := self.work.get()) is not None:
            fd, buffer, n = job
            try:
                if self.error is None:
                    if buffer is not None:
                        _write_all(fd, memoryview(buffer)[:n])
                    else:
                        os.fsync(fd)
            except BaseException as exc:
                self.error = exc
            finally:
                if buffer is not None:
                    self.free.put(buffer)
                else:
                    os.close(fd)


def floor_threaded(source: IO[bytes], outdir: Path) -> tuple[int, int]:
    """Read and hash in this thread, write and fsync in another; returns (members, bytes)."""
    writer = _Writer()
    writer.start()
    members = total = 0
    try:
        for data in _regular_members(source):
            hasher = hashlib.sha256()
            fd = os.open(outdir / f"{members:06d}", _FLAGS, 0o600)
            while True:
                buffer = writer.free.get()
                n = data.readinto(buffer)
                if not n:
                    writer.free.put(buffer)
                    break
                hasher.update(memoryview(buffer)[:n])
                writer.work.put((fd, buffer, n))
                total += n
            writer.work.put((fd, None, 0))
            members += 1
            if writer.error is not None:
                break
    finally:
        writer.work.put(None)
        writer.join()
    if writer.error is not None:
        raise writer.error
    return members, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Read, hash, write and fsync each tar member.")
    parser.add_argument("archive", help="a tar archive, or - for stdin")
    parser.add_argument("outdir", type=Path, help="where the members go (created)")
    parser.add_argument("--threads", type=int, choices=(1, 2), default=1)
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    floor = floor_threaded if args.threads == 2 else floor_single
    started = time.perf_counter()
    if args.archive == "-":
        members, total = floor(sys.stdin.buffer, args.outdir)
    else:
        with open(args.archive, "rb") as source:
            members, total = floor(source, args.outdir)
    elapsed = time.perf_counter() - started
    print(
        f"floor (threads={args.threads}): {members} members, {total} bytes,"
        f" {elapsed:.3f} s, {total / max(elapsed, 1e-9) / (1 << 20):.0f} MiB/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
