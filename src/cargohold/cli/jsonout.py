"""The JSON contract of ``--format json``: what every command prints, in one place.

The library returns plain dataclasses; the keys scripts rely on (camelCase, stable within a
major version, README lists them per command) are chosen here and nowhere else. Keys shared by
several views (an image's record) come from one function, so ``image ls``, ``image inspect``
and ``content ls`` cannot drift apart.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..oci.config import ConfigSummary
    from ..oci.referrers import Referrer
    from ..oci.tree import TreeNode
    from ..operations.info import StoreInfo
    from ..operations.inventory import InventoryResult
    from ..operations.pushingall import PushAllEntry
    from ..operations.results import (
        ArchiveDelta,
        ArchiveImage,
        ArchiveReport,
        CheckResult,
        ContentInfo,
        ExportResult,
        ImageInfo,
        ImageInspection,
        ImportResult,
        ManifestInspection,
    )
    from ..operations.syncing import SyncResult
    from ..operations.transfer import PullResult, PushResult
    from ..operations.verifying import VerifiedImage
    from ..storage.gc import GcResult, ResumableImport
    from ..storage.metadata import ImageRecord

JSON = dict[str, object]


def iso_time(timestamp: float) -> str:
    """A stored timestamp as JSON output shows it: RFC 3339, UTC, microseconds."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )


def record_json(record: ImageRecord) -> JSON:
    """The keys every JSON view of an image shares."""
    return {
        "name": record.name,
        "digest": str(record.digest),
        "mediaType": record.media_type,
        "createdAt": iso_time(record.created_at),
        "updatedAt": iso_time(record.updated_at),
        "labels": record.labels,
    }


def import_json(result: ImportResult) -> JSON:
    return {
        "images": [
            {"name": i.name, "digest": str(i.digest), "action": i.action} for i in result.images
        ],
        "blobs": result.blobs_written,
        "bytesWritten": result.bytes_written,
        "bytesDeduplicated": result.bytes_deduplicated,
        "bytesRead": result.bytes_read,
        "volumes": result.volumes,
    }


def export_json(result: ExportResult) -> JSON:
    """Images as objects, the keys import's JSON gives them, so scripts read both alike."""
    return {
        "images": [
            {"name": r.name, "digest": str(r.digest), "mediaType": r.media_type}
            for r in result.records
        ],
        "blobs": result.blobs,
        "bytesWritten": result.bytes_written,
        "skippedNonDistributable": result.skipped_non_distributable,
        "blobsOmitted": result.blobs_omitted,
        "bytesOmitted": result.bytes_omitted,
        **({"volumes": result.volumes} if result.volumes else {}),
    }


def image_json(info: ImageInfo) -> JSON:
    """An image as ``image ls`` lists it."""
    return {
        **record_json(info.record),
        "size": info.size,
        "platforms": [str(p) for p in info.platforms],
        "storedPlatforms": [str(p) for p in info.stored_platforms],
        "referrers": info.referrers,
    }


def tree_json(node: TreeNode) -> JSON:
    d = node.descriptor
    out: JSON = {
        "role": node.role,
        "mediaType": d.media_type,
        "digest": str(d.digest),
        "size": d.size,
        "present": node.present,
    }
    if d.platform is not None:
        out["platform"] = str(d.platform)
    if d.annotations:
        out["annotations"] = dict(d.annotations)
    if node.problem is not None:
        out["problem"] = node.problem
    if node.repeated:
        out["repeated"] = True
    if node.children:
        out["children"] = [tree_json(c) for c in node.children]
    return out


def config_json(config: ConfigSummary) -> JSON:
    return {
        "created": config.created,
        "platform": str(config.platform) if config.platform else None,
        "entrypoint": config.entrypoint,
        "cmd": config.cmd,
        "env": config.env,
        "workingDir": config.working_dir,
        "user": config.user,
        "labels": config.labels,
        "exposedPorts": config.exposed_ports,
        "volumes": config.volumes,
        "stopSignal": config.stop_signal,
        "layers": config.layers,
        "history": config.history,
    }


