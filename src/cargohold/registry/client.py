"""A client of the OCI Distribution API, the ground of ``image pull`` and ``image push``.

A registry is an untrusted peer reached over an untrusted network, so every answer is checked the
way an archive is: manifests and blobs are hashed against the digest that names them (and against
``Docker-Content-Digest``), a blob is never accepted past its declared size, every body read
into memory (manifests, tokens, error documents) is read up to a bound, never whole, and every
body sent or received is held to a floor on its progress (curl's ``--speed-limit`` and
``--speed-time``), so that a registry trickling bytes cannot hold a transfer open forever.

Credentials are a liability the client carries for the user: they go only to the registry's
origin (scheme, host and port) and its own token service, never to a storage host a blob GET is
redirected to, nor to a token realm at another origin (another host, another port of the same
host, or plain HTTP) unless the caller allowed it, and they never appear in a repr, a log line or
an exception message. The client keeps no cookies, which are scoped by host and not by port.

One :class:`RegistryClient` serves one registry host and is shared by the threads of a pull or a
push (parallelism over blobs is the caller's): :class:`httpx.Client` is thread-safe, and the
client's own state (bearer tokens, the credentials it loaded) is guarded by locks.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import ipaddress
import json
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import IO, Any, Final, NamedTuple, TypeAlias, TypeVar

import certifi
import httpx

from ..errors import CargoholdError, ContentError, InvalidReferenceError, NotFoundError
from ..limits import DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME
from ..oci.digests import Digest
from ..oci.mediatypes import (
    DEFAULT_JSON_LIMIT,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MAX_BLOB_SIZE,
    OCI_INDEX,
    OCI_MANIFEST,
)
from ..oci.references import DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, Reference, is_tag
from ..version import __version__

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MONOLITHIC_LIMIT",
    "DEFAULT_SPEED_LIMIT",
    "DEFAULT_SPEED_TIME",
    "DEFAULT_UPLOAD_CHUNK_SIZE",
    "MANIFEST_ACCEPT",
    "AccessDeniedError",
    "AuthenticationError",
    "BlobSink",
    "Credentials",
    "CredentialsError",
    "ForeignRealmError",
    "ManifestInfo",
    "ManifestResponse",
    "RegistryClient",
    "RegistryConnectionError",
    "RegistryContentError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryProtocolError",
    "RegistryServerError",
    "RegistryTooSlowError",
    "RetryPolicy",
    "docker_config_path",
    "load_docker_credentials",
]

logger = logging.getLogger(__name__)

#: What ``get_manifest`` asks for by default: every manifest and index type cargohold stores.
MANIFEST_ACCEPT: Final = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
#: Blobs smaller than this are pushed in one streamed PUT; larger ones in PATCH chunks, so that
#: a registry (or a proxy before it) with a request size limit still takes them.
DEFAULT_MONOLITHIC_LIMIT: Final = 32 << 20
#: The size of one PATCH of a chunked upload. A chunk is held in memory so that it can be sent
#: again after an authentication challenge; several uploads run in parallel, so keep it modest.
DEFAULT_UPLOAD_CHUNK_SIZE: Final = 8 << 20
#: Downloads hand the sink chunks of at most this many bytes: the memory a download holds.
DEFAULT_CHUNK_SIZE: Final = 1 << 20
#: An upload hands httpx pieces of at most this many bytes, so that its progress is seen (and
#: a registry reading too slowly is noticed) at least once per piece.
_UPLOAD_PIECE: Final = 64 << 10

#: Docker Hub's names: the reference domain, its legacy name, and the API host.
_DOCKER_HUB_API_HOST: Final = "registry-1.docker.io"
_DOCKER_HUB_NAMES: Final = frozenset({DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, _DOCKER_HUB_API_HOST})
#: The key ``docker login`` writes for Docker Hub in config.json.
_DOCKER_HUB_CONFIG_KEY: Final = "https://index.docker.io/v1/"
#: An origin as browsers and docker scope credentials: scheme, lower-case host, port (the
#: scheme's default when the URL names none).
_Origin: TypeAlias = tuple[str, str, int | None]
#: Token services at another origin that are part of a registry, so its credentials may go
#: there.
_TRUSTED_REALM_ORIGINS: Final[Mapping[str, frozenset[_Origin]]] = {
    DEFAULT_DOMAIN: frozenset({("https", "auth.docker.io", 443)}),
}

#: Most of an error body read: enough for an OCI error document, never a hostile endless body.
_ERROR_BODY_LIMIT: Final = 8 << 10
#: Most of a token response read (JWTs with many claims run to a few KiB).
_TOKEN_BODY_LIMIT: Final = 1 << 20
#: Most of a docker config.json read.
_CONFIG_LIMIT: Final = 4 << 20
#: A token without ``expires_in`` lives this long (distribution spec); shorter lives are raised
#: to it.
_TOKEN_MIN_LIFETIME: Final = 60.0
#: A cached token is renewed this long before it expires, so that it does not expire in flight.
_TOKEN_MARGIN: Final = 5.0
#: Largest chunk a registry may demand through ``OCI-Chunk-Min-Length`` before we stream the
#: blob in one PUT instead (a chunk is held in memory).
_MAX_CHUNK: Final = 64 << 20
_MAX_REDIRECTS: Final = 10
#: Statuses that say "try again later" rather than "no".
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
#: Content types that say nothing about a manifest; its own ``mediaType`` is used instead.
_GENERIC_TYPES: Final = frozenset({"application/json", "text/plain", "application/octet-stream"})

_MEDIA_TYPE: Final = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
_CONTENT_RANGE: Final = re.compile(r"bytes ([0-9]{1,20})-([0-9]{1,20})/([0-9]{1,20}|\*)")
_UPLOAD_RANGE: Final = re.compile(r"(?:bytes=)?0-([0-9]{1,20})")
_DIGITS: Final = re.compile(r"[0-9]{1,20}")
_TOKEN_VALUE: Final = re.compile(r"[\x21-\x7e]{1,65536}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
#: An Authorization value a hostile registry may echo into its error message.
_AUTHORIZATION_VALUE: Final = re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9._~+/=-]+")
_CHALLENGE_SCHEME: Final = re.compile(r"[\s,]*([A-Za-z][A-Za-z0-9._-]*)(?=\s|,|$)")
_CHALLENGE_PARAM: Final = re.compile(
    r"[\s,]*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^\s,\"]*)"
)


# -- errors ----------------------------------------------------------------------------------


class RegistryError(CargoholdError):
    """A registry operation failed; the message names the registry, repository and digest.

    The attributes let callers act on the failure without parsing the message: ``code`` is the
    registry's OCI error code (``MANIFEST_UNKNOWN``, ``DENIED``…) when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        registry: str | None = None,
        repository: str | None = None,
        reference: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.registry = registry
        self.repository = repository
        self.reference = reference
        self.code = code
        self.status_code = status_code

    @property
    def digest(self) -> Digest | None:
        """The digest the failed operation was about, when it named content by digest."""
        if self.reference is None or ":" not in self.reference:
            return None
        try:
            return Digest.parse(self.reference)
        except CargoholdError:
            return None


class AuthenticationError(RegistryError):
    """The registry wants credentials we do not have, or refused the ones we sent."""


class ForeignRealmError(AuthenticationError):
    """The registry's token service is at another origin, so its credentials were not sent
    there, and anonymous access was not enough."""


