"""Naming a stored image the ways a user does, through the real command line: by a digest (whole,
a short prefix, ``name@digest``) and by short names in ``image ls``'s filters and arguments."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cargohold.oci.digests import Digest
from cargohold.operations.store import Store
from cargohold.storage.metadata import ImageRecord
from clisupport import assert_one_error_line, run, seed, stored_names

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def digest_of(root: Path, name: str) -> str:
    with Store(root) as store:
        return str(store.resolve(name).digest)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    store_root = tmp_path / "store"
    seed(store_root, tmp_path, "app:1", "example.com/other:2")
    return store_root


def inspected_name(root: Path, ref: str) -> str:
    name: str = json.loads(ok(run(root, "image", "inspect", "--format", "json", ref)))["name"]
    return name


@pytest.mark.parametrize(
    "form",
    ["{digest}", "{hex}", "{hex12}", "{hex4}", "sha256:{hex12}", "app@{digest}"],
    ids=["digest", "hex", "short-id", "four-digits", "algorithm-prefix", "name-at-digest"],
)
def test_inspect_by_digest(root: Path, form: str) -> None:
    digest = digest_of(root, "app:1")
    hex_ = digest.partition(":")[2]
    ref = form.format(digest=digest, hex=hex_, hex12=hex_[:12], hex4=hex_[:4])
    assert inspected_name(root, ref) == "docker.io/library/app:1"


@pytest.mark.parametrize(
    "command",
    [
        ["image", "check", "--format", "json"],
        ["image", "label", "--format", "json", "{ref}", "k=v"],
        ["image", "tag", "--format", "json", "{ref}", "copy:1"],
        ["image", "export", "{out}"],
    ],
    ids=["check", "label", "tag", "export"],
)
def test_every_command_takes_a_digest(root: Path, tmp_path: Path, command: list[str]) -> None:
    ref = digest_of(root, "app:1").partition(":")[2][:12]
    args = [a.format(ref=ref, out=tmp_path / "out.tar") for a in command]
    if "{ref}" not in command:
        args.append(ref)
    ok(run(root, *args))
    if command[1] == "label":
        assert inspected_name(root, "app:1") == "docker.io/library/app:1"
        assert json.loads(ok(run(root, "image", "inspect", "--format", "json", "app:1")))[
            "labels"
        ] == {"k": "v"}
    if command[1] == "tag":
        assert digest_of(root, "copy:1") == digest_of(root, "app:1")


def test_name_at_digest_of_another_image_is_not_found(root: Path) -> None:
    other = digest_of(root, "example.com/other:2")
    line = assert_one_error_line(run(root, "image", "inspect", f"app@{other}"))
    assert f"image app@{other} not found" in line


def test_a_stored_name_wins_over_a_digest_prefix(root: Path) -> None:
    """``5e0ba3e7ce5e`` is also a short name; as in docker, an image stored so is meant."""
    prefix = digest_of(root, "example.com/other:2").partition(":")[2][:12]
    ok(run(root, "image", "tag", "app:1", prefix))
    assert inspected_name(root, prefix) == f"docker.io/library/{prefix}:latest"


def test_an_ambiguous_prefix_lists_the_candidates(root: Path) -> None:
    first, second = Digest("sha256", "abcd1" + "0" * 59), Digest("sha256", "abcd2" + "0" * 59)
    with Store(root) as store, store.meta.transaction() as db:
        for name, digest in (("x.example/a:1", first), ("x.example/b:1", second)):
            store.meta.put_image(db, "default", ImageRecord(name, MANIFEST, digest, 1, {}))
    line = assert_one_error_line(run(root, "image", "inspect", "abcd"))
    assert f"abcd is the start of the digests of several images: {first}, {second}" in line
    assert inspected_name(root, "abcd1") == "x.example/a:1"


def test_rm_by_digest_removes_the_one_name(root: Path) -> None:
    digest = digest_of(root, "app:1")
    assert ok(run(root, "image", "rm", "-q", digest.partition(":")[2][:12])).splitlines() == []
    assert stored_names(root) == ["example.com/other:2"]


def test_rm_by_digest_of_an_image_with_several_names_needs_force(root: Path) -> None:
    ok(run(root, "image", "tag", "app:1", "app:2"))
    digest = digest_of(root, "app:1")
    line = assert_one_error_line(run(root, "image", "rm", digest))
    assert (
        f"image {digest} has several names: docker.io/library/app:1, docker.io/library/app:2"
        in line
    )
    assert len(stored_names(root)) == 3
    removed = ok(run(root, "image", "rm", "--force", "--no-gc", digest)).splitlines()
    assert removed == ["docker.io/library/app:1", "docker.io/library/app:2"]
    assert stored_names(root) == ["example.com/other:2"]


def test_rm_of_an_unknown_digest_is_reported_missing(root: Path) -> None:
    proc = run(root, "image", "rm", "ffff" * 16)
    line = assert_one_error_line(proc)
    assert line.endswith(f"image {'ffff' * 16} not found in namespace default")
    assert len(stored_names(root)) == 2


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["name==app:1"], ["docker.io/library/app:1"]),
        (["name!=app:1"], ["example.com/other:2"]),
        (["name~=^app:"], ["docker.io/library/app:1"]),
        (["app"], ["docker.io/library/app:1"]),
        (["app:1"], ["docker.io/library/app:1"]),
        (["app:2"], []),
        (["example.com/other"], ["example.com/other:2"]),
        (["*:2"], ["example.com/other:2"]),
        (["ap*", "example.com/*"], ["docker.io/library/app:1", "example.com/other:2"]),
    ],
    ids=["equal", "not-equal", "regex", "bare", "bare-tag", "bare-none", "bare-full", "glob", "or"],
)
def test_ls_takes_short_names(root: Path, filters: list[str], expected: list[str]) -> None:
    assert ok(run(root, "image", "ls", "-q", *filters)).splitlines() == expected


def test_ls_bare_argument_that_is_no_name_is_one_line_error(root: Path) -> None:
    line = assert_one_error_line(run(root, "image", "ls", "App"))
    assert "invalid filter 'App': neither a selector" in line
