"""The command line through its real entry point, as a user or a script runs it."""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import pty
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cargohold import __version__
from cargohold.operations.store import Store
from clisupport import (
    ERROR_PREFIX,
    archive,
    assert_one_error_line,
    clean_environment,
    command,
    lines,
    run,
    seed,
    stored_names,
)
from imagefactory import OCI_MANIFEST, ArchiveBuilder
from signing import add_artifact, new_key, public_pem, sig_tag, signature
from streams import tar_bytes


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


# -- command names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    # "image ls" itself is what the other tests run.
    [["images", "list"], ["i", "ls"]],
    ids=" ".join,
)
def test_image_and_ls_aliases(root: Path, tmp_path: Path, command: list[str]) -> None:
    seed(root, tmp_path, "example.com/b:1", "example.com/a:1")
    proc = run(root, *command, "-q")
    assert proc.returncode == 0, proc.stderr
    assert lines(proc.stdout) == ["example.com/a:1", "example.com/b:1"]
    assert proc.stderr == b""


@pytest.mark.parametrize("alias", ["remove", "delete", "del"])  # "rm" is tested below
def test_rm_aliases(root: Path, tmp_path: Path, alias: str) -> None:
    seed(root, tmp_path, "example.com/a:1", "example.com/b:1")
    proc = run(root, "image", alias, "example.com/a:1")
    assert proc.returncode == 0, proc.stderr
    assert "example.com/a:1" in lines(proc.stdout)
    assert stored_names(root) == ["example.com/b:1"]


# -- machine-readable output ----------------------------------------------------------------


