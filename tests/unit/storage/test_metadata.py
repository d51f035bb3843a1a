"""The metadata store reports SQLite's failures as typed errors, worded as the CLI prints them."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.cli.main import main
from cargohold.errors import CargoholdError, MetadataError, StoreLockedError
from cargohold.storage import database
from cargohold.storage.metadata import MetadataStore
from clisupport import ERROR_PREFIX, assert_one_error_line, run

LOCKED = "the store is locked by another cargohold process; gave up waiting"


@contextlib.contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """The store's write lock, held by another connection (as another process holds it)."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


@pytest.fixture
def short_lock_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give up waiting for the lock at once, not after two minutes."""
    monkeypatch.setattr(database, "LOCK_TIMEOUT_SECONDS", 0.05)


@pytest.mark.usefixtures("short_lock_timeout")
def test_a_lock_held_past_the_timeout_is_a_store_locked_error(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    MetadataStore(path).close()
    meta = MetadataStore(path)
    with (
        write_lock_held(path),
        pytest.raises(StoreLockedError) as raised,
        meta.transaction() as db,
    ):
        meta.create_namespace(db, "team")
    assert str(raised.value) == LOCKED
    # still what callers that caught SQLite's errors (or cargohold's) catch
    assert isinstance(raised.value, sqlite3.Error)
    assert isinstance(raised.value, CargoholdError)
    meta.close()
    assert [n.name for n in MetadataStore(path, "read").namespaces()] == []


@pytest.mark.usefixtures("short_lock_timeout")
def test_the_cli_says_the_store_is_locked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "store"
    assert run(root, "namespace", "create", "first").returncode == 0
    with write_lock_held(root / "metadata.db"), pytest.raises(SystemExit) as exited:
        main(["--root", str(root), "namespace", "create", "second"])
    assert exited.value.code == 1
    assert capsys.readouterr().err == f"{ERROR_PREFIX}{LOCKED}\n"


def test_a_damaged_database_is_a_metadata_error(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    path.write_bytes(b"not a database at all\n" * 100)
    with pytest.raises(MetadataError) as opened:
        MetadataStore(path, "write")
    reader = MetadataStore(path, "read")  # reads nothing before it is asked
    with pytest.raises(MetadataError) as listed:
        reader.namespaces()
    for raised in (opened, listed):
        assert not isinstance(raised.value, StoreLockedError)
        assert str(raised.value) == "store metadata (metadata.db): file is not a database"


def test_the_cli_names_a_damaged_database(tmp_path: Path) -> None:
    root = tmp_path / "store"
    assert run(root, "namespace", "create", "team").returncode == 0
    (root / "metadata.db").write_bytes(b"not a database at all\n" * 100)
    for args in (("image", "ls"), ("namespace", "create", "other")):
        proc = run(root, *args)
        assert proc.returncode == 1
        line = assert_one_error_line(proc)
        assert line == f"{ERROR_PREFIX}store metadata (metadata.db): file is not a database"
