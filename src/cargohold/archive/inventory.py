"""The inventory: what one namespace of a store holds, as its receiver writes it down so that a
sender ships only the rest (``content inventory``, ``image export --against``).

Format, version 1 (media type :data:`INVENTORY_MEDIA_TYPE`): one JSON object ::

    {"digest": "sha256:<hex>",            # of the canonical body, below
     "blobs": [["sha256:<hex>", <size>], ...],
     "created": "2026-01-31T12:00:00Z",   # when it was written (optional)
     "images": [{"digest": ..., "mediaType": ..., "name": ..., "size": ...}, ...],
     "mediaType": "application/vnd.cargohold.inventory.v1+json",
     "namespace": "default"}              # the namespace it describes

``blobs`` is sorted by digest, ``images`` by name. The canonical body is the object without
``digest``, serialised with sorted keys, no whitespace and ASCII escapes (Python's
``json.dumps(body, sort_keys=True, separators=(",", ":"))``); the file is that text with
``"digest"`` inserted as the first key. A reader recomputes it from what
it parsed, so a damaged inventory, or one edited by hand, is refused. Keys it does not know are
kept in the body (and so digested) and otherwise ignored; another version is refused.

Larger than :data:`COMPRESS_ABOVE`, the file is zstd-compressed (a digest is 64 hex digits,
which compress to about half); a reader accepts plain JSON, zstd and gzip.

The inventory is pure data: reading the store to write one is an operation
(:mod:`cargohold.operations.inventory`). An inventory describes the receiver; it is trusted
only to decide what a sender leaves out. A wrong one yields an archive the receiver's import
refuses (it checks its own holdings), never a wrong image.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import CargoholdError, InvalidDigestError, InvalidInventoryError
from ..oci.digests import ALGORITHMS, Digest
from . import compression

INVENTORY_MEDIA_TYPE: Final = "application/vnd.cargohold.inventory.v1+json"
_MEDIA_TYPE_GRAMMAR: Final = re.compile(r"application/vnd\.cargohold\.inventory\.v([0-9]+)\+json")
#: Above this many bytes of JSON the inventory is written zstd-compressed.
COMPRESS_ABOVE: Final = 1 << 20
#: Most bytes an inventory may have, compressed or not (about four million blobs).
MAX_INVENTORY_BYTES: Final = 512 << 20
#: Most characters of an image name, a media type or a namespace kept from an inventory.
_MAX_TEXT: Final = 4096
_MAX_SIZE: Final = (1 << 63) - 1
#: A digest of an algorithm :class:`Digest` accepts, in one match (the blob list is long).
_DIGEST: Final = re.compile(
    "|".join(f"{algorithm}:[a-f0-9]{{{length}}}" for algorithm, length in ALGORITHMS.items())
)


@dataclass(frozen=True, slots=True)
class InventoryImage:
    """One name of the namespace and the image it points at."""

    name: str
    digest: Digest
    media_type: str
    size: int


@dataclass(slots=True)
class Inventory:
    """What a namespace holds: every blob with its size, every image name with its target."""

    namespace: str
    #: Digest (``algorithm:hex``, validated) to size. Strings, not :class:`Digest` objects: an
    #: inventory lists every blob of a store, and these are only compared and written out.
    blobs: dict[str, int] = field(default_factory=dict)
    images: list[InventoryImage] = field(default_factory=list)
    created: str | None = None
    #: The digest of the canonical body (set by :func:`encode` and :func:`decode`).
    digest: Digest | None = None

    @property
    def total_size(self) -> int:
        return sum(self.blobs.values())


def encode(inventory: Inventory) -> bytes:
    """The inventory's file: JSON, zstd-compressed when large; sets ``inventory.digest``.

    The file is the canonical body with ``digest`` put first (one serialisation of a
    list that can hold a hundred thousand blobs)."""
    body: dict[str, Any] = {"mediaType": INVENTORY_MEDIA_TYPE, "namespace": inventory.namespace}
    if inventory.created is not None:
        body["created"] = inventory.created
    body["images"] = [
        {"name": i.name, "digest": str(i.digest), "mediaType": i.media_type, "size": i.size}
        for i in sorted(inventory.images, key=lambda i: i.name)
    ]
    blobs = inventory.blobs
    body["blobs"] = [[d, blobs[d]] for d in sorted(blobs)]  # strings sort faster than pairs
    canonical = _canonical(body)
    inventory.digest = Digest("sha256", hashlib.sha256(canonical).hexdigest())
    data = b'{"digest":"' + str(inventory.digest).encode() + b'",' + canonical[1:]
    if len(data) <= COMPRESS_ABOVE:
        return data + b"\n"
    out = io.BytesIO()
    writer = compression.compressor("zstd", out)
    writer.write(data)
    writer.close()
    return out.getvalue()


def decode(data: bytes, what: str) -> Inventory:
    """Read an inventory file's bytes (plain, zstd or gzip); *what* names it in errors."""
    document = _load(_decompressed(data, what), what)
    if not isinstance(document, dict):
        raise InvalidInventoryError(f"{what}: not an inventory (not a JSON object)")
    _check_media_type(document.get("mediaType"), what)
    claimed = document.pop("digest", None)
    if not isinstance(claimed, str):
        raise InvalidInventoryError(f"{what}: the inventory has no digest of its body")
    try:
        actual = Digest("sha256", hashlib.sha256(_canonical(document)).hexdigest())
    except (ValueError, RecursionError):
        raise InvalidInventoryError(f"{what}: not an inventory (unserialisable body)") from None
    if claimed != str(actual):
        raise InvalidInventoryError(
            f"{what}: damaged inventory: its body hashes to {actual}, it says {claimed[:80]!r}"
        )
    namespace = _text(document.get("namespace"), f"{what}: namespace")
    created = document.get("created")
    if created is not None:
        created = _text(created, f"{what}: created")
    inventory = Inventory(namespace, created=created, digest=actual)
    inventory.blobs = _blobs(document.get("blobs"), what)
    inventory.images = _images(document.get("images"), what)
    return inventory


