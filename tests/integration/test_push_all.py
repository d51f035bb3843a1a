"""``image push --all``: where each image goes, mounts across repositories, failures."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from cargohold.errors import InvalidReferenceError, NotFoundError
from cargohold.operations.pushingall import destination_for
from cargohold.operations.store import Store
from clisupport import run
from fakeregistry import FakeRegistry, serve
from imagefactory import ArchiveBuilder
from registryhelpers import factory_for

NAMES = ("docker.io/library/alpine:3", "example.com/team/app:1", "example.com/team/tool:2")


def store_with_images(tmp_path: Path) -> Path:
    """Three images with the same layer (their configs differ)."""
    builder = ArchiveBuilder()
    for i, name in enumerate(NAMES):
        builder.add(builder.image(files={"base": b"shared"}, created=f"2024-01-0{i + 1}T00:00:00Z"),
                    name=name)  # fmt: skip
    root = tmp_path / "root"
    with Store(root) as store:
        store.import_archive(builder.write(tmp_path / "images.tar"))
    return root


def test_destinations_keep_the_repository_path_and_tag() -> None:
    assert destination_for("docker.io/library/alpine:3", "site.lan:5000") == (
        "site.lan:5000/library/alpine:3"
    )
    assert destination_for("ghcr.io/a/b@sha256:" + "c" * 64, "localhost/mirror/") == (
        "localhost/mirror/a/b@sha256:" + "c" * 64
    )
    with pytest.raises(InvalidReferenceError, match="does not start with a registry host"):
        destination_for("example.com/a:1", "mirror")


def test_push_all_mounts_what_an_earlier_image_pushed(tmp_path: Path) -> None:
    root = store_with_images(tmp_path)
    registry = FakeRegistry()
    with serve(registry) as server, Store(root) as store:
        result = store.push_all(f"{server.netloc}/site", client_factory=factory_for())
        assert [e.destination for e in result.entries] == sorted(
            f"{server.netloc}/site/{n.split('/', 1)[1]}" for n in NAMES
        )
        assert [e.action for e in result.entries] == ["pushed"] * 3
        assert [e.blobs_mounted for e in result.entries][1:] == [1, 1]  # the shared layer
        with pytest.raises(NotFoundError, match="match the filters"):
            store.push_all(server.netloc, ["name==absent:1"], client_factory=factory_for())
        only = store.push_all(server.netloc, ["name~=team/"], client_factory=factory_for())
        assert [e.name for e in only.entries] == sorted(NAMES[1:])


def test_push_all_to_an_unreachable_registry_fails_each_image_once(tmp_path: Path) -> None:
    root = store_with_images(tmp_path)
    with socket.socket() as sock, Store(root) as store:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening: refused
        result = store.push_all(dead, client_factory=factory_for(), jobs=1)
    assert [e.action for e in result.entries] == ["failed"] * 3
    assert all("unreachable" in (e.error or "") for e in result.entries[1:])


def test_push_all_cli_summary(tmp_path: Path) -> None:
    root = store_with_images(tmp_path)
    with serve(FakeRegistry()) as server:
        proc = run(root, "image", "push", "--all", "--plain-http", "--format", "json",
                   server.netloc, "name~=team/")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert (doc["pushed"], doc["failed"]) == (2, 0) and doc["bytes"] > 0
        assert [i["destination"] for i in doc["images"]] == [
            f"{server.netloc}/team/app:1",
            f"{server.netloc}/team/tool:2",
        ]
        text = run(root, "image", "push", "--all", "--plain-http", server.netloc)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.decode().splitlines()
        assert lines[0].split() == ["DESTINATION", "ACTION", "DIGEST", "UPLOADED", "MOUNTED",
                                    "PRESENT"]  # fmt: skip
        assert lines[-1].startswith("3 pushed, 0 failed;")
        usage = run(root, "image", "push", "--plain-http", NAMES[0], "a.lan/x:1", "b.lan/y:1")
        assert usage.returncode == 2 and b"FILTERs go with --all" in usage.stderr