def manifest_json(manifest: ManifestInspection) -> JSON:
    d = manifest.node.descriptor
    layers = manifest.node.children[1:]
    return {
        "digest": str(d.digest),
        "mediaType": d.media_type,
        "size": d.size,
        "platform": str(manifest.platform) if manifest.platform else None,
        "layers": [tree_json(c) for c in layers],
        "layersSize": sum(c.descriptor.size for c in layers),
        "config": config_json(manifest.config) if manifest.config else None,
    }


def inspection_json(inspection: ImageInspection) -> JSON:
    r = inspection.record
    return {
        **record_json(r),
        "size": r.size,
        "annotations": r.annotations,
        "partial": r.partial,
        "tree": tree_json(inspection.tree),
        "manifests": [manifest_json(m) for m in inspection.manifests],
        "referrers": [referrer_json(x) for x in inspection.referrers],
    }


def referrer_json(referrer: Referrer) -> JSON:
    """A referrer as ``image inspect --format json`` lists it."""
    # Here, not at the top: the kind's wording is the library's, and jsonout loads with the CLI.
    from ..operations.results import referrer_kind

    d = referrer.descriptor
    return {
        "subject": str(referrer.subject),
        "kind": referrer_kind(referrer),
        "mediaType": d.media_type,
        "digest": str(d.digest),
        "size": d.size,
        "artifactType": d.artifact_type,
        "annotations": dict(d.annotations),
    }


def check_json(check: CheckResult) -> JSON:
    return {
        "name": check.record.name,
        "digest": str(check.record.digest),
        "mediaType": check.record.media_type,
        "platform": str(check.platform) if check.platform else None,
        "manifest": str(check.nodes[0].descriptor.digest) if check.nodes else None,
        "status": check.status,
        "available": check.available,
        "required": check.required,
        "size": check.size,
        "totalSize": check.total_size,
        "missing": check.missing,
        "corrupt": check.corrupt,
        "problem": check.problem,
    }


def content_json(info: ContentInfo) -> JSON:
    return {
        "digest": str(info.digest),
        "size": info.size,
        "createdAt": iso_time(info.created_at),
        "usedBy": [{"namespace": u.namespace, "name": u.name} for u in info.users],
    }


def archive_image_json(image: ArchiveImage) -> JSON:
    return {
        "names": image.names,
        "digest": str(image.target.digest),
        "mediaType": image.target.media_type,
        "platforms": [str(p) for p in image.platforms],
        "size": image.size,
        "missing": image.missing,
    }


def archive_report_json(report: ArchiveReport) -> JSON:
    return {
        "format": report.format,
        "images": [archive_image_json(i) for i in report.images],
        "blobs": report.blobs,
        "size": report.size,
        "importable": report.importable,
        "newBlobs": report.new_blobs,
        "bytesToAdd": report.bytes_to_add,
        "problem": report.problem,
        "warnings": report.warnings,
        "delta": delta_json(report.delta) if report.delta is not None else None,
    }


def delta_json(delta: ArchiveDelta) -> JSON:
    return {
        "blobsOmitted": delta.blobs,
        "bytesOmitted": delta.size,
        "namespace": delta.namespace,
        "missing": [{"digest": str(d), "size": size} for d, size in delta.missing],
        "bytesMissing": sum(size for _, size in delta.missing),
    }


def inventory_json(result: InventoryResult) -> JSON:
    return {
        "namespace": result.namespace,
        "blobs": result.blobs,
        "size": result.size,
        "images": result.images,
        "digest": str(result.digest),
        "bytesWritten": result.bytes_written,
    }


def pull_json(result: PullResult) -> JSON:
    return {
        "name": result.name,
        "digest": str(result.digest),
        "mediaType": result.media_type,
        "action": result.action,
        "platforms": [str(p) for p in result.platforms],
        "manifestsDownloaded": result.manifests_downloaded,
        "blobsDownloaded": result.blobs_downloaded,
        "bytesDownloaded": result.bytes_downloaded,
        "blobsPresent": result.blobs_present,
        "referrers": result.referrers,
    }


