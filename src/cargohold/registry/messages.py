"""What the registry client's errors say: the target they name, network text made fit for one
line, and no secret.

A hostile registry may echo an ``Authorization`` header, a password or a token into its error
document; :class:`Reporter` builds every error, so every message is scrubbed of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx

from ..errors import CargoholdError, ForeignRealmError, RegistryError
from ..oci.digests import Digest

__all__ = ["Reporter", "Target", "clean", "error_suffix", "show_url"]

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
#: An Authorization value a hostile registry may echo into its error message.
_AUTHORIZATION_VALUE: Final = re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9._~+/=-]+")

_E = TypeVar("_E", bound=RegistryError)


@dataclass(frozen=True, slots=True)
class Target:
    """What an operation is about, for error messages: ``host/repo@digest`` or ``host/repo:tag``."""

    registry: str
    repository: str | None = None
    reference: str | None = None

    def __str__(self) -> str:
        if self.repository is None:
            return self.registry
        text = f"{self.registry}/{self.repository}"
        if self.reference is not None:
            text += ("@" if ":" in self.reference else ":") + self.reference
        return text

    @property
    def digest(self) -> Digest | None:
        """The digest the operation is about, when it names content by digest."""
        if self.reference is None or ":" not in self.reference:
            return None
        try:
            return Digest.parse(self.reference)
        except CargoholdError:
            return None


def clean(text: str, limit: int = 200) -> str:
    """Text from the network made fit for a one-line message."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_url(url: httpx.URL) -> str:
    """A URL for logs and messages without its query, which may hold a storage signature."""
    return str(url.copy_with(query=None, fragment=None))


def error_suffix(error: RegistryError) -> str:
    """`` (CODE, HTTP 401)``: what an inner error adds to a message that explains it."""
    parts = [p for p in (error.code,) if p]
    status = f"HTTP {error.status_code}" if error.status_code is not None else None
    inner = ", ".join([*parts, *([status] if status else [])])
    return f" ({inner})" if inner else ""


class Reporter:
    """Builds the errors of one client: each names its target and hides every secret that
    *secret_sources* name (called at each error, so secrets learnt later are hidden too)."""

    def __init__(self, host: str, secret_sources: Iterable[Callable[[], Iterable[str]]]) -> None:
        self.host = host
        self._secret_sources = tuple(secret_sources)

    def error(self, cls: type[_E], target: Target, text: str, **kwargs: Any) -> _E:
        """An error of *cls* for *target*, its message scrubbed of anything secret a hostile
        registry may have echoed back."""
        message = _AUTHORIZATION_VALUE.sub(r"\1 ***", f"{target}: {text}")
        for source in self._secret_sources:
            for secret in source():
                if len(secret) >= 4:
                    message = message.replace(secret, "***")
        kwargs.setdefault("registry", target.registry)
        kwargs.setdefault("repository", target.repository)
        kwargs.setdefault("reference", target.reference)
        kwargs.setdefault("digest", target.digest)
        return cls(message, **kwargs)

    def foreign_realm(
        self, target: Target, cause: RegistryError, withheld_from: str | None
    ) -> ForeignRealmError:
        """The error of access refused after the credentials were kept from the token service
        (*withheld_from* says why), which tells the user how to allow them."""
        return self.error(
            ForeignRealmError, target,
            f"the registry's token service {withheld_from}, so the credentials for "
            f"{self.host} were not sent to it, and anonymous access was refused"
            f"{error_suffix(cause)}; allow the foreign realm to send them",
            code=cause.code, status_code=cause.status_code,
        )  # fmt: skip
