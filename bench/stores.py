#!/usr/bin/env python3
"""Build the stores that ``image ls`` and ``content gc`` are timed on, through the library.

- ``ls``: 1,000 image names over 4 small images. Each image is imported from a small OCI
  archive made here, then given 249 more names with ``Store.tag`` (``bench/ls-N:tMMM``).
- ``gc``: 20,050 blobs. 50 images of 201 blobs each (a manifest, a config and 199 one-file
  layers) imported from one archive: 10,050 blobs that gc must keep (it walks every image).
  Then 10,000 small blobs that no image refers to, each written with ``BlobStore.stage_bytes``
  and ``BlobStore.commit``: gc must find and delete those.

Run with cargohold importable (run.py sets PYTHONPATH): ``python3 bench/stores.py ls|gc ROOT``.
Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tarfile
from pathlib import Path
from typing import Final

from build_image import FIXED_MTIME, OCI_INDEX, OCI_MANIFEST, descriptor, host_platform, json_bytes
from cargohold import Store

OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"

LS_IMAGES: Final = 4
LS_NAMES: Final = 1000
GC_IMAGES: Final = 50
GC_LAYERS: Final = 199
GC_UNREFERENCED: Final = 10_000


def tiny_layer(path: str, content: bytes) -> bytes:
    """A layer tar holding one file (without tarfile's padding to 10 KiB records)."""
    info = tarfile.TarInfo(path)
    info.size = len(content)
    info.mtime = FIXED_MTIME
    return info.tobuf(tarfile.USTAR_FORMAT) + content + b"\0" * (-len(content) % 512 + 1024)


def oci_archive(images: list[tuple[str, list[bytes]]]) -> bytes:
    """An OCI image layout tar of single-platform images (name, uncompressed layers)."""
    blobs: dict[str, bytes] = {}
    entries = []
    for name, layers in images:
        layer_descs = [descriptor(OCI_LAYER, layer) for layer in layers]
        config = json_bytes(
            {
                **host_platform(),
                "created": "2024-01-01T00:00:00Z",
                "config": {"Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layer_descs]},
            }
        )
        config_desc = descriptor(OCI_CONFIG, config)
        manifest = json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config_desc,
                "layers": layer_descs,
            }
        )
        manifest_desc = descriptor(OCI_MANIFEST, manifest)
        blobs[config_desc["digest"]] = config
        blobs[manifest_desc["digest"]] = manifest
        for desc, layer in zip(layer_descs, layers, strict=True):
            blobs[desc["digest"]] = layer
        entries.append(
            {
                **manifest_desc,
                "platform": host_platform(),
                "annotations": {"io.containerd.image.name": name},
            }
        )
    members = {
        "oci-layout": json_bytes({"imageLayoutVersion": "1.0.0"}),
        "index.json": json_bytes(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        ),
        **{f"blobs/sha256/{d.removeprefix('sha256:')}": data for d, data in blobs.items()},
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            info.mtime = FIXED_MTIME
            tar.addfile(info, io.BytesIO(members[name]))
    return out.getvalue()


def build_ls_store(root: Path) -> dict[str, int]:
    per_image = LS_NAMES // LS_IMAGES
    with Store(root) as store:
        for i in range(LS_IMAGES):
            name = f"docker.io/bench/ls-{i}:t000"
            layers = [tiny_layer(f"etc/image-{i}", f"image {i}\n".encode())]
            store.import_archive(io.BytesIO(oci_archive([(name, layers)])))
            store.tag(name, [f"docker.io/bench/ls-{i}:t{j:03d}" for j in range(1, per_image)])
        return {"images": len(store.list_images())}


def build_gc_store(root: Path) -> dict[str, int]:
    rng = random.Random(7)
    images = [
        (
            f"docker.io/bench/gc-{i}:latest",
            [
                tiny_layer(f"data/{i}/{j}", rng.randbytes(rng.randint(16, 2048)))
                for j in range(GC_LAYERS)
            ],
        )
        for i in range(GC_IMAGES)
    ]
    with Store(root) as store:
        result = store.import_archive(io.BytesIO(oci_archive(images)), platforms="all")
        staging_name = "bench-unreferenced"
        staging = store.blobs.staging_dir(staging_name)
        try:
            for i in range(GC_UNREFERENCED):
                data = f"unreferenced {i}\n".encode() + rng.randbytes(rng.randint(16, 4096))
                store.blobs.commit(store.blobs.stage_bytes(data, staging))
            store.blobs.sync()
        finally:
            store.blobs.remove_staging(staging_name)
        return {
            "images": len(store.list_images()),
            "referenced": result.blobs_written,
            "blobs": sum(1 for _ in store.blobs.iter_digests()),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a store for the ls or gc benchmark.")
    parser.add_argument("kind", choices=("ls", "gc"))
    parser.add_argument("root", type=Path, help="the store's root (must not exist)")
    args = parser.parse_args(argv)
    if args.root.exists():
        parser.error(f"{args.root} exists")
    summary = build_ls_store(args.root) if args.kind == "ls" else build_gc_store(args.root)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
