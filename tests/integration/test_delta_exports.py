"""Delta exports, end to end: the receiver's inventory, an export that leaves out what it
holds, and the import that takes the delta only where every omitted blob is held.

A base image (two layers) and its update (the same two layers and one more) are built with the
archive factory; the sender holds the update, the receiver the base. Hostile deltas and
inventories are refused with one line, exit 1, and the store exactly as it was.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from cargohold import IncompleteDeltaError, Store
from clisupport import assert_one_error_line, run
from imagefactory import ArchiveBuilder, write_tar

BASE = "example.com/app:1"
UPDATE = "example.com/app:2"
DELTA_MEMBER = "cargohold-delta.json"


@dataclass(frozen=True)
class Sites:
    """A sender holding the update and a receiver holding the base, and their archives."""

    sender: Path
    receiver: Path
    base_tar: Path
    update_tar: Path
    update_digest: str


def build(path: Path, name: str, layers: int, created: str) -> tuple[Path, str]:
    builder = ArchiveBuilder()
    desc = builder.image(layers=layers, created=created)
    builder.add(desc, name=name)
    return builder.write(path), desc["digest"]


@pytest.fixture
def sites(tmp_path: Path) -> Sites:
    base_tar, _ = build(tmp_path / "base.tar", BASE, 2, "2024-01-01T00:00:00Z")
    update_tar, digest = build(tmp_path / "update.tar", UPDATE, 3, "2024-02-01T00:00:00Z")
    sender, receiver = tmp_path / "sender", tmp_path / "receiver"
    with Store(sender) as store:
        store.import_archive(update_tar)
    with Store(receiver) as store:
        store.import_archive(base_tar)
    return Sites(sender, receiver, base_tar, update_tar, digest)


def ok(proc: object) -> bytes:
    assert getattr(proc, "returncode", None) == 0, getattr(proc, "stderr", b"").decode()
    out: bytes = getattr(proc, "stdout", b"")
    return out


def inventory(root: Path, out: Path, *options: str) -> Path:
    ok(run(root, *options, "content", "inventory", "-o", str(out)))
    return out


def export_json(root: Path, out: Path, *args: str) -> dict[str, object]:
    report: dict[str, object] = json.loads(
        ok(run(root, "image", "export", "--output-format", "json", *args, str(out), UPDATE))
    )
    return report


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: (tar.extractfile(m) or io.BytesIO()).read() for m in tar if m.isfile()}


def state(root: Path) -> tuple[list[str], list[str], list[str]]:
    """Names, stored blobs and leftover staging: what a refused import must not change."""
    with Store(root) as store:
        names = [i.record.name for i in store.list_images()]
        blobs = sorted(str(c.digest) for c in store.content())
    ingest = sorted(p.name for p in (root / "content" / "ingest").glob("*"))
    return names, blobs, ingest


def delta_for_receiver(sites: Sites, tmp_path: Path) -> Path:
    inv = inventory(sites.receiver, tmp_path / "receiver.inv")
    delta = tmp_path / "delta.tar"
    export_json(sites.sender, delta, "--against", str(inv))
    return delta


def rewrite(archive: Path, out: Path, **replaced: bytes | None) -> Path:
    """*archive* with members replaced (None: removed), in the same order."""
    kept = []
    for name, data in members(archive).items():
        new = replaced.get(name.replace("/", "_").replace("-", "_").replace(".", "_"), data)
        if new is not None:
            kept.append((name, new))
    return write_tar(out, kept)


# --- the cycle ------------------------------------------------------------------------------


def test_inventory_delta_import_cycle(sites: Sites, tmp_path: Path) -> None:
    inv = inventory(sites.receiver, tmp_path / "receiver.inv")
    document = json.loads(inv.read_bytes())
    assert document["mediaType"] == "application/vnd.cargohold.inventory.v1+json"
    assert document["namespace"] == "default"
    assert [i["name"] for i in document["images"]] == [BASE]
    assert len(document["blobs"]) == 4  # manifest, config, two layers

    delta, full = tmp_path / "delta.tar", tmp_path / "full.tar"
    report = export_json(sites.sender, delta, "--against", str(inv))
    full_report = export_json(sites.sender, full)
    assert (report["blobsOmitted"], full_report["blobsOmitted"]) == (2, 0)
    assert report["blobs"] == 3  # the new layer, config and manifest
    assert report["bytesOmitted"] == sum(
        len(data) for name, data in members(full).items() if name.startswith("blobs/")
    ) - sum(len(data) for name, data in members(delta).items() if name.startswith("blobs/"))
    names = members(delta)
    assert "manifest.json" not in names and "manifest.json" in members(full)
    listed = json.loads(names[DELTA_MEMBER])
    assert listed["mediaType"] == "application/vnd.cargohold.delta.v1+json"
    assert len(listed["omitted"]) == 2

    imported = json.loads(
        ok(run(sites.receiver, "image", "import", "--format", "json", str(delta)))
    )
    assert [i["digest"] for i in imported["images"]] == [sites.update_digest]
    ok(run(sites.receiver, "image", "check", "--verify", UPDATE))
    again = tmp_path / "again.tar"
    ok(run(sites.receiver, "image", "export", str(again), UPDATE))
    assert again.read_bytes() == full.read_bytes()


def test_delta_bytes_are_reproducible_and_stream(sites: Sites, tmp_path: Path) -> None:
    inv = inventory(sites.receiver, tmp_path / "receiver.inv")
    first = tmp_path / "one.tar"
    export_json(sites.sender, first, "--against", str(inv))
    proc = run(sites.sender, "image", "export", "--against", str(inv), "-", UPDATE)
    assert ok(proc) == first.read_bytes()
    # a delta read from stdin imports like one read from a file
    ok(run(sites.receiver, "image", "import", "-", stdin=first.read_bytes()))
    ok(run(sites.receiver, "image", "check", "--verify", UPDATE))


def test_inventory_to_stdout_is_the_same_document(sites: Sites, tmp_path: Path) -> None:
    data = ok(run(sites.receiver, "content", "inventory"))
    document = json.loads(data)
    from_file = json.loads(inventory(sites.receiver, tmp_path / "inv").read_bytes())
    assert document["blobs"] == from_file["blobs"]
    report = json.loads(
        ok(
            run(
                sites.receiver,
                "content",
                "inventory",
                "-o",
                str(tmp_path / "i2"),
                "--format",
                "json",
            )
        )
    )
    assert report["blobs"] == 4 and report["images"] == 1 and report["namespace"] == "default"
    assert report["bytesWritten"] == (tmp_path / "i2").stat().st_size


# --- what --against accepts -----------------------------------------------------------------


def test_against_an_earlier_archive_or_layout_directory(sites: Sites, tmp_path: Path) -> None:
    by_archive = export_json(sites.sender, tmp_path / "a.tar", "--against", str(sites.base_tar))
    layout = tmp_path / "layout"
    ok(run(sites.receiver, "image", "export", "--format", "oci-dir", str(layout), BASE))
    by_layout = export_json(sites.sender, tmp_path / "b.tar", "--against", str(layout))
    assert by_archive["blobsOmitted"] == by_layout["blobsOmitted"] == 2
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    # an earlier delta counts its omitted blobs as held: the receiver needed them to import it
    again = export_json(sites.sender, tmp_path / "c.tar", "--against", str(tmp_path / "a.tar"))
    assert again["blobsOmitted"] == 5 and again["blobs"] == 0


def test_several_against_omit_only_what_all_hold(sites: Sites, tmp_path: Path) -> None:
    held = inventory(sites.receiver, tmp_path / "held.inv")
    empty = tmp_path / "empty-root"
    with Store(empty):
        pass
    nothing = inventory(empty, tmp_path / "empty.inv")
    report = export_json(
        sites.sender, tmp_path / "d.tar", "--against", str(held), "--against", str(nothing)
    )
    assert report["blobsOmitted"] == 0
    # nothing omitted: a whole archive, loadable by docker
    assert "manifest.json" in members(tmp_path / "d.tar")
    assert DELTA_MEMBER not in members(tmp_path / "d.tar")


def test_against_what_is_not_an_inventory_archive_or_layout(sites: Sites, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello, not a tar at all" * 40)
    for against, message in [
        (tmp_path / "missing", "no such file or directory"),
        (junk, f"--against {junk}: "),
        (tmp_path, "not an OCI image layout"),
    ]:
        proc = run(sites.sender, "image", "export", "--against", str(against), "-", UPDATE)
        assert message in assert_one_error_line(proc)
        assert proc.stdout == b""


# --- hostile inventories --------------------------------------------------------------------


def test_damaged_inventory_is_refused(sites: Sites, tmp_path: Path) -> None:
    inv = inventory(sites.receiver, tmp_path / "inv")
    data = inv.read_bytes()
    inv.write_bytes(data.replace(b'"size":', b'"size":1', 1))
    out = tmp_path / "out.tar"
    line = assert_one_error_line(
        run(sites.sender, "image", "export", "--against", str(inv), str(out), UPDATE)
    )
    assert "damaged inventory" in line and str(inv) in line
    assert not out.exists()


def test_unknown_inventory_version_is_refused(sites: Sites, tmp_path: Path) -> None:
    inv = inventory(sites.receiver, tmp_path / "inv")
    inv.write_bytes(inv.read_bytes().replace(b".inventory.v1+json", b".inventory.v7+json"))
    line = assert_one_error_line(
        run(sites.sender, "image", "export", "--against", str(inv), "-", UPDATE)
    )
    # the version is checked before the digest: a newer format says so, not "damaged"
    assert "inventory format version 7" in line


def test_lying_inventory_makes_a_delta_the_receiver_refuses(sites: Sites, tmp_path: Path) -> None:
    # the inventory of a site that holds the base, used for a receiver that holds nothing
    inv = inventory(sites.receiver, tmp_path / "inv")
    delta = tmp_path / "delta.tar"
    export_json(sites.sender, delta, "--against", str(inv))
    bare = tmp_path / "bare"
    ok(run(bare, "namespace", "create", "spare"))
    before = state(bare)
    line = assert_one_error_line(run(bare, "image", "import", str(delta)))
    assert "delta archive: namespace default lacks 2 omitted blobs (" in line
    assert json.loads(members(delta)[DELTA_MEMBER])["omitted"][0]["digest"] in line
    assert state(bare) == before


def test_inventory_of_another_namespace(sites: Sites, tmp_path: Path) -> None:
    # The sender takes an inventory for what it is, the receiver's; its namespace is recorded,
    # and the import is what checks: into a namespace that lacks the base, it is refused, even
    # in a store whose other namespace holds those very blobs.
    ok(run(sites.receiver, "-n", "site", "image", "import", str(sites.base_tar)))
    inv = inventory(sites.receiver, tmp_path / "site.inv", "-n", "site")
    assert json.loads(inv.read_bytes())["namespace"] == "site"
    delta = tmp_path / "delta.tar"
    assert export_json(sites.sender, delta, "--against", str(inv))["blobsOmitted"] == 2
    ok(run(sites.receiver, "namespace", "create", "other"))
    before = state(sites.receiver)
    line = assert_one_error_line(run(sites.receiver, "-n", "other", "image", "import", str(delta)))
    assert "namespace other lacks 2 omitted blobs" in line
    assert state(sites.receiver) == before
    ok(run(sites.receiver, "-n", "site", "image", "import", str(delta)))
    ok(run(sites.receiver, "-n", "site", "image", "check", "--verify", UPDATE))


# --- hostile deltas -------------------------------------------------------------------------


def omitted_list(delta: Path) -> dict[str, object]:
    listed: dict[str, object] = json.loads(members(delta)[DELTA_MEMBER])
    return listed


def test_omitted_blob_listed_with_another_size_is_refused(sites: Sites, tmp_path: Path) -> None:
    delta = delta_for_receiver(sites, tmp_path)
    listed = omitted_list(delta)
    entries = listed["omitted"]
    assert isinstance(entries, list)
    entries[0]["size"] += 1
    forged = rewrite(
        delta, tmp_path / "forged.tar", cargohold_delta_json=json.dumps(listed).encode()
    )
    before = state(sites.receiver)
    line = assert_one_error_line(run(sites.receiver, "image", "import", str(forged)))
    assert f"lists {entries[0]['digest']} with {entries[0]['size']} bytes" in line
    assert state(sites.receiver) == before


def test_blob_left_out_of_the_list_is_refused(sites: Sites, tmp_path: Path) -> None:
    delta = delta_for_receiver(sites, tmp_path)
    listed = omitted_list(delta)
    entries = listed["omitted"]
    assert isinstance(entries, list)
    dropped = entries.pop()
    forged = rewrite(
        delta, tmp_path / "forged.tar", cargohold_delta_json=json.dumps(listed).encode()
    )
    before = state(sites.receiver)
    line = assert_one_error_line(run(sites.receiver, "image", "import", str(forged)))
    assert f"{dropped['digest']} is neither in the archive nor in its list" in line
    assert state(sites.receiver) == before
    # archive inspect refuses it too (it takes from the store only what the list names)
    line = assert_one_error_line(run(sites.receiver, "archive", "inspect", str(forged)))
    assert "import would fail: " in line and f"{dropped['digest']} " in line


def test_list_naming_a_blob_the_archive_holds_is_refused(sites: Sites, tmp_path: Path) -> None:
    delta = delta_for_receiver(sites, tmp_path)
    listed = omitted_list(delta)
    shipped = next(n for n in members(delta) if n.startswith("blobs/sha256/"))
    digest = "sha256:" + shipped.rsplit("/", 1)[1]
    entries = listed["omitted"]
    assert isinstance(entries, list)
    entries.append({"digest": digest, "size": len(members(delta)[shipped])})
    forged = rewrite(
        delta, tmp_path / "forged.tar", cargohold_delta_json=json.dumps(listed).encode()
    )
    line = assert_one_error_line(run(sites.receiver, "image", "import", str(forged)))
    assert f"lists {digest} as omitted, but the archive contains it" in line


def test_delta_list_in_a_docker_archive_is_refused(sites: Sites, tmp_path: Path) -> None:
    delta = delta_for_receiver(sites, tmp_path)
    full = tmp_path / "full.tar"
    ok(run(sites.sender, "image", "export", str(full), UPDATE))
    docker_only = {n: d for n, d in members(full).items() if n not in ("index.json", "oci-layout")}
    docker_only[DELTA_MEMBER] = members(delta)[DELTA_MEMBER]
    forged = write_tar(tmp_path / "forged.tar", list(docker_only.items()))
    line = assert_one_error_line(run(sites.receiver, "image", "import", str(forged)))
    assert "a delta archive must be an OCI image layout" in line


# --- archive inspect ------------------------------------------------------------------------


def test_archive_inspect_says_delta_and_whether_the_store_can_take_it(
    sites: Sites, tmp_path: Path
) -> None:
    delta = delta_for_receiver(sites, tmp_path)
    text = ok(run(sites.receiver, "archive", "inspect", str(delta))).decode()
    assert "Delta:" in text and "namespace default holds them all" in text
    assert "Import would add 3 blobs" in text
    report = json.loads(
        ok(run(sites.receiver, "archive", "inspect", "--format", "json", str(delta)))
    )
    assert report["importable"] is True
    assert report["delta"]["blobsOmitted"] == 2 and report["delta"]["missing"] == []
    assert report["delta"]["namespace"] == "default"

    proc = run(sites.receiver, "-n", "other", "archive", "inspect", "--format", "json", str(delta))
    assert proc.returncode == 1
    lacking = json.loads(proc.stdout)
    assert lacking["importable"] is False
    assert len(lacking["delta"]["missing"]) == 2
    assert lacking["delta"]["bytesMissing"] == report["delta"]["bytesOmitted"]
    assert "namespace other lacks 2 omitted blobs" in lacking["problem"]

    proc = run(tmp_path / "no-store", "archive", "inspect", str(delta))
    assert proc.returncode == 1
    assert "no store here to check them against" in proc.stdout.decode()
    assert not (tmp_path / "no-store").exists()


def test_full_archive_is_not_a_delta(sites: Sites, tmp_path: Path) -> None:
    report = json.loads(
        ok(run(sites.receiver, "archive", "inspect", "--format", "json", str(sites.update_tar)))
    )
    assert report["delta"] is None


def test_delta_as_a_layout_directory_imports(sites: Sites, tmp_path: Path) -> None:
    inv = inventory(sites.receiver, tmp_path / "inv")
    layout = tmp_path / "delta-layout"
    ok(
        run(
            sites.sender, "image", "export", "--against", str(inv), "--format", "oci-dir",
            str(layout), UPDATE,
        )
    )  # fmt: skip
    assert (layout / DELTA_MEMBER).is_file() and not (layout / "manifest.json").exists()
    ok(run(sites.receiver, "image", "import", str(layout)))
    ok(run(sites.receiver, "image", "check", "--verify", UPDATE))


def test_library_refusal_is_an_incomplete_delta_error(sites: Sites, tmp_path: Path) -> None:
    delta = delta_for_receiver(sites, tmp_path)
    with Store(tmp_path / "empty") as store:
        with pytest.raises(IncompleteDeltaError, match="lacks 2 omitted blobs"):
            store.import_archive(delta)
        assert store.list_images() == []
    with Store(sites.receiver) as store:
        result = store.export(tmp_path / "again.tar", [BASE], against=[delta])
    # the delta's omitted blobs are the base's layers (held where it was imported); the base's
    # config and manifest are not in it
    assert (result.blobs_omitted, result.blobs) == (2, 2)


def test_a_delta_in_volumes(sites: Sites, tmp_path: Path) -> None:
    """--against and --split-size together: the volumes are slices of the delta archive, and
    the receiver imports them from the first volume."""
    inv = inventory(sites.receiver, tmp_path / "receiver.inv")
    whole = tmp_path / "delta.tar"
    export_json(sites.sender, whole, "--against", str(inv))
    split = tmp_path / "split" / "delta.tar"
    split.parent.mkdir()
    report = export_json(sites.sender, split, "--against", str(inv), "--split-size", "1KiB")
    assert report["blobsOmitted"] == 2
    volumes = sorted(split.parent.glob("delta.tar.0*"))
    assert len(volumes) == report["volumes"]
    assert len(volumes) > 1
    assert b"".join(v.read_bytes() for v in volumes) == whole.read_bytes()
    imported = json.loads(
        ok(run(sites.receiver, "image", "import", "--format", "json", str(volumes[0])))
    )
    assert [i["digest"] for i in imported["images"]] == [sites.update_digest]
    assert imported["volumes"] == len(volumes)
    ok(run(sites.receiver, "image", "check", "--verify", UPDATE))
