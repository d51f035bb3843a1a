"""Public keys as cosign writes them, and whether a signature over some bytes is a key's.

The one module that needs the ``cryptography`` package, a compiled extension whose loading
costs about as much as the rest of an import's start-up: only commands given a key import this
module (``operations.verifying.load_key``); :mod:`.signatures` takes a :class:`PublicKey` and
asks it, without loading the package itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..errors import InvalidKeyError

#: The hash cosign signs with for each ECDSA curve.
_CURVE_HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}

_Key = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class PublicKey:
    """An ECDSA, RSA or Ed25519 public key, which says whether a signature is its own."""

    __slots__ = ("_key",)

    def __init__(self, key: _Key) -> None:
        self._key = key

    def verifies(self, payload: bytes, signature: bytes) -> bool:
        """Whether *signature* is this key's over *payload* (RSA: PKCS#1 v1.5, else PSS)."""
        key = self._key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, payload, ec.ECDSA(_CURVE_HASHES[key.curve.name]()))
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, payload)
            else:
                try:
                    key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
                except InvalidSignature:
                    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)
                    key.verify(signature, payload, pss, hashes.SHA256())
        except InvalidSignature:
            return False
        return True


def load_public_key(data: bytes, what: str) -> PublicKey:
    """A PEM public key as cosign writes it (``cosign.pub``): ECDSA, RSA or Ed25519."""
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        raise InvalidKeyError(f"{what}: not a PEM public key") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVE_HASHES:
            raise InvalidKeyError(f"{what}: unsupported curve {key.curve.name}")
        return PublicKey(key)
    if isinstance(key, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        return PublicKey(key)
    raise InvalidKeyError(f"{what}: unsupported key type (ECDSA, RSA or Ed25519 are)")
