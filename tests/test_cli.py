"""The command line through its real entry point, as a user or a script runs it."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from cargohold import __version__
from cargohold.store import Store
from clisupport import ERROR_PREFIX, archive, assert_one_error_line, lines, run, seed, stored_names
from imagefactory import OCI_MANIFEST, ArchiveBuilder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


# -- command names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    # "image ls" itself is what the other tests run.
    [["images", "list"], ["i", "ls"]],
    ids=" ".join,
)
def test_image_and_ls_aliases(root: Path, tmp_path: Path, command: list[str]) -> None:
    seed(root, tmp_path, "example.com/b:1", "example.com/a:1")
    proc = run(root, *command, "-q")
    assert proc.returncode == 0, proc.stderr
    assert lines(proc.stdout) == ["example.com/a:1", "example.com/b:1"]
    assert proc.stderr == b""


@pytest.mark.parametrize("alias", ["remove", "delete", "del"])  # "rm" is tested below
def test_rm_aliases(root: Path, tmp_path: Path, alias: str) -> None:
    seed(root, tmp_path, "example.com/a:1", "example.com/b:1")
    proc = run(root, "image", alias, "example.com/a:1")
    assert proc.returncode == 0, proc.stderr
    assert "example.com/a:1" in lines(proc.stdout)
    assert stored_names(root) == ["example.com/b:1"]


# -- machine-readable output ----------------------------------------------------------------


def test_import_json(root: Path, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    desc = builder.image()
    builder.add(desc, name="example.com/app:1")
    path = builder.write(tmp_path / "app.tar")
    proc = run(root, "image", "import", "--format", "json", str(path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"images", "blobs", "bytesWritten", "bytesDeduplicated"}
    assert doc["images"] == [
        {"name": "example.com/app:1", "digest": desc["digest"], "action": "created"}
    ]
    assert doc["blobs"] == len(builder.blobs)
    assert doc["bytesWritten"] == sum(len(b) for b in builder.blobs.values())
    assert doc["bytesDeduplicated"] == 0
    assert stored_names(root) == ["example.com/app:1"]


def test_image_ls_json(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/app:1")
    proc = run(root, "image", "ls", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads(proc.stdout)
    assert set(entry) == {
        "name",
        "digest",
        "mediaType",
        "size",
        "platforms",
        "createdAt",
        "updatedAt",
        "labels",
    }
    assert entry["name"] == "example.com/app:1"
    assert entry["digest"].startswith("sha256:")
    assert entry["mediaType"] == OCI_MANIFEST
    assert entry["platforms"] == ["linux/amd64"]
    assert entry["labels"] == {}
    assert isinstance(entry["size"], int) and entry["size"] > 0
    for key in ("createdAt", "updatedAt"):
        assert datetime.datetime.fromisoformat(entry[key].replace("Z", "+00:00")).tzinfo


# -- standard streams -----------------------------------------------------------------------


def test_import_from_stdin_uses_a_dated_base_name(root: Path, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    builder.add(builder.image(), ref_name="1.0")
    data = builder.write(tmp_path / "ignored-name.tar").read_bytes()
    before = datetime.date.today()
    proc = run(root, "image", "import", "--format", "json", "-", stdin=data)
    after = datetime.date.today()
    assert proc.returncode == 0, proc.stderr
    [image] = json.loads(proc.stdout)["images"]
    assert image["name"] in {
        f"docker.io/library/import-{day.isoformat()}:1.0" for day in (before, after)
    }
    assert stored_names(root) == [image["name"]]


def test_export_to_stdout(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/app:1")
    with Store(root) as store:
        store.export(tmp_path / "expected.tar", ["example.com/app:1"])
    proc = run(root, "image", "export", "-", "example.com/app:1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (tmp_path / "expected.tar").read_bytes()


# -- errors ---------------------------------------------------------------------------------


def test_bad_archive_is_one_error_line(root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"definitely not a tar archive\n" * 50)
    proc = run(root, "image", "import", str(bad))
    assert_one_error_line(proc)
    assert stored_names(root) == []


def test_unknown_image_is_one_error_line(root: Path, tmp_path: Path) -> None:
    Store(root).close()  # an empty store
    out = tmp_path / "out.tar"
    proc = run(root, "image", "export", str(out), "example.com/nosuch:1")
    line = assert_one_error_line(proc)
    assert "example.com/nosuch:1" in line
    assert not out.exists()


def test_debug_shows_the_traceback(root: Path, tmp_path: Path) -> None:
    Store(root).close()
    proc = run(root, "--debug", "image", "export", str(tmp_path / "o.tar"), "nosuch:1")
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in stderr
    assert "NotFoundError" in stderr
    assert stderr.splitlines()[-1].startswith(ERROR_PREFIX)


def test_rm_of_a_missing_name_removes_the_others(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/a:1", "example.com/b:1")
    proc = run(root, "image", "rm", "example.com/a:1", "example.com/nosuch:1")
    line = assert_one_error_line(proc)
    assert "example.com/nosuch:1" in line
    assert "example.com/a:1" in lines(proc.stdout)
    assert stored_names(root) == ["example.com/b:1"]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["image", "frobnicate"], id="unknown-command"),
        pytest.param(["image", "export", "out.tar"], id="missing-argument"),
    ],
)
def test_usage_errors_exit_2(root: Path, tmp_path: Path, args: list[str]) -> None:
    proc = run(root, *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert proc.stderr
    assert not (tmp_path / "out.tar").exists()


def test_version(root: Path) -> None:
    proc = run(root, "--version")
    assert proc.returncode == 0
    assert __version__ in proc.stdout.decode()


# -- store and namespace selection ----------------------------------------------------------


def test_namespace_option_and_variable(root: Path, tmp_path: Path) -> None:
    path = archive(tmp_path / "a.tar", "example.com/app:1")
    proc = run(root, "-n", "team", "image", "import", str(path))
    assert proc.returncode == 0, proc.stderr
    assert stored_names(root, "team") == ["example.com/app:1"]
    assert stored_names(root, "default") == []

    proc = run(root, "image", "ls", "-q", env={"CARGOHOLD_NAMESPACE": "team"})
    assert proc.returncode == 0, proc.stderr
    assert lines(proc.stdout) == ["example.com/app:1"]


def test_root_from_the_environment(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/app:1")
    proc = run(None, "image", "ls", "-q", env={"CARGOHOLD_ROOT": str(root)})
    assert proc.returncode == 0, proc.stderr
    assert lines(proc.stdout) == ["example.com/app:1"]
