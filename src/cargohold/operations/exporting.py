"""Export: images of the store as an archive (a file, a stream or a layout directory)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from ..archive import writer as archive_export
from ..archive.compression import Compression
from ..archive.holdings import Holdings, read_holdings
from ..archive.writer import RefNameForm
from ..errors import (
    CargoholdError,
    NotFoundError,
)
from ..oci.mediatypes import Descriptor
from ..oci.platforms import PlatformChoice
from ..oci.references import Reference, check_name_digest, is_tag
from ..progress import Progress
from ..storage import outputs
from ..storage.metadata import ImageRecord
from ..storage.volumes import write_volumes
from .context import (
    StoreContext,
    finishing,
    platform_matcher,
)
from .referrers import referrer_closure
from .results import (
    ExportResult,
)


# Long: a third of it is the public API's keyword arguments; the rest picks the destination.
def export(
    ctx: StoreContext,
    out: str | Path | BinaryIO,
    refs: Sequence[str],
    *,
    platforms: PlatformChoice = (),
    skip_manifest_json: bool = False,
    skip_non_distributable: bool = False,
    compress: Compression = "none",
    layout_dir: bool = False,
    progress: Progress | None = None,
    sync: bool = False,
    verify: bool = False,
    ref_name: RefNameForm = "full",
    name_as: str | None = None,
    against: Sequence[str | Path] = (),
    referrers: bool = True,
    split_size: int | None = None,
) -> ExportResult:
    """Write the images *refs* to *out* (a path, ``"-"`` for stdout, or a binary stream).

    A path is written through a temporary file beside it and renamed at the end, so a
    failed or killed export never leaves a partial archive under the requested name; what
    exists at the path and is not a regular file (a FIFO, a device) is written in place,
    never replaced (see :mod:`cargohold.outputs`). With *sync* the file is also flushed to
    disk before the rename, so that not even a power loss can leave a partial one there;
    like ``cp``, ctr and skopeo, the default does not wait for the disk (the archive is
    usually copied on, not kept). With *verify* every blob is hashed as it is written and
    one that does not match its digest fails the export before the rename (on a stream,
    the stream stops short of the archive's index documents).

    The referrers the store keeps for the images (signatures, attestations, SBOMs) are
    written with them unless *referrers* is false (see ``archive.writer._add_referrers``).

    *ref_name* is the form of ``org.opencontainers.image.ref.name``: the full reference
    (default) or only its tag, as ``ctr export`` writes. *name_as* writes the one image of
    *refs* under that name instead of its stored one (skopeo's ``oci-archive:FILE:NAME``).

    With *against* (inventories, earlier archives, OCI layout directories: what the receiver
    holds) the archive is a delta: a blob every one of them holds, with its size, is left out
    and listed in the archive (see :mod:`cargohold.archive.delta`).
    With *split_size*, the archive is written as volumes ``OUT.001``, ``OUT.002``, … of that
    many bytes and their checksum list ``OUT.sha256`` (see :mod:`cargohold.storage.volumes`).
    """
    if split_size is not None and (layout_dir or not isinstance(out, (str, Path)) or out == "-"):
        raise CargoholdError(
            "--split-size writes volumes beside a file path, not a stream or a directory"
        )
    if not refs:
        raise NotFoundError("no image to export")
    matcher = platform_matcher(platforms)
    records = []
    seen: set[str] = set()
    for ref in refs:
        record = ctx.resolve(ref)
        if record.name not in seen:
            seen.add(record.name)
            records.append(record)
    if name_as is not None:
        records = [_renamed(records, name_as)]
    plan = archive_export.plan_export(
        ctx.blobs,
        records,
        matcher,
        skip_manifest_json,
        skip_non_distributable,
        ref_name,
        referrers=(lambda subjects: referrer_closure(ctx, subjects)) if referrers else None,
        held=receiver_holds([read_holdings(Path(a)) for a in against]) if against else None,
    )
    progress = progress or Progress()
    volumes = 0
    with finishing(progress):
        if split_size is not None:
            split = write_volumes(
                Path(out),  # type: ignore[arg-type]  # a path, checked above
                split_size,
                lambda f: archive_export.write_archive(
                    plan, ctx.blobs, f, compress, progress, verify=verify
                ),
                sync,
            )
            written, volumes = split.size, len(split.paths)
        elif layout_dir:
            if not isinstance(out, (str, Path)) or str(out) == "-":
                raise CargoholdError("an OCI layout directory needs a directory path, not a stream")
            written = outputs.write_directory(
                Path(out),
                lambda d: archive_export.write_layout(plan, ctx.blobs, d, progress, verify),
            )
        elif isinstance(out, (str, Path)) and str(out) != "-":
            written = outputs.write_file(
                Path(out),
                lambda f, new: archive_export.write_archive(
                    plan, ctx.blobs, f, compress, progress, preallocate=new, verify=verify
                ),
                sync,
            )
        else:
            stream = sys.stdout.buffer if isinstance(out, (str, Path)) else out
            written = archive_export.write_archive(
                plan, ctx.blobs, stream, compress, progress, verify=verify
            )
    names = [r.name for r in records]
    return ExportResult(
        names,
        len(plan.blobs),
        written,
        len(plan.skipped),
        records,
        blobs_omitted=len(plan.omitted),
        bytes_omitted=sum(desc.size for desc in plan.omitted.values()),
        volumes=volumes,
    )


def receiver_holds(holdings: Sequence[Holdings]) -> Callable[[Descriptor], bool]:
    """Whether every one of *holdings* has the blob, of its descriptor's size: one archive for
    several sites leaves out only what all of them hold."""

    def held(desc: Descriptor) -> bool:
        digest = str(desc.digest)
        return all(h.blobs.get(digest) == desc.size for h in holdings)

    return held


def _renamed(records: list[ImageRecord], name: str) -> ImageRecord:
    """The one image to export, under *name* (a full reference, or a bare tag of its own
    repository); naming several images with one name would write the name twice."""
    if len(records) != 1:
        raise CargoholdError(
            f"one name ({name}) for {len(records)} images: export them one at a time"
        )
    record = records[0]
    if is_tag(name):
        name = str(Reference.parse(record.name).with_tag(name))
    check_name_digest(name, record.digest)
    return dataclasses.replace(record, name=str(Reference.parse(name)))
