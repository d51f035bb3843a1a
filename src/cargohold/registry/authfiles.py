"""Where registry credentials are kept: podman's and skopeo's ``auth.json``, docker's
``config.json``, and the credential helpers either may name; read as they read them, and
written as ``podman login`` writes them.

The search order is podman's (containers-auth.json(5)): a file given with ``--authfile`` (or
``$REGISTRY_AUTH_FILE``) is the only one read; otherwise ``${XDG_RUNTIME_DIR}/containers/auth.json``
(``/run/containers/<uid>/auth.json`` without it), then
``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json``, then docker's ``config.json``
(``$DOCKER_CONFIG``, else ``~/.docker``). The first file that has credentials for the registry
wins. In each file, a ``credHelpers`` entry for the registry comes first, then the ``auths``
entry, then the file's ``credsStore``: a helper is a program (``docker-credential-<name> get``)
run with the registry's address on its standard input, as docker runs it.

Credentials stay with their registry: an ``auths`` key is matched by ``host[:port]`` (another
port is another registry), and a key that names a repository (``host/team``, which podman
scopes to that repository) is not used for the whole host.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import CredentialsError
from .credentials import Credentials, docker_config_path, is_docker_hub
from .messages import clean

__all__ = [
    "AuthFile",
    "auth_files",
    "default_auth_file",
    "find_credentials",
    "load_docker_credentials",
    "remove_login",
    "store_login",
]

#: The key ``docker login`` writes for Docker Hub, and the address helpers are given for it.
DOCKER_HUB_CONFIG_KEY: Final = "https://index.docker.io/v1/"
#: The key ``podman login`` writes for Docker Hub.
_DOCKER_HUB_LOGIN_KEY: Final = "docker.io"
#: Most of an auth file read.
_CONFIG_LIMIT: Final = 4 << 20
#: Most of a credential helper's answer read, and how long it may take.
_HELPER_LIMIT: Final = 1 << 20
_HELPER_TIMEOUT: Final = 60.0
_HELPER_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
#: What a helper's username says when its secret is an identity token.
_TOKEN_USER: Final = "<token>"


@dataclass(frozen=True, slots=True)
class AuthFile:
    """One file credentials are read from; *docker* when it is docker's own config.json,
    whose keys docker reads by host alone (a path after the host is ignored)."""

    path: Path
    docker: bool = False


def default_auth_file() -> Path:
    """The file ``podman login`` writes: ``$REGISTRY_AUTH_FILE``, else
    ``${XDG_RUNTIME_DIR}/containers/auth.json``, else ``/run/containers/<uid>/auth.json``."""
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "containers" / "auth.json"
    return Path("/run/containers") / str(os.getuid()) / "auth.json"


def auth_files(authfile: str | os.PathLike[str] | None = None) -> list[AuthFile]:
    """The files credentials are read from, in podman's order (see the module's docstring)."""
    if authfile is not None:
        return [AuthFile(Path(authfile))]
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return [AuthFile(default_auth_file())]
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [
        AuthFile(default_auth_file()),
        AuthFile(Path(config_home) / "containers" / "auth.json"),
        AuthFile(docker_config_path(), docker=True),
    ]


def find_credentials(host: str, files: list[AuthFile]) -> Credentials | None:
    """The credentials of the first file that has some for *host*, or None."""
    for file in files:
        found = credentials_in(host, file)
        if found is not None:
            return found
    return None


def load_docker_credentials(
    host: str, config_path: str | os.PathLike[str] | None = None
) -> Credentials | None:
    """The credentials docker's config.json (*config_path*, else ``$DOCKER_CONFIG`` or
    ``~/.docker``) has for *host*, its credential helpers included; None when it has none."""
    path = Path(config_path) if config_path is not None else docker_config_path()
    return credentials_in(host, AuthFile(path, docker=True))


def credentials_in(host: str, file: AuthFile) -> Credentials | None:
    """What one file says for *host*: its ``credHelpers`` entry, its ``auths`` entry, then
    its ``credsStore``, as docker consults them."""
    doc = _read(file.path)
    if doc is None:
        return None
    host = host.lower()
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if isinstance(key, str) and _key_matches(key, host, file):
                return run_helper(helper, host, file.path)
    auths = doc.get("auths")
    if isinstance(auths, dict):
        for key in sorted((k for k in auths if isinstance(k, str)), key=_preference(host)):
            if not _key_matches(key, host, file):
                continue
            credentials = _entry(auths[key], file.path, key)
            if credentials is not None:
                return credentials
    store = doc.get("credsStore")
    if store:
        return run_helper(store, host, file.path)
    return None


def _preference(host: str) -> Callable[[str], tuple[int, str]]:
    """Keys in docker's order: the exact key first (for Docker Hub, docker's own), then by name."""
    exact = DOCKER_HUB_CONFIG_KEY if is_docker_hub(host) else host

    def key(name: str) -> tuple[int, str]:
        return (0 if name == exact else 1, name)

    return key


def _key_matches(key: str, host: str, file: AuthFile) -> bool:
    """Whether an ``auths`` or ``credHelpers`` key is *host*'s: by ``host[:port]``, Docker
    Hub's names as one; a key naming a repository belongs to that repository only (podman),
    except in docker's own file, where docker drops the path."""
    key = key.strip()
    scheme, sep, rest = key.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        key_host = rest.split("/", 1)[0].rpartition("@")[2].lower()
    else:
        key_host, slash, _ = key.partition("/")
        key_host = key_host.lower()
        if slash and not file.docker:
            return False
    return key_host == host or (is_docker_hub(host) and is_docker_hub(key_host))


