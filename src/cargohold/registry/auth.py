"""Authentication to a registry: its ``WWW-Authenticate`` challenges answered with basic
credentials or a bearer token, tokens cached by scope, and credentials kept to their origin.

Credentials go only to the registry's origin (scheme, host and port) and its own token
service, never to a token realm at another origin (another host, another port of the same host,
or plain HTTP) unless the caller allowed it. This is a helper the client calls around each
request, not an :class:`httpx.Auth` flow: the client's own loop retries, follows redirects by
hand and answers a challenge only when it comes from the registry's origin, which an httpx flow
would interleave differently.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Container, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

import httpx

from ..errors import AuthenticationError, RegistryConnectionError, RegistryError, TransferDropped
from ..oci.references import DEFAULT_DOMAIN
from .credentials import Identity
from .http import Attempts, Body, Origin, Session, origin
from .messages import Target, clean, error_suffix

__all__ = [
    "Authenticator",
    "Challenge",
    "Realm",
    "TokenCache",
    "parse_challenges",
    "pull_scopes",
    "push_scopes",
]

#: Token services at another origin that are part of a registry, so its credentials may go
#: there.
_TRUSTED_REALM_ORIGINS: Final[Mapping[str, frozenset[Origin]]] = {
    DEFAULT_DOMAIN: frozenset({("https", "auth.docker.io", 443)}),
}
#: Most of a token response read (JWTs with many claims run to a few KiB).
_TOKEN_BODY_LIMIT: Final = 1 << 20
#: A token without ``expires_in`` lives this long (distribution spec); shorter lives are raised
#: to it.
_TOKEN_MIN_LIFETIME: Final = 60.0
#: A cached token is renewed this long before it expires, so that it does not expire in flight.
_TOKEN_MARGIN: Final = 5.0

_TOKEN_VALUE: Final = re.compile(r"[\x21-\x7e]{1,65536}")
_CHALLENGE_SCHEME: Final = re.compile(r"[\s,]*([A-Za-z][A-Za-z0-9._-]*)(?=\s|,|$)")
_CHALLENGE_PARAM: Final = re.compile(
    r"[\s,]*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^\s,\"]*)"
)


@dataclass(slots=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: its scheme and parameters."""

    scheme: str
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class Realm:
    """The bearer token service a registry named in its challenge."""

    realm: str
    service: str | None


@dataclass(frozen=True, slots=True)
class _Token:
    """A token, the scopes it was granted for, and when (monotonic) to stop using it."""

    value: str
    scopes: frozenset[str]
    expires: float


def pull_scopes(repository: str) -> frozenset[str]:
    """The token scopes that read *repository*."""
    return frozenset({f"repository:{repository}:pull"})


def push_scopes(repository: str) -> frozenset[str]:
    """The token scopes that write *repository* (a push reads too)."""
    return frozenset({f"repository:{repository}:pull", f"repository:{repository}:push"})


def _render_scopes(items: Iterable[str]) -> list[str]:
    """``repository:a:pull`` + ``repository:a:push`` → ``repository:a:pull,push``."""
    grouped: dict[str, list[str]] = {}
    for item in sorted(items):
        resource, _, action = item.rpartition(":")
        grouped.setdefault(resource, []).append(action)
    return [f"{resource}:{','.join(actions)}" for resource, actions in grouped.items()]


def parse_challenges(values: Sequence[str]) -> list[Challenge]:
    """The challenges of ``WWW-Authenticate`` headers (RFC 7235: several per header allowed)."""
    challenges: list[Challenge] = []
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
            current = Challenge(scheme[1].lower(), {})
            challenges.append(current)
            pos = scheme.end()
    return challenges


def _oauth_request(
    url: httpx.URL, realm: Realm, scopes: frozenset[str], identity_token: str
) -> tuple[httpx.URL, bytes]:
    """The token service's URL (without query) and the form body of docker's OAuth2 refresh
    token grant, which trades an identity token for an access token."""
    form: list[tuple[str, str]] = [
        ("grant_type", "refresh_token"),
        ("refresh_token", identity_token),
        ("client_id", "cargohold"),
    ]
    if realm.service:
        form.append(("service", realm.service))
    rendered = _render_scopes(scopes)
    if rendered:
        form.append(("scope", " ".join(rendered)))
    return url.copy_with(query=None), urlencode(form).encode()


def _parse_token(raw: bytes) -> tuple[str | None, float]:
    """The token of a token service's answer (None when it has no valid one) and its life."""
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    value = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(value, str) or not _TOKEN_VALUE.fullmatch(value):
        return None, 0.0
    expires_in = doc.get("expires_in") if isinstance(doc, dict) else None
    lifetime = _TOKEN_MIN_LIFETIME
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        lifetime = max(float(expires_in), _TOKEN_MIN_LIFETIME)
    return value, lifetime


