"""What ``image ls`` and an import's progress look like on an 80-column terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from clisupport import clean_environment, command, run, run_on_terminal, screen_lines
from dockerimages import DockerImage, classic_save, write_archive
from imagefactory import ArchiveBuilder, layer_tar

MiB = 1 << 20


@pytest.fixture(scope="module")
def listed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with an index of four platforms, labelled, and a single manifest."""
    tmp = tmp_path_factory.mktemp("ls")
    builder = ArchiveBuilder()
    builder.add(
        builder.multi_platform(["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x"]),
        name="docker.io/library/alpine:3.20",
    )
    builder.add(builder.image("linux/amd64"), name="registry.example.com:5000/team/service:1")
    root = tmp / "root"
    assert run(root, "image", "import", "-q", str(builder.write(tmp / "a.tar"))).returncode == 0
    labelled = run(root, "image", "label", "docker.io/library/alpine:3.20", "env=prod")
    assert labelled.returncode == 0
    return root


def full_digest(root: Path, name: str) -> str:
    proc = run(root, "image", "ls", "--format", "json", name)
    found = re.search(r'"digest": "(sha256:[0-9a-f]{64})"', proc.stdout.decode())
    assert found is not None, proc.stdout
    return found.group(1)


def test_image_ls_fits_an_80_column_terminal(listed_root: Path) -> None:
    code, output, _ = run_on_terminal(listed_root, "image", "ls", columns=80)
    assert code == 0, output
    rows = screen_lines(output)
    assert all(len(row) <= 80 for row in rows), rows
    header, alpine, service = rows
    assert header.split() == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    digest = full_digest(listed_root, "docker.io/library/alpine:3.20")
    # the name gives room last, from its start: the tag stays
    assert alpine.split()[0].endswith("library/alpine:3.20")
    assert alpine.split()[1:3] == ["index", digest[7:19]]
    assert service.split()[0].startswith("…") and service.split()[0].endswith("/service:1")
    assert service.split()[1] == "manifest"


def test_image_ls_on_a_wide_terminal_cuts_only_digests_and_types(listed_root: Path) -> None:
    code, output, _ = run_on_terminal(listed_root, "image", "ls", columns=120)
    assert code == 0, output
    _, alpine, service = screen_lines(output)
    digest = full_digest(listed_root, "docker.io/library/alpine:3.20")
    assert alpine.split() == [
        "docker.io/library/alpine:3.20",
        "index",
        digest[7:19],
        *["1.6", "KiB"],
        *["linux/amd64", "(+3)"],  # the host's stored; three more listed by the index only
        "env=prod",
    ]
    assert service.split()[:2] == ["registry.example.com:5000/team/service:1", "manifest"]


def test_image_ls_no_trunc_on_a_terminal(listed_root: Path) -> None:
    code, output, _ = run_on_terminal(listed_root, "image", "ls", "--no-trunc", columns=80)
    assert code == 0, output
    digest = full_digest(listed_root, "docker.io/library/alpine:3.20")
    assert digest in output
    assert "application/vnd.oci.image.index.v1+json" in output
    assert "linux/amd64,(linux/arm/v7),(linux/arm64),(linux/s390x)" in output


def test_image_ls_says_which_platforms_are_stored(listed_root: Path) -> None:
    """A default import takes the host's platform of an index: the others are listed, not
    stored, and ``image ls`` tells them apart (in parentheses; two lists in JSON)."""
    proc = run(listed_root, "image", "ls", "--format", "json", "alpine")
    assert proc.returncode == 0, proc.stderr
    (image,) = json.loads(proc.stdout)
    assert image["platforms"] == ["linux/amd64", "linux/arm/v7", "linux/arm64", "linux/s390x"]
    assert image["storedPlatforms"] == ["linux/amd64"]


