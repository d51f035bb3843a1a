"""Sending requests to one registry: TLS, redirects checked per origin, retries of transient
failures, bounded reads, and the error each failed answer means.

:class:`Session` knows nothing of authentication beyond the ``Authorization`` value it is
handed: it sends that value to the registry's origin (scheme, host and port) only, and drops it
as soon as a redirect leaves that origin. It keeps no cookies, which are scoped by host and not
by port, and reaches a registry on this machine directly, never through a proxy.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Final, TypeAlias
from urllib.request import getproxies

import httpx

from ..errors import (
    AccessDeniedError,
    AuthenticationError,
    BelowSpeedFloor,
    RegistryConnectionError,
    RegistryContentError,
    RegistryError,
    RegistryNotFoundError,
    RegistryProtocolError,
    RegistryServerError,
    RegistryTooSlowError,
    TransferDropped,
)
from ..version import __version__
from .credentials import Identity
from .lazytls import LazyTLSTransport
from .messages import Reporter, Target, clean, show_url
from .responses import check_encoding, content_length, read_error_document, retry_after
from .speed import SpeedMeter, metered

__all__ = [
    "LOGGER_NAME",
    "Attempts",
    "Body",
    "Origin",
    "RetryPolicy",
    "Session",
    "answers_plain_http_only",
    "is_loopback",
    "origin",
    "ssl_context",
    "transport_reason",
]

#: The one logger of the registry client, whichever of its modules writes.
LOGGER_NAME: Final = "cargohold.registry.client"
logger = logging.getLogger(LOGGER_NAME)

_MAX_REDIRECTS: Final = 10
#: Statuses that say "try again later" rather than "no".
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})

#: An origin as browsers and docker scope credentials: scheme, lower-case host, port (the
#: scheme's default when the URL names none).
Origin: TypeAlias = tuple[str, str, int | None]
#: A request body: bytes, or a factory of an iterator of bytes, called again when the request
#: must be sent again (after an authentication challenge).
Body: TypeAlias = bytes | Callable[[], Iterator[bytes]]


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


class Attempts:
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


def origin(url: httpx.URL) -> Origin:
    """The origin credentials are scoped to: scheme, lower-case host, port."""
    port = url.port if url.port is not None else {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), port


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """The system's trust store plus certifi's (either may be empty on some systems), plus the
    CA given for a private registry: a registry with a private CA may still redirect blob
    downloads to storage with a public certificate."""
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi_bundle())
    if isinstance(verify, str):
        try:
            if os.path.isdir(verify):  # podman's --cert-dir, skopeo sync's cert-dir
                for name in sorted(os.listdir(verify)):
                    if name.endswith(".crt"):
                        context.load_verify_locations(cafile=os.path.join(verify, name))
            else:
                context.load_verify_locations(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or clean(str(exc))
            raise RegistryError(f"cannot load CA certificate {verify}: {reason}") from None
    return context


class _EmptyBody(httpx.SyncByteStream):
    """The stream of a response without a body, read to its end when closed unread.

    Reading the (empty) body ends the exchange, so that closing the response gives the
    connection back to the pool; closed unread, it would be dropped, and every HEAD, upload
    step and manifest PUT would open a new connection (over TLS, a new handshake).
    """

    def __init__(self, stream: httpx.SyncByteStream) -> None:
        self._stream = stream
        self._ended = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream
        self._ended = True

    def close(self) -> None:
        try:
            if not self._ended:
                for _ in self._stream:  # nothing to read: only the end of the message
                    pass
        except httpx.HTTPError:
            pass  # then the connection is dropped, as it would have been
        finally:
            self._stream.close()


def _has_no_body(response: httpx.Response) -> bool:
    """Whether HTTP says *response* has an empty body: the answer to a HEAD, a 204 or 304, or
    ``Content-Length: 0``."""
    return (
        response.request.method == "HEAD"
        or response.status_code in (204, 304)
        or response.headers.get("content-length", "").strip() == "0"
    )


def _tls_can_wait(base_url: httpx.URL, verify: bool | str, trust_env: bool) -> bool:
    """Whether the trust store may load on the first TLS request rather than now: for a
    registry over plain HTTP, unless a CA file was given (a bad one is refused at once, as
    ever) or the environment names proxies (their transports take the context now)."""
    if base_url.scheme != "http" or isinstance(verify, str):
        return False
    return not (trust_env and getproxies())


def certifi_bundle() -> str:
    """certifi's CA file. Its path is found without importing certifi when the package is a
    plain directory, as pip installs it: certifi's import loads ``importlib.resources``, a
    tenth of the start-up of a registry command, to find a file that is right there."""
    spec = importlib.util.find_spec("certifi")
    for directory in (spec.submodule_search_locations or []) if spec is not None else []:
        path = os.path.join(directory, "cacert.pem")
        if os.path.isfile(path):
            return path
    import certifi  # a zipped or otherwise unusual install: let certifi say where

    return certifi.where()


def answers_plain_http_only(host: str, timeout: float = 10.0) -> bool:
    """Whether the registry at *host* (``host[:port]``) answers ``/v2/`` over plain HTTP but
    not over TLS: podman's and skopeo's fallback when TLS verification is off. Asked once,
    before the registry's client is made; nothing but the probe is sent."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    direct = is_loopback(name.strip("[]"))
    with httpx.Client(verify=ssl_context(False), timeout=timeout, trust_env=not direct) as client:
        try:
            client.get(f"https://{host}/v2/").close()
            return False
        except httpx.TransportError:
            pass
        try:
            client.get(f"http://{host}/v2/").close()
        except httpx.TransportError:
            return False
    return True


