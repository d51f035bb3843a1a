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
        store.import_archive(path, platforms="all")
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


# -- one report flag, quiet everywhere, podman's boolean spelling ---------------------------


@pytest.fixture
def stored_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    archive, _ = multi_platform_archive(tmp_path / "a.tar")
    assert run(root, "image", "import", "-q", str(archive)).returncode == 0
    return root


def test_export_format_json_is_the_report_and_the_old_spelling_works(
    stored_root: Path, tmp_path: Path
) -> None:
    reports = []
    for flag in ("--format", "--output-format"):
        out = tmp_path / f"{flag}.tar"
        proc = run(stored_root, "image", "export", flag, "json", str(out), NAME)
        assert proc.returncode == 0, proc.stderr
        reports.append(json.loads(proc.stdout))
        assert tarfile.is_tarfile(out)
    assert reports[0]["images"] == reports[1]["images"]


@pytest.mark.parametrize("flag", ["--format", "--layout"])
def test_export_layout_directory_by_either_flag(
    stored_root: Path, tmp_path: Path, flag: str
) -> None:
    out = tmp_path / "layout"
    assert run(stored_root, "image", "export", flag, "oci-dir", str(out), NAME).returncode == 0
    assert (out / "index.json").is_file()


def test_export_format_and_layout_that_disagree_are_a_usage_error(
    stored_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x"
    proc = run(
        stored_root, "image", "export", "--format", "oci-dir", "--layout", "tar", str(out), NAME
    )
    assert proc.returncode == 2
    assert "contradicts" in proc.stderr.decode()
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["archive", "inspect", "-q"], [NAME]),
        (["content", "gc", "-q", "--dry-run"], []),
        (["info", "-q"], None),
        (["image", "inspect", "-q", NAME], None),
        (["image", "label", "-q", NAME, "a=b"], []),
        (["namespace", "create", "-q", "other"], []),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_quiet_on_every_command_that_prints(
    stored_root: Path, tmp_path: Path, args: list[str], expected: list[str] | None
) -> None:
    if args[:2] == ["archive", "inspect"]:
        args = [*args, str(multi_platform_archive(tmp_path / "b.tar")[0])]
    proc = run(stored_root, *args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    if expected is None:  # one value: the root, or the image's digest
        assert len(lines) == 1 and (lines[0] == str(stored_root) or lines[0].startswith("sha256:"))
    else:
        assert lines == expected


def test_tls_verify_takes_podmans_spelling_and_insecure_says_what_to_use(
    stored_root: Path,
) -> None:
    refused = run(stored_root, "image", "pull", "--tls-verify=false", "127.0.0.1:9/x:1")
    assert refused.returncode == 1  # parsed: it got as far as connecting
    bad = run(stored_root, "image", "pull", "--tls-verify=maybe", "127.0.0.1:9/x:1")
    assert bad.returncode == 2 and "not true or false" in bad.stderr.decode()
    insecure = run(stored_root, "image", "pull", "--insecure", "127.0.0.1:9/x:1")
    assert insecure.returncode == 2
    assert "--tls-verify=false" in insecure.stderr.decode()
    assert "--user" not in insecure.stderr.decode()
