#!/usr/bin/env bash
# Installs what bench/run.py needs, on Debian or Ubuntu, as root:
#   - debootstrap (the image's base layer), containerd with ctr, and skopeo (the peers),
#     pigz (a faster image build; optional), from Debian packages, when missing;
#   - cargohold's Python dependencies (pyproject.toml), into a virtual environment in
#     bench/.venv (and nothing else), which every benchmark re-runs itself in.
# Idempotent: what is already there is left alone. Usage: bash bench/setup.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
VENV=bench/.venv

step() {
    printf '==> %s\n' "$*"
}

apt_install() {
    if [[ $EUID -ne 0 ]]; then
        echo "setup.sh: root is needed to install: $*" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z ${APT_UPDATED:-} ]]; then
        step "apt-get update"
        apt-get update
        APT_UPDATED=1
    fi
    step "apt-get install $*"
    apt-get install -y --no-install-recommends "$@"
}

has_dependencies() {
    PYTHONPATH=src "$1" -c 'import click, rich, zstandard, platformdirs' 2>/dev/null
}

missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
{ command -v containerd && command -v ctr; } >/dev/null 2>&1 || missing+=(containerd)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v pigz >/dev/null 2>&1 || missing+=(pigz)
command -v "$PYTHON" >/dev/null 2>&1 || missing+=(python3)
if ((${#missing[@]} > 0)); then
    apt_install "${missing[@]}"
else
    step "debootstrap, containerd, ctr, skopeo and pigz are installed"
fi

# Always a virtual environment of its own (bench/interpreter.py says why): the benchmarks run
# in it, and time cargohold and `python3 -c pass` with its interpreter.
if [[ -x $VENV/bin/python3 ]] && has_dependencies "$VENV/bin/python3"; then
    step "$VENV has cargohold's dependencies"
else
    step "creating $VENV for cargohold's dependencies"
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV"; then
        rm -rf "$VENV"
        apt_install python3-venv
        "$PYTHON" -m venv "$VENV"
    fi
    mapfile -t requirements < <(
        "$VENV/bin/python3" -c 'import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))'
    )
    "$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
    has_dependencies "$VENV/bin/python3"
fi

step "versions"
containerd --version
skopeo --version
debootstrap --version 2>/dev/null || dpkg-query -W debootstrap
step "ready: python3 bench/run.py"
