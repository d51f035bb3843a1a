"""The inventory format: what is written is read back, and a damaged, foreign or newer one is
refused with a line that says which."""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any

import pytest

from cargohold.archive.compression import detect
from cargohold.archive.inventory import (
    COMPRESS_ABOVE,
    INVENTORY_MEDIA_TYPE,
    Inventory,
    InventoryImage,
    decode,
    encode,
    is_inventory,
)
from cargohold.errors import InvalidInventoryError
from cargohold.oci.digests import Digest

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(i: int) -> str:
    return "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()


def sample(blobs: int = 3) -> Inventory:
    image = InventoryImage("example.com/app:1", Digest.parse(digest(0)), MANIFEST, 500)
    return Inventory(
        "site-a",
        {digest(i): 100 + i for i in range(blobs)},
        [image],
        created="2026-01-31T12:00:00Z",
    )


def resigned(document: dict[str, Any]) -> bytes:
    """*document* with a digest that matches its body (a well-formed inventory)."""
    body = {k: v for k, v in document.items() if k != "digest"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps(
        {"digest": "sha256:" + hashlib.sha256(canonical).hexdigest(), **body}
    ).encode()


def test_round_trip_keeps_everything() -> None:
    written = sample()
    data = encode(written)
    read = decode(data, "inv.json")
    assert read.namespace == "site-a"
    assert read.blobs == written.blobs
    assert read.images == written.images
    assert read.created == written.created
    assert read.digest == written.digest is not None
    document = json.loads(data)
    assert document["mediaType"] == INVENTORY_MEDIA_TYPE
    assert document["blobs"] == sorted([d, s] for d, s in written.blobs.items())
    assert is_inventory(data)


def test_large_inventory_is_zstd_compressed_and_read_back() -> None:
    written = sample(blobs=20_000)
    data = encode(written)
    assert detect(data[:6]) == "zstd"
    assert len(data) < COMPRESS_ABOVE
    assert decode(data, "inv").blobs == written.blobs


def test_gzip_and_plain_are_read() -> None:
    data = encode(sample())
    assert decode(gzip.compress(data), "inv.gz").blobs == sample().blobs


def test_damaged_inventory_is_refused() -> None:
    data = encode(sample())
    size = b'"size":500'
    assert size in data
    with pytest.raises(InvalidInventoryError, match=r"inv: damaged inventory: its body hashes"):
        decode(data.replace(size, b'"size":501'), "inv")


def test_a_blob_added_by_hand_is_refused() -> None:
    document = json.loads(encode(sample()))
    document["blobs"].append([digest(99), 1])
    with pytest.raises(InvalidInventoryError, match="damaged inventory"):
        decode(json.dumps(document).encode(), "inv")


def test_truncated_compressed_inventory_is_refused() -> None:
    data = encode(sample(blobs=20_000))
    with pytest.raises(InvalidInventoryError, match=r"^inv: "):
        decode(data[: len(data) // 2], "inv")


def test_newer_version_is_refused_by_version() -> None:
    document = json.loads(encode(sample()))
    document["mediaType"] = "application/vnd.cargohold.inventory.v2+json"
    with pytest.raises(InvalidInventoryError, match="inventory format version 2; this cargohold"):
        decode(resigned(document), "inv")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(mediaType="application/json"), "not a cargohold inventory"),
        (lambda d: d.update(blobs=[[digest(1), -1]]), r"blobs\[0\]: size must be"),
        (lambda d: d.update(blobs=[[digest(1), True]]), r"blobs\[0\]: size must be"),
        (lambda d: d.update(blobs=[[digest(1), 1], [digest(1), 1]]), "listed twice"),
        (lambda d: d.update(blobs=[["md5:abc", 1]]), r"blobs\[0\]: unsupported digest"),
        (lambda d: d.update(blobs=[["sha256:" + "A" * 64, 1]]), r"blobs\[0\]: invalid digest"),
        (lambda d: d.update(blobs={"x": 1}), "blobs must be a list"),
        (lambda d: d.update(namespace=""), "namespace must be"),
        (lambda d: d.update(images=[{"name": "a"}]), r"images\[0\]"),
    ],
)
def test_malformed_inventories_are_refused(change: Any, message: str) -> None:
    document = json.loads(encode(sample()))
    change(document)
    with pytest.raises(InvalidInventoryError, match=message):
        decode(resigned(document), "inv")


def test_no_digest_and_not_json_are_refused() -> None:
    document = json.loads(encode(sample()))
    del document["digest"]
    with pytest.raises(InvalidInventoryError, match="no digest of its body"):
        decode(json.dumps(document).encode(), "inv")
    with pytest.raises(InvalidInventoryError, match="invalid JSON"):
        decode(b"{not json", "inv")
    with pytest.raises(InvalidInventoryError, match="duplicate key"):
        decode(b'{"digest":"a","digest":"b"}', "inv")


def test_a_tar_is_not_an_inventory() -> None:
    assert not is_inventory(b"blobs/\0\0\0")
    assert is_inventory(b'\n  {"digest"')