def _is_transient(exc: httpx.TransportError) -> bool:
    """Whether trying again may help: not for a refused certificate, a malformed URL or a host
    name the resolver says does not exist (a temporary resolver failure is tried again)."""
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.ProxyError):
        return False
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return False
        if isinstance(cause, socket.gaierror) and cause.errno == socket.EAI_NONAME:
            return False
        cause = cause.__cause__ or cause.__context__
    return True


def transport_reason(exc: httpx.TransportError) -> str:
    """Why the network failed, in one line (a refused certificate and an unknown host said
    plainly: ``[Errno -2] Name or service not known`` does not say which name)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed ({clean(cause.verify_message or '')})"
        if isinstance(cause, socket.gaierror):
            reason = clean(cause.strerror or str(cause))
            return f"cannot resolve registry host {_host_of(exc)} ({reason})"
        cause = cause.__cause__ or cause.__context__
    return clean(str(exc)) or type(exc).__name__


def _host_of(exc: httpx.TransportError) -> str:
    """The host the failed request was for (``unknown`` when httpx did not record it)."""
    try:
        host = exc.request.url.host
    except RuntimeError:  # an error raised outside a request has none
        return "unknown"
    return clean(host) or "unknown"


class Session:
    """The HTTP connection pool of one registry and the rules every request follows.

    *timeout* bounds each wait for the network (connecting, one read, one write);
    *speed_limit* and *speed_time* put a floor under the progress of every body (*speed_limit*
    0 turns it off). Thread-safe, as :class:`httpx.Client` is.
    """

    def __init__(
        self,
        base_url: httpx.URL,
        identity: Identity,
        reporter: Reporter,
        *,
        verify: bool | str,
        retry: RetryPolicy,
        timeout: float | httpx.Timeout,
        trust_env: bool,
        transport: httpx.BaseTransport | None,
        speed_limit: int,
        speed_time: float,
    ) -> None:
        self.base_url = base_url
        self.retry = retry
        self.reporter = reporter
        self.speed_limit = speed_limit
        self.speed_time = speed_time
        self._identity = identity
        self._write_timeout = httpx.Timeout(timeout).write
        # As Go's ProxyFromEnvironment (docker's): a registry on this machine is reached
        # directly, never through a proxy from the environment, which would get its credentials
        # (in clear text, over plain HTTP).
        direct: dict[str, httpx.BaseTransport | None] = {}
        if is_loopback(base_url.host):
            direct[f"all://{base_url.netloc.decode('ascii')}"] = None
        if transport is None and _tls_can_wait(base_url, verify, trust_env):
            transport = LazyTLSTransport(lambda: ssl_context(verify), trust_env=trust_env)
            context: ssl.SSLContext | None = None  # the client's own transport is not made
        else:
            context = ssl_context(verify)
        self._client = httpx.Client(
            mounts=direct,
            # No cookies: a cookie is scoped by host, not port, so one the registry set would
            # follow to a token service or storage host on another port. Docker keeps none
            # either, so no registry can depend on them.
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            verify=context if context is not None else False,
            timeout=timeout,
            follow_redirects=False,
            trust_env=trust_env,
            transport=transport,
            # Bodies are hashed as sent, and read up to a limit: no transparent decompression.
            headers={"User-Agent": f"cargohold/{__version__}", "Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def url(self, path: str) -> httpx.URL:
        """The URL of *path* on the registry."""
        return self.base_url.copy_with(path=path)

    def is_registry(self, url: httpx.URL) -> bool:
        """Whether *url* is at the registry's origin, where its credentials may go."""
        return origin(url) == origin(self.base_url)

    def meter(self) -> SpeedMeter | None:
        """The floor for one body, or None when the caller turned it off."""
        return SpeedMeter(self.speed_limit, self.speed_time) if self.speed_limit else None

    def metered(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """An upload body held to the floor (see :func:`speed.metered`)."""
        return metered(chunks, self.speed_limit, self.speed_time)

    def too_slow(self, target: Target, what: str, moved: str) -> RegistryTooSlowError:
        """The error of a body that fell below the floor after *moved*."""
        return self.reporter.error(
            RegistryTooSlowError, target,
            f"{what} slower than {self.speed_limit} bytes/s for "
            f"{self.speed_time:g} s ({moved}); abandoned",
        )  # fmt: skip

    def exchange(
        self,
        method: str,
        url: httpx.URL,
        target: Target,
        what: str,
        headers: Mapping[str, str] | None,
        body: Body | None,
        authorization: str | None,
        follow_redirects: bool,
        attempts: Attempts | None,
    ) -> httpx.Response:
        """One request with its redirects, retried on transient failures while *attempts* allow."""
        while True:
            request_headers = dict(headers or {})
            if authorization is not None and self.is_registry(url):
                request_headers["Authorization"] = authorization
            content = body if body is None or isinstance(body, bytes) else body()
            request = self._client.build_request(
                method, url, headers=request_headers, content=content
            )
            try:
                response = self._send(request, follow_redirects, target)
            except BelowSpeedFloor as slow:
                raise self.too_slow(target, what, str(slow)) from None
            except httpx.TransportError as exc:
                if self._stalled_upload(exc):
                    raise self.too_slow(target, what, "the registry took nothing") from None
                if attempts is not None and _is_transient(exc) and attempts.retry():
                    logger.debug("%s %s: %s; retrying", method, show_url(url), exc)
                    continue
                raise self.reporter.error(
                    RegistryConnectionError, target, f"{what}: {transport_reason(exc)}"
                ) from exc
            if attempts is not None and response.status_code in _RETRY_STATUSES:
                error = self.status_error(response, target, what)
                delay = error.retry_after if isinstance(error, RegistryServerError) else None
                if attempts.retry(delay):
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
        self, request: httpx.Request, follow_redirects: bool, target: Target
    ) -> httpx.Response:
        """Send *request*, following redirects by hand when asked.

        httpx builds each next request; ``Authorization`` is dropped here as soon as a hop
        leaves the registry's origin (httpx would keep it on an http→https move to another
        port). Following by hand closes each redirect response unread, where httpx would read
        its body whole, however large.
        """
        response = self._client.send(request, stream=True)
        logger.debug("%s %s -> %d", request.method, show_url(request.url), response.status_code)
        hops = 0
        while follow_redirects and response.next_request is not None:
            request = response.next_request
            response.close()
            if not self.is_registry(request.url):
                request.headers.pop("Authorization", None)
            hops += 1
            if hops > _MAX_REDIRECTS:
                raise self.reporter.error(RegistryProtocolError, target, "too many redirects")
            response = self._client.send(request, stream=True)
            logger.debug("  -> %s %s -> %d", request.method, show_url(request.url),
                         response.status_code)  # fmt: skip
        if _has_no_body(response) and isinstance(response.stream, httpx.SyncByteStream):
            response.stream = _EmptyBody(response.stream)
        return response

    def read_body(self, response: httpx.Response, target: Target, what: str, limit: int) -> bytes:
        """A body of at most *limit* bytes; refuses a larger one after reading just past it.

        Raises :class:`TransferDropped` when the connection breaks, for the caller to retry.
        """
        check_encoding(self.reporter, response, target, what)
        length = content_length(self.reporter, response, target)
        if length is not None and length > limit:
            raise self.reporter.error(
                RegistryContentError, target, f"{what} of {length} bytes exceeds {limit}"
            )
        data = bytearray()
        meter = self.meter()
        try:
            for chunk in response.iter_raw():
                data += chunk
                if len(data) > limit:
                    raise self.reporter.error(
                        RegistryContentError, target, f"{what} is larger than {limit} bytes"
                    )
                if meter is not None:
                    meter.advance(len(chunk))
        except BelowSpeedFloor:
            raise self.too_slow(target, what, f"{len(data)} bytes received") from None
        except httpx.TransportError as exc:
            if meter is not None and isinstance(exc, httpx.TimeoutException) and meter.expired():
                raise self.too_slow(target, what, f"{len(data)} bytes received") from None
            raise TransferDropped(len(data), transport_reason(exc)) from exc
        return bytes(data)

    def status_error(self, response: httpx.Response, target: Target, what: str) -> RegistryError:
        """The error an error response means, from its status and (the first few KiB of) its
        OCI error document; the response is closed."""
        status = response.status_code
        code, detail = read_error_document(response, self.meter())
        cls, summary = self._classify(status, what)
        if code in ("DIGEST_INVALID", "SIZE_INVALID"):
            cls = RegistryContentError
        withheld_from = self._identity.withheld_from
        if status == 401 and self._identity.credentials() is None and withheld_from is None:
            summary += f" (no credentials for {self.reporter.host})"
        text = summary
        if code is not None:
            text += f": {code}"
        if detail:
            text += f": {detail}"
        text += f" (HTTP {status})"
        kwargs: dict[str, Any] = {"code": code, "status_code": status}
        if cls is RegistryServerError:
            kwargs["retry_after"] = retry_after(response)
        error = self.reporter.error(cls, target, text, **kwargs)
        if status in (401, 403) and withheld_from is not None and self.is_registry(response.url):
            return self.reporter.foreign_realm(target, error, withheld_from)
        return error

    def _classify(self, status: int, what: str) -> tuple[type[RegistryError], str]:
        """The error class and summary an HTTP error status means."""
        if status == 401:
            if self._identity.credentials() is not None:
                return AuthenticationError, f"{what}: authentication failed"
            return AuthenticationError, f"{what}: authentication required"
        if status == 403:
            return AccessDeniedError, f"{what}: access denied"
        if status == 404:
            return RegistryNotFoundError, f"{what} not found"
        if status == 429:
            return RegistryServerError, f"{what}: too many requests"
        if status >= 500:
            return RegistryServerError, f"{what}: registry failed"
        return RegistryError, f"{what} refused"
