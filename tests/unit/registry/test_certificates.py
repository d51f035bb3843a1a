"""Where the registry client finds certifi's CA file."""

from __future__ import annotations

import certifi

from cargohold.registry.http import certifi_bundle, ssl_context


def test_certifi_bundle_is_the_file_certifi_names() -> None:
    """Found without importing certifi, it is still certifi's own answer."""
    assert certifi_bundle() == certifi.where()


def test_verifying_context_trusts_certifi_roots() -> None:
    context = ssl_context(True)
    assert context.cert_store_stats()["x509_ca"] > 0
