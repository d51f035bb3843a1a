"""What an export does to what is already at its output path, and beside it.

Only a regular file (or nothing) is ever replaced; a FIFO or device is written in place, a
symlink is written through, a directory is refused by name. Temporary files of killed exports
are removed only when they are provably an export's: this user's regular files, marked.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.errors import AlreadyExistsError, CargoholdError, OutputPathError
from cargohold.operations.store import Store
from clisupport import archive, assert_one_error_line, run

NAME = "example.com/app:1"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
#: A name of the shape the export's temporary files have, beside ``out.tar``.
TEMP_NAME = ".out.tar.cargohold-0123456789abcdef.tmp"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "root") as s:
        s.import_archive(archive(tmp_path / "in.tar", NAME))
        yield s


@pytest.fixture
def expected(store: Store, tmp_path: Path) -> bytes:
    """The archive the export writes, as a plain new file gets it."""
    reference = tmp_path / "reference.tar"
    store.export(reference, [NAME])
    return reference.read_bytes()


def out_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def xattrs_supported(directory: Path) -> bool:
    probe = directory / ".probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.cargohold.probe", b"1")
    except OSError:
        return False
    finally:
        probe.unlink()
    return True


# -- what is at the path --------------------------------------------------------------------


def test_a_fifo_receives_the_archive_and_stays_a_fifo(
    store: Store, tmp_path: Path, expected: bytes
) -> None:
    fifo = out_dir(tmp_path) / "pipe"
    os.mkfifo(fifo)
    # A reader that is there before the export starts (the archive fits the pipe's buffer).
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        store.export(fifo, [NAME])
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
        received = b""
        while chunk := os.read(reader, 1 << 16):
            received += chunk
    finally:
        os.close(reader)
    assert received == expected
    assert sorted(p.name for p in fifo.parent.iterdir()) == ["pipe"]


def test_a_symlink_to_a_device_is_written_through_and_kept(store: Store, tmp_path: Path) -> None:
    link = out_dir(tmp_path) / "null.tar"
    link.symlink_to(os.devnull)
    result = store.export(link, [NAME])
    assert result.bytes_written > 0
    assert link.is_symlink() and os.readlink(link) == os.devnull
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert sorted(p.name for p in link.parent.iterdir()) == ["null.tar"]


def test_a_terminal_is_refused(store: Store, tmp_path: Path) -> None:
    controller, terminal = os.openpty()
    try:
        name = os.ttyname(terminal)
        with pytest.raises(OutputPathError, match="refusing to write an archive to a terminal"):
            store.export(Path(name), [NAME])
        assert stat.S_ISCHR(os.stat(name).st_mode)
    finally:
        os.close(terminal)
        os.close(controller)


def test_a_symlink_to_a_file_replaces_the_file_and_keeps_the_link(
    store: Store, tmp_path: Path, expected: bytes
) -> None:
    directory = out_dir(tmp_path)
    target = directory / "target.tar"
    target.write_bytes(b"previous")
    target.chmod(0o640)
    link = directory / "link.tar"
    link.symlink_to("target.tar")
    store.export(link, [NAME])
    assert link.is_symlink() and os.readlink(link) == "target.tar"
    assert target.read_bytes() == expected
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in directory.iterdir()) == ["link.tar", "target.tar"]


def test_a_symlink_to_nothing_is_refused_and_kept(store: Store, tmp_path: Path) -> None:
    link = out_dir(tmp_path) / "dangling.tar"
    link.symlink_to("nowhere.tar")
    with pytest.raises(OutputPathError, match=r"dangling\.tar is a symbolic link to a missing"):
        store.export(link, [NAME])
    assert link.is_symlink() and os.readlink(link) == "nowhere.tar"
    assert sorted(p.name for p in link.parent.iterdir()) == ["dangling.tar"]


def test_an_existing_file_keeps_its_mode(store: Store, tmp_path: Path, expected: bytes) -> None:
    out = out_dir(tmp_path) / "out.tar"
    out.write_bytes(b"previous")
    out.chmod(0o600)
    store.export(out, [NAME])
    assert out.read_bytes() == expected
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.skipif(not AS_ROOT, reason="only root can give a file to another user")
def test_an_existing_file_keeps_its_owner_when_root_exports(store: Store, tmp_path: Path) -> None:
    out = out_dir(tmp_path) / "out.tar"
    out.write_bytes(b"previous")
    os.chown(out, 65534, 65534)
    store.export(out, [NAME])
    st = out.stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)


def test_a_file_the_user_cannot_write_is_refused(tmp_path: Path) -> None:
    """Run by a user whom permission bits stop (root too, without its overrides)."""
    root = seeded_root(tmp_path)
    out = out_dir(tmp_path) / "out.tar"
    out.write_bytes(b"previous")
    out.chmod(0o444)
    proc = run(root, "image", "export", str(out), NAME, bound_by_permissions=True)
    assert f"{out}: " in assert_one_error_line(proc)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.tar"]


def test_a_directory_is_refused_by_its_name(store: Store, tmp_path: Path) -> None:
    directory = out_dir(tmp_path) / "images"
    directory.mkdir()
    with pytest.raises(OutputPathError) as caught:
        store.export(directory, [NAME])
    message = str(caught.value)
    assert f"{directory} is a directory" in message
    assert ".tmp" not in message
    assert list(directory.iterdir()) == []
    assert sorted(p.name for p in directory.parent.iterdir()) == ["images"]


def test_a_missing_directory_is_named(store: Store, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(OutputPathError, match=f"directory {missing} does not exist"):
        store.export(missing / "out.tar", [NAME])
    assert not missing.exists()


def test_a_directory_the_user_cannot_write_is_named(tmp_path: Path) -> None:
    root = seeded_root(tmp_path)
    directory = out_dir(tmp_path)
    directory.chmod(0o555)
    try:
        proc = run(
            root, "image", "export", str(directory / "out.tar"), NAME, bound_by_permissions=True
        )
    finally:
        directory.chmod(0o755)
    line = assert_one_error_line(proc)
    assert f"cannot write {directory / 'out.tar'}" in line
    assert ".tmp" not in line
    assert list(directory.iterdir()) == []


def seeded_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    with Store(root) as store:
        store.import_archive(archive(tmp_path / "in.tar", NAME))
    return root


def test_exporting_to_a_directory_on_the_command_line(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with Store(root) as store:
        store.import_archive(archive(tmp_path / "in.tar", NAME))
    directory = out_dir(tmp_path)
    line = assert_one_error_line(run(root, "image", "export", str(directory), NAME))
    assert f"{directory} is a directory" in line
    assert ".tmp" not in line
    assert list(directory.iterdir()) == []


@pytest.mark.parametrize("kind", ["dangling symlink", "file", "directory"])
def test_a_layout_directory_is_written_only_new(store: Store, tmp_path: Path, kind: str) -> None:
    directory = out_dir(tmp_path)
    layout = directory / "layout"
    if kind == "dangling symlink":
        layout.symlink_to("nowhere")
    elif kind == "file":
        layout.write_bytes(b"previous")
    else:
        layout.mkdir()
    with pytest.raises(AlreadyExistsError, match="layout already exists"):
        store.export(layout, [NAME], layout_dir=True)
    assert sorted(p.name for p in directory.iterdir()) == ["layout"]
    assert os.path.lexists(layout)


def test_a_layout_directory_export(store: Store, tmp_path: Path) -> None:
    layout = out_dir(tmp_path) / "layout"
    store.export(layout, [NAME], layout_dir=True)
    assert {"blobs", "index.json", "oci-layout"} <= {p.name for p in layout.iterdir()}
    assert sorted(p.name for p in layout.parent.iterdir()) == ["layout"]


# -- temporary files beside the path --------------------------------------------------------


def test_a_fifo_named_like_a_temporary_file_neither_blocks_nor_goes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with Store(root) as store:
        store.import_archive(archive(tmp_path / "in.tar", NAME))
    directory = out_dir(tmp_path)
    os.mkfifo(directory / TEMP_NAME)
    command = [sys.executable, "-m", "cargohold", "--root", str(root), "image", "export"]
    # a FIFO opened for reading waits for a writer: an export that opened it would hang
    proc = subprocess.run(
        [*command, str(directory / "out.tar"), NAME], capture_output=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert stat.S_ISFIFO(os.lstat(directory / TEMP_NAME).st_mode)
    assert sorted(p.name for p in directory.iterdir()) == sorted([TEMP_NAME, "out.tar"])


@pytest.mark.skipif(not AS_ROOT, reason="only root can make a file another user's")
def test_another_users_file_named_like_a_temporary_file_is_kept(
    store: Store, tmp_path: Path
) -> None:
    directory = out_dir(tmp_path)
    theirs = directory / TEMP_NAME
    theirs.write_bytes(b"someone else's")
    os.chown(theirs, 65534, 65534)
    store.export(directory / "out.tar", [NAME])
    assert theirs.read_bytes() == b"someone else's"


def test_an_unmarked_file_named_like_a_temporary_file_is_kept(store: Store, tmp_path: Path) -> None:
    directory = out_dir(tmp_path)
    if not xattrs_supported(directory):
        pytest.skip("without extended attributes the name is the only mark")
    mine = directory / TEMP_NAME
    mine.write_bytes(b"not an export's")
    store.export(directory / "out.tar", [NAME])
    assert mine.read_bytes() == b"not an export's"


def test_the_archive_carries_no_mark(store: Store, tmp_path: Path) -> None:
    out = out_dir(tmp_path) / "out.tar"
    store.export(out, [NAME])
    assert not [a for a in os.listxattr(out) if "cargohold" in a]
    with tarfile.open(out) as tar:
        assert "index.json" in tar.getnames()


def test_a_failed_export_leaves_a_fifo_where_it_was(store: Store, tmp_path: Path) -> None:
    fifo = out_dir(tmp_path) / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(CargoholdError, match="nosuch"):
        store.export(fifo, ["nosuch:1"])  # fails before the FIFO is opened: nothing waits
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
