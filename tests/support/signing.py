"""cosign-format signatures and SBOM referrers for tests, written and checked without
cargohold's code: the payload, the signature and the manifests are built here from the
cosign and OCI specifications, and :func:`independent_verify` is a verifier of its own."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imagefactory import OCI_CONFIG, OCI_MANIFEST, ArchiveBuilder, digest_of, dumps

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SPDX = "application/spdx+json"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def payload_for(image_digest: str, repository: str) -> bytes:
    """cosign's simple-signing payload, as ``cosign sign`` writes it."""
    return dumps(
        {
            "critical": {
                "identity": {"docker-reference": repository},
                "image": {"docker-manifest-digest": image_digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )


@dataclass
class Artifact:
    """A manifest and the blobs it lists."""

    manifest: bytes
    blobs: dict[str, bytes] = field(default_factory=dict)
    media_type: str = OCI_MANIFEST

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest)}


def _desc(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def signature(
    image_digest: str,
    repository: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    signed: bytes | None = None,
    stored: bytes | None = None,
) -> Artifact:
    """The manifest cosign pushes at ``sha256-<hex>.sig``: the payload as a layer, its
    signature in the layer's annotation. *signed* replaces the payload that is signed and
    *stored* the one stored (a tampered payload: the two differ)."""
    signed = signed if signed is not None else payload_for(image_digest, repository)
    stored = stored if stored is not None else signed
    sig = base64.b64encode(key.sign(signed, ec.ECDSA(hashes.SHA256()))).decode()
    config = dumps(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [digest_of(stored)]},
            "config": {},
        }
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _desc(OCI_CONFIG, config),
        "layers": [_desc(SIMPLE_SIGNING, stored, annotations={SIGNATURE_ANNOTATION: sig})],
    }
    return Artifact(dumps(manifest), {digest_of(config): config, digest_of(stored): stored})


def sbom(subject: dict[str, Any], text: str = "SPDX document") -> Artifact:
    """An OCI 1.1 artifact with a ``subject``, as ``oras attach`` writes it."""
    content = dumps({"spdxVersion": "SPDX-2.3", "name": text})
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SPDX,
        "config": _desc(OCI_EMPTY, b"{}"),
        "layers": [_desc(SPDX, content)],
        "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    return Artifact(dumps(manifest), {digest_of(b"{}"): b"{}", digest_of(content): content})


def add_artifact(builder: ArchiveBuilder, artifact: Artifact, ref_name: str | None = None) -> None:
    """Put *artifact* into an archive being built, as an index.json entry (named or not)."""
    builder.blobs.update(artifact.blobs)
    builder.blobs[artifact.digest] = artifact.manifest
    builder.add(artifact.descriptor(), ref_name=ref_name)


def sig_tag(image_digest: str) -> str:
    return image_digest.replace(":", "-") + ".sig"


def independent_verify(
    signature_manifest: bytes,
    read_blob: Callable[[str], bytes],
    image_digest: str,
    public_key: bytes,
) -> bool:
    """Whether a cosign signature manifest holds a payload naming *image_digest* whose
    signature verifies with *public_key* (PEM, ECDSA P-256)."""
    key = serialization.load_pem_public_key(public_key)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    for layer in json.loads(signature_manifest)["layers"]:
        if layer["mediaType"] != SIMPLE_SIGNING:
            continue
        payload = read_blob(layer["digest"])
        if digest_of(payload) != layer["digest"]:
            continue
        sig = base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION])
        try:
            key.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        claimed = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
        if claimed == image_digest:
            return True
    return False
