"""What a registry command loads and leaves behind at its start and end: a push the registry
already has in full does little else, so its time is mostly the interpreter's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clisupport import clean_environment

#: Runs the entry point as the ``cargohold`` script does (arguments from ``sys.argv``), then,
#: at exit, loads the registry client and prints which of the watched modules are loaded and
#: how many objects the garbage collector was told to leave alone.
_REPORT = """
import atexit, gc, sys
WATCHED = ("httpx._main", "yaml", "cargohold.operations.syncing", "cargohold.operations.synclists")

def report():
    import cargohold.registry.client  # noqa: F401  (httpx, as every registry command has it)
    loaded = [m for m in WATCHED if sys.modules.get(m) is not None]
    print("loaded:" + ",".join(loaded), "frozen:" + str(gc.get_freeze_count()), file=sys.stderr)

atexit.register(report)
from cargohold.cli.main import main
main()
"""


def _run(root: Path, *args: str) -> tuple[set[str], int]:
    proc = subprocess.run(
        [sys.executable, "-c", _REPORT, "--root", str(root), *args],
        capture_output=True,
        env=clean_environment(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    loaded, frozen = proc.stderr.decode().splitlines()[-1].split()
    return set(filter(None, loaded.removeprefix("loaded:").split(","))), int(
        frozen.removeprefix("frozen:")
    )


def test_push_and_pull_load_neither_sync_nor_httpx_command_line(tmp_path: Path) -> None:
    """``image push`` and ``image pull`` share options with ``sync`` but not its machinery (the
    YAML reader, the list walker); httpx's own command line (rich, pygments) never loads."""
    for command in ("push", "pull"):
        loaded, _ = _run(tmp_path, "image", command, "--help")
        assert loaded == set(), (command, loaded)


def test_command_line_leaves_its_objects_frozen_for_exit(tmp_path: Path) -> None:
    """The script's process freezes what it allocated before the interpreter's final
    collection, which then has nothing to walk."""
    _, frozen = _run(tmp_path, "--version")
    assert frozen > 1000
