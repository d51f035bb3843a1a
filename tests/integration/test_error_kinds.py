"""Errors say whose fault a failure is: content missing from the store or a registry's answer
is not reported as an invalid archive; content missing from an archive is."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargohold.errors import (
    InvalidArchiveError,
    MissingContentError,
    NoMatchingPlatformError,
)
from cargohold.operations.store import Store
from fakeregistry import FakeRegistry, serve
from imagefactory import ArchiveBuilder
from registryhelpers import REPO, factory_for, publish
from snapshots import HOST, OTHER


def test_export_of_an_image_missing_a_blob_is_not_an_invalid_archive(tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    desc = builder.image(HOST)
    builder.add(desc, "example.com/app:1")
    with Store(tmp_path / "root") as store:
        store.import_archive(builder.write(tmp_path / "in.tar"))
        layer = next(d for d in builder.blobs if builder.blobs[d][:2] == b"\x1f\x8b")
        store.remove_content([layer], force=True)
        with pytest.raises(MissingContentError) as caught:
            store.export(tmp_path / "out.tar", ["example.com/app:1"])
    assert not isinstance(caught.value, InvalidArchiveError)
    assert layer in str(caught.value)


def test_an_archive_missing_a_blob_is_an_invalid_archive(tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    desc = builder.image(HOST)
    builder.add(desc, "example.com/app:1")
    layer = next(d for d in builder.blobs if builder.blobs[d][:2] == b"\x1f\x8b")
    archive = builder.write(tmp_path / "in.tar", omit=frozenset({layer}))
    with Store(tmp_path / "root") as store, pytest.raises(MissingContentError) as caught:
        store.import_archive(archive)
    assert isinstance(caught.value, InvalidArchiveError)


def test_a_registry_index_without_the_platform_is_not_an_invalid_archive(tmp_path: Path) -> None:
    registry = FakeRegistry()
    builder = ArchiveBuilder()
    top = builder.multi_platform([OTHER])
    publish(registry, builder, top, REPO, "v1")
    with (
        serve(registry) as server,
        Store(tmp_path / "root") as store,
        pytest.raises(NoMatchingPlatformError) as caught,
    ):
        store.pull(f"{server.netloc}/{REPO}:v1", platforms=[HOST], client_factory=factory_for())
    assert not isinstance(caught.value, InvalidArchiveError)
