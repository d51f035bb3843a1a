"""What operations return: plain dataclasses (the JSON the CLI prints for them is
:mod:`cargohold.cli.jsonout`'s)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..oci.config import ConfigSummary
from ..oci.digests import Digest
from ..oci.mediatypes import Descriptor
from ..oci.platforms import Platform
from ..oci.referrers import Referrer
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


@dataclass(frozen=True, slots=True)
class ExportResult:
    images: list[str]
    blobs: int
    #: Bytes written to the output (with compression, the compressed size).
    bytes_written: int
    skipped_non_distributable: int
    #: The exported images' records, in *images*' order (for the JSON's name, digest, type).
    records: list[ImageRecord] = field(default_factory=list)
    #: Blobs a delta export left out (the receiver holds them), and their bytes.
    blobs_omitted: int = 0
    bytes_omitted: int = 0
    #: Volumes written (``--split-size``); 0 for one archive.
    volumes: int = 0


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image as ``image ls`` shows it."""

    record: ImageRecord
    size: int
    #: Every platform the image names (its index's list, or its one manifest's).
    platforms: list[Platform]
    #: Those whose manifest, config and layers are all in the store.
    stored_platforms: list[Platform] = field(default_factory=list)
    #: Signatures, attestations and SBOMs kept for the image (its referrers, and theirs).
    referrers: int = 0


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


@dataclass(frozen=True, slots=True)
class ImageInspection:
    """Everything ``image inspect`` shows: the record, the graph and the configs."""

    record: ImageRecord
    tree: TreeNode
    manifests: list[ManifestInspection]
    #: The signatures, attestations and SBOMs kept for the image's documents, and theirs.
    referrers: list[Referrer] = field(default_factory=list)


def referrer_kind(referrer: Referrer) -> str:
    """What a referrer is to people: ``referrer`` (OCI, by its subject), or cosign's
    ``signature``, ``attestation`` or ``sbom`` (by its tag)."""
    return {"": "referrer", "sig": "signature", "att": "attestation", "sbom": "sbom"}.get(
        referrer.kind, referrer.kind
    )


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


@dataclass(slots=True)
class ArchiveImage:
    """An image an archive holds, under every name the archive gives it."""

    names: list[str]
    target: Descriptor
    platforms: list[Platform]
    size: int
    missing: list[str]


@dataclass(slots=True)
class ArchiveDelta:
    """What a delta archive left out, and whether the namespace it was inspected for holds it
    (*namespace* None: there was no store to look at)."""

    blobs: int
    size: int
    namespace: str | None
    missing: list[tuple[Digest, int]] = field(default_factory=list)


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
    #: Set for a delta archive (an export --against).
    delta: ArchiveDelta | None = None
