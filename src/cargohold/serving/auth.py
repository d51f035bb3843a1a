"""Basic authentication against an htpasswd file, read as Distribution reads it.

Only bcrypt entries (``htpasswd -B``: ``$2y$``, ``$2a$``, ``$2b$``) are accepted; a line with
another kind of hash is refused when the file is loaded, since it could never match (as in
Distribution, which ignores them). A check runs bcrypt off the event loop; a user's
credentials that passed are remembered (by a keyed hash, never in clear) so that the many
requests of one pull cost one bcrypt check, not one each.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
from pathlib import Path
from typing import Final

import bcrypt

from ..errors import ServeConfigError

BCRYPT_PREFIXES: Final = ("$2y$", "$2a$", "$2b$")
#: Users whose passed credentials are remembered at once, at most.
_REMEMBERED: Final = 1024


class Htpasswd:
    """The users of an htpasswd file and their bcrypt hashes."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self._users = users
        self._key = os.urandom(32)
        self._passed: dict[str, bytes] = {}

    @classmethod
    def load(cls, path: Path) -> Htpasswd:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ServeConfigError(f"cannot read the htpasswd file {path}: {exc}") from None
        users: dict[str, bytes] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, colon, hashed = line.partition(":")
            if not colon or not user or not hashed.startswith(BCRYPT_PREFIXES):
                raise ServeConfigError(
                    f"{path}, line {number}: not a user with a bcrypt hash (htpasswd -B)"
                )
            users[user] = hashed.encode()
        if not users:
            raise ServeConfigError(f"{path} names no user")
        return cls(users)

    async def check(self, header: str | None) -> str | None:
        """The user an ``Authorization: Basic`` header proves, or None."""
        credentials = _basic(header)
        if credentials is None:
            return None
        user, password = credentials
        hashed = self._users.get(user)
        if hashed is None:
            return None
        token = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        if hmac.compare_digest(self._passed.get(user, b""), token):
            return user
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, _matches, password.encode(), hashed):
            return None
        if len(self._passed) >= _REMEMBERED:
            self._passed.clear()
        self._passed[user] = token
        return user


def _matches(password: bytes, hashed: bytes) -> bool:
    """bcrypt's check; a password it cannot hash (over 72 bytes) or a damaged hash fails."""
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


def _basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) of a Basic ``Authorization`` header; None for anything else."""
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or len(encoded) > 4096:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon and user else None
