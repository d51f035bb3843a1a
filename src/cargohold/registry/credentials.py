"""Who the client is to a registry: the user's credentials, and where they may not go.

Credentials come from the caller or are looked up where podman and docker keep them
(:mod:`.authfiles`) at the first challenge. They are a liability the client
carries for the user, so they are masked in every repr, and :class:`Identity` remembers why
they were kept from a token service, to say so if access then fails.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ..errors import CredentialsError
from ..oci.references import DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN

__all__ = [
    "DOCKER_HUB_API_HOST",
    "Credentials",
    "Identity",
    "docker_config_path",
    "is_docker_hub",
]

#: Docker Hub's names: the reference domain, its legacy name, and the API host.
DOCKER_HUB_API_HOST: Final = "registry-1.docker.io"
_DOCKER_HUB_NAMES: Final = frozenset({DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, DOCKER_HUB_API_HOST})
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TOKEN: Final = re.compile(r"[\x21-\x7e]{1,65536}")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and a password (or access token) for one registry.

    The password is masked in the repr, so a Credentials can be logged or shown in a traceback.
    """

    username: str
    password: str = field(repr=False)
    #: A refresh token from an OAuth2 login (docker config's ``identitytoken``): exchanged at
    #: the registry's token service for access tokens, never sent to the registry itself.
    identity_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.username or ":" in self.username or _CONTROL.search(self.username):
            raise CredentialsError(
                "a registry user name must be non-empty, without ':' or control characters"
            )
        if any(c in self.password for c in "\r\n\0"):
            raise CredentialsError("a registry password must not contain line breaks or NUL")
        if self.identity_token is not None and not _TOKEN.fullmatch(self.identity_token):
            raise CredentialsError("a registry identity token must be printable ASCII")

    @classmethod
    def from_user_option(cls, value: str, password: str | None = None) -> Credentials:
        """Credentials from ``--user USER[:PASS]``; *password* (from ``--password-stdin``) wins.

        A password read from a pipe usually ends in a newline that is not part of it.
        """
        if password is not None:
            username = value
            password = password.removesuffix("\n").removesuffix("\r")
        else:
            username, colon, password = value.partition(":")
            if not colon:
                raise CredentialsError(
                    f"--user {username!r} has no password: use USER:PASSWORD or --password-stdin"
                )
        return cls(username, password)

    def basic_authorization(self) -> str:
        """The ``Authorization`` header value of HTTP basic authentication."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***')"


class Identity:
    """The credentials of one client, looked up at first need, and why they were withheld
    from the registry's token service, if they were.

    The lookup (auth files, credential helpers) runs at the first challenge, not before: an
    anonymous pull must not fail on a config file or helper it does not need. Shared by the
    threads of a pull, hence the lock.
    """

    def __init__(
        self,
        host: str,
        credentials: Credentials | None,
        lookup: Callable[[], Credentials | None] | None,
    ) -> None:
        self._host = host
        self._lookup = lookup
        self._credentials = credentials
        self._loaded = credentials is not None or lookup is None
        self._lock = threading.Lock()
        #: Why credentials were kept from the token realm, to say so if access then fails.
        self.withheld_from: str | None = None

    def credentials(self) -> Credentials | None:
        """The credentials, looked up (auth files, credential helpers) the first time."""
        with self._lock:
            if not self._loaded:
                assert self._lookup is not None
                self._credentials = self._lookup()
                self._loaded = True
            return self._credentials

    def known(self) -> Credentials | None:
        """The credentials if they were given or already loaded; never reads the config."""
        return self._credentials

    def secrets(self) -> Iterator[str]:
        """What must never appear in a message: the password and the basic authorization."""
        credentials = self._credentials
        if credentials is not None:
            yield credentials.password
            yield credentials.basic_authorization().removeprefix("Basic ")
            if credentials.identity_token:
                yield credentials.identity_token


def docker_config_path() -> Path:
    """Where docker keeps its config: ``$DOCKER_CONFIG/config.json``, else ``~/.docker``."""
    directory = os.environ.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path.home() / ".docker" / "config.json"


def is_docker_hub(host: str) -> bool:
    """Whether *host* is one of Docker Hub's names (the registry has several)."""
    return host.lower() in _DOCKER_HUB_NAMES
