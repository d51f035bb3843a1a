"""Running the real command line in tests, and seeding stores for it."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

from cargohold.operations.store import Store
from imagefactory import ArchiveBuilder

ERROR_PREFIX = "cargohold: error: "


def clean_environment() -> dict[str, str]:
    """This process's environment without CARGOHOLD_* variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}


def command(root: Path | None, *args: str) -> list[str]:
    """The argument list of ``python -m cargohold [--root ROOT] ARGS...``."""
    base = [sys.executable, "-m", "cargohold"]
    if root is not None:
        base += ["--root", str(root)]
    return [*base, *args]


#: Linux capabilities that let root ignore file permissions: DAC_OVERRIDE, DAC_READ_SEARCH
#: and FOWNER (see capabilities(7)).
_PERMISSION_OVERRIDES = (1, 2, 3)
_PR_CAPBSET_DROP = 24


def _bound_by_permissions() -> None:
    """In a child about to exec: give up, for good, what lets root ignore permission bits.

    Dropped from the bounding set, the capabilities are not granted again at exec, so the
    command runs as a user that a read-only file or directory stops. (Running it as another
    uid is not enough where the interpreter lives in root's home.) Nothing to do when the
    tests do not run as root: permission bits stop an ordinary user already.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in _PERMISSION_OVERRIDES:
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run(
    root: Path | None,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    bound_by_permissions: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m cargohold`` with a clean environment (no CARGOHOLD_* variables);
    with *bound_by_permissions*, as a user whom file permissions stop (also under root)."""
    environment = clean_environment()
    environment.update(env or {})
    return subprocess.run(
        command(root, *args),
        input=stdin,
        capture_output=True,
        env=environment,
        cwd=cwd,
        timeout=60,
        check=False,
        preexec_fn=_bound_by_permissions if bound_by_permissions else None,
    )


def lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


def assert_one_error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The process failed the cargohold way: exit 1, one ``cargohold: error:`` line, no trace."""
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    [line] = stderr.splitlines()
    assert line.startswith(ERROR_PREFIX), line
    return line


def archive(path: Path, *names: str, files: dict[str, bytes] | None = None) -> Path:
    builder = ArchiveBuilder()
    desc = builder.image(files=files)
    for name in names:
        builder.add(desc, name=name)
    return builder.write(path)


def stored_names(root: Path, namespace: str = "default") -> list[str]:
    with Store(root, namespace) as store:
        return [info.record.name for info in store.list_images()]


def seed(root: Path, tmp_path: Path, *names: str) -> None:
    """Put images under *names* into the store through the library (fast, in-process)."""
    with Store(root) as store:
        for i, name in enumerate(names):
            store.import_archive(archive(tmp_path / f"seed{i}.tar", name, files={"n": bytes([i])}))