class AccessDeniedError(RegistryError):
    """The registry knows who we are and refuses the operation (HTTP 403)."""


class RegistryNotFoundError(RegistryError, NotFoundError):
    """The repository, manifest, blob or upload session does not exist (HTTP 404)."""


class RegistryContentError(RegistryError, ContentError):
    """Content from (or refused by) the registry does not match its digest or size."""


class RegistryServerError(RegistryError):
    """The registry failed (5xx) or throttled us (429), still after the retries."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RegistryConnectionError(RegistryError):
    """The registry could not be reached, or the connection broke, still after the retries."""


class RegistryTooSlowError(RegistryConnectionError):
    """A transfer moved less than the client's speed limit for its speed time, and was
    abandoned (not retried: a registry that trickles would only trickle again)."""


class RegistryProtocolError(RegistryError):
    """The registry answered something the Distribution API does not allow."""


class CredentialsError(CargoholdError, ValueError):
    """Credentials given by the user, or read from a docker config file, cannot be used."""


_E = TypeVar("_E", bound=RegistryError)


# -- credentials -----------------------------------------------------------------------------


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


def docker_config_path() -> Path:
    """Where docker keeps its config: ``$DOCKER_CONFIG/config.json``, else ``~/.docker``."""
    directory = os.environ.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path.home() / ".docker" / "config.json"


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


def _is_docker_hub(host: str) -> bool:
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
    if not isinstance(auths, dict):
        return None
    host = host.lower()
    hub = _is_docker_hub(host)

    def preference(key: str) -> tuple[int, str]:
        exact = key == (_DOCKER_HUB_CONFIG_KEY if hub else host)
        return (0 if exact else 1, key)

    for key in sorted((k for k in auths if isinstance(k, str)), key=preference):
        key_host = _config_key_host(key)
        if not (key_host == host or (hub and _is_docker_hub(key_host))):
            continue
        credentials = _config_entry(auths[key], path, key)
        if credentials is not None:
            return credentials
    return None


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


# -- results and settings --------------------------------------------------------------------


class ManifestResponse(NamedTuple):
    """A manifest or index as the registry sent it, verified against its digest."""

    data: bytes
    media_type: str
    digest: Digest


class ManifestInfo(NamedTuple):
    """What a HEAD of a manifest tells: its type, digest and size, when the registry says."""

    media_type: str | None
    digest: Digest | None
    size: int | None


#: Where a download goes: a callable handed each chunk (it must not keep the memoryview, whose
#: buffer may be reused), or a binary file object written to.
BlobSink: TypeAlias = Callable[[memoryview], object] | IO[bytes]
#: A request body: bytes, or a factory of an iterator of bytes, called again when the request
#: must be sent again (after an authentication challenge).
_Body: TypeAlias = bytes | Callable[[], Iterator[bytes]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently transient failures (5xx, 429, broken connections) are retried.

    *attempts* counts every try of one operation, the first included; a blob download that
    resumes after a dropped connection spends one attempt per resume. *sleep* is injectable so
    that tests do not wait.
    """

    attempts: int = 5
    backoff: float = 0.5
    max_delay: float = 10.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """The pause before the next try, after *failures* failed ones: exponential, or what
        the registry asked for in ``Retry-After``, never more than *max_delay*."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return min(self.backoff * 2.0 ** (failures - 1), self.max_delay)


class _Attempts:
    """The tries left to one operation, shared by all the requests it makes."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0

    def retry(self, retry_after: float | None = None) -> bool:
        """Count one more failure; pause and say True when another try is allowed."""
        self.failures += 1
        if self.failures >= self.policy.attempts:
            return False
        self.policy.sleep(self.policy.delay(self.failures, retry_after))
        return True


# -- internals -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
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


@dataclass(slots=True)
class _Challenge:
    scheme: str
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Realm:
    """The bearer token service a registry named in its challenge."""

    realm: str
    service: str | None


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    scopes: frozenset[str]
    expires: float


class _TooSlow(Exception):
    """A transfer's progress fell below the floor (raised inside an upload's body)."""


class _SpeedMeter:
    """The floor on one body's progress: it fails when fewer than *limit* times *seconds*
    bytes move in the *seconds* after the body starts or last met that quota.

    Checked whenever bytes move and when a read or write times out, so a registry that sends
    (or reads) a byte now and then is abandoned within *seconds* of its last good stretch, or
    at the latest when the client's per-read timeout expires. One comparison per chunk: no
    history is kept.
    """

    __slots__ = ("_mark", "_moved", "_quota", "limit", "seconds")

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._quota = limit * seconds
        self._mark = time.monotonic()
        self._moved = 0

    def advance(self, n: int) -> None:
        """Count *n* bytes moved; raises :class:`_TooSlow` when the floor is not met."""
        self._moved += n
        if self._moved >= self._quota:
            self._mark, self._moved = time.monotonic(), 0
        elif self.expired():
            raise _TooSlow()

    def expired(self) -> bool:
        """Whether *seconds* have passed without the quota being met."""
        return time.monotonic() - self._mark >= self.seconds


class _Dropped(Exception):
    """A download broke off after *offset* bytes of the blob; it can resume there."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


def _pull(repository: str) -> frozenset[str]:
    return frozenset({f"repository:{repository}:pull"})


def _push(repository: str) -> frozenset[str]:
    return frozenset({f"repository:{repository}:pull", f"repository:{repository}:push"})


def _render_scopes(items: Iterable[str]) -> list[str]:
    """``repository:a:pull`` + ``repository:a:push`` → ``repository:a:pull,push``."""
    grouped: dict[str, list[str]] = {}
    for item in sorted(items):
        resource, _, action = item.rpartition(":")
        grouped.setdefault(resource, []).append(action)
    return [f"{resource}:{','.join(actions)}" for resource, actions in grouped.items()]


def _parse_challenges(values: Sequence[str]) -> list[_Challenge]:
    """The challenges of ``WWW-Authenticate`` headers (RFC 7235: several per header allowed)."""
    challenges: list[_Challenge] = []
    for value in values:
        value = value[:4096]
        pos, current = 0, None
        while pos < len(value) and value[pos:].strip(" \t,"):
            param: re.Match[str] | None = None
            if current is not None:
                param = _CHALLENGE_PARAM.match(value, pos)
            if param is not None and current is not None:
                raw = param[2]
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                current.params[param[1].lower()] = raw
                pos = param.end()
                continue
            scheme = _CHALLENGE_SCHEME.match(value, pos)
            if scheme is None:
                break
            current = _Challenge(scheme[1].lower(), {})
            challenges.append(current)
            pos = scheme.end()
    return challenges


def _clean(text: str, limit: int = 200) -> str:
    """Text from the network made fit for a one-line message."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show_url(url: httpx.URL) -> str:
    """A URL for logs and messages without its query, which may hold a storage signature."""
    return str(url.copy_with(query=None, fragment=None))


def _origin(url: httpx.URL) -> _Origin:
    port = url.port if url.port is not None else {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), port


def _is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_transient(exc: httpx.TransportError) -> bool:
    """Whether trying again may help: not for a refused certificate or a malformed URL."""
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.ProxyError):
        return False
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return False
        cause = cause.__cause__ or cause.__context__
    return True


def _transport_reason(exc: httpx.TransportError) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed ({_clean(cause.verify_message or '')})"
        cause = cause.__cause__ or cause.__context__
    return _clean(str(exc)) or type(exc).__name__


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    return float(value) if _DIGITS.fullmatch(value) else None


