"""``content ls`` and ``content rm`` with content that many names share: one readable row or
line, and the JSON with every user."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from cargohold.operations.store import Store
from clisupport import assert_one_error_line, run
from imagefactory import ArchiveBuilder

NAME = "example.com/app:1"


def archive(tmp_path: Path, label: str) -> tuple[Path, set[str]]:
    """A one-layer image named NAME whose layer holds *label*, and the digests of its blobs."""
    builder = ArchiveBuilder()
    builder.add(builder.image(files={"label": label.encode()}), name=NAME)
    return builder.write(tmp_path / f"{label}.tar"), set(builder.blobs)


def stored_digests(root: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (root / "content" / "blobs" / "sha256").iterdir()}


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


def test_content_ls_counts_the_users_past_three(root: Path, tmp_path: Path) -> None:
    path, blobs = archive(tmp_path, "shared")
    with Store(root) as store:
        store.import_archive(path)
        store.tag(NAME, [f"example.com/app:{i}" for i in range(2, 7)])
    table = ok(run(root, "content", "ls")).splitlines()
    assert len(table) == 1 + len(blobs)
    for line in table[1:]:
        used_by = re.split(r"\s{2,}", line.strip())[-1]
        assert used_by == "example.com/app:1,example.com/app:2,example.com/app:3,+3 more"
    listed = json.loads(ok(run(root, "content", "ls", "--format", "json")))
    assert [len(blob["usedBy"]) for blob in listed] == [6] * len(blobs)


def test_content_ls_names_up_to_three_users_in_full(root: Path, tmp_path: Path) -> None:
    path, _ = archive(tmp_path, "three")
    with Store(root) as store:
        store.import_archive(path)
        store.tag(NAME, ["example.com/app:2", "example.com/app:3"])
    for line in ok(run(root, "content", "ls")).splitlines()[1:]:
        assert line.endswith("example.com/app:1,example.com/app:2,example.com/app:3")


def test_content_rm_of_a_blob_many_names_use_names_three(root: Path, tmp_path: Path) -> None:
    path, blobs = archive(tmp_path, "many")
    with Store(root) as store:
        store.import_archive(path)
        store.tag(NAME, [f"example.com/app:{i}" for i in range(2, 7)])
    blob = sorted(blobs)[0]
    line = assert_one_error_line(run(root, "content", "rm", blob))
    assert line.endswith(
        f"blob {blob} is used by example.com/app:1, example.com/app:2, example.com/app:3"
        " and 3 more (use --force to remove it)"
    )
    assert stored_digests(root) == blobs
