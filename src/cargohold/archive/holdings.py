"""What a receiver holds, as ``image export --against FILE`` learns it: from an inventory the
receiver wrote, from an archive shipped to it earlier (its blobs, and the blobs it omitted,
which the receiver needed to import it), or from an OCI layout directory.

None of these is verified blob by blob here, and need not be: what they say only decides what
the sender leaves out, and the receiver's import checks its own holdings before it accepts a
delta (see :mod:`.delta`).
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ..errors import (
    CargoholdError,
    InvalidArchiveError,
    InvalidDigestError,
    InvalidInventoryError,
    NotFoundError,
)
from ..limits import Limits
from ..oci.digests import ALGORITHMS, Digest
from ..progress import Progress
from . import compression
from .delta import DELTA_MEMBER, parse_delta
from .inventory import MAX_INVENTORY_BYTES, decode, is_inventory
from .members import BLOB_NAME, member_name
from .sources import open_members

#: Most bytes of a delta list read from an earlier archive.
_DELTA_LIMIT: Final = 64 << 20


@dataclass(slots=True)
class Holdings:
    """The blobs (digest to size) one ``--against`` source says its receiver holds."""

    source: str
    kind: str  # "inventory", "archive" or "layout"
    #: Digest (``algorithm:hex``) to size, as strings (see :class:`.inventory.Inventory`).
    blobs: dict[str, int] = field(default_factory=dict)
    #: The namespace an inventory describes (None for archives and layouts).
    namespace: str | None = None
    #: The digest of an inventory's body.
    digest: Digest | None = None


def read_holdings(path: Path, limits: Limits | None = None) -> Holdings:
    """What *path* (an inventory, an archive file or an OCI layout directory) says is held."""
    if path.is_dir():
        return _layout_holdings(path)
    try:
        with path.open("rb") as f:
            head = f.read(6)
            kind = compression.detect(head)
            f.seek(0)
            start = f.read(512) if kind == "none" else _decompressed_start(f, kind, path)
    except FileNotFoundError:
        raise NotFoundError(f"--against {path}: no such file or directory") from None
    except IsADirectoryError:
        raise NotFoundError(f"--against {path}: not a file") from None
    if is_inventory(start):
        return _inventory_holdings(path)
    try:
        return _archive_holdings(path, limits)
    except InvalidArchiveError as exc:
        raise InvalidArchiveError(f"--against {path}: {exc}") from None


def _decompressed_start(f: io.BufferedReader, kind: compression.Compression, path: Path) -> bytes:
    try:
        return compression.decompressed(f, kind).read(512)
    except CargoholdError:
        raise
    except Exception as exc:  # a damaged stream of any codec
        raise InvalidArchiveError(f"--against {path}: damaged {kind} stream ({exc})") from None


def _inventory_holdings(path: Path) -> Holdings:
    size = path.stat().st_size
    if size > MAX_INVENTORY_BYTES:
        raise InvalidInventoryError(f"{path}: {size} bytes is too large for an inventory")
    inventory = decode(path.read_bytes(), str(path))
    return Holdings(str(path), "inventory", inventory.blobs, inventory.namespace, inventory.digest)


def _archive_holdings(path: Path, limits: Limits | None) -> Holdings:
    """The blob members of an archive and the blobs it omitted; member data is not read."""
    held = Holdings(str(path), "archive")
    omitted: dict[Digest, int] = {}
    with open_members(path, Progress(), "against", limits) as members:
        for member in members:
            name = member_name(member.name)
            if member.kind != "file":
                continue
            if name == DELTA_MEMBER:
                with member.open() as source:
                    omitted = parse_delta(source.read(_DELTA_LIMIT + 1), _DELTA_LIMIT)
                continue
            digest = _blob_digest(name)
            if digest is not None:
                held.blobs[digest] = member.size
    for omitted_digest, size in omitted.items():
        held.blobs.setdefault(str(omitted_digest), size)
    return held


def _layout_holdings(path: Path) -> Holdings:
    """The regular files under ``blobs/`` of an OCI layout directory, by name and size."""
    if not (path / "oci-layout").is_file():
        raise InvalidArchiveError(
            f"--against {path}: a directory that is not an OCI image layout (no oci-layout)"
        )
    held = Holdings(str(path), "layout")
    for algorithm in ALGORITHMS:
        try:
            entries = os.scandir(path / "blobs" / algorithm)
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                digest = _blob_digest(f"blobs/{algorithm}/{entry.name}")
                st = entry.stat(follow_symlinks=False)
                if digest is not None and stat.S_ISREG(st.st_mode):
                    held.blobs[digest] = st.st_size
    delta = path / DELTA_MEMBER
    if delta.is_file():
        for omitted_digest, size in parse_delta(delta.read_bytes(), _DELTA_LIMIT).items():
            held.blobs.setdefault(str(omitted_digest), size)
    return held


def _blob_digest(name: str) -> str | None:
    match = BLOB_NAME.match(name)
    if match is None:
        return None
    try:
        return str(Digest.parse(f"{match.group(1)}:{match.group(2)}"))
    except InvalidDigestError:
        return None