def _media_type(response: httpx.Response) -> str | None:
    value = response.headers.get("content-type")
    if value is None:
        return None
    value = value.split(";", 1)[0].strip()
    return value if _MEDIA_TYPE.fullmatch(value) else None


def _check_size(size: int) -> None:
    if type(size) is not int or not 0 <= size <= MAX_BLOB_SIZE:
        raise ValueError(f"blob size {size!r} is out of range")


def _hash_prefix(sink: BlobSink, length: int, hasher: hashlib._Hash) -> None:
    """Feed *hasher* the first *length* bytes already in a file, to resume a download into it."""
    if callable(sink):
        raise ValueError("resume_from needs a file sink, or the hasher of the bytes already had")
    sink.seek(0)
    remaining = length
    while remaining:
        chunk = sink.read(min(remaining, DEFAULT_CHUNK_SIZE))
        if not chunk:
            raise ValueError(f"resume_from={length}, but the file holds only {length - remaining}")
        hasher.update(chunk)
        remaining -= len(chunk)
    sink.seek(length)
    sink.truncate()


def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    """The system's trust store plus certifi's (either may be empty on some systems), plus the
    CA given for a private registry: a registry with a private CA may still redirect blob
    downloads to storage with a public certificate."""
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi.where())
    if isinstance(verify, str):
        try:
            context.load_verify_locations(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or _clean(str(exc))
            raise RegistryError(f"cannot load CA certificate {verify}: {reason}") from None
    return context


# -- the client ------------------------------------------------------------------------------


class RegistryClient:
    """A client of one registry host, shared by the threads of a pull or a push.

    *host* is a reference domain (``docker.io``, ``ghcr.io``, ``localhost:5000``); Docker Hub is
    reached at ``registry-1.docker.io``. *credentials* are used when given, else those of the
    docker config file (*config_path*, by default ``$DOCKER_CONFIG`` or ``~/.docker``) unless
    *use_docker_config* is false, else the client is anonymous. *plain_http* talks HTTP without
    TLS (for a loopback registry); *verify* is False to skip TLS verification, or the path of a CA
    certificate to trust besides the system's. *allow_foreign_realm* lets credentials go to a
    token service at another origin (host or port) than the registry's; never in clear text
    unless the registry is reached in clear text. *transport* replaces httpx's network
    transport (an ``httpx.MockTransport`` in tests of code built on this client).

    *timeout* bounds each wait for the network (connecting, one read, one write); *speed_limit*
    and *speed_time* put a floor under the progress of every body: one that moves fewer than
    *speed_limit* bytes a second for *speed_time* seconds raises :class:`RegistryTooSlowError`
    (*speed_limit* 0 turns the floor off).
    """

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        config_path: str | os.PathLike[str] | None = None,
        use_docker_config: bool = True,
        plain_http: bool = False,
        verify: bool | str = True,
        allow_foreign_realm: bool = False,
        retry: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = 60.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        upload_chunk_size: int = DEFAULT_UPLOAD_CHUNK_SIZE,
        monolithic_limit: int = DEFAULT_MONOLITHIC_LIMIT,
        trust_env: bool = True,
        transport: httpx.BaseTransport | None = None,
        speed_limit: int = DEFAULT_SPEED_LIMIT,
        speed_time: float = DEFAULT_SPEED_TIME,
    ) -> None:
        try:
            Reference(host, "x")
        except InvalidReferenceError:
            raise InvalidReferenceError(f"invalid registry host {host[:100]!r}") from None
        if chunk_size < 1 or upload_chunk_size < 1 or monolithic_limit < 0:
            raise ValueError("chunk sizes must be positive")
        if type(speed_limit) is not int or speed_limit < 0:
            raise ValueError(f"speed limit {speed_limit!r} is not a number of bytes per second")
        if not speed_time > 0 or speed_time == float("inf"):
            raise ValueError(f"speed time {speed_time!r} is not a positive number of seconds")
        self.speed_limit = speed_limit
        self.speed_time = float(speed_time)
        self._write_timeout = httpx.Timeout(timeout).write
        self.host = DEFAULT_DOMAIN if _is_docker_hub(host) else host
        api_host = _DOCKER_HUB_API_HOST if self.host == DEFAULT_DOMAIN else host
        self.base_url = httpx.URL(f"{'http' if plain_http else 'https'}://{api_host}")
        self.plain_http = plain_http
        self.allow_foreign_realm = allow_foreign_realm
        self._retry = retry if retry is not None else RetryPolicy()
        self._chunk_size = chunk_size
        self._upload_chunk_size = upload_chunk_size
        self._monolithic_limit = monolithic_limit
        self._config_path = config_path
        self._credentials: Credentials | None = credentials
        #: The docker config is read at the first challenge, not before: an anonymous pull must
        #: not fail on a config file it does not need.
        self._credentials_loaded = credentials is not None or not use_docker_config
        self._credentials_lock = threading.Lock()
        # Reentrant: an error raised while fetching a token scrubs the cached tokens from its
        # message, under the same lock.
        self._token_lock = threading.RLock()
        self._tokens: dict[_Realm, list[_Token]] = {}
        #: How the registry authenticates, once a challenge said so: later requests then carry
        #: credentials or a token from the start instead of collecting a 401 each.
        self._scheme: _Realm | str | None = None
        #: Why credentials were kept from the token realm, to say so if access then fails.
        self._withheld_from: str | None = None
        # As Go's ProxyFromEnvironment (docker's): a registry on this machine is reached
        # directly, never through a proxy from the environment, which would get its credentials
        # (in clear text, over plain HTTP).
        direct: dict[str, httpx.BaseTransport | None] = {}
        if _is_loopback(self.base_url.host):
            direct[f"all://{self.base_url.netloc.decode('ascii')}"] = None
        self._client = httpx.Client(
            mounts=direct,
            # No cookies: a cookie is scoped by host, not port, so one the registry set would
            # follow to a token service or storage host on another port. Docker keeps none
            # either, so no registry can depend on them.
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            verify=_ssl_context(verify),
            timeout=timeout,
            follow_redirects=False,
            trust_env=trust_env,
            transport=transport,
            # Bodies are hashed as sent, and read up to a limit: no transparent decompression.
            headers={"User-Agent": f"cargohold/{__version__}", "Accept-Encoding": "identity"},
        )

    def __repr__(self) -> str:
        user = self._credentials.username if self._credentials is not None else None
        shown = f", user={user!r}" if user is not None else ""
        return f"RegistryClient({self.host!r}, base_url={str(self.base_url)!r}{shown})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- manifests -------------------------------------------------------------------------

    def get_manifest(
        self,
        repository: str,
        reference: str | Digest,
        accept: Sequence[str] = MANIFEST_ACCEPT,
        *,
        limit: int = DEFAULT_JSON_LIMIT,
    ) -> ManifestResponse:
        """Fetch a manifest or index by tag or digest, verified and at most *limit* bytes.

        The bytes must match the digest of a digest reference, and ``Docker-Content-Digest``
        when the registry sends it. The returned digest is the reference's, else the sha256 of
        the bytes. The media type is the response's ``Content-Type`` (else the document's own
        ``mediaType``); whether it is acceptable is the caller's to judge.
        """
        text, pinned = self._reference(repository, reference)
        target = _Target(self.host, repository, text)
        url = self._url(f"/v2/{repository}/manifests/{text}")
        headers = {"Accept": ", ".join(accept)}
        attempts = _Attempts(self._retry)
        while True:
            response = self._open(
                "GET", url, target, "manifest", _pull(repository),
                headers=headers, follow_redirects=True, attempts=attempts,
            )  # fmt: skip
            with closing(response):
                self._expect(response, target, "manifest", 200)
                media_type = _media_type(response)
                announced = self._announced_digest(response, target)
                try:
                    data = self._read_body(response, target, "manifest", limit)
                    break
                except _Dropped as dropped:
                    if not attempts.retry():
                        raise self._error(
                            RegistryConnectionError, target, f"manifest: {dropped.reason}"
                        ) from None
        digest = pinned or Digest.of_bytes(data)
        for expected, source in ((pinned, "its digest"), (announced, "Docker-Content-Digest")):
            if expected is not None and Digest.of_bytes(data, expected.algorithm) != expected:
                actual = Digest.of_bytes(data, expected.algorithm)
                raise self._error(
                    RegistryContentError, target,
                    f"manifest does not match {source} {expected}: the registry sent {actual}",
                )  # fmt: skip
        if media_type is None or media_type in _GENERIC_TYPES:
            media_type = _own_media_type(data) or media_type
        if media_type is None:
            raise self._error(RegistryProtocolError, target, "manifest has no media type")
        return ManifestResponse(data, media_type, digest)

    def head_manifest(
        self, repository: str, reference: str | Digest, accept: Sequence[str] = MANIFEST_ACCEPT
    ) -> ManifestInfo | None:
        """What the registry says of a manifest without sending it; None when it has none."""
        text, pinned = self._reference(repository, reference)
        target = _Target(self.host, repository, text)
        response = self._open(
            "HEAD", self._url(f"/v2/{repository}/manifests/{text}"), target, "manifest",
            _pull(repository), headers={"Accept": ", ".join(accept)}, follow_redirects=True,
            attempts=_Attempts(self._retry), allow={404},
        )  # fmt: skip
        with closing(response):
            if response.status_code == 404:
                return None
            self._expect(response, target, "manifest", 200)
            announced = self._announced_digest(response, target)
            if pinned is not None and announced is not None and announced != pinned:
                raise self._error(
                    RegistryContentError, target,
                    f"registry names manifest {pinned} by another digest, {announced}",
                )  # fmt: skip
            return ManifestInfo(
                _media_type(response),
                announced or pinned,
                self._content_length(response, target),
            )

    def put_manifest(
        self, repository: str, reference: str | Digest, data: bytes, media_type: str
    ) -> Digest:
        """Push a manifest or index under a tag or its digest; returns its digest.

        The registry is sent *media_type* as ``Content-Type`` (it stores and serves that type).
        A registry that answers with another ``Docker-Content-Digest`` changed the bytes, which
        would break every digest pointing at them: that is an error.
        """
        text, pinned = self._reference(repository, reference)
        target = _Target(self.host, repository, text)
        if not _MEDIA_TYPE.fullmatch(media_type):
            raise ValueError(f"invalid media type {media_type[:100]!r}")
        digest = Digest.of_bytes(data, pinned.algorithm if pinned is not None else "sha256")
        if pinned is not None and digest != pinned:
            raise ContentError(f"{target}: the manifest's bytes have digest {digest}")
        response = self._open(
            "PUT", self._url(f"/v2/{repository}/manifests/{text}"), target, "manifest upload",
            _push(repository), headers={"Content-Type": media_type}, body=data,
            attempts=_Attempts(self._retry),
        )  # fmt: skip
        with closing(response):
            self._expect(response, target, "manifest upload", 200, 201, 202, 204)
            announced = self._announced_digest(response, target)
        if announced is not None and announced != Digest.of_bytes(data, announced.algorithm):
            raise self._error(
                RegistryContentError, target,
                f"registry stored the manifest as {announced}, not as its bytes' {digest}",
            )  # fmt: skip
        return digest

    # -- blobs -----------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: Digest) -> int | None:
        """The size of the blob in the repository, or None when the registry has none there."""
        target = _Target(self.host, repository, str(digest))
        self._reference(repository, digest)
        response = self._open(
            "HEAD", self._url(f"/v2/{repository}/blobs/{digest}"), target, "blob",
            _pull(repository), follow_redirects=True, attempts=_Attempts(self._retry),
            allow={404},
        )  # fmt: skip
        with closing(response):
            if response.status_code == 404:
                return None
            self._expect(response, target, "blob", 200)
            size = self._content_length(response, target)
        if size is None:
            raise self._error(RegistryProtocolError, target, "blob HEAD without Content-Length")
        return size

    def fetch_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        sink: BlobSink,
        *,
        resume_from: int = 0,
        hasher: hashlib._Hash | None = None,
    ) -> int:
        """Download a blob of *size* bytes into *sink*, verified; returns the bytes received.

        The blob is streamed in chunks of at most the client's ``chunk_size``, hashed on the
        way; more than *size* bytes are refused before they reach the sink. A connection that
        breaks off is resumed with ``Range: bytes=N-``, and 5xx and 429 answers are retried,
        within the retry policy's attempts; a download slower than the client's speed limit
        for its speed time is abandoned (:class:`RegistryTooSlowError`, not retried). With
        *resume_from* N the sink already holds the
        first N bytes: pass the *hasher* that has seen them, or a file sink opened for reading
        and writing (``r+b``), whose first N bytes are hashed and anything after them dropped.
        On any error the sink holds unverified bytes the caller must discard.
        """
        _check_size(size)
        if not 0 <= resume_from <= size:
            raise ValueError(f"resume_from={resume_from} is outside the blob's {size} bytes")
        self._reference(repository, digest)
        target = _Target(self.host, repository, str(digest))
        write: Callable[[memoryview], object] = sink if callable(sink) else sink.write
        if hasher is None:
            hasher = digest.hasher()
            if resume_from:
                _hash_prefix(sink, resume_from, hasher)
        url = self._url(f"/v2/{repository}/blobs/{digest}")
        attempts = _Attempts(self._retry)
        offset = resume_from
        while offset < size or (size == 0 and resume_from == 0 and offset == 0):
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            response = self._open(
                "GET", url, target, "blob", _pull(repository),
                headers=headers, follow_redirects=True, attempts=attempts,
            )  # fmt: skip
            try:
                with closing(response):
                    offset = self._receive(response, target, offset, size, hasher, write)
                break
            except _Dropped as dropped:
                logger.debug("%s: %s after %d bytes", target, dropped.reason, dropped.offset)
                offset = dropped.offset
                if not attempts.retry():
                    raise self._error(
                        RegistryConnectionError, target,
                        f"blob download broke off at {offset} of {size} bytes "
                        f"({dropped.reason}), {attempts.failures} attempts",
                    ) from None  # fmt: skip
        actual = hasher.hexdigest()
        if actual != digest.hex:
            raise self._error(
                RegistryContentError, target,
                f"blob content does not match its digest (the registry sent "
                f"{digest.algorithm}:{actual})",
            )  # fmt: skip
        return offset - resume_from

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        """Ask the registry to link a blob of *from_repository* into *repository*, no bytes
        sent; True when it did. A registry that cannot (202) opens an upload session, which is
        cancelled here; ``upload_blob(mount_from=…)`` uploads through it instead."""
        self._reference(repository, digest)
        self._reference(from_repository, digest)
        target = _Target(self.host, repository, str(digest))
        mounted, session = self._start_upload(
            repository, digest, from_repository, target, _Attempts(self._retry)
        )
        if session is not None:
            self._cancel_upload(session[0], repository, target)
        return mounted

    def upload_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        open_reader: Callable[[], IO[bytes]],
        *,
        mount_from: str | None = None,
    ) -> bool:
        """Push a blob; True when the registry mounted it from *mount_from* instead.

        *open_reader* opens the blob's bytes from the start; it is called again when the upload
        has to start over after a transient failure. A blob smaller than the client's
        ``monolithic_limit`` goes in one streamed PUT, a larger one in PATCH chunks of
        ``upload_chunk_size``. The bytes are checked against *size* and *digest* as they are
        read: local content that does not match raises :class:`ContentError` before the
        registry could commit it.
        """
        _check_size(size)
        self._reference(repository, digest)
        if mount_from is not None:
            self._reference(mount_from, digest)
        target = _Target(self.host, repository, str(digest))
        attempts = _Attempts(self._retry)
        while True:
            try:
                return self._upload_once(repository, digest, size, open_reader, mount_from, target)
            except RegistryTooSlowError:
                raise
            except (RegistryServerError, RegistryConnectionError) as exc:
                retry_after = exc.retry_after if isinstance(exc, RegistryServerError) else None
                if not attempts.retry(retry_after):
                    raise
                logger.debug("%s: upload starts over after: %s", target, exc)

    # -- uploads ---------------------------------------------------------------------------

    def _upload_once(
        self,
        repository: str,
        digest: Digest,
        size: int,
        open_reader: Callable[[], IO[bytes]],
        mount_from: str | None,
        target: _Target,
    ) -> bool:
        mounted, session = self._start_upload(repository, digest, mount_from, target, None)
        if session is None:
            return mounted
        location, min_chunk = session
        try:
            chunk = max(self._upload_chunk_size, min_chunk)
            if size < self._monolithic_limit or chunk > _MAX_CHUNK:
                self._put_monolithic(location, repository, digest, size, open_reader, target)
            else:
                self._put_chunked(location, repository, digest, size, open_reader, chunk, target)
        except Exception:
            self._cancel_upload(location, repository, target)
            raise
        return False

    def _start_upload(
        self,
        repository: str,
        digest: Digest,
        mount_from: str | None,
        target: _Target,
        attempts: _Attempts | None,
    ) -> tuple[bool, tuple[httpx.URL, int] | None]:
        """POST an upload (or a mount); (True, None) when mounted, else the session's URL and
        the registry's minimum chunk length."""
        url = self._url(f"/v2/{repository}/blobs/uploads/")
        scopes = _push(repository)
        if mount_from is not None:
            url = url.copy_merge_params({"mount": str(digest), "from": mount_from})
            scopes |= _pull(mount_from)
        what = "blob mount" if mount_from is not None else "blob upload"
        response = self._open("POST", url, target, what, scopes, body=b"", attempts=attempts)
        with closing(response):
            self._expect(response, target, what, 201, 202)
            if response.status_code == 201:
                if mount_from is None:
                    raise self._error(
                        RegistryProtocolError, target, "registry created a blob out of nothing"
                    )
                return True, None
            location = self._location(response, target)
            minimum = response.headers.get("oci-chunk-min-length", "").strip()
            return False, (location, int(minimum) if _DIGITS.fullmatch(minimum) else 0)

    def _put_monolithic(
        self,
        location: httpx.URL,
        repository: str,
        digest: Digest,
        size: int,
        open_reader: Callable[[], IO[bytes]],
        target: _Target,
    ) -> None:
        def body() -> Iterator[bytes]:
            return self._metered(self._read_local(open_reader, digest, size, target))

        self._finish_upload(location, repository, digest, target, body, size=size)

    def _put_chunked(
        self,
        location: httpx.URL,
        repository: str,
        digest: Digest,
        size: int,
        open_reader: Callable[[], IO[bytes]],
        chunk_size: int,
        target: _Target,
    ) -> None:
        hasher = digest.hasher()
        offset = 0
        with open_reader() as reader:
            while offset < size:
                data = _read_exactly(reader, min(chunk_size, size - offset))
                hasher.update(data)
                end = offset + len(data)
                if end == size or len(data) < min(chunk_size, size - offset):
                    _check_local_end(reader, hasher, digest, size, end, target)
                response = self._open(
                    "PATCH", location, target, "blob upload", _push(repository),
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{end - 1}",
                        "Content-Length": str(len(data)),
                    },
                    body=functools.partial(self._metered, (data,)),
                )  # fmt: skip
                with closing(response):
                    self._expect(response, target, "blob upload", 202, 204)
                    location = self._location(response, target, default=location)
                    confirmed = _UPLOAD_RANGE.fullmatch(response.headers.get("range", "").strip())
                    if confirmed is not None and int(confirmed[1]) != end - 1:
                        raise self._error(
                            RegistryProtocolError, target,
                            f"registry holds bytes 0-{confirmed[1]} of the upload, "
                            f"not 0-{end - 1}",
                        )  # fmt: skip
                offset = end
        self._finish_upload(location, repository, digest, target, b"", size=0)

    def _finish_upload(
        self,
        location: httpx.URL,
        repository: str,
        digest: Digest,
        target: _Target,
        body: _Body,
        *,
        size: int,
    ) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        response = self._open(
            "PUT", location.copy_merge_params({"digest": str(digest)}), target, "blob upload",
            _push(repository), headers=headers, body=body,
        )  # fmt: skip
        with closing(response):
            self._expect(response, target, "blob upload", 201, 204)
            announced = self._announced_digest(response, target)
        if announced is not None and announced != digest:
            raise self._error(
                RegistryContentError, target, f"registry stored the blob as {announced}"
            )

    def _cancel_upload(self, location: httpx.URL, repository: str, target: _Target) -> None:
        """Drop an upload session we will not finish; it expires on its own if this fails."""
        try:
            response = self._open(
                "DELETE", location, target, "blob upload", _push(repository), allow=range(600)
            )
            response.close()
        except RegistryError as exc:
            logger.debug("%s: cancelling the upload failed: %s", target, exc)

    def _read_local(
        self,
        open_reader: Callable[[], IO[bytes]],
        digest: Digest,
        size: int,
        target: _Target,
    ) -> Iterator[bytes]:
        """The local blob's bytes, checked before the last chunk leaves: content that does not
        match aborts the request, so the registry never commits it."""
        hasher = digest.hasher()
        with open_reader() as reader:
            offset = 0
            while True:
                chunk = reader.read(min(self._chunk_size, size - offset))
                if not chunk and offset < size:
                    raise ContentError(f"{target}: the local blob has {offset} bytes, not {size}")
                hasher.update(chunk)
                offset += len(chunk)
                if offset > size:
                    raise ContentError(f"{target}: the local blob has more than {size} bytes")
                if offset == size:
                    _check_local_end(reader, hasher, digest, size, offset, target)
                if chunk:
                    yield chunk
                if offset == size:
                    return

    # -- the blob download -----------------------------------------------------------------

    def _receive(
        self,
        response: httpx.Response,
        target: _Target,
        offset: int,
        size: int,
        hasher: hashlib._Hash,
        write: Callable[[memoryview], object],
    ) -> int:
        """Stream one response into the sink from *offset*; returns the offset reached."""
        status = response.status_code
        skip = 0
        if status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
            if match is None:
                raise self._error(RegistryProtocolError, target, "206 without a Content-Range")
            start, end, total = int(match[1]), int(match[2]), match[3]
            if total != "*" and int(total) != size:
                raise self._error(
                    RegistryContentError, target,
                    f"registry has a blob of {total} bytes, not of the declared {size}",
                )  # fmt: skip
            if start != offset or end < start or end >= size:
                raise self._error(
                    RegistryProtocolError, target,
                    f"registry sent bytes {start}-{end} when asked for {offset}-",
                )  # fmt: skip
            expected = size - offset
        elif status == 200:
            skip, expected = offset, size  # the registry ignored Range: drop what we have
        else:
            raise self._error(RegistryProtocolError, target, f"unexpected HTTP {status} for a blob")
        self._check_encoding(response, target, "blob")
        length = self._content_length(response, target)
        if length is not None and length > expected:
            raise self._error(
                RegistryContentError, target,
                f"blob is larger than its declared size {size} (the registry sends "
                f"{length + size - expected} bytes)",
            )  # fmt: skip
        if length is not None and length < expected:
            raise self._error(
                RegistryContentError, target,
                f"blob is smaller than its declared size {size} (the registry sends "
                f"{length + size - expected} bytes)",
            )  # fmt: skip
        meter = self._meter()
        try:
            # As the network delivers them (at most httpcore's read size), so that the floor
            # is checked at every read; cut to the chunk size the sink was promised.
            for raw in response.iter_raw():
                if meter is not None:
                    meter.advance(len(raw))
                for start in range(0, len(raw), self._chunk_size):
                    chunk = memoryview(raw)[start : start + self._chunk_size]
                    if skip:
                        dropped = min(skip, len(chunk))
                        skip -= dropped
                        chunk = chunk[dropped:]
                    if offset + len(chunk) > size:
                        raise self._error(
                            RegistryContentError, target,
                            f"blob is larger than its declared size {size}",
                        )  # fmt: skip
                    if chunk:
                        hasher.update(chunk)
                        write(chunk)
                        offset += len(chunk)
        except _TooSlow:
            raise self._too_slow(target, "blob", f"{offset} of {size} bytes received") from None
        except httpx.TransportError as exc:
            if meter is not None and isinstance(exc, httpx.TimeoutException) and meter.expired():
                raise self._too_slow(target, "blob", f"{offset} of {size} bytes received") from None
            raise _Dropped(offset, _transport_reason(exc)) from exc
        if offset < size:
            raise _Dropped(offset, "the response ended early")
        return offset

    # -- requests --------------------------------------------------------------------------

    def _open(
        self,
        method: str,
        url: httpx.URL,
        target: _Target,
        what: str,
        scopes: frozenset[str],
        *,
        headers: Mapping[str, str] | None = None,
        body: _Body | None = None,
        follow_redirects: bool = False,
        attempts: _Attempts | None = None,
        allow: Container[int] = (),
    ) -> httpx.Response:
        """Send a registry request, authenticated; returns the open (streaming) response.

        A 401 from the registry is answered once (basic credentials, or a bearer token for
        *scopes*); then any status of 400 or more not in *allow* raises the matching error.
        With *attempts*, transient failures are retried (only idempotent requests pass them).
        """
        authorization = self._authorization(scopes, target)
        response = self._exchange(
            method, url, target, what, headers, body, authorization, follow_redirects, attempts
        )
        if response.status_code == 401 and self._is_registry(response.url):
            challenges = _parse_challenges(response.headers.get_list("www-authenticate"))
            refused = self._status_error(response, target, what)
            authorization = self._answer(challenges, scopes, authorization, target, refused)
            response = self._exchange(
                method, url, target, what, headers, body, authorization, follow_redirects,
                attempts,
            )  # fmt: skip
        if response.status_code >= 400 and response.status_code not in allow:
            raise self._status_error(response, target, what)
        return response

    def _exchange(
        self,
        method: str,
        url: httpx.URL,
        target: _Target,
        what: str,
        headers: Mapping[str, str] | None,
        body: _Body | None,
        authorization: str | None,
        follow_redirects: bool,
        attempts: _Attempts | None,
    ) -> httpx.Response:
        """One request with its redirects, retried on transient failures while *attempts* allow."""
        while True:
            request_headers = dict(headers or {})
            if authorization is not None and self._is_registry(url):
                request_headers["Authorization"] = authorization
            content = body if body is None or isinstance(body, bytes) else body()
            request = self._client.build_request(
                method, url, headers=request_headers, content=content
            )
            try:
                response = self._send(request, follow_redirects, target)
            except _TooSlow as slow:
                raise self._too_slow(target, what, str(slow)) from None
            except httpx.TransportError as exc:
                if self._stalled_upload(exc):
                    raise self._too_slow(target, what, "the registry took nothing") from None
                if attempts is not None and _is_transient(exc) and attempts.retry():
                    logger.debug("%s %s: %s; retrying", method, _show_url(url), exc)
                    continue
                raise self._error(
                    RegistryConnectionError, target, f"{what}: {_transport_reason(exc)}"
                ) from exc
            if attempts is not None and response.status_code in _RETRY_STATUSES:
                error = self._status_error(response, target, what)
                retry_after = error.retry_after if isinstance(error, RegistryServerError) else None
                if attempts.retry(retry_after):
                    continue
                raise error
            return response

    def _stalled_upload(self, exc: httpx.TransportError) -> bool:
        """Whether a write timed out after at least the speed time without a byte taken."""
        return (
            isinstance(exc, httpx.WriteTimeout)
            and self.speed_limit > 0
            and (self._write_timeout is None or self._write_timeout >= self.speed_time)
        )

    def _send(
        self, request: httpx.Request, follow_redirects: bool, target: _Target
    ) -> httpx.Response:
        """Send *request*, following redirects by hand when asked.

        httpx builds each next request; ``Authorization`` is dropped here as soon as a hop
        leaves the registry's origin (httpx would keep it on an http→https move to another
        port). Following by hand closes each redirect response unread, where httpx would read
        its body whole, however large.
        """
        response = self._client.send(request, stream=True)
        logger.debug("%s %s -> %d", request.method, _show_url(request.url), response.status_code)
        hops = 0
        while follow_redirects and response.next_request is not None:
            request = response.next_request
            response.close()
            if not self._is_registry(request.url):
                request.headers.pop("Authorization", None)
            hops += 1
            if hops > _MAX_REDIRECTS:
                raise self._error(RegistryProtocolError, target, "too many redirects")
            response = self._client.send(request, stream=True)
            logger.debug("  -> %s %s -> %d", request.method, _show_url(request.url),
                         response.status_code)  # fmt: skip
        return response

    # -- authentication --------------------------------------------------------------------

    def _get_credentials(self) -> Credentials | None:
        with self._credentials_lock:
            if not self._credentials_loaded:
                self._credentials = load_docker_credentials(self.host, self._config_path)
                self._credentials_loaded = True
            return self._credentials

    def _authorization(self, scopes: frozenset[str], target: _Target) -> str | None:
        """The Authorization a request carries from the start, once the scheme is known."""
        scheme = self._scheme
        if scheme == "basic":
            credentials = self._get_credentials()
            return credentials.basic_authorization() if credentials is not None else None
        if isinstance(scheme, _Realm):
            return "Bearer " + self._token(scheme, scopes, target, stale=None)
        return None

    def _answer(
        self,
        challenges: list[_Challenge],
        scopes: frozenset[str],
        sent: str | None,
        target: _Target,
        refused: RegistryError,
    ) -> str:
        """The Authorization that answers a 401's challenges, or the error when none can."""
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None and bearer.params.get("realm"):
            realm = _Realm(bearer.params["realm"], bearer.params.get("service"))
            self._scheme = realm
            stale = sent.removeprefix("Bearer ") if sent and sent.startswith("Bearer ") else None
            return "Bearer " + self._token(realm, scopes, target, stale=stale)
        if any(c.scheme == "basic" for c in challenges):
            credentials = self._get_credentials()
            if credentials is None or sent == credentials.basic_authorization():
                raise refused
            self._scheme = "basic"
            return credentials.basic_authorization()
        raise refused

    def _token(
        self, realm: _Realm, scopes: frozenset[str], target: _Target, stale: str | None
    ) -> str:
        """A bearer token for *scopes*: cached, or fetched (*stale* is one the registry refused).

        One lock covers the cache and the fetch, so the threads of a pull that all meet the
        same challenge fetch one token, not one each.
        """
        with self._token_lock:
            now = time.monotonic()
            tokens = [
                t for t in self._tokens.get(realm, []) if t.expires > now and t.value != stale
            ]
            for token in tokens:
                if scopes <= token.scopes:
                    self._tokens[realm] = tokens
                    return token.value
            value, lifetime = self._fetch_token(realm, scopes, target)
            tokens.append(_Token(value, scopes, now + lifetime - _TOKEN_MARGIN))
            self._tokens[realm] = tokens
            return value

    def _withhold_credentials_from(self, realm: httpx.URL) -> str | None:
        """Why the credentials must not go to a token service at *realm*, or None when they may.

        Credentials belong to the registry's origin (scheme, host and port): another port of
        the same host is another server, and https→http on the same host:port would send
        them in clear text. They go elsewhere only to a token service known to be part of the
        registry, or with the caller's consent (``allow_foreign_realm``), and never in clear
        text unless the registry itself is reached in clear text.
        """
        origin = _origin(realm)
        if origin == _origin(self.base_url):
            return None
        where = realm.netloc.decode("ascii", "replace")
        if realm.scheme != "https" and not self.plain_http:
            return f"{where} is reached without TLS"
        if self.allow_foreign_realm or origin in _TRUSTED_REALM_ORIGINS.get(self.host, ()):
            return None
        if realm.host.lower() != self.base_url.host.lower():
            return f"{where} is on another host than the registry"
        return f"{where} is on another origin (scheme or port) than the registry"

    def _fetch_token(
        self, realm: _Realm, scopes: frozenset[str], target: _Target
    ) -> tuple[str, float]:
        try:
            url = httpx.URL(realm.realm)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise self._error(
                AuthenticationError, target, f"invalid token realm {_clean(realm.realm, 100)!r}"
            )
        params: list[tuple[str, str | int | float | bool | None]] = []
        if realm.service:
            params.append(("service", realm.service))
        params += [("scope", scope) for scope in _render_scopes(scopes)]
        url = url.copy_merge_params(params)
        credentials = self._get_credentials()
        headers = {"Accept": "application/json"}
        withheld = False
        if credentials is not None:
            reason = self._withhold_credentials_from(url)
            if reason is None:
                headers["Authorization"] = credentials.basic_authorization()
            else:
                withheld = True
                self._withheld_from = reason
        what = f"token from {url.host}"
        response = self._exchange(
            "GET", url, target, what, headers, None, None, False, _Attempts(self._retry)
        )
        with closing(response):
            if response.status_code in (401, 403):
                error = self._status_error(response, target, what)
                if withheld:
                    raise self._foreign_realm_error(target, error)
                who = f"user {credentials.username!r}" if credentials else "anonymous access"
                raise self._error(
                    AuthenticationError, target,
                    f"token service {url.host} refused {who}{_error_suffix(error)}",
                    code=error.code, status_code=response.status_code,
                )  # fmt: skip
            if response.status_code != 200:
                raise self._status_error(response, target, what)
            try:
                raw = self._read_body(response, target, "token", _TOKEN_BODY_LIMIT)
            except _Dropped as dropped:
                raise self._error(
                    RegistryConnectionError, target, f"{what}: {dropped.reason}"
                ) from None
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        value = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(value, str) or not _TOKEN_VALUE.fullmatch(value):
            raise self._error(AuthenticationError, target, f"{what}: no valid token in the answer")
        expires_in = doc.get("expires_in") if isinstance(doc, dict) else None
        lifetime = _TOKEN_MIN_LIFETIME
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            lifetime = max(float(expires_in), _TOKEN_MIN_LIFETIME)
        return value, lifetime

    def _foreign_realm_error(self, target: _Target, cause: RegistryError) -> ForeignRealmError:
        return self._error(
            ForeignRealmError, target,
            f"the registry's token service {self._withheld_from}, so the credentials for "
            f"{self.host} were not sent to it, and anonymous access was refused"
            f"{_error_suffix(cause)}; allow the foreign realm to send them",
            code=cause.code, status_code=cause.status_code,
        )  # fmt: skip

    # -- helpers ---------------------------------------------------------------------------

    def _url(self, path: str) -> httpx.URL:
        return self.base_url.copy_with(path=path)

    def _meter(self) -> _SpeedMeter | None:
        """The floor for one body, or None when the caller turned it off."""
        return _SpeedMeter(self.speed_limit, self.speed_time) if self.speed_limit else None

    def _too_slow(self, target: _Target, what: str, moved: str) -> RegistryTooSlowError:
        return self._error(
            RegistryTooSlowError, target,
            f"{what} slower than {self.speed_limit} bytes/s for "
            f"{self.speed_time:g} s ({moved}); abandoned",
        )  # fmt: skip

    def _metered(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """An upload body in pieces, its progress held to the floor: httpx asks for the next
        piece once it has handed the previous one to the network."""
        meter = self._meter()
        sent = 0
        for chunk in chunks:
            for start in range(0, len(chunk), _UPLOAD_PIECE):
                piece = chunk[start : start + _UPLOAD_PIECE]
                yield piece
                sent += len(piece)
                if meter is not None:
                    try:
                        meter.advance(len(piece))
                    except _TooSlow:
                        raise _TooSlow(f"{sent} bytes sent") from None

    def _is_registry(self, url: httpx.URL) -> bool:
        return _origin(url) == _origin(self.base_url)

    def _reference(self, repository: str, reference: str | Digest) -> tuple[str, Digest | None]:
        """Validate a repository name and a tag or digest before they go into a URL."""
        Reference(self.host, repository)
        if isinstance(reference, Digest):
            return str(reference), reference
        if ":" in reference:
            digest = Digest.parse(reference)
            return str(digest), digest
        if not is_tag(reference):
            raise InvalidReferenceError(f"invalid tag {reference[:100]!r}")
        return reference, None

    def _location(
        self, response: httpx.Response, target: _Target, default: httpx.URL | None = None
    ) -> httpx.URL:
        """Where an upload goes on: ``Location``, relative to the request or absolute."""
        value = response.headers.get("location")
        if value is None:
            if default is not None:
                return default
            raise self._error(RegistryProtocolError, target, "upload answer without a Location")
        try:
            url = response.url.join(value.strip())
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise self._error(
                RegistryProtocolError, target, f"invalid upload Location {_clean(value, 100)!r}"
            )
        return url

    def _announced_digest(self, response: httpx.Response, target: _Target) -> Digest | None:
        value = response.headers.get("docker-content-digest")
        if value is None:
            return None
        try:
            return Digest.parse(value.strip())
        except CargoholdError:
            raise self._error(
                RegistryProtocolError, target,
                f"invalid Docker-Content-Digest {_clean(value, 100)!r}",
            ) from None  # fmt: skip

    def _content_length(self, response: httpx.Response, target: _Target) -> int | None:
        values = response.headers.get_list("content-length")
        if not values:
            return None
        if len(set(values)) != 1 or not _DIGITS.fullmatch(values[0].strip()):
            raise self._error(RegistryProtocolError, target, "invalid Content-Length")
        return int(values[0])

    def _check_encoding(self, response: httpx.Response, target: _Target, what: str) -> None:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise self._error(
                RegistryProtocolError, target,
                f"{what} sent with Content-Encoding {_clean(encoding, 40)!r}, not as stored",
            )  # fmt: skip

    def _read_body(self, response: httpx.Response, target: _Target, what: str, limit: int) -> bytes:
        """A body of at most *limit* bytes; refuses a larger one after reading just past it."""
        self._check_encoding(response, target, what)
        length = self._content_length(response, target)
        if length is not None and length > limit:
            raise self._error(
                RegistryContentError, target, f"{what} of {length} bytes exceeds {limit}"
            )
        data = bytearray()
        meter = self._meter()
        try:
            for chunk in response.iter_raw():
                data += chunk
                if len(data) > limit:
                    raise self._error(
                        RegistryContentError, target, f"{what} is larger than {limit} bytes"
                    )
                if meter is not None:
                    meter.advance(len(chunk))
        except _TooSlow:
            raise self._too_slow(target, what, f"{len(data)} bytes received") from None
        except httpx.TransportError as exc:
            if meter is not None and isinstance(exc, httpx.TimeoutException) and meter.expired():
                raise self._too_slow(target, what, f"{len(data)} bytes received") from None
            raise _Dropped(len(data), _transport_reason(exc)) from exc
        return bytes(data)

    def _expect(self, response: httpx.Response, target: _Target, what: str, *statuses: int) -> None:
        if response.status_code not in statuses:
            raise self._error(
                RegistryProtocolError, target,
                f"unexpected HTTP {response.status_code} for a {what}",
                status_code=response.status_code,
            )  # fmt: skip

    def _status_error(self, response: httpx.Response, target: _Target, what: str) -> RegistryError:
        """The error an error response means, from its status and (the first few KiB of) its
        OCI error document; the response is closed."""
        status = response.status_code
        code, detail = _read_error_document(response, self._meter())
        cls: type[RegistryError]
        if status == 401:
            cls, summary = AuthenticationError, f"{what}: authentication required"
            if self._get_credentials() is not None:
                cls, summary = AuthenticationError, f"{what}: authentication failed"
        elif status == 403:
            cls, summary = AccessDeniedError, f"{what}: access denied"
        elif status == 404:
            cls, summary = RegistryNotFoundError, f"{what} not found"
        elif status == 429:
            cls, summary = RegistryServerError, f"{what}: too many requests"
        elif status >= 500:
            cls, summary = RegistryServerError, f"{what}: registry failed"
        else:
            cls, summary = RegistryError, f"{what} refused"
        if code in ("DIGEST_INVALID", "SIZE_INVALID"):
            cls = RegistryContentError
        if status == 401 and self._get_credentials() is None and self._withheld_from is None:
            summary += f" (no credentials for {self.host})"
        text = summary
        if code is not None:
            text += f": {code}"
        if detail:
            text += f": {detail}"
        text += f" (HTTP {status})"
        kwargs: dict[str, Any] = {"code": code, "status_code": status}
        if cls is RegistryServerError:
            kwargs["retry_after"] = _retry_after(response)
        error = self._error(cls, target, text, **kwargs)
        if (
            status in (401, 403)
            and self._withheld_from is not None
            and self._is_registry(response.url)
        ):
            return self._foreign_realm_error(target, error)
        return error

    def _error(self, cls: type[_E], target: _Target, text: str, **kwargs: Any) -> _E:
        """An error of *cls* for *target*, its message scrubbed of anything secret a hostile
        registry may have echoed back."""
        message = _AUTHORIZATION_VALUE.sub(r"\1 ***", f"{target}: {text}")
        secrets: list[str] = []
        credentials = self._credentials
        if credentials is not None:
            secrets += [
                credentials.password,
                credentials.basic_authorization().removeprefix("Basic "),
            ]
        with self._token_lock:
            secrets += [t.value for tokens in self._tokens.values() for t in tokens]
        for secret in secrets:
            if len(secret) >= 4:
                message = message.replace(secret, "***")
        kwargs.setdefault("registry", target.registry)
        kwargs.setdefault("repository", target.repository)
        kwargs.setdefault("reference", target.reference)
        return cls(message, **kwargs)


def _error_suffix(error: RegistryError) -> str:
    parts = [p for p in (error.code,) if p]
    status = f"HTTP {error.status_code}" if error.status_code is not None else None
    inner = ", ".join([*parts, *([status] if status else [])])
    return f" ({inner})" if inner else ""


def _read_error_document(
    response: httpx.Response, meter: _SpeedMeter | None
) -> tuple[str | None, str | None]:
    """The code and message of an OCI error body, from its first few KiB only; a hostile
    registry may send an endless body, which is never read to its end, or trickle one, which
    is read only while it keeps to the floor of *meter*."""
    data = bytearray()
    try:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            for chunk in response.iter_raw():
                data += chunk
                if len(data) >= _ERROR_BODY_LIMIT:
                    break
                if meter is not None:
                    meter.advance(len(chunk))
    except (httpx.HTTPError, _TooSlow):
        pass
    finally:
        response.close()
    try:
        doc = json.loads(bytes(data[:_ERROR_BODY_LIMIT]))
    except ValueError:
        # Plain text may say what went wrong; truncated JSON or an HTML page would only clutter.
        text = bytes(data[:200]).decode("utf-8", "replace").strip()
        plain = _clean(text, 120) if text and not text.startswith(("{", "[", "<")) else None
        return None, plain
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, None
    first = errors[0]
    code = first.get("code")
    message = first.get("message")
    code_text = _clean(code, 60) if isinstance(code, str) and code else None
    detail = _clean(message) if isinstance(message, str) and message else None
    if len(errors) > 1 and detail:
        detail += f" (and {len(errors) - 1} more)"
    return code_text, detail


def _own_media_type(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    value = doc.get("mediaType") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and _MEDIA_TYPE.fullmatch(value) else None


def _read_exactly(reader: IO[bytes], n: int) -> bytes:
    parts: list[bytes] = []
    remaining = n
    while remaining:
        chunk = reader.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _check_local_end(
    reader: IO[bytes],
    hasher: hashlib._Hash,
    digest: Digest,
    size: int,
    offset: int,
    target: _Target,
) -> None:
    """The local blob must end at *size* bytes with *digest*; checked before its last bytes are
    sent, so that a registry never commits the wrong content."""
    if offset < size:
        raise ContentError(f"{target}: the local blob has {offset} bytes, not {size}")
    if reader.read(1):
        raise ContentError(f"{target}: the local blob has more than {size} bytes")
    if hasher.hexdigest() != digest.hex:
        raise ContentError(
            f"{target}: the local blob's content does not match its digest "
            f"({digest.algorithm}:{hasher.hexdigest()})"
        )
