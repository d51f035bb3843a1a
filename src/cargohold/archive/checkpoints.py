"""What a scan found, member by member, as records a later run can replay.

A resumed import of a split archive does not read again the members an earlier run read from
verified volumes: it replays their records into a new :class:`ArchiveContents` (names claimed,
documents kept, blobs staged or found stored) and reads on from the next member's header. A
record is plain JSON; staged blobs are named relative to the import's staging directory.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InvalidArchiveError
from ..oci.digests import Digest
from ..storage.staged import StagedBlob
from .contents import ArchiveContents
from .members import BLOB_NAME, Member, member_name
from .scan import SMALL_FILES

Record = dict[str, Any]


def record(member: Member, contents: ArchiveContents, root: Path) -> Record:
    """What the scan made of *member* (just scanned into *contents*)."""
    name = member_name(member.name)
    if member.kind == "dir":
        return {"k": "dir", "n": name}
    if member.kind == "symlink":
        return {"k": "link", "n": name, "t": contents.symlinks[name]}
    small = SMALL_FILES.get(name)
    if small is not None:
        data: bytes = getattr(contents, small)
        return {"k": "doc", "n": name, "d": base64.b64encode(data).decode()}
    match = BLOB_NAME.match(name)
    if match is None:
        return {"k": "file", "n": name, **_staged(contents.files[name], root)}
    digest = Digest.parse(f"{match.group(1)}:{match.group(2)}")
    staged = contents.staged.get(digest)
    if staged is None:
        return {"k": "blob", "n": name, "digest": str(digest), "size": member.size}
    return {"k": "blob", "n": name, **_staged(staged, root)}


def _staged(blob: StagedBlob, root: Path) -> Record:
    assert blob.path is not None, "only a written blob is recorded"
    return {
        "digest": str(blob.digest),
        "size": blob.size,
        "path": blob.path.relative_to(root).as_posix(),
        "offset": blob.offset,
    }


def _blob(entry: Record, root: Path) -> StagedBlob:
    path = root / entry["path"]
    if not path.resolve().is_relative_to(root.resolve()):
        raise InvalidArchiveError(f"resume record names {entry['path']!r}")  # never written
    return StagedBlob(Digest.parse(entry["digest"]), int(entry["size"]), path, b"", entry["offset"])


def replay(contents: ArchiveContents, records: Iterable[Record], root: Path) -> None:
    """Put into *contents* what the scan of the recorded members found."""
    for entry in records:
        kind, name = entry["k"], entry["n"]
        if kind == "dir":
            contents.directories.add(name)
            continue
        contents.members.add(name)
        if kind == "link":
            contents.symlinks[name] = entry["t"]
        elif kind == "doc":
            setattr(contents, SMALL_FILES[name], base64.b64decode(entry["d"]))
        elif kind == "file":
            contents.files[name] = _blob(entry, root)
        elif "path" in entry:
            blob = _blob(entry, root)
            contents.staged[blob.digest] = blob
        else:
            contents.present.add(Digest.parse(entry["digest"]))


def staged_blobs(records: Iterable[Record], root: Path) -> dict[Digest, StagedBlob]:
    """The blobs (members under ``blobs/``) the recorded members staged."""
    found = {}
    for entry in records:
        if entry["k"] == "blob" and "path" in entry:
            blob = _blob(entry, root)
            found[blob.digest] = blob
    return found


def present_blobs(records: Iterable[Record]) -> Iterator[tuple[Digest, int]]:
    """The blobs the recorded members left unread because the store's copy stood for them."""
    for entry in records:
        if entry["k"] == "blob" and "path" not in entry:
            yield Digest.parse(entry["digest"]), int(entry["size"])
