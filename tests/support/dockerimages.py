"""Docker and OCI archive shapes found in the wild, built byte for byte for the tests.

Docker archives (``docker save`` before 25, skopeo, crane) come with the exact compact JSON
manifest containerd would build from them (:func:`expected_manifest`), hashed independently of
cargohold. Shared by the archive-shape, inspection, fuzz tests and the hostile corpus, so it
lives here rather than in one test module.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from cargohold.oci.platforms import Platform
from imagefactory import (
    OCI_CONFIG,
    OCI_MANIFEST,
    ArchiveBuilder,
    digest_of,
    dumps,
    layer_tar,
    platform_json,
)
from streams import DIR, Entry, Link, tar_bytes

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
IN_TOTO = "application/vnd.in-toto+json"

#: Images must run here to be imported by default, so every test image is built for this host.
HOST = Platform.host()
#: A platform that is not the host's, for the platforms an archive names but does not carry.
ARM64 = Platform("linux", "arm64")
OTHER = ARM64 if ARM64 != HOST else Platform("linux", "amd64")
CREATED = "2024-01-01T00:00:00Z"


# --- writing tarballs ----------------------------------------------------------------------


def write_archive(path: Path, entries: Sequence[Entry]) -> Path:
    path.write_bytes(tar_bytes(entries))
    return path


def oci_entries(builder: ArchiveBuilder, omit: frozenset[str] = frozenset()) -> list[Entry]:
    return list(builder.members(omit))


# --- docker archives -----------------------------------------------------------------------


def hex_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class DockerImage:
    """One image of a docker archive: its uncompressed layers, config and names."""

    layers: list[bytes]
    repo_tags: list[str] | None = None
    created: str = CREATED
    platform: Platform = HOST
    diff_ids_override: list[str] | None = None

    @property
    def diff_ids(self) -> list[str]:
        if self.diff_ids_override is not None:
            return self.diff_ids_override
        return [digest_of(layer) for layer in self.layers]

    @property
    def config(self) -> bytes:
        doc: dict[str, Any] = {
            "architecture": self.platform.architecture,
            "os": self.platform.os,
        }
        if self.platform.variant:
            doc["variant"] = self.platform.variant
        doc["config"] = {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]}
        doc["created"] = self.created
        doc["history"] = [{"created": self.created} for _ in self.layers]
        doc["rootfs"] = {"type": "layers", "diff_ids": self.diff_ids}
        # docker writes configs with its own spacing; any valid JSON will do
        return json.dumps(doc, indent=1).encode()

    def v1_ids(self) -> list[str]:
        """Docker's legacy per-layer ids: a chain over the layers, unique per position."""
        ids: list[str] = []
        parent = ""
        for layer in self.layers:
            parent = hex_of(f"{parent} {digest_of(layer)}".encode())
            ids.append(parent)
        return ids


def legacy_json(v1_id: str, parent: str | None) -> bytes:
    doc: dict[str, Any] = {"id": v1_id, "created": "1970-01-01T00:00:00Z"}
    if parent is not None:
        doc["parent"] = parent
    return json.dumps(doc).encode()


def split_tag(repo_tag: str) -> tuple[str, str]:
    repo, _, tag = repo_tag.rpartition(":")
    return repo, tag


def repositories_file(images: Sequence[DockerImage]) -> bytes:
    doc: dict[str, dict[str, str]] = {}
    for image in images:
        for repo_tag in image.repo_tags or []:
            repo, tag = split_tag(repo_tag)
            doc.setdefault(repo, {})[tag] = image.v1_ids()[-1]
    return json.dumps(doc).encode()


def manifest_item(image: DockerImage, config: str, layers: list[str]) -> dict[str, Any]:
    item: dict[str, Any] = {"Config": config}
    if image.repo_tags is not None:
        item["RepoTags"] = image.repo_tags
    item["Layers"] = layers
    return item


