"""Where an exported archive goes, without harming what is already at its path.

Nothing at the path is ever replaced unless it is a regular file:

- nothing there: the archive is written to a temporary file beside the path and renamed to
  it at the end, so a failed or killed export leaves no partial archive under the name;
- a regular file: the same, and the new file keeps the old one's permission bits, its group
  when this user may give it that group, and its owner when this process may (root). A file
  this user could not write is refused, as ``cp`` refuses it;
- a symlink to a regular file: written through, as ``cp`` does: the file it points to is
  replaced (beside itself, atomically) and the link stays;
- a FIFO, a character or block device (``/dev/null``, ``/dev/stdout`` on a pipe): written
  in place as a stream, like ``-``; a terminal, a socket, a directory or a symlink to
  nothing is refused with one line.

Temporary files are named ``.<name>.cargohold-<random>.tmp``, are locked while their export
runs, and carry a mark (an extended attribute, where the filesystem keeps them) that only this
module writes. The next export to the same path removes the dead ones: regular files of this
user, with one link, marked (or still empty), and not locked. Nothing else of that name is
opened in a way that could block, or removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Final

from ..errors import AlreadyExistsError, OutputPathError

#: What a temporary file's name says after ``.<name>.``: whose it is.
TEMP_TAG: Final = "cargohold-"
#: The extended attribute that marks a temporary file as an export's (removed once the file
#: has the archive's name, so archives do not carry it).
_MARK: Final = "user.cargohold.export"
_MARK_VALUE: Final = b"1"
#: Mode of a new archive, before the umask (as the temporary files of earlier versions).
_NEW_FILE_MODE: Final = 0o644

#: Writes the archive to an open file; the flag says whether the file is a new, empty one
#: that is thrown away if the write fails (so it may be preallocated). Returns bytes written.
Writer = Callable[[BinaryIO, bool], int]


def write_file(path: Path, write: Writer, sync: bool = False) -> int:
    """Write an archive to *path* (see the module's rules); *sync* flushes it to disk before
    it takes the name (and the directory after), so that a power loss cannot leave a partial
    archive there either."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise OutputPathError(
                f"{path} is a symbolic link to a missing file; not writing through it"
            ) from None
        return _replace(path, None, write, sync)
    except OSError as exc:
        raise OutputPathError(f"{path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputPathError(
            f"{path} is a directory; give the archive a file name"
            " (or use --format oci-dir to write a new layout directory)"
        )
    if stat.S_ISSOCK(st.st_mode):
        raise OutputPathError(f"{path} is a socket; cannot write an archive to it")
    if not stat.S_ISREG(st.st_mode):
        return _write_in_place(path, write, sync, truncate=False)
    real = Path(os.path.realpath(path))
    try:
        same = _identity(os.stat(real)) == _identity(st)
    except OSError:
        same = False
    if not same:
        # a descriptor's name (/dev/stdout, /proc/self/fd/N) for a file with no path of its
        # own: written in place, as cp writes to it
        return _write_in_place(path, write, sync, truncate=True)
    return _replace(real, st, write, sync)


def write_directory(path: Path, write: Callable[[Path], int]) -> int:
    """Build a layout directory under a temporary name beside *path*, then rename it into
    place. Anything at all at *path* (a directory, a file, a symlink, even a dangling one)
    is refused: a layout directory is only ever a new one."""
    if os.path.lexists(path):
        raise AlreadyExistsError(f"{path} already exists; a layout directory is written only new")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(f"directory {parent} does not exist")
    import tempfile

    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        written = write(staging / "layout")
        if os.path.lexists(path):
            raise AlreadyExistsError(f"{path} appeared while the layout was written; left alone")
        try:
            os.rename(staging / "layout", path)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise AlreadyExistsError(
                    f"{path} appeared while the layout was written; left alone"
                ) from None
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


# -- in place -------------------------------------------------------------------------------


