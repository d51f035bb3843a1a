"""A split export's volumes, joined with ``cat``, are an archive skopeo reads as it is."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import Skopeo

from clisupport import run
from imagefactory import ArchiveBuilder
from snapshots import HOST

NAME = "example.com/volumes/interop:1"


def test_skopeo_reads_the_joined_volumes_as_oci_archive(skopeo: Skopeo, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    manifest = builder.image(HOST, files={"data": bytes(range(256)) * 64}, layers=2)
    builder.add(manifest, name=NAME)
    root = tmp_path / "store"
    imported = run(root, "image", "import", str(builder.write(tmp_path / "in.tar")))
    assert imported.returncode == 0, imported.stderr
    out = tmp_path / "volumes" / "app.tar"
    out.parent.mkdir()
    exported = run(root, "image", "export", "--split-size", "4KiB", str(out), NAME)
    assert exported.returncode == 0, exported.stderr
    volumes = sorted(out.parent.glob("app.tar.0*"))
    assert len(volumes) > 2
    checked = subprocess.run(
        ["sha256sum", "-c", "--strict", "app.tar.sha256"], cwd=out.parent, check=False
    )
    assert checked.returncode == 0

    joined = tmp_path / "joined.tar"
    joined.write_bytes(b"".join(v.read_bytes() for v in volumes))
    source = f"oci-archive:{joined}"
    assert skopeo.inspect(source)["Digest"] == manifest["digest"]
    copied = tmp_path / "copied"
    skopeo.copy(source, f"oci:{copied}:x")
    index = json.loads((copied / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [manifest["digest"]]
    blobs = {f"sha256:{p.name}" for p in (copied / "blobs" / "sha256").iterdir()}
    assert set(builder.blobs) <= blobs
