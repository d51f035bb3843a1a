"""A name an import or pull moves: when it moves, and what the image it leaves behind leaves in
the store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from clisupport import run
from fakeregistry import FakeRegistry, serve
from imagefactory import ArchiveBuilder
from registryhelpers import REPO, publish

NAME = "example.com/app:1"
JANUARY = "2024-01-01T00:00:00Z"
FEBRUARY = "2024-02-01T00:00:00Z"


def archive(tmp_path: Path, label: str, created: str) -> tuple[Path, set[str]]:
    """A one-layer image named NAME whose layer holds *label*, and the digests of its blobs."""
    builder = ArchiveBuilder()
    desc = builder.image(files={"label": label.encode()}, created=created)
    builder.add(desc, name=NAME)
    return builder.write(tmp_path / f"{label}.tar"), set(builder.blobs)


def stored_digests(root: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (root / "content" / "blobs" / "sha256").iterdir()}


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def imported(root: Path, path: Path, *options: str, namespace: str = "default") -> str:
    """The action of an import of *path* into *namespace* (``--format json``)."""
    args = ("-n", namespace, "image", "import", *options, "--format", "json", str(path))
    out = ok(run(root, *args))
    [image] = json.loads(out)["images"]
    assert image["name"] == NAME
    return str(image["action"])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


# -- equal is not newer ------------------------------------------------------------------------


def test_an_image_as_old_as_the_stored_one_does_not_replace_it(root: Path, tmp_path: Path) -> None:
    """Two images of the same ``created`` imported in turn: the name stays on the first, instead
    of flipping at every import."""
    first, _ = archive(tmp_path, "a", JANUARY)
    second, _ = archive(tmp_path, "b", JANUARY)
    actions = [imported(root, path) for path in (first, second, first, second)]
    assert actions == ["created", "kept", "unchanged", "kept"]
    proc = run(root, "image", "import", str(second))
    assert proc.returncode == 0
    assert f"{NAME}: kept the stored image" in proc.stderr.decode()
    assert imported(root, second, "--force") == "updated"


def test_a_newer_image_still_replaces_and_an_older_is_kept(root: Path, tmp_path: Path) -> None:
    old, _ = archive(tmp_path, "old", JANUARY)
    new, _ = archive(tmp_path, "new", FEBRUARY)
    assert [imported(root, p) for p in (old, new, old)] == ["created", "updated", "kept"]


# -- a replaced image's content is collected ---------------------------------------------------


def test_an_import_that_moves_a_name_collects_what_only_the_old_image_used(
    root: Path, tmp_path: Path
) -> None:
    old, old_blobs = archive(tmp_path, "old", JANUARY)
    new, new_blobs = archive(tmp_path, "new", FEBRUARY)
    assert imported(root, old) == "created"
    assert stored_digests(root) == old_blobs
    assert imported(root, new) == "updated"
    assert stored_digests(root) == new_blobs
    assert ok(run(root, "content", "gc", "--dry-run")).startswith("0 blobs would be removed")
    assert "complete" in ok(run(root, "image", "check", NAME))


def test_the_collection_keeps_what_another_name_or_namespace_uses(
    root: Path, tmp_path: Path
) -> None:
    """The old image is still named in another namespace: nothing of it goes; once that name
    is replaced too, it does."""
    old, old_blobs = archive(tmp_path, "old", JANUARY)
    new, new_blobs = archive(tmp_path, "new", FEBRUARY)
    assert imported(root, old) == "created"
    assert imported(root, old, namespace="other") == "created"
    assert imported(root, new, "--force") == "updated"
    assert stored_digests(root) == old_blobs | new_blobs
    assert "complete" in ok(run(root, "-n", "other", "image", "check", NAME))
    assert imported(root, new, namespace="other") == "updated"
    assert stored_digests(root) == new_blobs


def test_a_pull_that_moves_a_name_collects_what_only_the_old_image_used(tmp_path: Path) -> None:
    """The registry's tag moved to another image: the pull follows it (as it always did) and
    the content of the image the name left is collected."""
    registry = FakeRegistry()
    old, new = ArchiveBuilder(), ArchiveBuilder()
    old_desc = old.image(files={"label": b"old"}, created=FEBRUARY)
    new_desc = new.image(files={"label": b"new"}, created=JANUARY)
    root = tmp_path / "root"
    with serve(registry) as server:
        ref = f"{server.netloc}/{REPO}:v1"
        actions = []
        for builder, desc in ((old, old_desc), (new, new_desc)):
            publish(registry, builder, desc, REPO, "v1")
            out = ok(run(root, "image", "pull", "--plain-http", "--format", "json", ref))
            actions.append(json.loads(out)["action"])
    assert actions == ["created", "updated"]
    assert stored_digests(root) == set(new.blobs)
