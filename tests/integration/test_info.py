"""``cargohold info``: where the store is and what it holds, read-only."""

from __future__ import annotations

import json
from pathlib import Path

from cargohold.oci.digests import Digest
from cargohold.operations.context import STORE_FORMAT
from cargohold.operations.info import store_info
from cargohold.operations.store import Store
from clisupport import assert_one_error_line, run
from imagefactory import ArchiveBuilder
from snapshots import HOST


def seeded(tmp_path: Path) -> tuple[Path, ArchiveBuilder]:
    builder = ArchiveBuilder()
    builder.add(builder.image(HOST, layers=2), "example.com/app:1")
    root = tmp_path / "root"
    with Store(root) as store:
        store.import_archive(builder.write(tmp_path / "in.tar"))
        store.create_namespace("team")
    return root, builder


def test_info_reports_the_store(tmp_path: Path) -> None:
    root, builder = seeded(tmp_path)
    proc = run(root, "info", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["root"] == str(root)
    assert (found["format"], found["namespaces"], found["images"]) == (STORE_FORMAT, 2, 1)
    assert found["blobs"] == len(builder.blobs)
    assert found["bytes"] == sum(len(b) for b in builder.blobs.values())
    assert (found["reclaimableBlobs"], found["reclaimableBytes"]) == (0, 0)
    text = run(root, "info").stdout.decode()
    assert "Root:" in text and str(root) in text and "Reclaimable:" in text


def test_info_counts_what_gc_would_reclaim_without_removing_it(tmp_path: Path) -> None:
    root, builder = seeded(tmp_path)
    with Store(root) as store:
        store.remove(["example.com/app:1"], collect_garbage=False)
    found = json.loads(run(root, "info", "--format", "json").stdout)
    assert found["reclaimableBlobs"] == len(builder.blobs) == found["blobs"]
    assert found["reclaimableBytes"] == found["bytes"]
    with Store(root) as store:
        removed = store.gc().removed
    assert {str(d) for d, _ in removed} == set(builder.blobs)


def test_info_creates_no_store(tmp_path: Path) -> None:
    line = assert_one_error_line(run(tmp_path / "typo", "info"))
    assert "no cargohold store" in line
    assert not (tmp_path / "typo").exists()


def test_info_reclaims_what_gc_would_with_an_import_in_progress(tmp_path: Path) -> None:
    """info marks as gc marks: a manifest an import in progress holds keeps its config and
    layers in both (info counted them reclaimable while gc kept them)."""
    builder = ArchiveBuilder()
    index = builder.multi_platform(
        [HOST, "linux/s390x" if HOST != "linux/s390x" else "linux/arm64"]
    )
    builder.add(index, name="example.com/multi:1")
    other = json.loads(builder.blobs[index["digest"]])["manifests"][1]
    with Store(tmp_path / "root") as store:
        store.import_archive(builder.write(tmp_path / "multi.tar"), platforms="all")
        with store.lease() as lease_id:
            assert store.reusable(lease_id, Digest.parse(other["digest"]), other["size"])
            store.remove(["example.com/multi:1"], collect_garbage=False)
            would = store.gc(dry_run=True)
            info = store_info(store)
            assert info.reclaimable_blobs == len(would.removed)
            assert info.reclaimable_bytes == would.bytes_freed
