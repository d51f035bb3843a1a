"""Leases: what keeps an import's blobs from being collected while it runs.

A lease is a row in the metadata store (the blobs it protects) and a lock file under
``leases/``, held with ``flock`` by the process that owns the lease. The lock dies with its
process, so a killed import's lease is recognised as dead at once, with no expiry time to
wait for; collection removes dead leases and their staging directories.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Final

from ..errors import CargoholdError

#: The prefix of a lock file not yet renamed to its lease's name.
_TMP_PREFIX: Final = ".new-"


class Leases:
    """Lease liveness by file lock: the lock dies with its process, so a killed import's
    lease is recognised as dead at once, with no expiry time to wait for."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, lease_id: str) -> Path:
        return self.directory / f"{lease_id}.lock"

    def hold(self, lease_id: str) -> int:
        """Take the lock of a new lease; the returned descriptor keeps it alive.

        The file is locked under a temporary name and then renamed into place, so a lock file
        under its real name is always held from the moment it exists: gc can never mistake a
        lease being created for a dead one. gc removes temporary files it can lock (a killed
        process's); if it takes one in the instant before its creator locked it, the rename
        finds it gone and the creator starts again.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f"{_TMP_PREFIX}{lease_id}"
        for _ in range(10):
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.rename(tmp, self.path(lease_id))
            except FileNotFoundError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                raise
            return fd
        raise CargoholdError(f"could not create the lock file of lease {lease_id}")

    def take(self, lease_id: str) -> int | None:
        """Take the lock of a lease that may exist already (a resumable import's, whose
        process died); None when a living process holds it.

        The lock file is opened (or created) and locked, then checked to be still the file
        at the lease's path: gc removes the lock file of a lease it collects, and a lock on a
        file no longer there protects nothing. The caller checks again once its lease's row
        is written (see :meth:`holds`).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(lease_id)
        for _ in range(10):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            if self.holds(lease_id, fd):
                return fd
            os.close(fd)
        raise CargoholdError(f"could not take the lock file of lease {lease_id}")

    def holds(self, lease_id: str, fd: int) -> bool:
        """Whether the locked *fd* is still the lock file at the lease's path."""
        try:
            st = os.stat(self.path(lease_id))
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def orphans(self, known: set[str]) -> list[Path]:
        """Lock files of leases that have no record and no living holder (their import died
        between taking the lock and recording the lease, or after deleting the record), and
        temporary lock files older than an hour."""
        found = []
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        for name in names:
            path = self.directory / name
            if name.startswith(_TMP_PREFIX):
                if not _locked(path):
                    found.append(path)
            elif name.endswith(".lock"):
                lease_id = name.removesuffix(".lock")
                if lease_id not in known and not self.is_alive(lease_id):
                    found.append(path)
        return found

    def release(self, lease_id: str, fd: int) -> None:
        self.path(lease_id).unlink(missing_ok=True)
        os.close(fd)

    def is_alive(self, lease_id: str) -> bool:
        return _locked(self.path(lease_id))


def _locked(path: Path) -> bool:
    """Whether a living process holds the lock on *path* (a missing file is not locked)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