def _read(path: Path) -> dict[str, object] | None:
    """An auth file's JSON object; None when there is no such file."""
    try:
        with path.open("rb") as f:
            raw = f.read(_CONFIG_LIMIT + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise CredentialsError(f"cannot read auth file {path}: {exc.strerror}") from None
    if len(raw) > _CONFIG_LIMIT:
        raise CredentialsError(f"auth file {path} is larger than {_CONFIG_LIMIT} bytes")
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        # The message of a JSON error names a position, never the file's content.
        reason = str(exc).splitlines()[0][:100]
        raise CredentialsError(f"auth file {path} is not valid JSON ({reason})") from None
    if not isinstance(doc, dict):
        raise CredentialsError(f"auth file {path} is not a JSON object")
    return doc


def _entry(entry: object, path: Path, key: str) -> Credentials | None:
    """One ``auths`` entry; one without ``auth``, user and password or identity token (a
    credential helper's placeholder) gives nothing."""
    if not isinstance(entry, dict):
        raise CredentialsError(f"auth file {path}: entry {key!r} is not an object")
    username, password = "", ""
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        username, colon, password = decoded.partition(":")
        if not colon:
            raise CredentialsError(
                f"auth file {path}: the 'auth' of {key!r} is not base64 of user:password"
            )
    else:
        user, secret = entry.get("username"), entry.get("password")
        if isinstance(user, str) and isinstance(secret, str):
            username, password = user, secret
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Credentials(username or _TOKEN_USER, password, identity_token=token)
    if username:
        return Credentials(username, password)
    return None


def run_helper(name: object, host: str, path: Path) -> Credentials | None:
    """Ask ``docker-credential-<name> get`` for *host*'s credentials, as docker does; None when
    the helper has none."""
    if not isinstance(name, str) or not _HELPER_NAME.fullmatch(name):
        raise CredentialsError(f"auth file {path}: invalid credential helper name")
    program = f"docker-credential-{name}"
    executable = shutil.which(program)
    if executable is None:
        raise CredentialsError(f"credential helper {program} (named in {path}) is not on PATH")
    server = DOCKER_HUB_CONFIG_KEY if is_docker_hub(host) else host
    try:
        done = subprocess.run(
            [executable, "get"], input=server.encode(), capture_output=True,
            timeout=_HELPER_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CredentialsError(f"credential helper {program} failed: {clean(str(exc))}") from None
    out = done.stdout[:_HELPER_LIMIT]
    if done.returncode != 0:
        said = (out or done.stderr).decode("utf-8", "replace").strip().splitlines()
        reason = clean(said[0], 200) if said else f"exit status {done.returncode}"
        if "credentials not found" in reason.lower():
            return None
        raise CredentialsError(f"credential helper {program} failed for {host}: {reason}")
    return _helper_answer(out, program, host)


def _helper_answer(out: bytes, program: str, host: str) -> Credentials | None:
    """The credentials in a helper's JSON answer (``Username``, ``Secret``)."""
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    user = doc.get("Username") if isinstance(doc, dict) else None
    secret = doc.get("Secret") if isinstance(doc, dict) else None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise CredentialsError(f"credential helper {program} gave no credentials for {host}")
    if not secret:
        return None
    if user == _TOKEN_USER:
        return Credentials(_TOKEN_USER, "", identity_token=secret)
    return Credentials(user, secret)


# -- writing (login, logout) -------------------------------------------------------------------


def login_key(host: str) -> str:
    """The ``auths`` key ``podman login`` writes for *host*."""
    return _DOCKER_HUB_LOGIN_KEY if is_docker_hub(host) else host.lower()


def store_login(path: Path, host: str, credentials: Credentials) -> None:
    """Record *credentials* for *host* in the auth file at *path* (created mode 0600, in a
    directory created 0700), keeping everything else the file holds."""
    doc = _read(path) or {}
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        auths = doc["auths"] = {}
    raw = f"{credentials.username}:{credentials.password}".encode()
    auths[login_key(host)] = {"auth": base64.b64encode(raw).decode("ascii")}
    _write(path, doc)


def remove_login(path: Path, host: str | None) -> list[str]:
    """Forget the credentials of *host* (every registry's when None) in the auth file at
    *path*; returns the keys removed."""
    doc = _read(path)
    auths = doc.get("auths") if doc is not None else None
    if doc is None or not isinstance(auths, dict):
        return []
    file = AuthFile(path)
    removed = [
        key
        for key in auths
        if isinstance(key, str) and (host is None or _key_matches(key, host.lower(), file))
    ]
    for key in removed:
        del auths[key]
    if removed:
        _write(path, doc)
    return removed


def _write(path: Path, doc: dict[str, object]) -> None:
    """Replace the file atomically: a temporary file of mode 0600, synced, renamed."""
    data = json.dumps(doc, indent="\t").encode() + b"\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise CredentialsError(f"cannot write auth file {path}: {exc.strerror or exc}") from None
