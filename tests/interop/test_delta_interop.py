"""Delta exports with the real peers: the receiver holds an image skopeo wrote, the update is
built with umoci (one new layer on the same base), and the delta carries only that layer and
its documents, yet the receiver ends with the very image a full import would give.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import DEMO_REF, cargohold

if TYPE_CHECKING:
    from conftest import OciLayout, Skopeo, Umoci

pytestmark = pytest.mark.interop

UPDATE_TAG = "1.1"
UPDATE_REF = "example.com/umoci/demo:1.1"


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args[3:]} exited {result.returncode}: {result.stderr}"
    return result


def import_json(archive: Path, root: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(
        ok(cargohold("image", "import", "--format", "json", str(archive), root=root)).stdout
    )
    return report


@pytest.fixture
def update_archive(umoci: Umoci, skopeo: Skopeo, umoci_image: OciLayout, tmp_path: Path) -> Path:
    """The umoci image plus one small layer, as umoci repacks it (on a copy of the layout),
    written by skopeo as an ``oci-archive:`` named :data:`UPDATE_REF`."""
    layout = tmp_path / "update-layout"
    shutil.copytree(umoci_image.path, layout)
    rootfs = umoci.unpack(f"{layout}:{umoci_image.tag}", tmp_path / "bundle")
    (rootfs / "srv" / "app" / "PATCH").write_text("monthly update\n")
    umoci.run("repack", "--image", f"{layout}:{UPDATE_TAG}", str(tmp_path / "bundle"))
    out = tmp_path / "update.tar"
    skopeo.copy(f"oci:{layout}:{UPDATE_TAG}", f"oci-archive:{out}:{UPDATE_REF}")
    return out


def blob_members(archive: Path) -> dict[str, int]:
    with tarfile.open(archive) as tar:
        return {m.name: m.size for m in tar if m.isfile() and m.name.startswith("blobs/")}


def run_ok(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    return ok(cargohold(*args, root=root))


def test_delta_of_a_umoci_update_to_a_skopeo_fed_store(
    oci_archive: Path, update_archive: Path, tmp_path: Path
) -> None:
    receiver, sender, reference = tmp_path / "receiver", tmp_path / "sender", tmp_path / "ref"
    import_json(oci_archive, receiver)
    import_json(update_archive, sender)
    expected = import_json(update_archive, reference)["images"][0]["digest"]

    inventory = tmp_path / "receiver.inventory"
    run_ok("content", "inventory", "-o", str(inventory), root=receiver)
    delta, full = tmp_path / "delta.tar", tmp_path / "full.tar"
    report = json.loads(
        run_ok(
            "image", "export", "--output-format", "json", "--against", str(inventory),
            str(delta), UPDATE_REF, root=sender,
        ).stdout
    )  # fmt: skip
    run_ok("image", "export", str(full), UPDATE_REF, root=sender)
    # the two base layers stay home; the new layer, the config and the manifest travel
    assert report["blobsOmitted"] == 2 and report["blobs"] == 3
    shipped, whole = blob_members(delta), blob_members(full)
    assert set(shipped) < set(whole)
    assert report["bytesOmitted"] == sum(whole.values()) - sum(shipped.values())

    inspected = json.loads(
        run_ok("archive", "inspect", "--format", "json", str(delta), root=receiver).stdout
    )
    assert inspected["delta"]["missing"] == [] and inspected["importable"] is True

    imported = import_json(delta, receiver)
    assert imported["images"][0]["digest"] == expected
    run_ok("image", "check", "--verify", UPDATE_REF, root=receiver)
    again = tmp_path / "again.tar"
    run_ok("image", "export", str(again), UPDATE_REF, root=receiver)
    assert again.read_bytes() == full.read_bytes()
    # the base image is untouched beside it
    run_ok("image", "check", "--verify", DEMO_REF, root=receiver)


def test_delta_is_refused_where_the_base_is_missing(
    oci_archive: Path, update_archive: Path, tmp_path: Path
) -> None:
    receiver, sender, elsewhere = tmp_path / "receiver", tmp_path / "sender", tmp_path / "else"
    import_json(oci_archive, receiver)
    import_json(update_archive, sender)
    inventory = tmp_path / "receiver.inventory"
    run_ok("content", "inventory", "-o", str(inventory), root=receiver)
    delta = tmp_path / "delta.tar"
    run_ok("image", "export", "--against", str(inventory), str(delta), UPDATE_REF, root=sender)
    result = cargohold("image", "import", str(delta), root=elsewhere)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "delta archive: namespace default lacks 2 omitted blobs" in line
    listing = json.loads(run_ok("image", "ls", "--format", "json", root=elsewhere).stdout)
    assert listing == []
