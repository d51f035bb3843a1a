"""Offline verification of cosign simple-signing signatures with a public key.

cosign (and ``skopeo copy --sign-by-sigstore-private-key``) sign an image by storing, under the
tag ``sha256-<hex>.sig``, a manifest whose layers are *payloads*: a small JSON document naming
the image's manifest digest (``critical.image.docker-manifest-digest``) and repository
(``critical.identity.docker-reference``), each layer's descriptor carrying the base64 signature
of the payload's bytes in the annotation ``dev.cosignproject.cosign/signature``.

A signature is valid for an image when it verifies over the payload's exact bytes with the
key, and the payload names the image's digest (a valid signature of another image, moved next
to this one, proves nothing about it); with an identity, the payload's reference must name
that repository too. Nothing here needs a network: no transparency log, no certificate chain.
The key and the cryptography are :mod:`.keys`'s.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ..errors import CargoholdError
from .digests import Digest
from .graph import ContentSource, read_document
from .mediatypes import Descriptor, is_manifest, parse_manifest
from .references import Reference
from .referrers import SIGNATURE_ANNOTATION, SIMPLE_SIGNING, Referrer

if TYPE_CHECKING:  # the key's module loads the cryptography package; this one does not
    from .keys import PublicKey

#: Largest payload read; cosign's are a few hundred bytes.
MAX_PAYLOAD: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Claim:
    """What a simple-signing payload says it signs."""

    digest: Digest
    reference: str | None


def parse_payload(payload: bytes, what: str) -> Claim:
    """The image digest and reference a simple-signing payload names."""
    try:
        doc = json.loads(payload)
        critical = doc["critical"]
        digest = Digest.parse(critical["image"]["docker-manifest-digest"])
        identity = critical.get("identity") or {}
        reference = identity.get("docker-reference")
    except (ValueError, KeyError, TypeError, AttributeError, CargoholdError):
        raise CargoholdError(f"{what}: not a simple-signing payload") from None
    return Claim(digest, reference if isinstance(reference, str) else None)


def identity_matches(claimed: str | None, identity: Reference) -> bool:
    """Whether a payload's ``docker-reference`` names *identity*'s repository, both normalised
    (cosign writes the repository alone, so a tag in either is not compared)."""
    if not claimed:
        return False
    try:
        return Reference.parse(claimed).repository == identity.repository
    except CargoholdError:
        return False


@dataclass(slots=True)
class SignatureCheck:
    """The outcome of looking for a valid signature of one image."""

    subject: Digest
    valid: list[Digest] = field(default_factory=list)
    #: One line per signature that did not count, saying why.
    rejected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.valid)


def check_signatures(
    source: ContentSource,
    referrers: Iterable[Referrer],
    subject: Digest,
    key: PublicKey,
    identity: Reference | None = None,
) -> SignatureCheck:
    """Look through *subject*'s referrers held by *source* for a signature that *key* made over
    a payload naming *subject* (and *identity*'s repository, when given)."""
    check = SignatureCheck(subject)
    for referrer in referrers:
        if referrer.subject != subject or not is_manifest(referrer.descriptor.media_type):
            continue
        try:
            data = read_document(source, referrer.descriptor)
            manifest = parse_manifest(data, f"manifest {referrer.digest}")
        except CargoholdError as exc:
            check.rejected.append(f"{referrer.digest.short}: {exc}")
            continue
        for layer in manifest.layers:
            if layer.media_type == SIMPLE_SIGNING and SIGNATURE_ANNOTATION in layer.annotations:
                _check_layer(source, layer, check, key, identity)
    return check


def _check_layer(
    source: ContentSource,
    layer: Descriptor,
    check: SignatureCheck,
    key: PublicKey,
    identity: Reference | None,
) -> None:
    what = f"payload {layer.digest.short}"
    try:
        signature = base64.b64decode(layer.annotations[SIGNATURE_ANNOTATION], validate=True)
    except (binascii.Error, ValueError):
        check.rejected.append(f"{what}: the signature is not base64")
        return
    if layer.size > MAX_PAYLOAD or source.blob_size(layer.digest) != layer.size:
        check.rejected.append(f"{what}: absent or larger than {MAX_PAYLOAD} bytes")
        return
    try:
        payload = source.read_blob(layer.digest, MAX_PAYLOAD)
        if Digest.of_bytes(payload, layer.digest.algorithm) != layer.digest:
            check.rejected.append(f"{what}: its bytes do not match its digest")
            return
        claim = parse_payload(payload, what)
    except CargoholdError as exc:
        check.rejected.append(str(exc))
        return
    if not key.verifies(payload, signature):
        check.rejected.append(f"{what}: the signature does not verify with the key")
    elif claim.digest != check.subject:
        check.rejected.append(f"{what}: signed for another image, {claim.digest}")
    elif identity is not None and not identity_matches(claim.reference, identity):
        check.rejected.append(f"{what}: signed for {claim.reference}, not {identity.repository}")
    else:
        check.valid.append(layer.digest)