def _write_in_place(path: Path, write: Writer, sync: bool, truncate: bool) -> int:
    """Stream the archive into what is at *path* (a FIFO waits for its reader here, as a
    shell's redirection does)."""
    flags = os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY | (os.O_TRUNC if truncate else 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise OutputPathError(f"{path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        mode = os.fstat(fd).st_mode
        if os.isatty(fd):
            raise OutputPathError(f"refusing to write an archive to a terminal ({path})")
        written = write(f, False)
        f.flush()
        if sync and (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            os.fsync(fd)
    return written


# -- replacing a regular file ---------------------------------------------------------------


def _replace(path: Path, existing: os.stat_result | None, write: Writer, sync: bool) -> int:
    """Write a temporary file beside *path* and rename it over *path* (absent, or the regular
    file *existing*), in one directory held open throughout."""
    directory = path.parent if str(path.parent) else Path(".")
    name = path.name
    with _open_directory(directory) as dir_fd:
        if existing is not None:
            _check_writable(dir_fd, name, path)
        _remove_dead_temporaries(dir_fd, name)
        temp, fd = _create_temporary(dir_fd, name, path)
        try:
            with os.fdopen(fd, "wb") as f:
                written = write(f, True)
                f.flush()
                _take_attributes(fd, existing)
                if sync:
                    os.fsync(fd)
                _check_replaceable(dir_fd, name, path)
                # renamed while the file is still open and locked: no other export can take
                # it for a dead one in between; the mark goes only once the name is the
                # archive's (an export killed before would leave a temporary file unmarked)
                os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                _unmark(fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        if sync:
            os.fsync(dir_fd)
    return written


@contextmanager
def _open_directory(directory: Path) -> Iterator[int]:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OutputPathError(f"directory {directory} does not exist") from None
    except NotADirectoryError:
        raise OutputPathError(f"{directory} is not a directory") from None
    except PermissionError as exc:
        raise OutputPathError(f"cannot write in {directory}: {exc.strerror}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _check_writable(dir_fd: int, name: str, path: Path) -> None:
    """Refuse to replace a file this user could not write (``cp`` and a shell's redirection
    refuse it too): a read-only archive stays as it is. Opening a regular file for writing,
    without truncating it, changes nothing; anything else is not opened."""
    _check_replaceable(dir_fd, name, path)
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return  # gone meanwhile: the archive is a new file
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ETXTBSY):
            raise OutputPathError(f"{path}: {exc.strerror}; the file was left as it is") from None
        raise
    os.close(fd)


def _check_replaceable(dir_fd: int, name: str, path: Path) -> None:
    """What is at *name* now may be renamed over: nothing, or a regular file. Checked again
    just before the rename, since the path may change while the archive is written."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise OutputPathError(
            f"{path} changed while the export ran and is no longer a regular file; left as it is"
        )


def _take_attributes(fd: int, existing: os.stat_result | None) -> None:
    """The new archive's mode and ownership: those of the file it replaces where this process
    may give them (permission bits always, not set-id bits; the group when this user is in
    it; the owner only as root), else a new file's."""
    if existing is None:
        os.fchmod(fd, _NEW_FILE_MODE & ~_umask())
        return
    mine = os.fstat(fd)
    uid = existing.st_uid if existing.st_uid != mine.st_uid and os.geteuid() == 0 else -1
    gid = existing.st_gid if existing.st_gid != mine.st_gid else -1
    if uid != -1 or gid != -1:
        with contextlib.suppress(PermissionError):
            os.fchown(fd, uid, gid)
    os.fchmod(fd, stat.S_IMODE(existing.st_mode) & 0o777)


# -- temporary files ------------------------------------------------------------------------


def _temporary_pattern(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(f".{name}.{TEMP_TAG}") + r"[0-9a-f]{16}\.tmp")


def _create_temporary(dir_fd: int, name: str, path: Path) -> tuple[str, int]:
    """A new, locked, marked temporary file beside *name* (*path*, for errors): its name and
    descriptor."""
    while True:
        temp = f".{name}.{TEMP_TAG}{os.urandom(8).hex()}.tmp"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(temp, flags, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise OutputPathError(
                    f"cannot write {path}: {exc.strerror} (the archive is written beside it,"
                    " then renamed)"
                ) from None
            raise
        break
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # tells a later export this file is still being written
        _mark(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temp, dir_fd=dir_fd)
        raise
    return temp, fd


def _remove_dead_temporaries(dir_fd: int, name: str) -> None:
    """Remove what killed exports to the same path left: only this user's regular files, of
    one link, that carry the mark (or are empty: nothing of anyone's is lost with them) and
    that no live export holds locked.

    Every candidate is looked at before it is opened (a FIFO or device is never opened), and
    opened without following a link or blocking; the entry is removed only if it is still
    the file that was checked.
    """
    pattern = _temporary_pattern(name)
    try:
        names = [n for n in os.listdir(dir_fd) if pattern.fullmatch(n)]
    except OSError:
        return
    for candidate in names:
        with contextlib.suppress(OSError):
            _remove_if_dead(dir_fd, candidate)


def _remove_if_dead(dir_fd: int, candidate: str) -> None:
    st = os.stat(candidate, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
        return
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(candidate, flags, dir_fd=dir_fd)
    try:
        opened = os.fstat(fd)
        # an empty file may be one whose export died before marking it: nothing is lost
        if _identity(opened) != _identity(st) or not (opened.st_size == 0 or _marked(fd)):
            return
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while its export lives
        now = os.stat(candidate, dir_fd=dir_fd, follow_symlinks=False)
        if _identity(now) == _identity(st):
            os.unlink(candidate, dir_fd=dir_fd)
    finally:
        os.close(fd)


def _mark(fd: int) -> None:
    """Mark a temporary file as an export's; a filesystem without extended attributes keeps
    no mark (there, the name is the only sign, see :func:`_marked`)."""
    if hasattr(os, "setxattr"):
        with contextlib.suppress(OSError):
            os.setxattr(fd, _MARK, _MARK_VALUE)


def _unmark(fd: int) -> None:
    if hasattr(os, "removexattr"):
        with contextlib.suppress(OSError):
            os.removexattr(fd, _MARK)


def _marked(fd: int) -> bool:
    """Whether the open file carries the mark; on a filesystem that keeps no extended
    attributes, every file of the temporary files' name counts as marked."""
    if not hasattr(os, "getxattr"):
        return True
    try:
        return os.getxattr(fd, _MARK) == _MARK_VALUE
    except OSError as exc:
        return exc.errno == errno.EOPNOTSUPP


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
