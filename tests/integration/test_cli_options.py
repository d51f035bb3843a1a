"""The options several commands share, through the real command line: the platform selection
(``--platform``, ``--all-platforms``) and the archive limits (``--max-document-size``,
``--max-uncompressed-size``) reach each command that takes them, and limits out of range are
a usage error that leaves the store as it was."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import pytest

from cargohold.oci.platforms import Platform
from cargohold.operations.store import Store
from clisupport import assert_one_error_line, run
from imagefactory import ArchiveBuilder
from snapshots import HOST, OTHER

NAME = "example.com/multi:1"

#: (options, the platforms selected): no option selects this host's platform.
SELECTIONS = [
    ([], {HOST}),
    (["--platform", OTHER], {OTHER}),
    (["--all-platforms"], {HOST, OTHER}),
]


def multi_platform_archive(path: Path) -> tuple[Path, dict[str, str]]:
    """An archive of a HOST+OTHER index, and the digest of each platform's manifest."""
    builder = ArchiveBuilder()
    index = builder.multi_platform([HOST, OTHER])
    builder.add(index, name=NAME)
    manifests = json.loads(builder.blobs[index["digest"]])["manifests"]
    by_platform = {str(Platform.from_json(m["platform"])): m["digest"] for m in manifests}
    assert set(by_platform) == {HOST, OTHER}
    return builder.write(path), by_platform


def many_names_archive(path: Path, names: int = 12) -> Path:
    """A one-image archive whose index.json, naming it many times, is over 1 KiB."""
    builder = ArchiveBuilder()
    desc = builder.image()
    for i in range(names):
        builder.add(desc, name=f"example.com/app:{i}")
    assert len(builder.index_json()) > 1024
    return builder.write(path)


def stored_blob(root: Path, digest: str) -> bool:
    return (root / "content" / "blobs" / "sha256" / digest.removeprefix("sha256:")).exists()


@pytest.mark.parametrize(("options", "selected"), SELECTIONS, ids=["default", "one", "all"])
def test_import_stores_the_selected_platforms(
    tmp_path: Path, options: list[str], selected: set[str]
) -> None:
    root = tmp_path / "root"
    path, manifests = multi_platform_archive(tmp_path / "multi.tar")
    proc = run(root, "image", "import", "-q", *options, str(path))
    assert proc.returncode == 0, proc.stderr.decode()
    assert {p for p, digest in manifests.items() if stored_blob(root, digest)} == selected


@pytest.mark.parametrize(("options", "selected"), SELECTIONS, ids=["default", "one", "all"])
def test_export_writes_the_selected_platforms(
    tmp_path: Path, options: list[str], selected: set[str]
) -> None:
    root = tmp_path / "root"
    path, manifests = multi_platform_archive(tmp_path / "multi.tar")
    with Store(root) as store:
        store.import_archive(path, all_platforms=True)
    out = tmp_path / "out.tar"
    proc = run(root, "image", "export", *options, str(out), NAME)
    assert proc.returncode == 0, proc.stderr.decode()
    with tarfile.open(out) as tar:
        members = set(tar.getnames())
    written = {p for p, d in manifests.items() if f"blobs/sha256/{d[7:]}" in members}
    assert written == selected


@pytest.mark.parametrize("command", [["image", "import"], ["archive", "inspect"]], ids=" ".join)
def test_max_document_size_reaches_the_command(tmp_path: Path, command: list[str]) -> None:
    path = many_names_archive(tmp_path / "names.tar")
    root = tmp_path / "root"
    line = assert_one_error_line(run(root, *command, "--max-document-size", "1KiB", str(path)))
    assert "index.json" in line and "document limit of 1024" in line
    proc = run(root, *command, "--max-document-size", "8KiB", str(path))
    assert proc.returncode == 0, proc.stderr.decode()


@pytest.mark.parametrize("command", [["image", "import"], ["archive", "inspect"]], ids=" ".join)
def test_max_uncompressed_size_reaches_the_command(tmp_path: Path, command: list[str]) -> None:
    plain, _ = multi_platform_archive(tmp_path / "multi.tar")
    path = tmp_path / "multi.tar.gz"
    path.write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    root = tmp_path / "root"
    line = assert_one_error_line(run(root, *command, "--max-uncompressed-size", "4KiB", str(path)))
    assert "expands beyond 4096 bytes" in line
    proc = run(root, *command, "--max-uncompressed-size", "1MiB", str(path))
    assert proc.returncode == 0, proc.stderr.decode()


def test_limits_out_of_range_are_a_usage_error_before_the_store_is_made(tmp_path: Path) -> None:
    path = many_names_archive(tmp_path / "names.tar")
    root = tmp_path / "root"
    proc = run(root, "image", "import", "--max-document-size", "128MiB", str(path))
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines()[-1] == (
        "Error: document limit must be between 1 KiB and 67108864 bytes"
    )
    assert not root.exists()
