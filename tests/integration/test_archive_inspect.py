"""``archive inspect``: what an archive holds and what importing it would add, nothing written.

The shapes come from :mod:`test_archive_shapes`. Every report is checked against what an
actual import of the same archive does (into a separate store, so the inspected root stays
untouched), and the command line is run as a subprocess for what only it can show: that no
file appears anywhere, the exit status, and the output.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zstandard

from cargohold import InvalidArchiveError, Store
from cargohold.cli.jsonout import archive_report_json
from cargohold.cli.progress import PlainProgress
from cargohold.oci.platforms import Platform
from cargohold.operations.inspecting import inspect_archive
from cargohold.operations.results import ArchiveReport
from clisupport import ERROR_PREFIX, assert_one_error_line, run
from dockerimages import (
    COMPRESSORS,
    DOCKER_LAYER_GZIP,
    HOST,
    OCI_LAYER_ZSTD,
    OTHER,
    DockerImage,
    classic_save,
    containerd_store_save,
    crane_save,
    demo_image,
    docker25_save,
    expected_manifest,
    layer,
    oci_archive,
    oci_entries,
    plain_manifest,
    repositories_file,
    skopeo_save,
    write_archive,
)
from imagefactory import OCI_CONFIG, OCI_MANIFEST, ArchiveBuilder, digest_of, dumps
from streams import Entry, pipe_reader, tar_bytes

REPORT_KEYS = [
    "format",
    "images",
    "blobs",
    "size",
    "importable",
    "newBlobs",
    "bytesToAdd",
    "problem",
    "warnings",
    "delta",
]
IMAGE_KEYS = ["names", "digest", "mediaType", "platforms", "size", "missing"]


def platform_strings(*platforms: Platform | str) -> list[str]:
    """Platforms as the report lists them: sorted by os, architecture, variant."""
    parsed = [p if isinstance(p, Platform) else Platform.parse(p) for p in platforms]
    return [str(p) for p in sorted(set(parsed), key=Platform.sort_key)]


def inspect_cli(
    root: Path, *args: str, stdin: bytes | None = None, **kw: Any
) -> subprocess.CompletedProcess[bytes]:
    """``cargohold --root ROOT archive inspect ARGS...`` as a subprocess."""
    return run(root, "archive", "inspect", *args, stdin=stdin, **kw)


# --- the shapes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """One image the report must list."""

    names: list[str]
    digest: str
    platforms: list[str]
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    """An archive on disk and what its report must say."""

    source: Path
    format: str
    images: list[Expected]


def classic(tmp: Path) -> Case:
    image = demo_image()
    source = write_archive(tmp / "classic.tar", classic_save([image]))
    digest = digest_of(plain_manifest(image))
    return Case(source, "docker", [Expected(["docker.io/library/foo:1"], digest, [str(HOST)])])


def classic_repositories_only(tmp: Path) -> Case:
    named = demo_image(["example.com/legacy:7"])
    image = DockerImage(named.layers, None)
    entries = classic_save([image], repositories_file([named]))
    source = write_archive(tmp / "legacy.tar", entries)
    digest = digest_of(plain_manifest(image))
    return Case(source, "docker", [Expected(["example.com/legacy:7"], digest, [str(HOST)])])


def skopeo(tmp: Path) -> Case:
    image = demo_image(["foo:1", "example.com/team/foo:latest"])
    source = write_archive(tmp / "skopeo.tar", skopeo_save(image))
    digest = digest_of(plain_manifest(image))
    names = ["docker.io/library/foo:1", "example.com/team/foo:latest"]
    return Case(source, "docker", [Expected(names, digest, [str(HOST)])])


def crane_gzip(tmp: Path) -> Case:
    image = demo_image()

    def compress(data: bytes) -> bytes:
        return gzip.compress(data, mtime=0)

    source = write_archive(tmp / "crane.tar", crane_save(image, compress, ".tar.gz"))
    manifest = expected_manifest(
        image.config, [(DOCKER_LAYER_GZIP, compress(d)) for d in image.layers]
    )
    return Case(
        source, "docker", [Expected(["docker.io/library/foo:1"], digest_of(manifest), [str(HOST)])]
    )


def crane_zstd(tmp: Path) -> Case:
    image = demo_image(["zstd:1"], seed="zstd")
    compress = zstandard.ZstdCompressor(level=3).compress
    source = write_archive(tmp / "crane-zstd.tar", crane_save(image, compress, ".tar.zst"))
    manifest = expected_manifest(
        image.config, [(OCI_LAYER_ZSTD, compress(d)) for d in image.layers]
    )
    return Case(
        source,
        "docker",
        [Expected(["docker.io/library/zstd:1"], digest_of(manifest), [str(HOST)])],
    )


def docker25(tmp: Path) -> Case:
    entries, digest = docker25_save(ArchiveBuilder(), "foo:1", "foo:latest")
    source = write_archive(tmp / "docker25.tar", entries)
    names = ["docker.io/library/foo:1", "docker.io/library/foo:latest"]
    return Case(source, "oci", [Expected(names, digest, [str(HOST)])])


def multi_image_docker(tmp: Path) -> Case:
    shared = layer("shared/base.txt")
    first = DockerImage([shared, layer("first/app.txt")], ["foo:1"])
    second = DockerImage([shared, layer("second/app.txt")], ["example.com/bar:2"])
    source = write_archive(tmp / "two.tar", classic_save([first, second]))
    return Case(
        source,
        "docker",
        [
            Expected(["docker.io/library/foo:1"], digest_of(plain_manifest(first)), [str(HOST)]),
            Expected(["example.com/bar:2"], digest_of(plain_manifest(second)), [str(HOST)]),
        ],
    )


def oci_single(tmp: Path) -> Case:
    builder = ArchiveBuilder()
    desc = builder.image(str(HOST), layers=2)
    builder.add(desc, name="example.com/shapes/single:1")
    builder.add(desc, ref_name="latest")  # a bare tag: put under the file's base name
    source = builder.write(tmp / "single.tar")
    names = ["example.com/shapes/single:1", "docker.io/library/single:latest"]
    return Case(source, "oci", [Expected(names, desc["digest"], [str(HOST)])])


def oci_multi_platform(tmp: Path) -> Case:
    builder = ArchiveBuilder()
    index = builder.multi_platform([str(HOST), str(OTHER)])
    builder.add(index, name="example.com/shapes/multi:1")
    source = builder.write(tmp / "multi.tar")
    platforms = platform_strings(HOST, OTHER)
    return Case(
        source, "oci", [Expected(["example.com/shapes/multi:1"], index["digest"], platforms)]
    )


def oci_platform_absent(tmp: Path) -> Case:
    saved = containerd_store_save()
    source = write_archive(tmp / "containerd.tar", saved.entries)
    platforms = platform_strings(HOST, OTHER, "unknown/unknown")
    missing = sorted([saved.other_manifest, saved.attestation])
    return Case(
        source,
        "oci",
        [Expected(["docker.io/library/multi:1"], saved.index, platforms, missing)],
    )


def compressed(kind: str) -> Callable[[Path], Case]:
    def build(tmp: Path) -> Case:
        data, digest = oci_archive()
        suffix, compress = COMPRESSORS[kind]
        source = tmp / f"oci{suffix}"
        source.write_bytes(compress(data))
        return Case(source, "oci", [Expected(["example.com/shapes/oci:1"], digest, [str(HOST)])])

    return build


def compressed_docker(tmp: Path) -> Case:
    image = demo_image()
    source = tmp / "skopeo.tar.zst"
    source.write_bytes(zstandard.ZstdCompressor().compress(tar_bytes(skopeo_save(image))))
    digest = digest_of(plain_manifest(image))
    return Case(source, "docker", [Expected(["docker.io/library/foo:1"], digest, [str(HOST)])])


def layout_directory(tmp: Path) -> Case:
    builder = ArchiveBuilder()
    index = builder.multi_platform([str(HOST), str(OTHER)])
    builder.add(index, ref_name="1.0")
    source = tmp / "my-layout"
    builder.write_layout(source)
    return Case(
        source,
        "oci",
        [
            Expected(
                ["docker.io/library/my-layout:1.0"], index["digest"], platform_strings(HOST, OTHER)
            )
        ],
    )


SHAPES: dict[str, Callable[[Path], Case]] = {
    "classic": classic,
    "classic-repositories-only": classic_repositories_only,
    "skopeo": skopeo,
    "crane-gzip": crane_gzip,
    "crane-zstd": crane_zstd,
    "docker25": docker25,
    "multi-image-docker": multi_image_docker,
    "oci-single": oci_single,
    "oci-multi-platform": oci_multi_platform,
    "oci-platform-absent": oci_platform_absent,
    **{f"archive-{kind}": compressed(kind) for kind in ("gzip", "zstd", "xz", "bzip2")},
    "docker-archive-zstd": compressed_docker,
    "layout-directory": layout_directory,
}


def described(report: ArchiveReport) -> list[Expected]:
    return [
        Expected(
            list(image.names),
            str(image.target.digest),
            [str(p) for p in image.platforms],
            sorted(image.missing),
        )
        for image in report.images
    ]


def without_estimate(report: ArchiveReport) -> dict[str, object]:
    return {
        k: v for k, v in archive_report_json(report).items() if k not in ("newBlobs", "bytesToAdd")
    }


@pytest.mark.parametrize("shape", list(SHAPES))
def test_report_agrees_with_an_actual_import(tmp_path: Path, shape: str) -> None:
    case = SHAPES[shape](tmp_path)
    root = tmp_path / "root"

    report = inspect_archive(case.source, root)

    assert not root.exists()
    assert report.problem is None
    assert report.importable
    assert report.format == case.format
    assert described(report) == case.images
    assert report.warnings == []
    with Store(tmp_path / "elsewhere") as elsewhere:
        result = elsewhere.import_archive(case.source)
    assert [(i.name, str(i.digest)) for i in result.images] == [
        (name, image.digest) for image in case.images for name in image.names
    ]
    assert result.blobs_written > 0
    assert (report.new_blobs, report.bytes_to_add) == (result.blobs_written, result.bytes_written)

    with Store(root) as store:
        store.import_archive(case.source)
    again = inspect_archive(case.source, root)

    assert again.importable
    assert (again.new_blobs, again.bytes_to_add) == (0, 0)
    assert without_estimate(again) == without_estimate(report)


def test_report_of_a_stream_agrees_with_the_file(tmp_path: Path) -> None:
    case = docker25(tmp_path)
    from_file = inspect_archive(case.source, tmp_path / "root")

    with pipe_reader(case.source.read_bytes()) as reader:
        from_pipe = inspect_archive(reader, tmp_path / "root")

    assert archive_report_json(from_pipe) == archive_report_json(from_file)
    assert not (tmp_path / "root").exists()


def test_blobs_and_sizes_of_an_oci_archive(tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    desc = builder.image(str(HOST), layers=3)
    builder.add(desc, name="example.com/sizes:1")
    source = builder.write(tmp_path / "sizes.tar")

    report = inspect_archive(source, tmp_path / "root")

    total = sum(len(data) for data in builder.blobs.values())
    assert (report.blobs, report.size) == (len(builder.blobs), total)
    [image] = report.images
    assert image.size == total  # manifest, config and three layers, all of them present
    assert image.target.media_type == OCI_MANIFEST
    assert (report.new_blobs, report.bytes_to_add) == (len(builder.blobs), total)


def test_only_what_the_store_lacks_is_counted(tmp_path: Path) -> None:
    shared = layer("shared/base.txt")
    first = DockerImage([shared, layer("first/app.txt")], ["foo:1"])
    second = DockerImage([shared, layer("second/app.txt")], ["example.com/bar:2"])
    both = write_archive(tmp_path / "both.tar", classic_save([first, second]))
    root = tmp_path / "root"
    with Store(root) as store:
        store.import_archive(write_archive(tmp_path / "first.tar", classic_save([first])))

    report = inspect_archive(both, root)

    with Store(root) as store:
        result = store.import_archive(both)
    # the second manifest, its config and its own layer; the shared layer is there already
    assert result.blobs_written == 3
    assert (report.new_blobs, report.bytes_to_add) == (result.blobs_written, result.bytes_written)


# --- platform selection --------------------------------------------------------------------


@dataclass(frozen=True)
class TwoPlatforms:
    source: Path
    index: str
    #: What an import of each platform adds to an empty store: the index, the platform's
    #: manifest, its config and its layers.
    bytes_for: dict[str, int]
    blobs_for: dict[str, int]
    blobs: int
    total: int


def two_platforms(tmp: Path) -> TwoPlatforms:
    """linux/amd64 and linux/arm64 images of different sizes, whatever the host is."""
    builder = ArchiveBuilder()
    amd64 = builder.image("linux/amd64", layers=1, with_platform=True)
    arm64 = builder.image("linux/arm64", layers=3, with_platform=True)
    index = builder.index([amd64, arm64])
    builder.add(index, name="example.com/two:1")
    bytes_for, blobs_for = {}, {}
    for platform, desc in (("linux/amd64", amd64), ("linux/arm64", arm64)):
        manifest = json.loads(builder.blobs[desc["digest"]])
        parts = [index, desc, manifest["config"], *manifest["layers"]]
        bytes_for[platform] = sum(part["size"] for part in parts)
        blobs_for[platform] = len(parts)
    assert bytes_for["linux/amd64"] != bytes_for["linux/arm64"]
    total = sum(len(data) for data in builder.blobs.values())
    source = builder.write(tmp / "two.tar")
    return TwoPlatforms(source, index["digest"], bytes_for, blobs_for, len(builder.blobs), total)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"platforms": ["linux/amd64"]},
        {"platforms": ["linux/arm64"]},
        {"platforms": ["linux/arm64", "linux/amd64"]},
        {"platforms": "all"},
    ],
    ids=["host", "amd64", "arm64", "both", "all-platforms"],
)
def test_estimate_covers_the_selected_platforms(tmp_path: Path, options: dict[str, Any]) -> None:
    archive = two_platforms(tmp_path)
    assert str(HOST) in archive.bytes_for, "the tests run on linux/amd64 or linux/arm64"
    selected = options.get("platforms", [str(HOST)])
    platform = None if options.get("platforms") == "all" or len(selected) > 1 else selected[0]

    report = inspect_archive(archive.source, tmp_path / "root", **options)

    with Store(tmp_path / "elsewhere") as elsewhere:
        result = elsewhere.import_archive(archive.source, **options)
    assert report.importable
    assert (report.new_blobs, report.bytes_to_add) == (result.blobs_written, result.bytes_written)
    if platform is not None:
        assert report.new_blobs == archive.blobs_for[platform]
        assert report.bytes_to_add == archive.bytes_for[platform]
    else:
        assert (report.new_blobs, report.bytes_to_add) == (archive.blobs, archive.total)
    # what the archive holds does not depend on the platforms chosen
    [image] = report.images
    assert str(image.target.digest) == archive.index
    assert [str(p) for p in image.platforms] == ["linux/amd64", "linux/arm64"]
    assert image.size == archive.total


def test_cli_platform_option_selects_the_estimate(tmp_path: Path) -> None:
    archive = two_platforms(tmp_path)
    root = tmp_path / "root"

    arm64 = inspect_cli(root, "--format", "json", "--platform", "linux/arm64", str(archive.source))
    host = inspect_cli(root, "--format", "json", str(archive.source))

    assert arm64.returncode == 0, arm64.stderr
    assert host.returncode == 0, host.stderr
    assert json.loads(arm64.stdout)["bytesToAdd"] == archive.bytes_for["linux/arm64"]
    assert json.loads(host.stdout)["bytesToAdd"] == archive.bytes_for[str(HOST)]
    assert not root.exists()


def json_of(proc: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


@pytest.mark.parametrize(
    "scenario", ["platform-not-in-index", "manifest-absent", "docker-other-platform"]
)
def test_no_manifest_for_the_platform_fails_after_the_report(tmp_path: Path, scenario: str) -> None:
    root = tmp_path / "root"
    options: list[str] = []
    if scenario == "platform-not-in-index":
        archive = two_platforms(tmp_path)
        source, digest, named = archive.source, archive.index, "linux/s390x"
        options = ["--platform", "linux/s390x"]
    elif scenario == "manifest-absent":
        saved = containerd_store_save()
        source = write_archive(tmp_path / "containerd.tar", saved.entries)
        digest, named = saved.index, saved.other_manifest
        options = ["--platform", str(OTHER)]
    else:
        image = DockerImage(demo_image().layers, ["foo:1"], platform=OTHER)
        source = write_archive(tmp_path / "other.tar", classic_save([image]))
        digest, named = digest_of(plain_manifest(image)), str(HOST)

    proc = inspect_cli(root, "--format", "json", *options, str(source))

    line = assert_one_error_line(proc)
    assert line.startswith(f"{ERROR_PREFIX}import would fail: ")
    assert named in line
    doc = json_of(proc)
    assert doc["importable"] is False
    assert doc["problem"] and named in doc["problem"]
    assert line == f"{ERROR_PREFIX}import would fail: {doc['problem']}"
    assert (doc["newBlobs"], doc["bytesToAdd"]) == (0, 0)
    assert [image["digest"] for image in doc["images"]] == [digest]
    assert not root.exists()


def test_text_report_is_printed_before_the_failure(tmp_path: Path) -> None:
    archive = two_platforms(tmp_path)

    proc = inspect_cli(tmp_path / "root", "--platform", "linux/s390x", str(archive.source))

    line = assert_one_error_line(proc)
    assert "import would fail" in line
    out = proc.stdout.decode()
    assert out.startswith("Format:")
    assert archive.index in out
    assert "Import would add" not in out


# --- nothing is written --------------------------------------------------------------------


def file_tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under *root* (itself included) with its mode, size and mtime."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = Path(directory, name)
            st = path.lstat()
            found[path.relative_to(root).as_posix()] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return found


@pytest.mark.parametrize(
    "shape", ["classic", "skopeo", "oci-multi-platform", "archive-zstd", "layout-directory"]
)
def test_nothing_is_written_without_a_store(tmp_path: Path, shape: str) -> None:
    case = SHAPES[shape](tmp_path)
    root = tmp_path / "absent" / "store"
    tmpdir, cwd = tmp_path / "tmpdir", tmp_path / "cwd"
    tmpdir.mkdir()
    cwd.mkdir()
    source_before = file_tree(case.source) if case.source.is_dir() else None
    env = {"TMPDIR": str(tmpdir)}

    proc = inspect_cli(root, "--format", "json", str(case.source), env=env, cwd=cwd)

    assert proc.returncode == 0, proc.stderr
    assert json_of(proc)["importable"] is True
    assert not root.parent.exists()
    assert list(tmpdir.iterdir()) == []
    assert list(cwd.iterdir()) == []
    if source_before is not None:
        assert file_tree(case.source) == source_before


def test_nothing_is_written_reading_stdin(tmp_path: Path) -> None:
    case = classic(tmp_path)
    root = tmp_path / "absent"
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    data = gzip.compress(case.source.read_bytes(), mtime=0)

    proc = inspect_cli(root, "--format", "json", "-", stdin=data, env={"TMPDIR": str(tmpdir)})

    assert proc.returncode == 0, proc.stderr
    doc = json_of(proc)
    assert [(i["names"], i["digest"]) for i in doc["images"]] == [
        (case.images[0].names, case.images[0].digest)
    ]
    assert doc["format"] == "docker"
    assert doc == archive_report_json(inspect_archive(case.source, root))
    assert not root.exists()
    assert list(tmpdir.iterdir()) == []


def test_an_existing_store_is_left_exactly_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "root"
    seeded = classic(tmp_path)
    with Store(root) as store:
        store.import_archive(seeded.source)
    other = oci_multi_platform(tmp_path)
    bad, _ = bad_digest_archive(tmp_path)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {"TMPDIR": str(tmpdir)}
    before = file_tree(root)

    again = inspect_cli(root, "--format", "json", str(seeded.source), env=env)
    new = inspect_cli(root, "--format", "json", str(other.source), env=env)
    failing = inspect_cli(root, "--platform", "linux/s390x", str(other.source), env=env)
    hostile = inspect_cli(root, str(bad), env=env)

    assert file_tree(root) == before
    assert list(tmpdir.iterdir()) == []
    assert again.returncode == 0, again.stderr
    assert (json_of(again)["newBlobs"], json_of(again)["bytesToAdd"]) == (0, 0)
    assert new.returncode == 0, new.stderr
    with Store(tmp_path / "elsewhere") as elsewhere:
        result = elsewhere.import_archive(other.source)
    assert (json_of(new)["newBlobs"], json_of(new)["bytesToAdd"]) == (
        result.blobs_written,
        result.bytes_written,
    )
    assert "import would fail" in assert_one_error_line(failing)
    assert_one_error_line(hostile)


# --- hostile and corrupt archives ----------------------------------------------------------


def noisy_builder() -> tuple[ArchiveBuilder, dict[str, Any]]:
    """An image with an incompressible 64 KiB layer, so that any cut lands inside data."""
    builder = ArchiveBuilder()
    desc = builder.image(str(HOST), files={"noise": os.urandom(1 << 16)})
    builder.add(desc, name="example.com/hostile:1")
    return builder, desc


def bad_digest_archive(tmp: Path) -> tuple[Path, str]:
    """An archive whose manifest blob holds other bytes; returns it and the manifest digest."""
    builder, desc = noisy_builder()
    victim = "blobs/" + desc["digest"].replace(":", "/")
    entries: list[Entry] = [
        (name, b'{"not":"the manifest"}' if name == victim else data)
        for name, data in oci_entries(builder)
    ]
    return write_archive(tmp / "bad-digest.tar", entries), desc["digest"]


def assert_refused(proc: subprocess.CompletedProcess[bytes], root: Path) -> str:
    line = assert_one_error_line(proc)
    assert "import would fail" not in line  # refused while reading, before any report
    assert proc.stdout == b""
    assert not root.exists()
    return line


@pytest.mark.parametrize("source", ["path", "stdin"])
def test_blob_that_does_not_match_its_digest(tmp_path: Path, source: str) -> None:
    path, digest = bad_digest_archive(tmp_path)
    root = tmp_path / "root"

    if source == "path":
        proc = inspect_cli(root, str(path))
    else:
        proc = inspect_cli(root, "-", stdin=path.read_bytes())

    line = assert_refused(proc, root)
    assert f"'blobs/sha256/{digest.split(':')[1]}'" in line  # the member
    assert digest in line
    assert digest_of(b'{"not":"the manifest"}') in line


@pytest.mark.parametrize("source", ["path", "stdin"])
@pytest.mark.parametrize("kind", ["none", "gzip"])
def test_truncated_archive(tmp_path: Path, source: str, kind: str) -> None:
    builder, _ = noisy_builder()
    data = COMPRESSORS[kind][1](tar_bytes(oci_entries(builder)))
    cut = data[: len(data) // 2]
    root = tmp_path / "root"

    if source == "path":
        path = tmp_path / f"cut{COMPRESSORS[kind][0]}"
        path.write_bytes(cut)
        proc = inspect_cli(root, "--format", "json", str(path))
    else:
        proc = inspect_cli(root, "--format", "json", "-", stdin=cut)

    line = assert_refused(proc, root)
    assert "truncated" in line or "corrupt" in line


@pytest.mark.parametrize("source", ["path", "stdin"])
def test_garbage_is_not_an_archive(tmp_path: Path, source: str) -> None:
    garbage = b"this is not an image archive\n" * 200
    root = tmp_path / "root"

    if source == "path":
        path = tmp_path / "garbage.tar"
        path.write_bytes(garbage)
        proc = inspect_cli(root, str(path))
    else:
        proc = inspect_cli(root, "-", stdin=garbage)

    assert "not a valid tar archive" in assert_refused(proc, root)


@pytest.mark.parametrize("name", ["../escape", "blobs/sha256/../../../escape"])
def test_member_name_with_dot_dot(tmp_path: Path, name: str) -> None:
    builder, _ = noisy_builder()
    entries: list[Entry] = [*oci_entries(builder), (name, b"payload")]
    path = write_archive(tmp_path / "dotdot.tar", entries)
    root = tmp_path / "root"

    proc = inspect_cli(root, str(path))

    line = assert_refused(proc, root)
    assert repr(name) in line
    assert "'..'" in line


def test_hostile_archive_through_the_library_raises_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with pytest.raises(InvalidArchiveError, match="content has digest"):
        inspect_archive(bad_digest_archive(tmp_path)[0], root)
    assert not root.exists()


# --- output --------------------------------------------------------------------------------


def test_json_has_exactly_the_documented_keys(tmp_path: Path) -> None:
    case = oci_platform_absent(tmp_path)

    proc = inspect_cli(tmp_path / "root", "--format", "json", str(case.source))

    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    doc = json_of(proc)
    assert list(doc) == REPORT_KEYS
    [image] = doc["images"]
    assert list(image) == IMAGE_KEYS
    assert doc["format"] == "oci"
    assert doc["importable"] is True
    assert doc["problem"] is None
    assert doc["warnings"] == []
    assert isinstance(doc["blobs"], int) and isinstance(doc["size"], int)
    assert isinstance(doc["newBlobs"], int) and isinstance(doc["bytesToAdd"], int)
    expected = case.images[0]
    assert image["names"] == expected.names
    assert image["digest"] == expected.digest
    assert image["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert image["platforms"] == expected.platforms
    assert sorted(image["missing"]) == expected.missing
    assert isinstance(image["size"], int) and image["size"] > 0


def test_text_output(tmp_path: Path) -> None:
    case = multi_image_docker(tmp_path)
    report = inspect_archive(case.source, tmp_path / "root")

    proc = inspect_cli(tmp_path / "root", str(case.source))

    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""  # --progress auto shows nothing in a pipe
    lines = proc.stdout.decode().splitlines()
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines[:2]}
    assert fields["Format"] == "docker archive"
    assert fields["Blobs"].startswith(f"{report.blobs}, ")
    [header] = [line for line in lines if line.startswith("NAME")]
    assert header.split() == ["NAME", "DIGEST", "PLATFORMS", "SIZE", "MISSING"]
    rows = [line.split() for line in lines[lines.index(header) + 1 :] if line.strip()]
    table = [row for row in rows if row[0] != "Import"]
    assert [(row[0], row[1], row[2]) for row in table] == [
        (name, image.digest, ",".join(image.platforms))
        for image in case.images
        for name in image.names
    ]
    assert all(row[-1] == "0" for row in table)
    assert lines[-1].startswith(f"Import would add {report.new_blobs} blobs, ")
    assert report.new_blobs == 7  # two manifests, two configs, three distinct layers


def test_oci_layout_text_format_line(tmp_path: Path) -> None:
    case = layout_directory(tmp_path)

    proc = inspect_cli(tmp_path / "root", str(case.source))

    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert out.splitlines()[0].split(":", 1)[1].strip() == "OCI image layout"
    assert "docker.io/library/my-layout:1.0" in out
    assert ",".join(case.images[0].platforms) in out


@pytest.mark.parametrize("source", ["path", "stdin"])
def test_plain_progress_ends_with_an_inspect_line(tmp_path: Path, source: str) -> None:
    case = oci_single(tmp_path)
    root = tmp_path / "root"

    if source == "path":
        proc = inspect_cli(root, "--progress", "plain", str(case.source))
    else:
        proc = inspect_cli(root, "--progress", "plain", "-", stdin=case.source.read_bytes())

    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode().splitlines()
    assert err, "no progress at all"
    assert err[-1].startswith("inspect: ")
    assert "Import would add" in proc.stdout.decode()
    assert not root.exists()


def test_library_progress_is_finished(tmp_path: Path) -> None:
    case = oci_single(tmp_path)
    sink = io.StringIO()

    inspect_archive(case.source, tmp_path / "root", progress=PlainProgress(sink))

    assert sink.getvalue().splitlines()[-1].startswith("inspect: ")


# --- inspect must agree with import (these show bugs) --------------------------------------


def import_and_inspect(tmp_path: Path, source: Path) -> tuple[list[tuple[str, str]], ArchiveReport]:
    with Store(tmp_path / "elsewhere") as elsewhere:
        result = elsewhere.import_archive(source)
    imported = [(i.name, str(i.digest)) for i in result.images]
    return imported, inspect_archive(source, tmp_path / "root")


def test_config_with_leading_whitespace_is_importable(tmp_path: Path) -> None:
    # Valid JSON may start with any amount of whitespace. An import reads the config back
    # from its staged file; inspection keeps documents in memory only when their first 64
    # bytes look like JSON, so a config over 512 bytes that starts with 64 blanks is lost.
    builder = ArchiveBuilder()
    config = b" " * 600 + dumps(
        {
            "architecture": HOST.architecture,
            "os": HOST.os,
            "rootfs": {"type": "layers", "diff_ids": []},
        }
    )
    manifest = builder.blob(
        dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": builder.blob(config, OCI_CONFIG),
                "layers": [],
            }
        ),
        OCI_MANIFEST,
    )
    builder.add(manifest, name="example.com/blank:1")
    source = builder.write(tmp_path / "blank.tar")

    imported, report = import_and_inspect(tmp_path, source)

    assert imported == [("example.com/blank:1", manifest["digest"])]
    assert report.problem is None
    assert report.importable
    assert [(n, str(i.target.digest)) for i in report.images for n in i.names] == imported


@pytest.mark.parametrize("variant", ["other-platform-manifest-absent", "same-name-per-platform"])
def test_entries_for_other_platforms_do_not_make_the_import_fail(
    tmp_path: Path, variant: str
) -> None:
    # index.json lists one manifest per platform (with its platform). An import for this host
    # skips the other platform's entry entirely; inspection's first pass over all platforms
    # fails on it and reports that the import would fail.
    builder = ArchiveBuilder()
    host = builder.image(str(HOST), with_platform=True)
    other = builder.image(str(OTHER), with_platform=True)
    other_name = "example.com/app:1" if variant == "same-name-per-platform" else "example.com/b:1"
    for desc, name in ((host, "example.com/app:1"), (other, other_name)):
        builder.entries.append({**desc, "annotations": {"io.containerd.image.name": name}})
    absent = variant == "other-platform-manifest-absent"
    omit = frozenset({other["digest"]}) if absent else frozenset()
    source = builder.write(tmp_path / "per-platform.tar", omit=omit)

    imported, report = import_and_inspect(tmp_path, source)

    assert imported == [("example.com/app:1", host["digest"])]
    assert report.problem is None
    assert report.importable
    assert ("example.com/app:1", host["digest"]) in [
        (n, str(i.target.digest)) for i in report.images for n in i.names
    ]
