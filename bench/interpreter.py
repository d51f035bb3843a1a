"""The interpreter every benchmark runs in, and runs cargohold and ``python3 -c pass`` with:
``bench/.venv``, made by ``setup.sh`` with cargohold's dependencies and nothing else.

A virtual environment is how cargohold is installed (README's first command, pipx), and it
keeps the system's site-packages out of every start-up: those may hold ``.pth`` files that run
at each interpreter start (one on the development machine imports certifi, about 20 ms, which
would be charged to cargohold and to the ``python3 -c pass`` reference alike and flatter every
start-up ratio). Each script calls :func:`use_bench_venv` first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final

BENCH: Final = Path(__file__).resolve().parent
VENV: Final = BENCH / ".venv"


def use_bench_venv() -> None:
    """Re-run this script under ``bench/.venv``'s Python, unless it already runs there."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    python = VENV / "bin" / "python3"
    if not python.exists():
        script = Path(sys.argv[0]).name
        raise SystemExit(f"{script}: error: {VENV} is missing: run bench/setup.sh first")
    os.execv(python, [str(python), *sys.argv])
