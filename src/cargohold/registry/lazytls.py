"""The connection pools of a registry reached over plain HTTP: TLS is set up only if a request
goes over it (a token service or a blob redirect at an ``https://`` URL).

Loading the trust store (the system's and certifi's, ~35 ms) is most of what a plain-HTTP
registry command spends before its first request, and most such commands never make a TLS
connection. Requests are told apart by scheme: ``http://`` ones share one pool, ``https://``
ones another, made with the verifying context on first use.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable

import httpx

__all__ = ["LazyTLSTransport"]


class LazyTLSTransport(httpx.BaseTransport):
    """httpx's own transport per scheme, the ``https`` one made on first use (thread-safe)."""

    def __init__(self, make_context: Callable[[], ssl.SSLContext], *, trust_env: bool) -> None:
        self._make_context = make_context
        self._trust_env = trust_env
        # Never used for TLS (only http:// requests reach it): an unverifying context costs
        # nothing to make, where the default would load the trust store.
        plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        plain.check_hostname = False
        plain.verify_mode = ssl.CERT_NONE
        self._plain = httpx.HTTPTransport(verify=plain, trust_env=trust_env)
        self._tls: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            return self._plain.handle_request(request)
        return self._secure().handle_request(request)

    def _secure(self) -> httpx.HTTPTransport:
        with self._lock:
            if self._tls is None:
                self._tls = httpx.HTTPTransport(
                    verify=self._make_context(), trust_env=self._trust_env
                )
            return self._tls

    def close(self) -> None:
        with self._lock:
            self._plain.close()
            if self._tls is not None:
                self._tls.close()