def classic_save(images: Sequence[DockerImage], repositories: bytes | None = None) -> list[Entry]:
    """What ``docker save`` wrote before Docker 25: one directory per layer."""
    entries: list[Entry] = []
    items = []
    seen: set[str] = set()
    for image in images:
        config = image.config
        entries.append((f"{hex_of(config)}.json", config))
        paths = []
        parent = None
        for v1_id, layer in zip(image.v1_ids(), image.layers, strict=True):
            if v1_id not in seen:
                seen.add(v1_id)
                entries += [
                    (f"{v1_id}/", DIR),
                    (f"{v1_id}/VERSION", b"1.0"),
                    (f"{v1_id}/json", legacy_json(v1_id, parent)),
                    (f"{v1_id}/layer.tar", layer),
                ]
            paths.append(f"{v1_id}/layer.tar")
            parent = v1_id
        items.append(manifest_item(image, f"{hex_of(config)}.json", paths))
    entries.append(("manifest.json", json.dumps(items).encode()))
    entries.append(
        ("repositories", repositories if repositories is not None else repositories_file(images))
    )
    return entries


def skopeo_save(
    image: DockerImage, *, layers_via_link: bool = True, links_first: bool = False
) -> list[Entry]:
    """skopeo's (and older docker's) shape: layers stored once as ``<hex>.tar``, with
    ``<id>/layer.tar`` symbolic links to them."""
    config = image.config
    files: list[Entry] = [(f"{hex_of(config)}.json", config)]
    links: list[Entry] = []
    paths = []
    for v1_id, layer in zip(image.v1_ids(), image.layers, strict=True):
        files.append((f"{hex_of(layer)}.tar", layer))
        links += [
            (f"{v1_id}/layer.tar", Link(f"../{hex_of(layer)}.tar")),
            (f"{v1_id}/VERSION", b"1.0"),
            (f"{v1_id}/json", legacy_json(v1_id, None)),
        ]
        paths.append(f"{v1_id}/layer.tar" if layers_via_link else f"{hex_of(layer)}.tar")
    members = links + files if links_first else files + links
    item = manifest_item(image, f"{hex_of(config)}.json", paths)
    return [
        *members,
        ("manifest.json", json.dumps([item]).encode()),
        ("repositories", repositories_file([image])),
    ]


def crane_save(image: DockerImage, compress: Callable[[bytes], bytes], suffix: str) -> list[Entry]:
    """go-containerregistry's tarball: config named ``sha256:<hex>``, compressed layers named
    by the digest of their compressed bytes, no ``repositories``."""
    config = image.config
    entries: list[Entry] = [(f"sha256:{hex_of(config)}", config)]
    paths = []
    for layer in image.layers:
        blob = compress(layer)
        name = f"{hex_of(blob)}{suffix}"
        entries.append((name, blob))
        paths.append(name)
    item = manifest_item(image, f"sha256:{hex_of(config)}", paths)
    entries.append(("manifest.json", json.dumps([item]).encode()))
    return entries


def expected_manifest(config: bytes, layers: Sequence[tuple[str, bytes]]) -> bytes:
    """The schema 2 manifest containerd builds for a docker archive image, as compact JSON."""
    layer_json = ",".join(
        f'{{"mediaType":"{media_type}","digest":"{digest_of(blob)}","size":{len(blob)}}}'
        for media_type, blob in layers
    )
    return (
        '{"schemaVersion":2,'
        f'"mediaType":"{DOCKER_MANIFEST}",'
        f'"config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{digest_of(config)}",'
        f'"size":{len(config)}}},'
        f'"layers":[{layer_json}]}}'
    ).encode()


def plain_manifest(image: DockerImage) -> bytes:
    return expected_manifest(image.config, [(DOCKER_LAYER, layer) for layer in image.layers])


def layer(name: str, size: int = 64) -> bytes:
    return layer_tar({name: name.encode() * size})


def demo_image(tags: list[str] | None = None, *, seed: str = "app") -> DockerImage:
    return DockerImage(
        [layer(f"{seed}/base.txt"), layer(f"{seed}/top.txt", 3)],
        ["foo:1"] if tags is None else tags,
    )


