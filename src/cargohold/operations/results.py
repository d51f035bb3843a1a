"""What operations return: plain dataclasses, each with the JSON the CLI prints for it."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Literal

from ..oci.config import ConfigSummary
from ..oci.digests import Digest
from ..oci.mediatypes import Descriptor
from ..oci.platforms import Platform
from ..oci.tree import TreeNode
from ..storage.gc import GcResult
from ..storage.metadata import ImageRecord

Action = Literal["created", "updated", "unchanged", "kept"]


@dataclass(frozen=True, slots=True)
class ImportedImage:
    name: str
    digest: Digest
    action: Action


@dataclass(slots=True)
class ImportResult:
    images: list[ImportedImage] = field(default_factory=list)
    blobs_written: int = 0
    bytes_written: int = 0
    bytes_deduplicated: int = 0
    warnings: list[str] = field(default_factory=list)
    #: Archive bytes this run read (of a split archive resumed, only the volumes read again).
    bytes_read: int = 0
    #: Volumes of a split archive this run read (0 for one archive).
    volumes: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "images": [
                {"name": i.name, "digest": str(i.digest), "action": i.action} for i in self.images
            ],
            "blobs": self.blobs_written,
            "bytesWritten": self.bytes_written,
            "bytesDeduplicated": self.bytes_deduplicated,
            "bytesRead": self.bytes_read,
            "volumes": self.volumes,
        }


@dataclass(frozen=True, slots=True)
class ExportResult:
    images: list[str]
    blobs: int
    #: Bytes written to the output (with compression, the compressed size).
    bytes_written: int
    skipped_non_distributable: int
    #: The exported images' records, in *images*' order (for the JSON's name, digest, type).
    records: list[ImageRecord] = field(default_factory=list)
    #: Volumes written (``--split-size``); 0 for one archive.
    volumes: int = 0

    def to_json(self) -> dict[str, object]:
        """Images as objects, the keys import's JSON gives them, so scripts read both alike."""
        split = {"volumes": self.volumes} if self.volumes else {}
        return {
            "images": [
                {"name": r.name, "digest": str(r.digest), "mediaType": r.media_type}
                for r in self.records
            ],
            "blobs": self.blobs,
            "bytesWritten": self.bytes_written,
            "skippedNonDistributable": self.skipped_non_distributable,
            **split,
        }


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image as ``image ls`` shows it."""

    record: ImageRecord
    size: int
    platforms: list[Platform]

    def to_json(self) -> dict[str, object]:
        return {
            **record_json(self.record),
            "size": self.size,
            "platforms": [str(p) for p in self.platforms],
        }


@dataclass(slots=True)
class RemoveResult:
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    gc: GcResult | None = None


@dataclass(frozen=True, slots=True)
class ManifestInspection:
    """A manifest of an inspected image, with the summary of its config (when present)."""

    node: TreeNode
    platform: Platform | None
    config: ConfigSummary | None

    def to_json(self) -> dict[str, object]:
        d = self.node.descriptor
        return {
            "digest": str(d.digest),
            "mediaType": d.media_type,
            "size": d.size,
            "platform": str(self.platform) if self.platform else None,
            "layers": [c.to_json() for c in self.node.children[1:]],
            "layersSize": sum(c.descriptor.size for c in self.node.children[1:]),
            "config": self.config.to_json() if self.config else None,
        }


@dataclass(frozen=True, slots=True)
class ImageInspection:
    """Everything ``image inspect`` shows: the record, the graph and the configs."""

    record: ImageRecord
    tree: TreeNode
    manifests: list[ManifestInspection]

    def to_json(self) -> dict[str, object]:
        r = self.record
        return {
            **record_json(r),
            "size": r.size,
            "annotations": r.annotations,
            "partial": r.partial,
            "tree": self.tree.to_json(),
            "manifests": [m.to_json() for m in self.manifests],
        }


CheckStatus = Literal["complete", "incomplete", "corrupt", "unavailable", "invalid", "partial"]


@dataclass(slots=True)
class CheckResult:
    """The state of one manifest of one image (or of the image as a whole, when no manifest
    of it can be looked at): the config and layers it needs, which are there, which are intact.
    """

    record: ImageRecord
    platform: Platform | None
    status: CheckStatus
    nodes: list[TreeNode]
    problem: str | None = None
    corrupt: list[str] = field(default_factory=list)

    @property
    def required(self) -> int | None:
        """Blobs the manifest needs (config and layers); None when it cannot be read."""
        return len(self.nodes) - 1 if len(self.nodes) > 1 else None

    @property
    def available(self) -> int:
        return sum(1 for n in self.nodes[1:] if n.present)

    @property
    def missing(self) -> list[str]:
        return [str(n.descriptor.digest) for n in self.nodes if not n.present]

    @property
    def ok(self) -> bool:
        return self.status in ("complete", "partial")

    @property
    def size(self) -> int:
        return sum(n.descriptor.size for n in self.nodes if n.present)

    @property
    def total_size(self) -> int:
        return sum(n.descriptor.size for n in self.nodes)

    def summary(self) -> str:
        """The status as ctr shows it: ``complete (3/3)``, ``unavailable (0/?)``."""
        if self.status == "partial":
            return f"partial ({self.problem})"
        required = "?" if self.required is None else str(self.required)
        return f"{self.status} ({self.available}/{required})"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.record.name,
            "digest": str(self.record.digest),
            "mediaType": self.record.media_type,
            "platform": str(self.platform) if self.platform else None,
            "manifest": str(self.nodes[0].descriptor.digest) if self.nodes else None,
            "status": self.status,
            "available": self.available,
            "required": self.required,
            "size": self.size,
            "totalSize": self.total_size,
            "missing": self.missing,
            "corrupt": self.corrupt,
            "problem": self.problem,
        }


@dataclass(frozen=True, slots=True)
class ImageUser:
    namespace: str
    name: str

    def qualified(self, current: str) -> str:
        """The name, with its namespace when it is not the one being looked at."""
        return self.name if self.namespace == current else f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ContentInfo:
    """A blob of the store and the images that use it."""

    digest: Digest
    size: int
    created_at: float
    users: list[ImageUser]

    def to_json(self) -> dict[str, object]:
        return {
            "digest": str(self.digest),
            "size": self.size,
            "createdAt": iso_time(self.created_at),
            "usedBy": [{"namespace": u.namespace, "name": u.name} for u in self.users],
        }


@dataclass(slots=True)
class ArchiveImage:
    """An image an archive holds, under every name the archive gives it."""

    names: list[str]
    target: Descriptor
    platforms: list[Platform]
    size: int
    missing: list[str]

    def to_json(self) -> dict[str, object]:
        return {
            "names": self.names,
            "digest": str(self.target.digest),
            "mediaType": self.target.media_type,
            "platforms": [str(p) for p in self.platforms],
            "size": self.size,
            "missing": self.missing,
        }


@dataclass(slots=True)
class ArchiveReport:
    """What ``archive inspect`` found, and what an import would add to the store."""

    format: Literal["oci", "docker"]
    images: list[ArchiveImage] = field(default_factory=list)
    blobs: int = 0
    size: int = 0
    importable: bool = False
    new_blobs: int = 0
    bytes_to_add: int = 0
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "format": self.format,
            "images": [i.to_json() for i in self.images],
            "blobs": self.blobs,
            "size": self.size,
            "importable": self.importable,
            "newBlobs": self.new_blobs,
            "bytesToAdd": self.bytes_to_add,
            "problem": self.problem,
            "warnings": self.warnings,
        }


def record_json(record: ImageRecord) -> dict[str, object]:
    """The keys every JSON view of an image shares."""
    return {
        "name": record.name,
        "digest": str(record.digest),
        "mediaType": record.media_type,
        "createdAt": iso_time(record.created_at),
        "updatedAt": iso_time(record.updated_at),
        "labels": record.labels,
    }


def iso_time(timestamp: float) -> str:
    """A stored timestamp as JSON output shows it: RFC 3339, UTC, microseconds."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
