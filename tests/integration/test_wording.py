"""What the everyday commands say: counts in the right number, one not-found wording, JSON
reports that name images as import's do, and network failures that name the host.

Every test runs the real command line (``python -m cargohold``); stores are seeded in-process.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from cargohold.oci.platforms import Platform
from cargohold.operations.store import Store
from clisupport import assert_one_error_line, run, seed
from imagefactory import OCI_INDEX, OCI_MANIFEST, ArchiveBuilder

HOST = str(Platform.host())
UNKNOWN_BLOB = "sha256:" + "a" * 64


@dataclass(frozen=True)
class Pair:
    """``app:1``, a manifest, and ``idx:1``, an index of that manifest alone: removing
    ``idx:1`` leaves exactly one blob, the index, to collect."""

    manifest: str
    index: str
    index_size: int
    layer: str


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def pair(root: Path, tmp_path: Path) -> Pair:
    builder = ArchiveBuilder()
    manifest = builder.image(HOST, with_platform=True)
    index = builder.index([manifest])
    builder.add(manifest, name="example.com/app:1")
    builder.add(index, name="example.com/idx:1")
    with Store(root) as store:
        store.import_archive(builder.write(tmp_path / "pair.tar"), platforms="all")
    [layer] = json.loads(builder.blobs[manifest["digest"]])["layers"]
    return Pair(manifest["digest"], index["digest"], index["size"], layer["digest"])


def ok(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    """The lines of stdout of a command that succeeded without a word on stderr."""
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b"", proc.stderr.decode()
    return proc.stdout.decode().splitlines()


def blob_exists(root: Path, digest: str) -> bool:
    return (root / "content" / "blobs" / "sha256" / digest.removeprefix("sha256:")).exists()


# -- counts ---------------------------------------------------------------------------------


def test_image_rm_says_one_blob_removed(root: Path, pair: Pair) -> None:
    out = ok(run(root, "image", "rm", "example.com/idx:1"))
    assert out == ["example.com/idx:1", f"1 blob removed, {pair.index_size} B freed"]


def test_gc_dry_run_lists_each_blob_then_the_total(root: Path, pair: Pair) -> None:
    ok(run(root, "image", "rm", "--no-gc", "example.com/idx:1"))
    out = ok(run(root, "content", "gc", "--dry-run"))
    assert out == [
        f"{pair.index}  {pair.index_size} B",
        f"1 blob would be removed, {pair.index_size} B",
    ]
    assert blob_exists(root, pair.index)  # a dry run removes nothing
    assert ok(run(root, "content", "gc")) == [f"1 blob removed, {pair.index_size} B"]
    assert not blob_exists(root, pair.index)


def test_gc_dry_run_with_nothing_to_remove_prints_the_total_alone(root: Path, pair: Pair) -> None:
    assert ok(run(root, "content", "gc", "--dry-run")) == ["0 blobs would be removed, 0 B"]


def test_image_check_counts_images_in_the_right_number(
    root: Path, pair: Pair, tmp_path: Path
) -> None:
    seed(root, tmp_path, "example.com/whole:1")  # not damaged: not counted
    ok(run(root, "content", "rm", "--force", pair.layer))
    line = assert_one_error_line(run(root, "image", "check"))
    assert "2 images with missing, corrupt or unreadable content" in line
    ok(run(root, "image", "rm", "--no-gc", "example.com/idx:1"))
    line = assert_one_error_line(run(root, "image", "check"))
    assert "1 image with missing, corrupt or unreadable content" in line


# -- not found ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("image", "rm", "nope:1"),
        ("image", "inspect", "nope:1"),
        ("image", "tag", "nope:1", "other:1"),
    ],
)
def test_an_unknown_image_is_worded_one_way(root: Path, pair: Pair, args: tuple[str, ...]) -> None:
    line = assert_one_error_line(run(root, *args))
    assert line.endswith("image nope:1 not found in namespace default"), line


@pytest.mark.parametrize("args", [("content", "rm"), ("content", "get")])
def test_an_unknown_blob_is_worded_one_way(root: Path, pair: Pair, args: tuple[str, ...]) -> None:
    line = assert_one_error_line(run(root, *args, UNKNOWN_BLOB))
    assert line.endswith(f"blob {UNKNOWN_BLOB} not found in the store"), line


# -- JSON reports ---------------------------------------------------------------------------


def test_tag_json_gives_the_source_as_stored(root: Path, pair: Pair) -> None:
    proc = run(root, "image", "tag", "--format", "json", "example.com/app:1", "b:2")
    assert json.loads("\n".join(ok(proc))) == {
        "source": "example.com/app:1",
        "names": ["docker.io/library/b:2"],
        "digest": pair.manifest,
    }
    proc = run(root, "image", "tag", "--format", "json", "b:2", "c:3")
    assert json.loads("\n".join(ok(proc)))["source"] == "docker.io/library/b:2"


@pytest.mark.parametrize("compress", ["gzip", "zstd", "none"])
def test_export_json_reports_the_bytes_of_the_file_and_images_as_objects(
    root: Path, tmp_path: Path, pair: Pair, compress: str
) -> None:
    out = tmp_path / "out.tar"
    proc = run(
        root, "image", "export", "--output-format", "json", "--compress", compress, str(out),
        "example.com/idx:1", "example.com/app:1",
    )  # fmt: skip
    doc = json.loads("\n".join(ok(proc)))
    assert doc["bytesWritten"] == out.stat().st_size
    assert doc["images"] == [
        {"name": "example.com/idx:1", "digest": pair.index, "mediaType": OCI_INDEX},
        {"name": "example.com/app:1", "digest": pair.manifest, "mediaType": OCI_MANIFEST},
    ]
    if compress == "gzip":
        assert len(gzip.decompress(out.read_bytes())) > doc["bytesWritten"]


# -- network --------------------------------------------------------------------------------


def test_pull_from_a_host_that_does_not_resolve_names_it(root: Path) -> None:
    line = assert_one_error_line(run(root, "image", "pull", "example.invalid/app:1"))
    assert "cannot resolve registry host example.invalid (" in line, line
    assert "Errno" not in line


def test_namespace_rm_counts_its_images(root: Path, tmp_path: Path) -> None:
    with Store(root, "team") as store:
        for i in range(2):
            builder = ArchiveBuilder()
            builder.add(builder.image(HOST, files={"n": bytes([i])}), name=f"example.com/a:{i}")
            store.import_archive(builder.write(tmp_path / f"a{i}.tar"))
    line = assert_one_error_line(run(root, "namespace", "rm", "team"))
    assert line.endswith("namespace team still has 2 images; remove them first"), line


def test_one_missing_manifest_of_an_index_is_one(root: Path, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    other = "linux/arm64" if HOST != "linux/arm64" else "linux/amd64"
    index = builder.multi_platform([HOST, other])
    builder.add(index, name="example.com/multi:1")
    [absent] = [
        m["digest"]
        for m in json.loads(builder.blobs[index["digest"]])["manifests"]
        if m["platform"]["architecture"] != Platform.host().architecture
    ]
    path = builder.write(tmp_path / "multi.tar", omit=frozenset({absent}))
    line = assert_one_error_line(run(root, "image", "import", "--all-platforms", str(path)))
    assert "lists 1 selected manifest that is missing: " in line, line
    proc = run(root, "image", "import", "--all-platforms", "--skip-missing", str(path))
    assert proc.returncode == 0, proc.stderr
    warning = "imported partially, 1 manifest of its index was not in the archive"
    assert warning in proc.stderr.decode()