class TokenCache:
    """The bearer tokens of one client, by realm, each with the scopes it grants.

    The lock is reentrant: an error raised while fetching a token (under the lock) scrubs the
    cached tokens from its message, under the same lock.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._tokens: dict[Realm, list[_Token]] = {}

    def values(self) -> list[str]:
        """Every cached token, to hide them from messages."""
        with self.lock:
            return [t.value for tokens in self._tokens.values() for t in tokens]

    def find(
        self, realm: Realm, scopes: frozenset[str], now: float, stale: str | None
    ) -> str | None:
        """A token of *realm* for *scopes* live at *now* and other than *stale*; the dead ones
        are dropped when one is found (else they stay, to be hidden from the fetch's errors).
        The caller holds the lock."""
        tokens = self._live(realm, now, stale)
        for token in tokens:
            if scopes <= token.scopes:
                self._tokens[realm] = tokens
                return token.value
        return None

    def add(self, realm: Realm, token: _Token, now: float, stale: str | None) -> None:
        """Keep a fetched *token*, dropping the tokens of *realm* dead at *now* (or *stale*).
        The caller holds the lock."""
        self._tokens[realm] = [*self._live(realm, now, stale), token]

    def _live(self, realm: Realm, now: float, stale: str | None) -> list[_Token]:
        return [t for t in self._tokens.get(realm, []) if t.expires > now and t.value != stale]


class Authenticator:
    """Sends a registry's requests authenticated, answering its challenges; shared by the
    threads of a pull or a push.

    Once a challenge has said how the registry authenticates, later requests carry credentials
    or a token from the start instead of collecting a 401 each.
    """

    def __init__(
        self,
        session: Session,
        identity: Identity,
        tokens: TokenCache,
        *,
        host: str,
        plain_http: bool,
        allow_foreign_realm: bool,
    ) -> None:
        self._session = session
        self._identity = identity
        self._tokens = tokens
        self._host = host
        self._plain_http = plain_http
        self._allow_foreign_realm = allow_foreign_realm
        self._scheme: Realm | str | None = None

    def open(
        self,
        method: str,
        url: httpx.URL,
        target: Target,
        what: str,
        scopes: frozenset[str],
        *,
        headers: Mapping[str, str] | None = None,
        body: Body | None = None,
        follow_redirects: bool = False,
        attempts: Attempts | None = None,
        allow: Container[int] = (),
    ) -> httpx.Response:
        """Send a registry request, authenticated; returns the open (streaming) response.

        A 401 from the registry is answered once (basic credentials, or a bearer token for
        *scopes*); then any status of 400 or more not in *allow* raises the matching error.
        With *attempts*, transient failures are retried (only idempotent requests pass them).
        """
        session = self._session
        authorization = self._authorization(scopes, target)
        response = session.exchange(
            method, url, target, what, headers, body, authorization, follow_redirects, attempts
        )
        if response.status_code == 401 and session.is_registry(response.url):
            challenges = parse_challenges(response.headers.get_list("www-authenticate"))
            refused = session.status_error(response, target, what)
            authorization = self._answer(challenges, scopes, authorization, target, refused)
            response = session.exchange(
                method, url, target, what, headers, body, authorization, follow_redirects,
                attempts,
            )  # fmt: skip
        if response.status_code >= 400 and response.status_code not in allow:
            raise session.status_error(response, target, what)
        return response

    def _authorization(self, scopes: frozenset[str], target: Target) -> str | None:
        """The Authorization a request carries from the start, once the scheme is known."""
        scheme = self._scheme
        if scheme == "basic":
            credentials = self._identity.credentials()
            return credentials.basic_authorization() if credentials is not None else None
        if isinstance(scheme, Realm):
            return "Bearer " + self._token(scheme, scopes, target, stale=None)
        return None

    def _answer(
        self,
        challenges: list[Challenge],
        scopes: frozenset[str],
        sent: str | None,
        target: Target,
        refused: RegistryError,
    ) -> str:
        """The Authorization that answers a 401's challenges, or the error when none can."""
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None and bearer.params.get("realm"):
            realm = Realm(bearer.params["realm"], bearer.params.get("service"))
            self._scheme = realm
            stale = sent.removeprefix("Bearer ") if sent and sent.startswith("Bearer ") else None
            return "Bearer " + self._token(realm, scopes, target, stale=stale)
        if any(c.scheme == "basic" for c in challenges):
            credentials = self._identity.credentials()
            if (
                credentials is None
                or (credentials.identity_token and not credentials.password)
                or sent == credentials.basic_authorization()
            ):
                raise refused
            self._scheme = "basic"
            return credentials.basic_authorization()
        raise refused

    def _token(
        self, realm: Realm, scopes: frozenset[str], target: Target, stale: str | None
    ) -> str:
        """A bearer token for *scopes*: cached, or fetched (*stale* is one the registry refused).

        One lock covers the cache and the fetch, so the threads of a pull that all meet the
        same challenge fetch one token, not one each.
        """
        with self._tokens.lock:
            now = time.monotonic()
            cached = self._tokens.find(realm, scopes, now, stale)
            if cached is not None:
                return cached
            value, lifetime = self._fetch_token(realm, scopes, target)
            token = _Token(value, scopes, now + lifetime - _TOKEN_MARGIN)
            self._tokens.add(realm, token, now, stale)
            return value

    def _withhold_credentials_from(self, realm: httpx.URL) -> str | None:
        """Why the credentials must not go to a token service at *realm*, or None when they may.

        Credentials belong to the registry's origin (scheme, host and port): another port of
        the same host is another server, and https→http on the same host:port would send
        them in clear text. They go elsewhere only to a token service known to be part of the
        registry, or with the caller's consent (``allow_foreign_realm``), and never in clear
        text unless the registry itself is reached in clear text.
        """
        base_url = self._session.base_url
        realm_origin = origin(realm)
        if realm_origin == origin(base_url):
            return None
        where = realm.netloc.decode("ascii", "replace")
        if realm.scheme != "https" and not self._plain_http:
            return f"{where} is reached without TLS"
        if self._allow_foreign_realm or realm_origin in _TRUSTED_REALM_ORIGINS.get(self._host, ()):
            return None
        if realm.host.lower() != base_url.host.lower():
            return f"{where} is on another host than the registry"
        return f"{where} is on another origin (scheme or port) than the registry"

    def _token_url(self, realm: Realm, scopes: frozenset[str], target: Target) -> httpx.URL:
        """The token service's URL asking for *scopes*; a realm that is no http(s) URL is
        refused."""
        try:
            url = httpx.URL(realm.realm)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise self._session.reporter.error(
                AuthenticationError, target, f"invalid token realm {clean(realm.realm, 100)!r}"
            )
        params: list[tuple[str, str | int | float | bool | None]] = []
        if realm.service:
            params.append(("service", realm.service))
        params += [("scope", scope) for scope in _render_scopes(scopes)]
        return url.copy_merge_params(params)

    def _fetch_token(
        self, realm: Realm, scopes: frozenset[str], target: Target
    ) -> tuple[str, float]:
        """Ask the token service for a token, with the credentials where they may go."""
        session, reporter = self._session, self._session.reporter
        url = self._token_url(realm, scopes, target)
        credentials = self._identity.credentials()
        headers = {"Accept": "application/json"}
        withheld = False
        if credentials is not None:
            reason = self._withhold_credentials_from(url)
            if reason is None:
                headers["Authorization"] = credentials.basic_authorization()
            else:
                withheld = True
                self._identity.withheld_from = reason
        what = f"token from {url.host}"
        method, body = "GET", None
        if credentials is not None and credentials.identity_token and not withheld:
            # docker's OAuth2 exchange: the identity token is a refresh token, POSTed
            url, body = _oauth_request(url, realm, scopes, credentials.identity_token)
            method = "POST"
            headers = {"Accept": "application/json",
                       "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
        response = session.exchange(
            method, url, target, what, headers, body, None, False, Attempts(session.retry)
        )
        with closing(response):
            if response.status_code in (401, 403):
                error = session.status_error(response, target, what)
                if withheld:
                    raise reporter.foreign_realm(target, error, self._identity.withheld_from)
                who = f"user {credentials.username!r}" if credentials else "anonymous access"
                raise reporter.error(
                    AuthenticationError, target,
                    f"token service {url.host} refused {who}{error_suffix(error)}",
                    code=error.code, status_code=response.status_code,
                )  # fmt: skip
            if response.status_code != 200:
                raise session.status_error(response, target, what)
            try:
                raw = session.read_body(response, target, "token", _TOKEN_BODY_LIMIT)
            except TransferDropped as dropped:
                raise reporter.error(
                    RegistryConnectionError, target, f"{what}: {dropped.reason}"
                ) from None
        value, lifetime = _parse_token(raw)
        if value is None:
            raise reporter.error(
                AuthenticationError, target, f"{what}: no valid token in the answer"
            )
        return value, lifetime