def test_image_ls_piped_keeps_full_values(listed_root: Path) -> None:
    code, output, piped = run_on_terminal(listed_root, "image", "ls", stdout_piped=True)
    assert code == 0, output
    text = piped.decode()
    assert full_digest(listed_root, "docker.io/library/alpine:3.20") in text
    assert "application/vnd.oci.image.manifest.v1+json" in text


@pytest.fixture(scope="module")
def docker_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docker save's classic layout: a 40 MiB layer named ``<64 hex>/layer.tar``."""
    image = DockerImage([layer_tar({"big": os.urandom(40 * MiB)})], repo_tags=["example.com/big:1"])
    return write_archive(tmp_path_factory.mktemp("docker") / "big.tar", classic_save([image]))


def test_import_progress_fits_an_80_column_terminal(tmp_path: Path, docker_archive: Path) -> None:
    code, output, _ = run_on_terminal(
        tmp_path / "root", "image", "import", str(docker_archive), columns=80
    )
    assert code == 0, output
    drawn = screen_lines(output)
    assert all(len(line) <= 80 for line in drawn), drawn
    assert "layer.tar" not in output
    # the blob's line is whole: its short label, the bar and the figures on one line
    blob = r"^  [0-9a-f]{12} +━+ +\d+% [0-9.]+ [KM]?i?B of 40\.0 MiB"
    assert any(re.search(blob, line) for line in drawn), drawn
    final = r"^import +━+ +100% 40\.0 MiB of 40\.0 MiB [0-9.]+ [KMG]iB/s in [0-9.]+ s$"
    assert any(re.search(final, line.rstrip()) for line in drawn), drawn


def test_import_progress_shows_with_stdout_piped(tmp_path: Path, docker_archive: Path) -> None:
    """``image export - | ssh host cargohold image import -``: someone watches stderr."""
    code, output, piped = run_on_terminal(
        tmp_path / "root", "image", "import", str(docker_archive), stdout_piped=True
    )
    assert code == 0, output
    assert "40.0 MiB of 40.0 MiB" in "\n".join(screen_lines(output))
    assert b"example.com/big:1" in piped
    assert b"\x1b" not in piped


def test_plain_progress_of_an_import_that_read_nothing(
    tmp_path: Path, docker_archive: Path
) -> None:
    root = tmp_path / "root"
    assert run(root, "image", "import", "-q", str(docker_archive)).returncode == 0
    proc = run(root, "image", "import", "--progress", "plain", str(docker_archive))
    assert proc.returncode == 0, proc.stderr
    stderr = proc.stderr.decode()
    skipped = r"[0-9.]+ KiB read: the rest was skipped \(already stored\)"
    final = rf"^import: 40\.0 MiB in [0-9.]+ s, {skipped}$"
    assert re.search(final, stderr, re.MULTILINE), stderr
    assert "iB/s" not in stderr


def test_stdin_redirected_from_a_file_is_read_as_the_file(
    tmp_path: Path, docker_archive: Path
) -> None:
    """``image import - < big.tar`` reads like ``image import big.tar``: a layer the store
    has is skipped, not read (through a pipe every byte has to pass); a file partly read
    already is read from where its reader stopped."""
    root = tmp_path / "root"
    assert run(root, "image", "import", "-q", str(docker_archive)).returncode == 0
    with docker_archive.open("rb") as redirected:
        proc = subprocess.run(
            command(root, "image", "import", "--progress", "plain", "-"),
            stdin=redirected,
            capture_output=True,
            env=clean_environment(),
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    assert "the rest was skipped (already stored)" in proc.stderr.decode()

    shifted = tmp_path / "shifted.tar"
    prefix = b"not part of the archive\n"
    shifted.write_bytes(prefix + docker_archive.read_bytes())
    with shifted.open("rb") as partly_read:
        partly_read.seek(len(prefix))
        proc = subprocess.run(
            command(root, "image", "import", "--base-name", "shifted", "-"),
            stdin=partly_read,
            capture_output=True,
            env=clean_environment(),
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    assert b"example.com/big:1" in proc.stdout
