"""Putting images into the fake registry and reaching it with a fast, quiet client.

Shared by the pull/push tests and the namespace tests that pull into a namespace.
"""

from __future__ import annotations

import json
from typing import Any

from cargohold.oci.digests import Digest
from cargohold.operations.transfer import ClientFactory
from cargohold.registry.client import RegistryClient, RetryPolicy
from fakeregistry import FakeRegistry
from imagefactory import OCI_INDEX, OCI_MANIFEST, ArchiveBuilder

#: The repository the tests publish to.
REPO = "team/app"


def factory_for(**kwargs: Any) -> ClientFactory:
    def make(host: str) -> RegistryClient:
        return RegistryClient(
            host,
            plain_http=True,
            trust_env=False,
            use_docker_config=False,
            retry=RetryPolicy(attempts=3, sleep=lambda _: None),
            chunk_size=16 << 10,
            **kwargs,
        )

    return make


def publish(
    registry: FakeRegistry, builder: ArchiveBuilder, top: dict[str, Any], repo: str, tag: str
) -> Digest:
    """Put the builder's content into *repo* of the registry, *top* under *tag*."""
    for data in builder.blobs.values():
        media_type = None
        if data.startswith(b"{"):
            media_type = json.loads(data).get("mediaType")
        if media_type in (OCI_INDEX, OCI_MANIFEST):
            registry.add_manifest(repo, None, data, media_type)
        else:
            registry.add_blob(repo, data)
    return registry.add_manifest(repo, tag, builder.blobs[top["digest"]], top["mediaType"])