def is_inventory(head: bytes) -> bool:
    """Whether the first (decompressed) bytes of a file are an inventory's, not a tar's: JSON
    begins with ``{``, a tar with a member's name."""
    return head.lstrip(b" \t\r\n").startswith(b"{")


def _decompressed(data: bytes, what: str) -> bytes:
    kind = compression.detect(data[:6])
    if kind == "none":
        return data
    if kind not in ("zstd", "gzip"):
        raise InvalidInventoryError(f"{what}: {kind}-compressed; inventories are zstd or gzip")
    try:
        reader = compression.decompressed(
            io.BytesIO(data), kind, max_bytes=MAX_INVENTORY_BYTES, floor=0
        )
        return reader.read(MAX_INVENTORY_BYTES + 1)
    except CargoholdError as exc:
        raise InvalidInventoryError(f"{what}: {exc}") from None
    except Exception as exc:  # zlib.error, zstandard.ZstdError, EOFError: a damaged stream
        raise InvalidInventoryError(f"{what}: damaged {kind} stream ({exc})") from None


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _load(data: bytes, what: str) -> Any:
    """Strict JSON (no duplicate keys, no NaN), without a walk of every value: the structure
    is checked field by field afterwards, and what is too deep fails to parse."""
    if len(data) > MAX_INVENTORY_BYTES:
        raise InvalidInventoryError(f"{what}: more than {MAX_INVENTORY_BYTES} bytes")
    try:
        return json.loads(
            data.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant
        )
    except InvalidInventoryError as exc:
        raise InvalidInventoryError(f"{what}: {exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        text = (str(exc) or type(exc).__name__).splitlines()[0][:120]
        raise InvalidInventoryError(f"{what}: not an inventory (invalid JSON: {text})") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise InvalidInventoryError("duplicate key in a JSON object")
    return result


def _no_constant(name: str) -> Any:
    raise InvalidInventoryError(f"{name} is not valid JSON")


def _check_media_type(value: object, what: str) -> None:
    if value == INVENTORY_MEDIA_TYPE:
        return
    match = _MEDIA_TYPE_GRAMMAR.fullmatch(value) if isinstance(value, str) else None
    if match is not None:
        raise InvalidInventoryError(
            f"{what}: inventory format version {match.group(1)[:10]}; this cargohold reads"
            f" version 1 ({INVENTORY_MEDIA_TYPE})"
        )
    shown = value[:80] if isinstance(value, str) else value
    raise InvalidInventoryError(f"{what}: not a cargohold inventory (mediaType {shown!r})")


def _blobs(value: object, what: str) -> dict[str, int]:
    if not isinstance(value, list):
        raise InvalidInventoryError(f"{what}: blobs must be a list")
    blobs: dict[str, int] = {}
    for i, entry in enumerate(value):
        if not (type(entry) is list and len(entry) == 2):
            raise InvalidInventoryError(f"{what}: blobs[{i}] is not a [digest, size] pair")
        digest, size = entry
        if type(digest) is not str or not _DIGEST.fullmatch(digest):
            _digest(digest, f"{what}: blobs[{i}]")  # says what is wrong with it
            raise InvalidInventoryError(f"{what}: blobs[{i}]: invalid digest")
        if digest in blobs:
            raise InvalidInventoryError(f"{what}: blobs[{i}]: {digest} is listed twice")
        blobs[digest] = _size(size, f"{what}: blobs[{i}]")
    return blobs


def _images(value: object, what: str) -> list[InventoryImage]:
    if not isinstance(value, list):
        raise InvalidInventoryError(f"{what}: images must be a list")
    images = []
    for i, entry in enumerate(value):
        where = f"{what}: images[{i}]"
        if not isinstance(entry, dict):
            raise InvalidInventoryError(f"{where} is not an object")
        images.append(
            InventoryImage(
                _text(entry.get("name"), f"{where}.name"),
                _digest(entry.get("digest"), where),
                _text(entry.get("mediaType"), f"{where}.mediaType"),
                _size(entry.get("size"), where),
            )
        )
    return images


def _digest(value: object, where: str) -> Digest:
    try:
        return Digest.parse(value)
    except InvalidDigestError as exc:
        raise InvalidInventoryError(f"{where}: {exc}") from None


def _size(value: object, where: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_SIZE:
        raise InvalidInventoryError(f"{where}: size must be a non-negative integer")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise InvalidInventoryError(f"{where} must be a non-empty string")
    return value
