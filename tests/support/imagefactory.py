"""Builds small, real OCI images and archives for tests, byte for byte under the test's control."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams import tar_bytes, write_tar_file

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class ArchiveBuilder:
    """An OCI image layout being assembled: blobs plus index.json entries."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)

    def blob(self, data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        digest = digest_of(data)
        self.blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def image(
        self,
        platform: str = "linux/amd64",
        files: dict[str, bytes] | None = None,
        created: str = "2024-01-01T00:00:00Z",
        layers: int = 1,
        with_platform: bool = False,
    ) -> dict[str, Any]:
        """A manifest with its config and layers; returns the manifest's descriptor."""
        os_name, arch, *variant = platform.split("/")
        layer_descs, diff_ids = [], []
        for i in range(layers):
            content = (
                files if files is not None and i == 0 else {f"layer{i}/{platform}": b"x" * (i + 1)}
            )
            raw = layer_tar(content)
            diff_ids.append(digest_of(raw))
            layer_descs.append(self.blob(gzip.compress(raw, mtime=0), OCI_LAYER_GZIP))
        config: dict[str, Any] = {
            "created": created,
            "architecture": arch,
            "os": os_name,
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        if variant:
            config["variant"] = variant[0]
        config_desc = self.blob(dumps(config), OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": layer_descs,
        }
        extra: dict[str, Any] = {}
        if with_platform:
            extra["platform"] = platform_json(platform)
        return self.blob(dumps(manifest), OCI_MANIFEST, **extra)

    def index(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return self.blob(dumps(doc), OCI_INDEX)

    def multi_platform(
        self, platforms: list[str], created: str = "2024-01-01T00:00:00Z"
    ) -> dict[str, Any]:
        manifests = []
        for p in platforms:
            desc = self.image(p, created=created)
            desc["platform"] = platform_json(p)
            manifests.append(desc)
        return self.index(manifests)

    def add(
        self, desc: dict[str, Any], name: str | None = None, ref_name: str | None = None
    ) -> None:
        annotations = {}
        if name is not None:
            annotations["io.containerd.image.name"] = name
        if ref_name is not None:
            annotations["org.opencontainers.image.ref.name"] = ref_name
        entry = dict(desc)
        entry.pop("platform", None)
        if annotations:
            entry["annotations"] = annotations
        self.entries.append(entry)

    def index_json(self) -> bytes:
        return dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries})

    def members(self, omit: frozenset[str] = frozenset()) -> list[tuple[str, bytes]]:
        out = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", self.index_json())]
        for digest, data in self.blobs.items():
            if digest not in omit:
                out.append(("blobs/" + digest.replace(":", "/"), data))
        return out

    def write(
        self,
        path: Path,
        *,
        omit: frozenset[str] = frozenset(),
        index_first: bool = True,
        extra: list[tuple[str, bytes]] | None = None,
    ) -> Path:
        members = self.members(omit)
        if not index_first:
            members = members[2:] + members[:2]
        write_tar(path, members + (extra or []))
        return path

    def write_layout(self, directory: Path) -> Path:
        """The same members as an OCI image layout directory."""
        for name, data in self.members():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return directory


def platform_json(platform: str) -> dict[str, str]:
    os_name, arch, *variant = platform.split("/")
    out = {"architecture": arch, "os": os_name}
    if variant:
        out["variant"] = variant[0]
    return out


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.write_bytes(tar_bytes(members))
    return path


def tiny_blob(i: int) -> bytes:
    """The *i*-th of many distinct tiny blobs (a few bytes each)."""
    return b"%d\n" % i


def write_many_members(path: Path, count: int, *, referenced: bool, repository: str) -> Path:
    """An OCI layout archive of *count* tiny blobs besides small images, written as it is
    generated (an archive of 150,000 members never sits in memory).

    With *referenced* the blobs are the layers of the images, at most MANY_LAYERS to an image
    (the most a manifest may list), tagged ``<repository>:0``, ``:1``…; their documents grow
    with the layers, about 130 bytes each, so more than some 25,000 need a raised document
    limit. Otherwise one image ``<repository>:0`` has one layer and the blobs are extra
    members that no index reaches.
    """
    groups = [range(k, min(k + MANY_LAYERS, count)) for k in range(0, count, MANY_LAYERS)]
    images = [_layered_image(layers) for layers in (groups if referenced else [range(1)])]
    entries = []
    for tag, (manifest, _) in enumerate(images):
        entry = _desc(OCI_MANIFEST, manifest)
        entry["annotations"] = {"io.containerd.image.name": f"{repository}:{tag}"}
        entries.append(entry)
    index = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})

    def members() -> Iterator[tuple[str, bytes]]:
        yield "oci-layout", b'{"imageLayoutVersion":"1.0.0"}'
        yield "index.json", index
        for manifest, config in images:
            yield _blob_path(config), config
            yield _blob_path(manifest), manifest
        blobs = range(count) if referenced else range(1, count + 1)
        if not referenced:
            yield _blob_path(tiny_blob(0)), tiny_blob(0)
        for i in blobs:
            yield _blob_path(tiny_blob(i)), tiny_blob(i)

    return write_tar_file(path, members())


#: The most layers an image may have (cargohold refuses manifests that list more).
MANY_LAYERS = 10_000


def _layered_image(layers: range) -> tuple[bytes, bytes]:
    """(manifest, config) of an image whose layers are the tiny blobs numbered *layers*."""
    layer_descs = [_desc(OCI_LAYER, tiny_blob(i)) for i in layers]
    config = dumps(
        {
            "created": "2024-01-01T00:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layer_descs]},
        }
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _desc(OCI_CONFIG, config),
        "layers": layer_descs,
    }
    return dumps(manifest), config


def _desc(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}


def _blob_path(data: bytes) -> str:
    return "blobs/" + digest_of(data).replace(":", "/")
