"""One connection serves a client's requests one after another: answers without a body (a
HEAD, a 404 to it, an upload's 202 and 201, a manifest's 201) leave it open for the next."""

from __future__ import annotations

import io
import json

from cargohold.oci.digests import Digest
from cargohold.oci.mediatypes import OCI_MANIFEST
from cargohold.registry.client import RegistryClient
from cargohold.registry.http import RetryPolicy
from fakeregistry import FakeRegistry, serve

REPO = "team/app"


def test_sequential_requests_share_one_connection() -> None:
    registry = FakeRegistry()
    blob = b"layer bytes " * 1000
    digest = Digest.of_bytes(blob)
    layer = {"mediaType": "application/octet-stream", "digest": str(digest), "size": len(blob)}
    document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [layer]}
    manifest = json.dumps(document).encode()
    with (
        serve(registry) as server,
        RegistryClient(
            server.netloc, plain_http=True, use_docker_config=False, trust_env=False,
            retry=RetryPolicy(attempts=1),
        ) as client,
    ):  # fmt: skip
        assert client.blob_exists(REPO, digest) is None
        client.upload_blob(REPO, digest, len(blob), lambda: io.BytesIO(blob))
        assert client.blob_exists(REPO, digest) == len(blob)
        client.put_manifest(REPO, "v1", manifest, OCI_MANIFEST)
        assert client.get_manifest(REPO, "v1").data == manifest
    methods = [r.method for r in server.requests]
    assert methods == ["HEAD", "POST", "PUT", "HEAD", "PUT", "GET"], methods
    assert len({r.client_port for r in server.requests}) == 1, server.requests
