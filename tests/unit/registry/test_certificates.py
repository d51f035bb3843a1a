"""How the registry client sets TLS up: certifi's CA file, and, for a registry over plain
HTTP, a trust store loaded only when a request goes over TLS (and then verified as ever)."""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import certifi
import httpx
import pytest

from cargohold.errors import RegistryConnectionError
from cargohold.oci.mediatypes import OCI_MANIFEST
from cargohold.registry.client import RegistryClient
from cargohold.registry.http import RetryPolicy, certifi_bundle, ssl_context
from cargohold.registry.lazytls import LazyTLSTransport
from fakeregistry import FakeRegistry, FakeServer, TokenService, serve
from tlscerts import self_signed_certificate

REPO = "team/app"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode()


def test_certifi_bundle_is_the_file_certifi_names() -> None:
    """Found without importing certifi, it is still certifi's own answer."""
    assert certifi_bundle() == certifi.where()
    assert ssl_context(True).cert_store_stats()["x509_ca"] > 0


@pytest.fixture(scope="module")
def tls_server_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_plain_http_transport_makes_the_tls_context_on_the_first_tls_request() -> None:
    made: list[ssl.SSLContext] = []

    def make() -> ssl.SSLContext:
        made.append(ssl_context(True))
        return made[-1]

    registry = FakeRegistry()
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    with serve(registry) as reg, socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # a port nothing listens on
        with httpx.Client(transport=LazyTLSTransport(make, trust_env=False)) as client:
            assert client.get(f"{reg.url}/v2/").status_code == 200
            assert made == []
            for _ in range(2):
                with pytest.raises(httpx.ConnectError):
                    client.get(f"https://127.0.0.1:{closed.getsockname()[1]}/")
            assert len(made) == 1


def test_plain_http_registry_still_verifies_a_tls_token_service(
    tls_server_context: ssl.SSLContext, tmp_path: Path
) -> None:
    """A registry over plain HTTP whose token service is at an https:// URL with a
    certificate nobody trusts: refused, unless verification is turned off."""
    tokens = TokenService(anonymous=True)
    registry = FakeRegistry(auth="bearer", tokens=tokens)
    registry.add_manifest(REPO, "v1", MANIFEST, OCI_MANIFEST)
    with serve(registry) as reg, FakeServer(tokens, tls=tls_server_context) as auth:
        registry.realm = f"{auth.url}/token"

        def client(verify: bool) -> RegistryClient:
            return RegistryClient(
                reg.netloc, plain_http=True, verify=verify, trust_env=False,
                use_docker_config=False, retry=RetryPolicy(attempts=1),
            )  # fmt: skip

        with (
            client(True) as verifying,
            pytest.raises(RegistryConnectionError, match="certificate verification failed"),
        ):
            verifying.get_manifest(REPO, "v1")
        with client(False) as trusting:
            assert trusting.get_manifest(REPO, "v1").data == MANIFEST


def test_a_large_body_over_tls_goes_through_httpx_and_keeps_its_connection(
    tls_server_context: ssl.SSLContext,
) -> None:
    """Bodies are read from the socket over plain HTTP only: over TLS the socket carries
    ciphertext (to a proxy, perhaps of another TLS connection), and a new connection would
    cost a handshake. The blob arrives whole and its connection serves the next request."""
    registry = FakeRegistry()
    blob = bytes(range(256)) * 2000
    digest = registry.add_blob(REPO, blob)
    with (
        FakeServer(registry, tls=tls_server_context) as server,
        RegistryClient(
            server.netloc, verify=False, trust_env=False, use_docker_config=False,
            retry=RetryPolicy(attempts=1), direct_read_min=0,
        ) as client,
    ):  # fmt: skip
        for _ in range(2):
            received = bytearray()
            client.fetch_blob(REPO, digest, len(blob), received.extend)
            assert received == blob
    assert len({r.client_port for r in server.requests_for("GET", str(digest))}) == 1