def push_json(result: PushResult) -> JSON:
    return {
        "name": result.name,
        "destination": result.destination,
        "digest": str(result.digest),
        "mediaType": result.media_type,
        "platforms": [str(p) for p in result.platforms],
        "manifests": result.manifests,
        "blobsUploaded": result.blobs_uploaded,
        "bytesUploaded": result.bytes_uploaded,
        "blobsMounted": result.blobs_mounted,
        "blobsPresent": result.blobs_present,
        "referrers": result.referrers,
    }


def verified_json(result: VerifiedImage) -> JSON:
    return {
        "name": result.name,
        "digest": str(result.digest),
        "verified": result.ok,
        "validPayloads": [str(d) for d in result.valid],
        "rejected": result.rejected,
    }


def login_json(registry: str, username: str, authfile: object) -> JSON:
    """``login --format json`` (and ``--get-login``): the secret is never printed."""
    return {"registry": registry, "username": username, "authfile": str(authfile)}


def logout_json(registry: str | None, authfile: object) -> JSON:
    """``logout --format json``: the registry forgotten, or null for ``--all``."""
    return {"registry": registry, "all": registry is None, "authfile": str(authfile)}


def store_info_json(info: StoreInfo) -> JSON:
    return {
        "root": info.root,
        "format": info.format,
        "version": info.version,
        "namespaces": info.namespaces,
        "images": info.images,
        "blobs": info.blobs,
        "bytes": info.bytes,
        "reclaimableBlobs": info.reclaimable_blobs,
        "reclaimableBytes": info.reclaimable_bytes,
    }


def gc_json(result: GcResult, dry_run: bool) -> JSON:
    return {
        "dryRun": dry_run,
        "removed": [{"digest": str(d), "size": s} for d, s in result.removed],
        "bytesFreed": result.bytes_freed,
        "resumableRemoved": resumable_json(result.resumable_removed),
        "resumableKept": resumable_json(result.resumable_kept),
    }


def resumable_json(found: Sequence[ResumableImport]) -> list[JSON]:
    """Stopped imports of split archives whose staging gc removed or kept (to resume)."""
    return [
        {"archive": i.archive, "stagedBytes": i.staged_bytes, "updatedAt": iso_time(i.updated_at)}
        for i in found
    ]


def names_json(key: str, names: Sequence[str]) -> JSON:
    """``{created: [...]}``, ``{removed: [...]}``: what a command did to some names."""
    return {key: list(names)}


def sync_json(result: SyncResult) -> JSON:
    doc: JSON = {
        "images": [
            {
                "name": e.name,
                "action": e.action,
                "digest": str(e.digest) if e.digest else None,
                "bytes": e.bytes,
                "error": e.error,
            }
            for e in result.entries
        ],
        "pruned": result.pruned,
        "dryRun": result.dry_run,
    }
    # Here, not at the top: the sync module loads the registry stack.
    from ..operations.syncing import SYNC_ACTIONS

    for action in SYNC_ACTIONS:
        doc[action] = sum(e.action == action for e in result.entries)
    doc["bytes"] = sum(e.bytes for e in result.entries)
    return doc


def push_all_json(entries: Sequence[PushAllEntry]) -> JSON:
    return {
        "images": [
            {
                "name": e.name,
                "destination": e.destination,
                "action": e.action,
                "digest": str(e.digest) if e.digest else None,
                "bytes": e.bytes,
                "blobsUploaded": e.blobs_uploaded,
                "blobsMounted": e.blobs_mounted,
                "blobsPresent": e.blobs_present,
                "error": e.error,
            }
            for e in entries
        ],
        "pushed": sum(e.action == "pushed" for e in entries),
        "failed": sum(e.action == "failed" for e in entries),
        "bytes": sum(e.bytes for e in entries),
    }