def test_import_json(root: Path, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    desc = builder.image()
    builder.add(desc, name="example.com/app:1")
    path = builder.write(tmp_path / "app.tar")
    proc = run(root, "image", "import", "--format", "json", str(path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {
        "images",
        "blobs",
        "bytesWritten",
        "bytesDeduplicated",
        "bytesRead",
        "volumes",
    }
    assert doc["images"] == [
        {"name": "example.com/app:1", "digest": desc["digest"], "action": "created"}
    ]
    assert doc["blobs"] == len(builder.blobs)
    assert doc["bytesWritten"] == sum(len(b) for b in builder.blobs.values())
    assert doc["bytesDeduplicated"] == 0
    assert stored_names(root) == ["example.com/app:1"]


def test_image_ls_json(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/app:1")
    proc = run(root, "image", "ls", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads(proc.stdout)
    assert set(entry) == {
        "name",
        "digest",
        "mediaType",
        "size",
        "platforms",
        "storedPlatforms",
        "createdAt",
        "updatedAt",
        "labels",
        "referrers",
    }
    assert entry["name"] == "example.com/app:1"
    assert entry["digest"].startswith("sha256:")
    assert entry["mediaType"] == OCI_MANIFEST
    assert entry["platforms"] == entry["storedPlatforms"] == ["linux/amd64"]
    assert entry["labels"] == {}
    assert entry["referrers"] == 0
    assert isinstance(entry["size"], int) and entry["size"] > 0
    for key in ("createdAt", "updatedAt"):
        assert datetime.datetime.fromisoformat(entry[key].replace("Z", "+00:00")).tzinfo


# -- standard streams -----------------------------------------------------------------------


def test_import_from_stdin_uses_a_dated_base_name(root: Path, tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    builder.add(builder.image(), ref_name="1.0")
    data = builder.write(tmp_path / "ignored-name.tar").read_bytes()
    before = datetime.date.today()
    proc = run(root, "image", "import", "--format", "json", "-", stdin=data)
    after = datetime.date.today()
    assert proc.returncode == 0, proc.stderr
    [image] = json.loads(proc.stdout)["images"]
    assert image["name"] in {
        f"docker.io/library/import-{day.isoformat()}:1.0" for day in (before, after)
    }
    assert stored_names(root) == [image["name"]]


def test_export_to_stdout(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/app:1")
    with Store(root) as store:
        store.export(tmp_path / "expected.tar", ["example.com/app:1"])
    proc = run(root, "image", "export", "-", "example.com/app:1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (tmp_path / "expected.tar").read_bytes()


# -- errors ---------------------------------------------------------------------------------


def test_bad_archive_is_one_error_line(root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"definitely not a tar archive\n" * 50)
    proc = run(root, "image", "import", str(bad))
    assert_one_error_line(proc)
    assert stored_names(root) == []


def test_unknown_image_is_one_error_line(root: Path, tmp_path: Path) -> None:
    Store(root).close()  # an empty store
    out = tmp_path / "out.tar"
    proc = run(root, "image", "export", str(out), "example.com/nosuch:1")
    line = assert_one_error_line(proc)
    assert "example.com/nosuch:1" in line
    assert not out.exists()


def test_debug_shows_the_traceback(root: Path, tmp_path: Path) -> None:
    Store(root).close()
    proc = run(root, "--debug", "image", "export", str(tmp_path / "o.tar"), "nosuch:1")
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in stderr
    assert "NotFoundError" in stderr
    assert stderr.splitlines()[-1].startswith(ERROR_PREFIX)


def test_rm_of_a_missing_name_removes_the_others(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/a:1", "example.com/b:1")
    proc = run(root, "image", "rm", "example.com/a:1", "example.com/nosuch:1")
    line = assert_one_error_line(proc)
    assert "example.com/nosuch:1" in line
    assert "example.com/a:1" in lines(proc.stdout)
    assert stored_names(root) == ["example.com/b:1"]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["image", "frobnicate"], id="unknown-command"),
        pytest.param(["image", "export", "out.tar"], id="missing-argument"),
    ],
)
def test_usage_errors_exit_2(root: Path, tmp_path: Path, args: list[str]) -> None:
    proc = run(root, *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert proc.stderr
    assert not (tmp_path / "out.tar").exists()


def test_version(root: Path) -> None:
    proc = run(root, "--version")
    assert proc.returncode == 0
    assert __version__ in proc.stdout.decode()


# -- store and namespace selection ----------------------------------------------------------


def test_namespace_option_and_variable(root: Path, tmp_path: Path) -> None:
    path = archive(tmp_path / "a.tar", "example.com/app:1")
    proc = run(root, "-n", "team", "image", "import", str(path))
    assert proc.returncode == 0, proc.stderr
    assert stored_names(root, "team") == ["example.com/app:1"]
    assert stored_names(root, "default") == []

    proc = run(root, "image", "ls", "-q", env={"CARGOHOLD_NAMESPACE": "team"})
    assert proc.returncode == 0, proc.stderr
    assert lines(proc.stdout) == ["example.com/app:1"]


def test_root_from_the_environment(root: Path, tmp_path: Path) -> None:
    seed(root, tmp_path, "example.com/app:1")
    proc = run(None, "image", "ls", "-q", env={"CARGOHOLD_ROOT": str(root)})
    assert proc.returncode == 0, proc.stderr
    assert lines(proc.stdout) == ["example.com/app:1"]


# -- interruption and terminals -------------------------------------------------------------


def wait_until(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll a condition another process brings about, failing after *limit* seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def staged_files(root: Path) -> list[Path]:
    ingest = root / "content" / "ingest"
    return [p for p in ingest.glob("*/*") if p.is_file()] if ingest.is_dir() else []


@pytest.mark.parametrize("subcommand", [["image", "import"], ["archive", "inspect"]], ids=" ".join)
def test_ctrl_c_exits_130_and_stores_nothing(
    root: Path, tmp_path: Path, subcommand: list[str]
) -> None:
    """SIGINT while the import is blocked on a pipe in the middle of a blob: exit 130, one
    line, and the store as if the import had never started."""
    builder = ArchiveBuilder()
    builder.add(builder.image(files={"big": os.urandom(4 << 20)}), name="example.com/app:1")
    data = tar_bytes(builder.members())  # the 4 MiB layer is the first blob
    seed(root, tmp_path, "example.com/seed:1")
    proc = subprocess.Popen(
        command(root, *subcommand, "-"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_environment(),
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(data[: 2 << 20])
        proc.stdin.flush()
        if subcommand[0] == "image":
            wait_until(lambda: bool(staged_files(root)), "the layer's staging file")
        else:  # inspect writes nothing: wait until it has read what was written
            stdin = proc.stdin.fileno()
            wait_until(lambda: _unread(stdin) == 0, "the first 2 MiB to be read")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, stderr
    assert stderr.decode().splitlines() == ["cargohold: interrupted"]
    assert stdout == b""
    assert stored_names(root) == ["example.com/seed:1"]
    assert staged_files(root) == []
    check = run(root, "image", "check", "--verify", "-q")
    assert check.returncode == 0, check.stderr


def _unread(pipe: int) -> int:
    """How many bytes written to *pipe* its reader has yet to read (Linux: either end)."""
    waiting = fcntl.ioctl(pipe, termios.FIONREAD, bytes(4))
    return int.from_bytes(waiting, sys.byteorder)


@pytest.mark.parametrize("subcommand", [["image", "import"], ["archive", "inspect"]], ids=" ".join)
def test_reading_an_archive_from_a_terminal_is_refused_at_once(
    root: Path, subcommand: list[str]
) -> None:
    """Like docker load: a terminal on stdin means the user forgot the redirection."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            command(root, *subcommand, "-"),
            stdin=slave,
            capture_output=True,
            env=clean_environment(),
            timeout=30,
            check=False,
        )
    finally:
        os.close(slave)
        os.close(master)
    line = assert_one_error_line(proc)
    assert "terminal" in line and "stdin" in line


# -- what a command loads -------------------------------------------------------------------

#: Runs the entry point with the arguments given, then names every module loaded.
_REPORT_MODULES = """
import atexit, sys
atexit.register(lambda: print(" ".join(sorted(sys.modules)), file=sys.stderr))
from cargohold.cli.main import main
main(sys.argv[1:])
"""


def modules_loaded_by(*args: str) -> set[str]:
    """The modules a ``cargohold`` process with *args* has loaded when it ends (it must
    succeed)."""
    proc = subprocess.run(
        [sys.executable, "-c", _REPORT_MODULES, *args],
        capture_output=True,
        env=clean_environment(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return set(proc.stderr.decode().splitlines()[-1].split())


GROUP_MODULES = {
    "cargohold.cli.archive",
    "cargohold.cli.completion",
    "cargohold.cli.content",
    "cargohold.cli.image",
    "cargohold.cli.image_transfer",
    "cargohold.cli.namespace",
}


@pytest.mark.parametrize(
    ("args", "groups"),
    [
        (["--version"], set()),
        (["image", "ls"], {"cargohold.cli.image", "cargohold.cli.completion"}),
        (["ns", "ls"], {"cargohold.cli.namespace"}),
        (["--help"], GROUP_MODULES - {"cargohold.cli.image_transfer"}),
    ],
    ids=" ".join,
)
def test_a_command_group_is_loaded_only_when_used(
    root: Path, tmp_path: Path, args: list[str], groups: set[str]
) -> None:
    """Start-up pays for the group that runs: --version loads none, image ls not even the
    transfer commands, the root's help every group (for their short help) and nothing more."""
    seed(root, tmp_path, "example.com/a:1")
    assert modules_loaded_by("--root", str(root), *args) & GROUP_MODULES == groups


def test_version_loads_no_store_code() -> None:
    """``cargohold --version`` (and every command's start) pays for the command line alone:
    the store, the model and the archive readers load only when a command uses them."""
    loaded = {m for m in modules_loaded_by("--version") if m.startswith("cargohold.")}
    loaded = {m for m in loaded if not m.startswith("cargohold.cli")}
    assert loaded <= {"cargohold.defaults", "cargohold.errors", "cargohold.version"}, loaded


def test_only_an_import_given_a_key_loads_the_cryptography_package(tmp_path: Path) -> None:
    """The signature checks' package (a compiled extension that costs about as much to load as
    the rest of an import's start-up) is loaded by the import that requires a signature, and by
    no other."""
    private = new_key()
    builder = ArchiveBuilder()
    image = builder.image()
    builder.add(image, name="example.com/a:1")
    add_artifact(
        builder,
        signature(image["digest"], "example.com/a", private),
        ref_name=sig_tag(image["digest"]),
    )
    archive = builder.write(tmp_path / "a.tar")
    key = tmp_path / "cosign.pub"
    key.write_bytes(public_pem(private))

    def loads_cryptography(*args: str) -> bool:
        return "cryptography" in modules_loaded_by("--root", str(tmp_path / "s"), *args)

    assert not loads_cryptography("image", "import", "-q", str(archive))
    assert loads_cryptography("image", "import", "--require-signature", str(key), str(archive))
