"""Who the client is to a registry: the user's credentials, and where they may not go.

Credentials come from the caller or from docker's config.json, looked up as docker looks them
up (by ``host[:port]``, Docker Hub's names as one registry). They are a liability the client
carries for the user, so they are masked in every repr, and :class:`Identity` remembers why
they were kept from a token service, to say so if access then fails.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
from collections.abc import Iterator
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
    "load_docker_credentials",
]

#: Docker Hub's names: the reference domain, its legacy name, and the API host.
DOCKER_HUB_API_HOST: Final = "registry-1.docker.io"
_DOCKER_HUB_NAMES: Final = frozenset({DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, DOCKER_HUB_API_HOST})
#: The key ``docker login`` writes for Docker Hub in config.json.
_DOCKER_HUB_CONFIG_KEY: Final = "https://index.docker.io/v1/"
#: Most of a docker config.json read.
_CONFIG_LIMIT: Final = 4 << 20
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and a password (or access token) for one registry.

    The password is masked in the repr, so a Credentials can be logged or shown in a traceback.
    """

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.username or ":" in self.username or _CONTROL.search(self.username):
            raise CredentialsError(
                "a registry user name must be non-empty, without ':' or control characters"
            )
        if any(c in self.password for c in "\r\n\0"):
            raise CredentialsError("a registry password must not contain line breaks or NUL")

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
    """The credentials of one client, read from the docker config at first need, and why they
    were withheld from the registry's token service, if they were.

    The docker config is read at the first challenge, not before: an anonymous pull must not
    fail on a config file it does not need. Shared by the threads of a pull, hence the lock.
    """

    def __init__(
        self,
        host: str,
        credentials: Credentials | None,
        config_path: str | os.PathLike[str] | None,
        use_docker_config: bool,
    ) -> None:
        self._host = host
        self._config_path = config_path
        self._credentials = credentials
        self._loaded = credentials is not None or not use_docker_config
        self._lock = threading.Lock()
        #: Why credentials were kept from the token realm, to say so if access then fails.
        self.withheld_from: str | None = None

    def credentials(self) -> Credentials | None:
        """The credentials, loading the docker config the first time."""
        with self._lock:
            if not self._loaded:
                self._credentials = load_docker_credentials(self._host, self._config_path)
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


def docker_config_path() -> Path:
    """Where docker keeps its config: ``$DOCKER_CONFIG/config.json``, else ``~/.docker``."""
    directory = os.environ.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path.home() / ".docker" / "config.json"


def is_docker_hub(host: str) -> bool:
    """Whether *host* is one of Docker Hub's names (the registry has several)."""
    return host.lower() in _DOCKER_HUB_NAMES


def load_docker_credentials(
    host: str, config_path: str | os.PathLike[str] | None = None
) -> Credentials | None:
    """The credentials ``docker login`` stored for *host*, or None when there are none.

    Keys are matched as docker matches them: by ``host[:port]`` exactly (``registry:5000`` is
    not ``registry``; scheme, user name and path ignored), and Docker Hub's names
    (``docker.io``, ``index.docker.io``, ``registry-1.docker.io``) are one registry. Credential
    helpers (``credsStore``, ``credHelpers``) run external programs and are not consulted.
    """
    path = Path(config_path) if config_path is not None else docker_config_path()
    auths = _read_auths(path)
    if auths is None:
        return None
    host = host.lower()
    hub = is_docker_hub(host)

    def preference(key: str) -> tuple[int, str]:
        exact = key == (_DOCKER_HUB_CONFIG_KEY if hub else host)
        return (0 if exact else 1, key)

    for key in sorted((k for k in auths if isinstance(k, str)), key=preference):
        key_host = _config_key_host(key)
        if not (key_host == host or (hub and is_docker_hub(key_host))):
            continue
        credentials = _config_entry(auths[key], path, key)
        if credentials is not None:
            return credentials
    return None


def _read_auths(path: Path) -> dict[object, object] | None:
    """The ``auths`` object of a docker config, or None when there is no file or no object."""
    try:
        with path.open("rb") as f:
            raw = f.read(_CONFIG_LIMIT + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialsError(f"cannot read docker config {path}: {exc.strerror}") from None
    if len(raw) > _CONFIG_LIMIT:
        raise CredentialsError(f"docker config {path} is larger than {_CONFIG_LIMIT} bytes")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        # The message of a JSON error names a position, never the file's content.
        reason = str(exc).splitlines()[0][:100]
        raise CredentialsError(f"docker config {path} is not valid JSON ({reason})") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    return auths if isinstance(auths, dict) else None


def _config_key_host(key: str) -> str:
    """The ``host[:port]`` a config.json ``auths`` key names, as docker's ConvertToHostname
    reads it: the scheme, a user name and the path are dropped, the port is kept (so
    ``registry:5000`` and ``registry`` are two registries with their own credentials)."""
    key = key.strip()
    scheme, sep, rest = key.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        netloc = rest.split("/", 1)[0]
        return netloc.rpartition("@")[2].lower()
    return key.split("/", 1)[0].lower()


def _config_entry(entry: object, path: Path, key: str) -> Credentials | None:
    """One ``auths`` entry; an entry without ``auth`` or user and password (a credential
    helper's placeholder, an identity token) gives nothing."""
    if not isinstance(entry, dict):
        raise CredentialsError(f"docker config {path}: entry {key!r} is not an object")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(
                f"docker config {path}: the 'auth' of {key!r} is not base64 of user:password"
            ) from None
        username, colon, password = decoded.partition(":")
        if not colon:
            raise CredentialsError(
                f"docker config {path}: the 'auth' of {key!r} is not base64 of user:password"
            )
        return Credentials(username, password)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and user and isinstance(secret, str):
        return Credentials(user, secret)
    return None
