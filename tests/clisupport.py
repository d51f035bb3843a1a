"""Running the real command line in tests, and seeding stores for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cargohold.store import Store
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


def run(
    root: Path | None,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m cargohold`` with a clean environment (no CARGOHOLD_* variables)."""
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
