"""Offline verification of cosign signatures: of stored images (``image verify``) and of an
archive's images before an import commits them (``image import --require-signature``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..archive.plan import ImportPlan
from ..errors import InvalidKeyError, SignatureError
from ..oci.digests import Digest
from ..oci.graph import ContentSource
from ..oci.references import Reference
from ..oci.signatures import SignatureCheck, check_signatures
from .context import StoreContext

if TYPE_CHECKING:
    from ..oci.keys import PublicKey

#: Largest public key file read (a PEM key is well under 2 KiB).
MAX_KEY_FILE: Final = 64 * 1024


@dataclass(slots=True)
class VerifiedImage:
    """The outcome of verifying one image: the payloads whose signatures are valid, and why
    the others did not count."""

    name: str
    digest: Digest
    valid: list[Digest] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.valid)


def load_key(path: str | Path) -> PublicKey:
    """The public key in the PEM file *path*."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise InvalidKeyError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE:
        raise InvalidKeyError(f"{path}: larger than {MAX_KEY_FILE} bytes, not a public key")
    # Imported here, the one place a key is read: the cryptography package it loads would
    # otherwise be part of every import's start-up, with or without a key.
    from ..oci.keys import load_public_key

    return load_public_key(data, str(path))


def verify(
    ctx: StoreContext, refs: Sequence[str], key_path: str | Path, identity: str | None = None
) -> list[VerifiedImage]:
    """Check each stored image *refs* for a cosign signature by the key in *key_path* over a
    payload naming the image's digest (and, with *identity*, that repository)."""
    key = load_key(key_path)
    wanted = Reference.parse(identity) if identity is not None else None
    results = []
    for ref in refs:
        record = ctx.resolve(ref)
        referrers = ctx.meta.referrers(ctx.namespace, record.digest)
        check = check_signatures(ctx.blobs, referrers, record.digest, key, wanted)
        results.append(VerifiedImage(record.name, record.digest, check.valid, check.rejected))
    return results


def require_signatures(
    source: ContentSource, plan: ImportPlan, key: PublicKey, key_name: str
) -> None:
    """Refuse an import one of whose images carries no valid signature by *key*."""
    checked: set[Digest] = set()
    for image in plan.images:
        digest = image.target.digest
        if digest in checked:
            continue
        checked.add(digest)
        check = check_signatures(source, plan.referrers, digest, key)
        if not check.ok:
            raise SignatureError(f"{image.name}: {unsigned(check, key_name)}")


def unsigned(check: SignatureCheck | VerifiedImage, key_name: str) -> str:
    """Why an image counts as unsigned, in one line."""
    reasons = "; ".join(check.rejected[:3]) if check.rejected else "it has no signatures"
    more = f" (and {len(check.rejected) - 3} more)" if len(check.rejected) > 3 else ""
    return f"no valid signature by {key_name}: {reasons}{more}"
