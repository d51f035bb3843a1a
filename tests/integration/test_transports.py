"""skopeo's transport prefixes on the command line (``oci-archive:``, ``docker-archive:``,
``oci:``) and the form of the OCI ref name an export writes (``--ref-name``)."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from clisupport import archive, assert_one_error_line, run, seed, stored_names

NAME = "example.com/team/app:v1"
OTHER = "example.com/other/tool:latest"
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def tar_index(path: Path) -> list[dict[str, Any]]:
    """The top-level descriptors of the OCI layout in the tar at *path*."""
    with tarfile.open(path) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        manifests: list[dict[str, Any]] = json.load(member)["manifests"]
    return manifests


def dir_index(path: Path) -> list[dict[str, Any]]:
    manifests: list[dict[str, Any]] = json.loads((path / "index.json").read_text())["manifests"]
    return manifests


@pytest.fixture
def root(tmp_path: Path) -> Path:
    seed(tmp_path / "root", tmp_path, NAME, OTHER)
    return tmp_path / "root"


# -- import and archive inspect ------------------------------------------------------------


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_import_reads_a_transport_prefixed_archive(tmp_path: Path, transport: str) -> None:
    source = archive(tmp_path / "in.tar", NAME)
    ok(run(tmp_path / "root", "image", "import", f"{transport}:{source}"))
    assert stored_names(tmp_path / "root") == [NAME]


def test_import_reads_an_oci_layout_directory(root: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    ok(run(root, "image", "export", "--format", "oci-dir", str(layout), NAME))
    ok(run(tmp_path / "other", "image", "import", f"oci:{layout}"))
    assert stored_names(tmp_path / "other") == [NAME]


def test_import_names_the_image_by_the_reference_after_the_path(tmp_path: Path) -> None:
    source = archive(tmp_path / "in.tar", NAME)
    ok(run(tmp_path / "root", "image", "import", f"oci-archive:{source}:example.com/new/name:2"))
    assert stored_names(tmp_path / "root") == ["example.com/new/name:2"]


def test_a_file_named_like_a_transport_is_a_file(tmp_path: Path) -> None:
    archive(tmp_path / "oci-archive:odd.tar", NAME)
    ok(run(tmp_path / "root", "image", "import", "oci-archive:odd.tar", cwd=tmp_path))
    assert stored_names(tmp_path / "root") == [NAME]


def test_archive_inspect_reads_a_transport_prefixed_archive(tmp_path: Path) -> None:
    source = archive(tmp_path / "in.tar", NAME)
    out = ok(
        run(tmp_path / "root", "archive", "inspect", "--format", "json", f"oci-archive:{source}")
    )
    [image] = json.loads(out)["images"]
    assert image["names"] == [NAME]


# -- export ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_export_to_an_archive_transport_writes_a_tar(
    root: Path, tmp_path: Path, transport: str
) -> None:
    out = tmp_path / "out.tar"
    ok(run(root, "image", "export", f"{transport}:{out}", NAME))
    with tarfile.open(out) as tar:
        assert {"index.json", "manifest.json", "oci-layout"} <= set(tar.getnames())


def test_export_to_oci_writes_a_layout_directory(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "layout"
    ok(run(root, "image", "export", f"oci:{out}", NAME))
    assert (out / "oci-layout").is_file()
    assert [d["annotations"][IMAGE_NAME] for d in dir_index(out)] == [NAME]


def test_export_names_the_image_by_the_reference_after_the_path(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tar"
    ok(run(root, "image", "export", f"oci-archive:{out}:example.com/renamed:3", NAME))
    [entry] = tar_index(out)
    assert entry["annotations"][REF_NAME] == "example.com/renamed:3"
    assert entry["annotations"][IMAGE_NAME] == "example.com/renamed:3"


def test_export_refuses_one_name_for_two_images(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tar"
    line = assert_one_error_line(
        run(root, "image", "export", f"oci-archive:{out}:example.com/x:1", NAME, OTHER)
    )
    assert "example.com/x:1" in line
    assert not out.exists()


def test_export_refuses_a_format_that_contradicts_the_transport(root: Path, tmp_path: Path) -> None:
    proc = run(
        root, "image", "export", "--format", "oci-dir", "oci-archive:out.tar", NAME, cwd=tmp_path
    )
    assert "oci-archive" in assert_one_error_line(proc)
    assert not list(tmp_path.glob("*out.tar*")), "something was written"


# -- --ref-name ------------------------------------------------------------------------------


def test_export_writes_the_full_reference_as_ref_name_by_default(
    root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.tar"
    ok(run(root, "image", "export", str(out), NAME))
    [entry] = tar_index(out)
    assert entry["annotations"][REF_NAME] == NAME


def test_two_images_tagged_latest_get_distinct_ref_names(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/a:latest", "example.com/b:latest")
    out = tmp_path / "layout"
    ok(run(root, "image", "export", f"oci:{out}", "example.com/a:latest", "example.com/b:latest"))
    names = sorted(d["annotations"][REF_NAME] for d in dir_index(out))
    assert names == ["example.com/a:latest", "example.com/b:latest"]


def test_ref_name_tag_writes_only_the_tag_as_ctr_does(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tar"
    ok(run(root, "image", "export", "--ref-name", "tag", str(out), NAME))
    [entry] = tar_index(out)
    assert entry["annotations"][REF_NAME] == "v1"
    assert entry["annotations"][IMAGE_NAME] == NAME


@pytest.mark.parametrize("form", ["full", "tag"])
def test_either_form_imports_back_under_its_name(root: Path, tmp_path: Path, form: str) -> None:
    out = tmp_path / "out.tar"
    ok(run(root, "image", "export", "--ref-name", form, str(out), NAME))
    ok(run(tmp_path / "back", "image", "import", str(out)))
    assert stored_names(tmp_path / "back") == [NAME]


def test_export_refuses_a_name_claiming_another_digest(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tar"
    claimed = "example.com/x@sha256:" + "0" * 64
    line = assert_one_error_line(run(root, "image", "export", f"oci-archive:{out}:{claimed}", NAME))
    assert claimed in line
    assert not out.exists()
