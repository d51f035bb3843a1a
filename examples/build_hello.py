"""Builds examples/hello.tar: a tiny two-platform image (linux/amd64, linux/arm64) as an OCI
layout archive, byte for byte the same on every run, so README's first command has something
real to import without a registry or a container engine."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

CREATED = "2026-01-01T00:00:00Z"
PLATFORMS = (("amd64", ""), ("arm64", "v8"))


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode()


def _tar(members: list[tuple[str, bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build() -> bytes:
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    manifests = []
    for arch, variant in PLATFORMS:
        text = f"Hello from cargohold on linux/{arch}!\n".encode()
        layer = _tar([("hello.txt", text, 0o644)])
        layer_desc = blob(gzip.compress(layer, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        config = {
            "created": CREATED,
            **platform,
            "config": {"Cmd": ["/hello.txt"], "Labels": {"org.opencontainers.image.title": "hello"}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
            "history": [{"created": CREATED, "created_by": "examples/build_hello.py"}],
        }
        config_desc = blob(_json(config), "application/vnd.oci.image.config.v1+json")
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifests.append(blob(_json(manifest), manifest["mediaType"], platform=platform))
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }
    index_desc = blob(_json(index), index["mediaType"])
    index_desc["annotations"] = {
        "io.containerd.image.name": "docker.io/library/hello:latest",
        "org.opencontainers.image.ref.name": "latest",
    }
    layout = _json({"schemaVersion": 2, "mediaType": index["mediaType"], "manifests": [index_desc]})
    members = [(f"blobs/sha256/{d[7:]}", data, 0o444) for d, data in sorted(blobs.items())]
    members += [("index.json", layout, 0o644), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o444)]
    return _tar(members)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("hello.tar")
    out.write_bytes(build())
    print(out)
