"""What scripts and fingers bring from ctr, docker and podman, through the real command line:
ctr's flags that mean nothing here are accepted, ``content prune`` is ``content gc``,
``--platform`` takes a comma-separated list, ``cargohold images`` lists images, and bare tags
read from stdin are named by the date only with a warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clisupport import archive, lines, run, seed, stored_names
from imagefactory import ArchiveBuilder
from snapshots import HOST, OTHER

WARNING_PREFIX = "cargohold: warning: "


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


# -- ctr's flags and words ------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--no-unpack", "--local", "--skip-digest-for-named"])
def test_import_accepts_ctr_flags(root: Path, tmp_path: Path, flag: str) -> None:
    path = archive(tmp_path / "app.tar", "example.com/app:1")
    proc = run(root, "image", "import", flag, str(path))
    assert proc.returncode == 0, proc.stderr
    assert stored_names(root) == ["example.com/app:1"]


def test_skip_digest_for_named_leaves_named_images_without_digest_names(
    root: Path, tmp_path: Path
) -> None:
    path = archive(tmp_path / "app.tar", "example.com/app:1")
    proc = run(root, "image", "import", "--digests", "--skip-digest-for-named", str(path))
    assert proc.returncode == 0, proc.stderr
    assert stored_names(root) == ["example.com/app:1"]


def test_image_rm_accepts_sync(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/a:1", "example.com/b:1")
    proc = run(root, "image", "rm", "--sync", "example.com/a:1")
    assert proc.returncode == 0, proc.stderr
    assert stored_names(root) == ["example.com/b:1"]


def test_content_prune_is_gc(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/a:1")
    assert run(root, "image", "rm", "--no-gc", "example.com/a:1").returncode == 0
    proc = run(root, "content", "prune", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["removed"]) == 3
    assert lines(run(root, "content", "ls", "-q").stdout) == []


@pytest.mark.parametrize(
    "command",
    [["image", "import"], ["image", "rm"], ["content", "prune"], ["content", "gc"]],
    ids=" ".join,
)
def test_help_says_what_ctr_flags_do_here(command: list[str]) -> None:
    proc = run(None, *command, "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.decode().split())
    if command == ["image", "import"]:
        for flag in ("--no-unpack", "--local", "--skip-digest-for-named"):
            assert flag in text
        assert text.count("a no-op") >= 2
    elif command == ["image", "rm"]:
        assert "--sync" in text and "a no-op" in text
    else:
        assert "alias: prune" in text


# -- --platform -----------------------------------------------------------------------------


def multi_platform_archive(path: Path) -> Path:
    builder = ArchiveBuilder()
    builder.add(builder.multi_platform([HOST, OTHER]), name="example.com/multi:1")
    return builder.write(path)


@pytest.mark.parametrize(
    "options",
    [
        ["--platform", f"{HOST},{OTHER}"],
        ["--platform", f"{HOST}, {OTHER}"],
        ["--platform", HOST, "--platform", f"{OTHER},{HOST}"],
    ],
    ids=" ".join,
)
def test_platform_takes_a_comma_separated_list(
    root: Path, tmp_path: Path, options: list[str]
) -> None:
    path = multi_platform_archive(tmp_path / "multi.tar")
    proc = run(root, "image", "import", *options, str(path))
    assert proc.returncode == 0, proc.stderr
    proc = run(root, "image", "check", "--format", "json", *options)
    assert proc.returncode == 0, proc.stderr
    assert sorted(r["platform"] for r in json.loads(proc.stdout)) == sorted([HOST, OTHER])


#: Every command that takes --platform, with the arguments it needs to get that far.
PLATFORM_COMMANDS = [
    ["image", "import", "{tmp}/archive.tar"],
    ["image", "export", "{tmp}/out.tar", "example.com/a:1"],
    ["image", "pull", "example.com/a:1"],
    ["image", "push", "example.com/a:1"],
    ["image", "check"],
    ["image", "inspect", "example.com/a:1"],
    ["archive", "inspect", "{tmp}/archive.tar"],
]


@pytest.mark.parametrize("command", PLATFORM_COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("platform", ["a/b/c/d", "linux/", "linux/amd64,", "li nux/amd64"])
def test_invalid_platform_is_a_usage_error(
    root: Path, tmp_path: Path, command: list[str], platform: str
) -> None:
    args = [arg.format(tmp=tmp_path) for arg in command]
    proc = run(root, *args, "--platform", platform)
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert "Usage: cargohold" in stderr
    assert "Invalid value for '--platform'" in stderr
    assert not root.exists()  # refused before the store is opened (or made)


# -- cargohold images -----------------------------------------------------------------------


EVERY = ["example.com/a:1", "example.com/b:1", "other.com/c:1"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-q"], EVERY),
        (["ls", "-q"], EVERY),
        (["list", "-q"], EVERY),
        (["-q", "name~=^example.com/"], EVERY[:2]),
        (["name==other.com/c:1", "--quiet"], EVERY[2:]),
    ],
    ids=["alone", "ls", "list", "regex filter", "filter first"],
)
def test_images_lists_images(
    root: Path, tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    seed(root, tmp_path, "example.com/b:1", "example.com/a:1", "other.com/c:1")
    proc = run(root, "images", *args)
    assert proc.returncode == 0, proc.stderr
    assert lines(proc.stdout) == expected
    assert proc.stderr == b""


def test_images_alone_prints_the_table(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/a:1")
    proc = run(root, "images")
    assert proc.returncode == 0, proc.stderr
    header, row = lines(proc.stdout)
    assert header.split()[0] == "REF"
    assert row.split()[0] == "example.com/a:1"


def test_images_runs_other_image_commands(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/a:1", "example.com/b:1")
    proc = run(root, "images", "rm", "example.com/a:1")
    assert proc.returncode == 0, proc.stderr
    assert stored_names(root) == ["example.com/b:1"]


# -- bare tags from stdin -------------------------------------------------------------------


def bare_tag_archive(path: Path) -> Path:
    builder = ArchiveBuilder()
    builder.add(builder.image(), ref_name="v1")
    return builder.write(path)


def test_bare_tag_from_stdin_warns_of_the_dated_name(root: Path, tmp_path: Path) -> None:
    data = bare_tag_archive(tmp_path / "app.tar").read_bytes()
    proc = run(root, "image", "import", "-", stdin=data)
    assert proc.returncode == 0, proc.stderr
    [name] = stored_names(root)
    assert "/import-" in name and name.endswith(":v1")
    [line] = proc.stderr.decode().splitlines()
    assert line.startswith(WARNING_PREFIX)
    assert name in line and "--base-name" in line


@pytest.mark.parametrize("how", ["--base-name", "file", "--tag"], ids=["base-name", "file", "tag"])
def test_no_warning_when_the_name_is_stable(root: Path, tmp_path: Path, how: str) -> None:
    path = bare_tag_archive(tmp_path / "app.tar")
    if how == "file":
        proc = run(root, "image", "import", str(path))
    else:
        value = "example.com/app" if how == "--base-name" else "example.com/app:2"
        proc = run(root, "image", "import", how, value, "-", stdin=path.read_bytes())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""


def test_import_help_names_base_name_for_stdin() -> None:
    proc = run(None, "image", "import", "--help")
    text = " ".join(proc.stdout.decode().split())
    assert "import-YYYY-MM-DD" in text and "gives --base-name" in text