def docker25_save(builder: ArchiveBuilder, *repo_tags: str) -> tuple[list[Entry], str]:
    """Docker 25+: an OCI layout (one index.json entry per tag) whose manifest.json points
    into blobs/. Returns the entries and the manifest digest."""
    raw = layer("docker25/file.txt")
    image = DockerImage([raw], list(repo_tags))
    layer_desc = builder.blob(raw, OCI_LAYER)
    config_desc = builder.blob(image.config, OCI_CONFIG, platform=platform_json(str(HOST)))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_desc = builder.blob(dumps(manifest), OCI_MANIFEST)
    legacy: dict[str, dict[str, str]] = {}
    for repo_tag in repo_tags:
        repo, tag = split_tag(repo_tag)
        annotations = {
            "io.containerd.image.name": f"docker.io/library/{repo}:{tag}",
            "org.opencontainers.image.ref.name": tag,
        }
        builder.entries.append(
            {**manifest_desc, "platform": platform_json(str(HOST)), "annotations": annotations}
        )
        # docker 25 keys the legacy file by the top layer's diff_id, not by a v1 id
        legacy.setdefault(repo, {})[tag] = hex_of(raw)
    # the legacy v1 layer config docker still writes into blobs/, referenced by nothing
    builder.blob(legacy_json(image.v1_ids()[0], None), "application/octet-stream")
    item = manifest_item(
        image,
        "blobs/" + config_desc["digest"].replace(":", "/"),
        ["blobs/" + layer_desc["digest"].replace(":", "/")],
    )
    extra: list[Entry] = [
        ("manifest.json", dumps([item])),
        ("repositories", json.dumps(legacy).encode()),
    ]
    return oci_entries(builder) + extra, manifest_desc["digest"]


@dataclass
class ContainerdSave:
    """A containerd-store ``docker save`` of one platform of a multi-platform image."""

    entries: list[Entry]
    index: str
    host_manifest: str
    other_manifest: str
    attestation: str


def containerd_store_save() -> ContainerdSave:
    builder = ArchiveBuilder()
    host = builder.image(str(HOST))
    host["platform"] = platform_json(str(HOST))
    before_other = set(builder.blobs)
    other = builder.image(str(OTHER))
    other["platform"] = platform_json(str(OTHER))
    statement = builder.blob(b'{"_type":"https://in-toto.io/Statement/v0.1"}', IN_TOTO)
    att_config = builder.blob(b"{}", OCI_CONFIG)
    attestation_doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": att_config,
        "layers": [statement],
    }
    attestation = builder.blob(dumps(attestation_doc), OCI_MANIFEST)
    attestation["platform"] = {"architecture": "unknown", "os": "unknown"}
    attestation["annotations"] = {
        "vnd.docker.reference.digest": host["digest"],
        "vnd.docker.reference.type": "attestation-manifest",
    }
    index = builder.index([host, other, attestation])
    builder.add(index, name="docker.io/library/multi:1", ref_name="1")
    missing = frozenset(set(builder.blobs) - before_other - {index["digest"]})
    assert host["digest"] not in missing and other["digest"] in missing
    assert attestation["digest"] in missing and statement["digest"] in missing
    host_manifest = json.loads(builder.blobs[host["digest"]])
    item = {
        "Config": "blobs/" + host_manifest["config"]["digest"].replace(":", "/"),
        "RepoTags": ["multi:1"],
        "Layers": ["blobs/" + d["digest"].replace(":", "/") for d in host_manifest["layers"]],
    }
    entries = [*oci_entries(builder, omit=missing), ("manifest.json", dumps([item]))]
    return ContainerdSave(
        entries, index["digest"], host["digest"], other["digest"], attestation["digest"]
    )


COMPRESSORS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "none": (".tar", lambda data: data),
    "gzip": (".tar.gz", lambda data: gzip.compress(data, mtime=0)),
    "zstd": (".tar.zst", zstandard.ZstdCompressor(level=3).compress),
    "xz": (".tar.xz", lzma.compress),
    "bzip2": (".tar.bz2", bz2.compress),
}


def oci_archive() -> tuple[bytes, str]:
    """A two-layer OCI archive (bytes) and its manifest digest."""
    builder = ArchiveBuilder()
    desc = builder.image(str(HOST), layers=2, files={"etc/motd": b"compressed\n" * 500})
    builder.add(desc, name="example.com/shapes/oci:1")
    return tar_bytes(oci_entries(builder)), desc["digest"]
