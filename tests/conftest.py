"""Fixtures shared by the registry client tests and the pull/push tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakeregistry import FakeRegistry, FakeServer, serve


@pytest.fixture
def registry() -> FakeRegistry:
    """A fake registry's state: repositories, blobs, and what requests it saw."""
    return FakeRegistry()


@pytest.fixture
def server(registry: FakeRegistry) -> Iterator[FakeServer]:
    """The fake registry served on 127.0.0.1 for the length of a test."""
    with serve(registry) as server:
        yield server
