"""Reading sync lists: text lists and skopeo-sync YAML, and the one-line errors of bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargohold.errors import SyncListError
from cargohold.operations.synclists import read
from cargohold.registry.credentials import Credentials


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_text_list(tmp_path: Path) -> None:
    path = write(tmp_path, "images.txt", (
        "# the site's images\n"
        "\n"
        "alpine:3.19   # Docker Hub, normalised\n"
        "registry.lan:5000/team/app@sha256:" + "a" * 64 + "\n"
        "registry.lan:5000/team/tool:1 --platform linux/arm64,linux/amd64\n"
        "registry.lan:5000/team/multi:1 --all-platforms\n"
    ))  # fmt: skip
    lists = read([path])
    refs = [s.reference for s in lists.sources]
    assert refs == [
        "docker.io/library/alpine:3.19",
        "registry.lan:5000/team/app@sha256:" + "a" * 64,
        "registry.lan:5000/team/tool:1",
        "registry.lan:5000/team/multi:1",
    ]
    assert lists.sources[2].platforms == ("linux/arm64", "linux/amd64")
    assert lists.sources[3].all_platforms
    assert lists.sources[0].where == f"{path}:3"
    assert {s.list_id for s in lists.sources} == {str(path.resolve())}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("UPPER/case:1\n", ":1: invalid reference"),
        ("app:1 --platform\n", ":1: --platform needs a value"),
        ("app:1\napp:2 --platform nope/\n", ":2: "),
        ("app:1 --force\n", ":1: unexpected '--force'"),
        ("app:1 'unclosed\n", ":1: No closing quotation"),
    ],
)
def test_bad_text_lines_are_named(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, "bad.txt", text)
    with pytest.raises(SyncListError) as caught:
        read([path])
    assert str(caught.value).startswith(str(path)) and problem in str(caught.value)


def test_skopeo_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "sync.yml", (
        "registry.lan:5000:\n"
        "  images:\n"
        "    team/app: [\"1.0\", 2, \"sha256:" + "b" * 64 + "\"]\n"
        "    team/all: []\n"
        "  images-by-tag-regex:\n"
        "    team/tools: ^v1\\.[0-9]+$\n"
        "  tls-verify: false\n"
        "  cert-dir: /etc/certs\n"
        "  credentials: {username: site, password: 'pw: with colon'}\n"
        "index.docker.io:\n"
        "  images:\n"
        "    busybox: [latest]\n"
    ))  # fmt: skip
    lists = read([path])
    by_ref = {s.reference: s for s in lists.sources}
    assert list(by_ref) == [
        "registry.lan:5000/team/app:1.0",
        "registry.lan:5000/team/app:2",
        "registry.lan:5000/team/app@sha256:" + "b" * 64,
        "registry.lan:5000/team/all",
        "registry.lan:5000/team/tools",
        "docker.io/library/busybox:latest",
    ]
    every, tools = by_ref["registry.lan:5000/team/all"], by_ref["registry.lan:5000/team/tools"]
    assert every.tags is not None and every.tags.matches("anything")
    assert tools.tags is not None and tools.tags.matches("v1.12") and not tools.tags.matches("v2")
    settings = lists.registries["registry.lan:5000"]
    assert settings.tls_verify is False and settings.cert_dir == "/etc/certs"
    assert settings.credentials == Credentials("site", "pw: with colon")
    assert lists.registries["docker.io"].credentials is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &x [1]\nb: *x\n", "aliases are not accepted"),
        ("- just a list\n", "not a mapping of registries"),
        ("r.lan:\n  imagez: {}\n", "r.lan: unknown key 'imagez'"),
        ("r.lan:\n  images-by-semver: {a: '>1'}\n", "images-by-semver is not supported"),
        ("r.lan:\n  images-by-tag-regex: {a: '(?=x)'}\n", "r.lan/a: invalid pattern"),
        ("r.lan:\n  images: {a: [':bad']}\n", "r.lan/a"),
        ("r.lan:\n  images: {a: [{x: 1}]}\n", "is not a tag"),
        ("r.lan:\n  tls-verify: maybe\n", "tls-verify is not true or false"),
        ("r.lan:\n  credentials: {username: u}\n", "need a username and a password"),
        ("r.lan:\n  images: {'a:1': [x]}\n", "a repository, not an image"),
        ("r.lan: [\n", "line"),
        ("myregistry:\n  images: {a: [x]}\n", "myregistry: not a registry host"),
    ],
)
def test_bad_yaml_is_named(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(SyncListError) as caught:
        read([path])
    message = str(caught.value)
    assert message.startswith(str(path)) and problem in message and "\n" not in message


def test_unreadable_lists(tmp_path: Path) -> None:
    with pytest.raises(SyncListError, match="cannot read"):
        read([tmp_path / "absent.txt"])
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"app:1\n\xff\xfe\n")
    with pytest.raises(SyncListError, match="not UTF-8"):
        read([binary])
