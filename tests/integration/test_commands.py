"""Every command of the command line, run as a user runs it: ``python -m cargohold``.

Stores are seeded in-process (fast) wherever the command under test is not the import; what
is asserted is what a user or a script sees: exit status, stdout, JSON, the one error line.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shlex
import sqlite3
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest

from cargohold.cli.main import cli
from cargohold.oci.platforms import Platform
from cargohold.operations.store import Store
from clisupport import assert_one_error_line, lines, run, stored_names
from imagefactory import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    ArchiveBuilder,
    digest_of,
    dumps,
    layer_tar,
)

HOST = str(Platform.host())
OTHER = "linux/arm64" if HOST != "linux/arm64" else "linux/amd64"
UNKNOWN_DIGEST = "sha256:" + "a" * 64


# -- building and seeding -------------------------------------------------------------------


@dataclass
class Built:
    """An image written to an archive, with every blob the test may look for."""

    name: str
    path: Path
    builder: ArchiveBuilder
    digest: str  # the image's target: a manifest or an index

    def doc(self, digest: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.builder.blobs[digest])
        return result

    def manifest(self, platform: str | None = None) -> str:
        """The manifest of *platform* (an index's child), or the target itself."""
        doc = self.doc(self.digest)
        if doc["mediaType"] == OCI_MANIFEST:
            return self.digest
        for entry in doc["manifests"]:
            p = entry["platform"]
            if "/".join(filter(None, (p["os"], p["architecture"], p.get("variant")))) == platform:
                return str(entry["digest"])
        raise AssertionError(f"no manifest for {platform}")

    def config(self, platform: str | None = None) -> str:
        return str(self.doc(self.manifest(platform))["config"]["digest"])

    def layers(self, platform: str | None = None) -> list[str]:
        return [layer["digest"] for layer in self.doc(self.manifest(platform))["layers"]]

    def blobs_of(self, platform: str | None = None) -> list[str]:
        """Manifest, config and layers of one platform."""
        return [self.manifest(platform), self.config(platform), *self.layers(platform)]


def archive_name(name: str) -> str:
    """A file name of its own for each image name."""
    return hashlib.sha256(name.encode()).hexdigest()[:12] + ".tar"


def single(tmp_path: Path, name: str, files: dict[str, bytes] | None = None) -> Built:
    builder = ArchiveBuilder()
    desc = builder.image(files=files if files is not None else {"f": name.encode()})
    builder.add(desc, name=name)
    path = builder.write(tmp_path / archive_name(name))
    return Built(name, path, builder, desc["digest"])


def multi(
    tmp_path: Path, name: str, omit_other: bool = False, created: str = "2024-01-01T00:00:00Z"
) -> Built:
    """A two-platform index (HOST and OTHER); with *omit_other* OTHER's manifest is left out."""
    builder = ArchiveBuilder()
    index = builder.multi_platform([HOST, OTHER], created=created)
    builder.add(index, name=name)
    built = Built(name, tmp_path / "unwritten", builder, index["digest"])
    omit = frozenset({built.manifest(OTHER)}) if omit_other else frozenset()
    built.path = builder.write(tmp_path / archive_name(name), omit=omit)
    return built


def configured(tmp_path: Path, name: str, config: dict[str, Any], **top: Any) -> Built:
    """A one-layer image whose config carries *config* (the ``config`` object) and *top*."""
    builder = ArchiveBuilder()
    raw = layer_tar({"etc/motd": b"hello\n"})
    layer = builder.blob(gzip.compress(raw, mtime=0), OCI_LAYER_GZIP)
    doc = {
        "created": "2024-02-03T04:05:06Z",
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [digest_of(raw)]},
        **top,
    }
    config_desc = builder.blob(dumps(doc), OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer],
    }
    desc = builder.blob(dumps(manifest), OCI_MANIFEST)
    builder.add(desc, name=name)
    path = builder.write(tmp_path / archive_name(name))
    return Built(name, path, builder, desc["digest"])


def load(root: Path, *images: Built, namespace: str = "default", **options: Any) -> None:
    with Store(root, namespace) as store:
        for image in images:
            store.import_archive(image.path, **options)


def blob_file(root: Path, digest: str) -> Path:
    return root / "content" / "blobs" / "sha256" / digest.removeprefix("sha256:")


def stored_digests(root: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (root / "content" / "blobs" / "sha256").iterdir()}


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    """stdout of a command that succeeded without a word on stderr."""
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b"", proc.stderr.decode()
    return proc.stdout.decode()


def line_with(text: str, needle: str) -> str:
    [found] = [line for line in text.splitlines() if needle in line]
    return found


def rows(text: str) -> list[list[str]]:
    """A table's rows (header first), split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


# -- image inspect --------------------------------------------------------------------------

RICH_CONFIG: dict[str, Any] = {
    "Entrypoint": ["/usr/bin/tini", "--"],
    "Cmd": ["serve", "--port=8080"],
    "Env": ["PATH=/usr/bin:/bin", "MODE=prod"],
    "WorkingDir": "/srv",
    "User": "app",
    "ExposedPorts": {"8080/tcp": {}},
    "Labels": {"org.example.team": "core", "version": "1.2"},
}
RICH_HISTORY = [
    {"created": "2024-02-03T04:05:06Z", "created_by": "COPY motd /etc/motd"},
    {"created": "2024-02-03T04:05:07Z", "created_by": "ENV MODE=prod", "empty_layer": True},
]


@dataclass
class InspectStore:
    root: Path
    partial: Built  # HOST imported, OTHER not
    full: Built  # both platforms imported
    alpine: Built  # one manifest
    rich: Built  # a config with every field


@pytest.fixture(scope="module")
def inspected(tmp_path_factory: pytest.TempPathFactory) -> InspectStore:
    """One store that the read-only inspect tests share."""
    tmp = tmp_path_factory.mktemp("inspect")
    store = InspectStore(
        tmp / "root",
        multi(tmp, "docker.io/library/multi:1"),
        multi(tmp, "docker.io/library/full:1", created="2024-05-06T07:08:09Z"),
        single(tmp, "docker.io/library/alpine:3"),
        configured(tmp, "docker.io/library/rich:1", RICH_CONFIG, history=RICH_HISTORY),
    )
    load(store.root, store.partial, platforms=[HOST])
    load(store.root, store.full, platforms="all")
    load(store.root, store.alpine, store.rich)
    return store


def test_inspect_shows_the_tree_with_platforms_and_absent_manifests(
    inspected: InspectStore,
) -> None:
    image = inspected.partial
    out = ok(run(inspected.root, "image", "inspect", "multi:1"))
    assert line_with(out, "Name:").split() == ["Name:", image.name]
    assert line_with(out, "Digest:").split() == ["Digest:", image.digest]
    assert line_with(out, "Media type:").split()[-1] == OCI_INDEX
    assert "Partial:" not in out

    index_line = line_with(out, f"index  {image.digest}")
    assert OCI_INDEX in index_line
    host = line_with(out, f"manifest  {HOST}  {image.manifest(HOST)}")
    assert "(not in the store)" not in host
    config = line_with(out, f"config  {image.config(HOST)}")
    [layer_digest] = image.layers(HOST)
    layer = line_with(out, f"layer  {layer_digest}")
    assert OCI_LAYER_GZIP in layer
    other = line_with(out, f"manifest  {OTHER}  {image.manifest(OTHER)}")
    assert other.endswith("(not in the store)")
    tree = out.splitlines()
    assert tree.index(index_line) < tree.index(host) < tree.index(config) < tree.index(layer)
    # the absent manifest's config and layers are unknown, so nothing hangs below it
    assert image.config(OTHER) not in out
    assert all(d not in out for d in image.layers(OTHER))

    # one config summary, for the manifest that is there
    assert f"{HOST} (manifest {image.manifest(HOST)})" in tree
    assert f"(manifest {image.manifest(OTHER)})" not in out
    assert line_with(out, "Cmd:").split() == ["Cmd:", '["/bin/sh"]']


def test_inspect_summarises_the_config(inspected: InspectStore) -> None:
    image = inspected.rich
    out = ok(run(inspected.root, "image", "inspect", image.name))
    tree = out.splitlines()
    start = tree.index(f"linux/amd64 (manifest {image.digest})")
    summary = [line.strip() for line in tree[start + 1 :]]
    assert "Created:     2024-02-03T04:05:06Z" in summary
    assert "Platform:    linux/amd64" in summary
    assert 'Entrypoint:  ["/usr/bin/tini", "--"]' in summary
    assert 'Cmd:         ["serve", "--port=8080"]' in summary
    env = summary.index("Env:         PATH=/usr/bin:/bin")
    assert summary[env + 1] == "MODE=prod"
    assert "Working dir: /srv" in summary
    assert "User:        app" in summary
    assert "Ports:       8080/tcp" in summary
    labels = summary.index("Labels:      org.example.team=core")
    assert summary[labels + 1] == "version=1.2"
    [layer] = image.layers()
    size = len(image.builder.blobs[layer])
    assert f"Layers:      1 ({size} B)" in summary
    history = summary.index("History:     2024-02-03T04:05:06Z  COPY motd /etc/motd")
    assert summary[history + 1] == "2024-02-03T04:05:07Z  ENV MODE=prod  (empty layer)"


TREE_KEYS = {"role", "mediaType", "digest", "size", "present"}
CONFIG_KEYS = {
    "created",
    "platform",
    "entrypoint",
    "cmd",
    "env",
    "workingDir",
    "user",
    "labels",
    "exposedPorts",
    "volumes",
    "stopSignal",
    "layers",
    "history",
}


def test_inspect_json(inspected: InspectStore) -> None:
    image = inspected.partial
    doc = json.loads(ok(run(inspected.root, "image", "inspect", "--format", "json", "multi:1")))
    assert set(doc) == {
        "name",
        "digest",
        "mediaType",
        "size",
        "labels",
        "annotations",
        "createdAt",
        "updatedAt",
        "partial",
        "tree",
        "manifests",
        "referrers",
    }
    assert doc["referrers"] == []
    assert doc["name"] == image.name
    assert doc["digest"] == image.digest
    assert doc["mediaType"] == OCI_INDEX
    assert doc["size"] == len(image.builder.blobs[image.digest])
    assert doc["labels"] == {}
    assert doc["partial"] is False

    tree = doc["tree"]
    assert set(tree) == TREE_KEYS | {"children"}
    assert (tree["role"], tree["digest"], tree["present"]) == ("index", image.digest, True)
    host, other = tree["children"]
    assert set(host) == TREE_KEYS | {"platform", "children"}
    assert (host["role"], host["platform"], host["digest"], host["present"]) == (
        "manifest",
        HOST,
        image.manifest(HOST),
        True,
    )
    assert [(c["role"], c["digest"], c["present"]) for c in host["children"]] == [
        ("config", image.config(HOST), True),
        *[("layer", d, True) for d in image.layers(HOST)],
    ]
    assert set(other) == TREE_KEYS | {"platform"}  # absent: no children
    assert (other["platform"], other["digest"], other["present"]) == (
        OTHER,
        image.manifest(OTHER),
        False,
    )

    [manifest] = doc["manifests"]
    assert set(manifest) == {
        "digest",
        "mediaType",
        "size",
        "platform",
        "layers",
        "layersSize",
        "config",
    }
    assert manifest["digest"] == image.manifest(HOST)
    assert manifest["platform"] == HOST
    assert [layer["digest"] for layer in manifest["layers"]] == image.layers(HOST)
    assert manifest["layersSize"] == sum(len(image.builder.blobs[d]) for d in image.layers(HOST))
    assert set(manifest["config"]) == CONFIG_KEYS
    assert manifest["config"]["cmd"] == ["/bin/sh"]


def test_inspect_json_of_the_config(inspected: InspectStore) -> None:
    image = inspected.rich
    doc = json.loads(ok(run(inspected.root, "image", "inspect", "--format", "json", image.name)))
    assert doc["tree"]["role"] == "manifest"
    [manifest] = doc["manifests"]
    config = manifest["config"]
    assert set(config) == CONFIG_KEYS
    assert config["entrypoint"] == RICH_CONFIG["Entrypoint"]
    assert config["cmd"] == RICH_CONFIG["Cmd"]
    assert config["env"] == RICH_CONFIG["Env"]
    assert config["labels"] == RICH_CONFIG["Labels"]
    assert config["workingDir"] == "/srv"
    assert config["user"] == "app"
    assert config["exposedPorts"] == ["8080/tcp"]
    assert config["layers"] == 1
    assert config["platform"] == "linux/amd64"
    assert [h["createdBy"] for h in config["history"]] == [
        "COPY motd /etc/motd",
        "ENV MODE=prod",
    ]
    assert [h["emptyLayer"] for h in config["history"]] == [False, True]


@pytest.mark.parametrize("which", ["index", "manifest", "config"])
def test_inspect_raw_prints_the_stored_bytes(inspected: InspectStore, which: str) -> None:
    image = inspected.full
    expected = {
        "index": image.digest,
        "manifest": image.manifest(HOST),
        "config": image.config(HOST),
    }[which]
    proc = run(inspected.root, "image", "inspect", "--raw", which, image.name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert "sha256:" + hashlib.sha256(proc.stdout).hexdigest() == expected
    assert proc.stdout == blob_file(inspected.root, expected).read_bytes()


@pytest.mark.parametrize("which", ["manifest", "config"])
def test_inspect_raw_of_a_chosen_platform(inspected: InspectStore, which: str) -> None:
    image = inspected.full
    expected = image.manifest(OTHER) if which == "manifest" else image.config(OTHER)
    proc = run(inspected.root, "image", "inspect", "--raw", which, "--platform", OTHER, image.name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == image.builder.blobs[expected]


def test_inspect_raw_is_what_content_get_prints(inspected: InspectStore) -> None:
    image = inspected.alpine
    raw = run(inspected.root, "image", "inspect", "--raw", "manifest", image.name)
    got = run(inspected.root, "content", "get", image.digest)
    assert raw.returncode == got.returncode == 0
    assert raw.stdout == got.stdout == image.builder.blobs[image.digest]


def test_inspect_raw_index_of_a_single_manifest_image_fails(inspected: InspectStore) -> None:
    proc = run(inspected.root, "image", "inspect", "--raw", "index", "alpine:3")
    line = assert_one_error_line(proc)
    assert "docker.io/library/alpine:3" in line
    assert proc.stdout == b""


def test_inspect_raw_of_a_platform_not_imported_fails(inspected: InspectStore) -> None:
    proc = run(
        inspected.root, "image", "inspect", "--raw", "manifest", "--platform", OTHER, "multi:1"
    )
    line = assert_one_error_line(proc)
    assert inspected.partial.manifest(OTHER) in line
    assert proc.stdout == b""


def test_inspect_raw_takes_one_platform(inspected: InspectStore) -> None:
    proc = run(
        inspected.root,
        *("image", "inspect", "--raw", "manifest", "full:1"),
        *("--platform", HOST, "--platform", OTHER),
    )
    assert proc.returncode == 2, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert proc.stdout == b""


@pytest.mark.parametrize(
    "options",
    [[], ["--format", "json"], ["--raw", "manifest"]],
    ids=lambda o: " ".join(o) or "text",
)
def test_inspect_of_an_unknown_image_fails(inspected: InspectStore, options: list[str]) -> None:
    proc = run(inspected.root, "image", "inspect", *options, "example.com/nosuch:1")
    line = assert_one_error_line(proc)
    assert "example.com/nosuch:1" in line
    assert proc.stdout == b""


def test_inspect_reads_a_config_with_odd_labels_leniently(root: Path, tmp_path: Path) -> None:
    """Configs vary: inspect summarises them leniently (as it does ports and volumes), so a
    ``Labels`` that is not an object is shown as no labels, not an internal error."""
    image = configured(tmp_path, "example.com/odd:1", {"Labels": ["a=b"], "Cmd": ["/odd"]})
    load(root, image)
    proc = run(root, "image", "inspect", "--format", "json", image.name)
    assert b"internal error" not in proc.stderr
    assert proc.returncode == 0, proc.stderr
    [manifest] = json.loads(proc.stdout)["manifests"]
    assert manifest["config"]["labels"] == {}
    assert manifest["config"]["cmd"] == ["/odd"]


# -- text from archives on the terminal -----------------------------------------------------

#: What an archive may put in any string: an OSC 8 hyperlink, a screen clear, a forged line, a
#: C1 CSI, a bidi override, and rich markup.
HOSTILE = (
    "\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07 \x1b[2J\rback\nforged line"
    " \x9b31m \u202eevil [bold red]loud[/] [link=http://evil.example/]here[/link]"
)
#: How HOSTILE reads once escaped.
HOSTILE_SHOWN = (
    "\\x1b]8;;http://evil.example/\\x07click\\x1b]8;;\\x07 \\x1b[2J\\rback\\nforged line"
    " \\x9b31m \\u202eevil [bold red]loud[/] [link=http://evil.example/]here[/link]"
)


def assert_terminal_safe(output: bytes) -> str:
    """Nothing in *output* a terminal would act on: only printable characters and newlines."""
    text = output.decode()
    unsafe = {char for char in text if not char.isprintable() and char != "\n"}
    assert not unsafe, f"unescaped {sorted(unsafe)!r} in {text!r}"
    assert not any(line.startswith("forged") for line in text.splitlines())
    return text


def test_inspect_escapes_what_the_config_says(root: Path, tmp_path: Path) -> None:
    config = {
        "Env": [f"A={HOSTILE}", "B=plain"],
        "User": HOSTILE,
        "WorkingDir": HOSTILE,
        "Labels": {HOSTILE: HOSTILE, "plain": "yes"},
        "ExposedPorts": {HOSTILE: {}},
        "Volumes": {HOSTILE: {}},
        "Entrypoint": [HOSTILE],
    }
    history = [{"created": HOSTILE, "created_by": HOSTILE}, {"comment": HOSTILE}]
    image = configured(tmp_path, "example.com/hostile:1", config, history=history)
    load(root, image)
    out = assert_terminal_safe(ok(run(root, "image", "inspect", image.name)).encode())
    summary = [line.strip() for line in out.splitlines()]
    assert f"User:        {HOSTILE_SHOWN}" in summary
    assert f"Working dir: {HOSTILE_SHOWN}" in summary
    env = summary.index(f"Env:         A={HOSTILE_SHOWN}")
    assert summary[env + 1] == "B=plain"
    assert f"Labels:      {HOSTILE_SHOWN}={HOSTILE_SHOWN}" in summary
    assert f"Ports:       {HOSTILE_SHOWN}" in summary
    assert f"Volumes:     {HOSTILE_SHOWN}" in summary
    assert f"History:     {HOSTILE_SHOWN}  {HOSTILE_SHOWN}" in summary
    # JSON stays exact
    doc = json.loads(ok(run(root, "image", "inspect", "--format", "json", image.name)))
    [manifest] = doc["manifests"]
    assert manifest["config"]["user"] == HOSTILE
    assert manifest["config"]["env"][0] == f"A={HOSTILE}"


def test_labels_are_escaped_in_ls_label_and_inspect(root: Path, tmp_path: Path) -> None:
    image = single(tmp_path, "example.com/app:1")
    load(root, image)
    out = assert_terminal_safe(ok(run(root, "image", "label", image.name, f"k={HOSTILE}")).encode())
    assert out == f"k={HOSTILE_SHOWN}\n"
    for args in (["image", "ls"], ["image", "inspect", image.name]):
        assert HOSTILE_SHOWN in assert_terminal_safe(ok(run(root, *args)).encode())
    [listed] = json.loads(ok(run(root, "image", "ls", "--format", "json")))
    assert listed["labels"] == {"k": HOSTILE}


def test_error_messages_are_escaped(root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no\x1b]0;owned\x07such.tar"
    line = assert_one_error_line(run(root, "image", "import", str(missing)))
    assert_terminal_safe(line.encode())
    assert "no\\x1b]0;owned\\x07such.tar" in line


# -- image check ----------------------------------------------------------------------------

CHECK_KEYS = {
    "name",
    "digest",
    "mediaType",
    "platform",
    "manifest",
    "status",
    "available",
    "required",
    "size",
    "totalSize",
    "missing",
    "corrupt",
    "problem",
}


@pytest.fixture
def alpine(root: Path, tmp_path: Path) -> Built:
    image = single(tmp_path, "docker.io/library/alpine:3")
    load(root, image)
    return image


def check_row(out: str, name: str) -> list[str]:
    header, *body = rows(out)
    assert header == ["REF", "TYPE", "DIGEST", "PLATFORM", "STATUS", "SIZE"]
    [row] = [r for r in body if r[0] == name]
    return row


def test_check_of_a_complete_image(root: Path, alpine: Built) -> None:
    out = ok(run(root, "image", "check"))
    row = check_row(out, alpine.name)
    size = sum(len(alpine.builder.blobs[d]) for d in alpine.blobs_of())
    assert row == [
        alpine.name,
        OCI_MANIFEST,
        alpine.digest,
        "linux/amd64",
        "complete (2/2)",
        f"{size} B/{size} B",
    ]


def test_check_json(root: Path, alpine: Built) -> None:
    [result] = json.loads(ok(run(root, "image", "check", "--format", "json", "alpine:3")))
    assert set(result) == CHECK_KEYS
    size = sum(len(alpine.builder.blobs[d]) for d in alpine.blobs_of())
    assert result == {
        "name": alpine.name,
        "digest": alpine.digest,
        "mediaType": OCI_MANIFEST,
        "platform": "linux/amd64",
        "manifest": alpine.digest,
        "status": "complete",
        "available": 2,
        "required": 2,
        "size": size,
        "totalSize": size,
        "missing": [],
        "corrupt": [],
        "problem": None,
    }


def test_check_all_platforms_of_a_one_platform_import(root: Path, tmp_path: Path) -> None:
    image = multi(tmp_path, "docker.io/library/multi:1")
    load(root, image, platforms=[HOST])
    assert "complete (2/2)" in check_row(ok(run(root, "image", "check")), image.name)

    proc = run(root, "image", "check", "--all-platforms")
    assert_one_error_line(proc)
    out = proc.stdout.decode()
    by_platform = {row[3]: row[4] for row in rows(out)[1:] if len(row) == 6}
    assert by_platform == {HOST: "complete (2/2)", OTHER: "unavailable (0/?)"}
    assert f"{image.name} ({OTHER}): missing {image.manifest(OTHER)}" in out.splitlines()

    proc = run(root, "image", "check", "--platform", OTHER, "--format", "json")
    assert_one_error_line(proc)
    [result] = json.loads(proc.stdout)
    assert (result["status"], result["platform"], result["required"]) == (
        "unavailable",
        OTHER,
        None,
    )
    assert result["missing"] == [image.manifest(OTHER)]


def test_check_of_a_missing_layer(root: Path, alpine: Built) -> None:
    [layer] = alpine.layers()
    blob_file(root, layer).unlink()

    proc = run(root, "image", "check")
    assert_one_error_line(proc)
    out = proc.stdout.decode()
    assert check_row(out, alpine.name)[4] == "incomplete (1/2)"
    assert f"{alpine.name} (linux/amd64): missing {layer}" in out.splitlines()

    proc = run(root, "image", "check", "--format", "json")
    assert_one_error_line(proc)
    [result] = json.loads(proc.stdout)
    assert (result["status"], result["available"], result["required"]) == ("incomplete", 1, 2)
    assert result["missing"] == [layer]


def overwrite(path: Path, data: bytes) -> None:
    path.chmod(0o644)  # blobs are read-only
    path.write_bytes(data)


def test_check_verify_finds_a_blob_changed_in_place(root: Path, alpine: Built) -> None:
    [layer] = alpine.layers()
    path = blob_file(root, layer)
    data = path.read_bytes()
    overwrite(path, data[:-1] + bytes([data[-1] ^ 0xFF]))

    out = ok(run(root, "image", "check"))  # same size: only re-hashing can tell
    assert check_row(out, alpine.name)[4] == "complete (2/2)"

    proc = run(root, "image", "check", "--verify")
    assert_one_error_line(proc)
    out = proc.stdout.decode()
    assert check_row(out, alpine.name)[4] == "corrupt (2/2)"
    assert f"{alpine.name} (linux/amd64): corrupt {layer}" in out.splitlines()

    proc = run(root, "image", "check", "--verify", "--format", "json")
    assert_one_error_line(proc)
    [result] = json.loads(proc.stdout)
    assert (result["status"], result["corrupt"], result["missing"]) == ("corrupt", [layer], [])


def test_check_finds_a_blob_of_the_wrong_size_without_verify(root: Path, alpine: Built) -> None:
    [layer] = alpine.layers()
    path = blob_file(root, layer)
    overwrite(path, path.read_bytes() + b"\0")

    proc = run(root, "image", "check")
    assert_one_error_line(proc)
    out = proc.stdout.decode()
    assert check_row(out, alpine.name)[4].startswith("corrupt")
    assert f"{alpine.name} (linux/amd64): corrupt {layer}" in out.splitlines()


def garble(path: Path) -> None:
    """Replace a document with bytes of the same size that are not JSON: only parsing (or
    re-hashing) can tell."""
    overwrite(path, b"\x00" * path.stat().st_size)


def test_check_without_verify_reads_every_config(root: Path, alpine: Built) -> None:
    config = alpine.config()
    garble(blob_file(root, config))

    proc = run(root, "image", "check")
    assert_one_error_line(proc)
    out = proc.stdout.decode()
    assert check_row(out, alpine.name)[4] == "invalid (2/2)"
    problem = line_with(out, f"{alpine.name} (no platform): ")
    # documents are re-hashed when read: the problem says the store's copy is damaged
    assert f"{config} in the store does not match its digest" in problem

    proc = run(root, "image", "check", "--format", "json")
    assert_one_error_line(proc)
    [result] = json.loads(proc.stdout)
    assert (result["status"], result["required"], result["corrupt"]) == ("invalid", 2, [])
    assert config in result["problem"]
    assert run(root, "image", "check", "-q").stdout == b""

    proc = run(root, "image", "check", "--verify", "--format", "json")
    assert_one_error_line(proc)
    [result] = json.loads(proc.stdout)
    assert (result["status"], result["corrupt"]) == ("corrupt", [config])


def test_check_of_an_index_whose_manifest_is_not_json(root: Path, tmp_path: Path) -> None:
    image = multi(tmp_path, "docker.io/library/multi:1")
    load(root, image, platforms="all")
    manifest = image.manifest(OTHER)
    garble(blob_file(root, manifest))

    proc = run(root, "image", "check", "--format", "json")
    assert_one_error_line(proc)
    by_manifest = {r["manifest"]: r for r in json.loads(proc.stdout)}
    assert by_manifest[image.manifest(HOST)]["status"] == "complete"
    assert by_manifest[manifest]["status"] == "invalid"
    assert f"{manifest} in the store does not match its digest" in by_manifest[manifest]["problem"]

    proc = run(root, "image", "check", "--verify", "--format", "json")
    assert_one_error_line(proc)
    by_manifest = {r["manifest"]: r for r in json.loads(proc.stdout)}
    assert (by_manifest[manifest]["status"], by_manifest[manifest]["corrupt"]) == (
        "corrupt",
        [manifest],
    )


def test_check_of_an_index_that_is_not_json(root: Path, tmp_path: Path) -> None:
    image = multi(tmp_path, "docker.io/library/multi:1")
    load(root, image, platforms="all")
    garble(blob_file(root, image.digest))

    for options, status in (([], "invalid"), (["--verify"], "corrupt")):
        proc = run(root, "image", "check", "--format", "json", *options)
        assert_one_error_line(proc)
        [result] = json.loads(proc.stdout)
        assert result["status"] == status
        assert f"{image.digest} in the store does not match its digest" in result["problem"]


def test_check_quiet_prints_the_complete_images(root: Path, tmp_path: Path) -> None:
    good = single(tmp_path, "example.com/good:1")
    bad = single(tmp_path, "example.com/bad:1")
    load(root, good, bad)
    assert ok(run(root, "image", "check", "-q")).splitlines() == [bad.name, good.name]

    blob_file(root, bad.layers()[0]).unlink()
    proc = run(root, "image", "check", "-q")
    assert_one_error_line(proc)
    assert lines(proc.stdout) == [good.name]


def test_check_of_a_partial_import(root: Path, tmp_path: Path) -> None:
    image = multi(tmp_path, "docker.io/library/part:1", omit_other=True)
    load(root, image, platforms="all", skip_missing=True)

    out = ok(run(root, "image", "check"))
    statuses = [row[4] for row in rows(out)[1:]]
    assert statuses == ["complete (2/2)", "partial (1 of 2 manifests imported (--skip-missing))"]

    results = json.loads(ok(run(root, "image", "check", "--format", "json")))
    assert [(r["status"], r["platform"]) for r in results] == [
        ("complete", HOST),
        ("partial", None),
    ]
    assert ok(run(root, "image", "check", "-q")).splitlines() == [image.name]

    doc = json.loads(ok(run(root, "image", "inspect", "--format", "json", image.name)))
    assert doc["partial"] is True


def test_check_of_an_unknown_image_fails(root: Path, alpine: Built) -> None:
    proc = run(root, "image", "check", alpine.name, "example.com/nosuch:1")
    line = assert_one_error_line(proc)
    assert "example.com/nosuch:1" in line
    assert proc.stdout == b""


# -- image label ----------------------------------------------------------------------------


def image_labels(root: Path, name: str) -> dict[str, str]:
    with Store(root) as store:
        return store.resolve(name).labels


def test_label_sets_and_removes(root: Path, alpine: Built) -> None:
    out = ok(run(root, "image", "label", "alpine:3", "team=core", "org.example.tier=1"))
    assert out.splitlines() == ["org.example.tier=1", "team=core"]
    out = ok(run(root, "image", "label", "alpine:3", "team=", "env=prod"))
    assert out.splitlines() == ["env=prod", "org.example.tier=1"]
    assert image_labels(root, alpine.name) == {"env": "prod", "org.example.tier": "1"}

    [row] = rows(ok(run(root, "image", "ls")))[1:]
    assert row[0] == alpine.name
    assert row[-1] == "env=prod,org.example.tier=1"


def test_label_replace_all(root: Path, alpine: Built) -> None:
    with Store(root) as store:
        store.label(alpine.name, {"a": "1", "b": "2"})
    assert ok(run(root, "image", "label", "-r", "alpine:3", "c=3")).splitlines() == ["c=3"]
    assert image_labels(root, alpine.name) == {"c": "3"}


def test_label_json(root: Path, alpine: Built) -> None:
    doc = json.loads(ok(run(root, "image", "label", "--format", "json", "alpine:3", "k=v")))
    assert doc == {"name": alpine.name, "labels": {"k": "v"}}


def test_label_without_equals_is_a_usage_error(root: Path, alpine: Built) -> None:
    proc = run(root, "image", "label", "alpine:3", "a=1", "nonsense")
    assert proc.returncode == 2, proc.stderr
    assert b"nonsense" in proc.stderr
    assert b"Traceback" not in proc.stderr
    assert image_labels(root, alpine.name) == {}


@pytest.mark.parametrize(
    ("ref", "label"),
    [("alpine:3", "=empty-key"), ("alpine:3", "k=" + "v" * 4096), ("nosuch:1", "a=b")],
    ids=["empty-key", "too-long", "unknown-image"],
)
def test_label_errors(root: Path, alpine: Built, ref: str, label: str) -> None:
    assert_one_error_line(run(root, "image", "label", ref, label))
    assert image_labels(root, alpine.name) == {}


def test_labels_survive_a_reimport(root: Path, alpine: Built) -> None:
    ok(run(root, "image", "label", alpine.name, "keep=me"))
    doc = json.loads(ok(run(root, "image", "import", "--format", "json", str(alpine.path))))
    assert doc["images"] == [{"name": alpine.name, "digest": alpine.digest, "action": "unchanged"}]
    [entry] = json.loads(ok(run(root, "image", "ls", "--format", "json")))
    assert entry["labels"] == {"keep": "me"}


# -- image ls filters -----------------------------------------------------------------------


@dataclass
class FilterStore:
    root: Path
    digests: dict[str, str]


@pytest.fixture(scope="module")
def filtered(tmp_path_factory: pytest.TempPathFactory) -> FilterStore:
    tmp = tmp_path_factory.mktemp("filters")
    labels = {
        "docker.io/library/alpine:3": {"org.example.team": "a", "env": "prod"},
        "docker.io/library/alpine:edge": {"org.example.team": "b"},
        "example.com/app:1": {"env": "prod"},
        "example.com/app:2": {},
    }
    images = [single(tmp, name) for name in labels]
    root = tmp / "root"
    load(root, *images)
    with Store(root) as store:
        for name, wanted in labels.items():
            store.label(name, wanted)
    return FilterStore(root, {image.name: image.digest for image in images})


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["name~=^example\\.com/"], ["example.com/app:1", "example.com/app:2"]),
        (["name==docker.io/library/alpine:3"], ["docker.io/library/alpine:3"]),
        (['labels."org.example.team"==a'], ["docker.io/library/alpine:3"]),
        (["labels.env==prod"], ["docker.io/library/alpine:3", "example.com/app:1"]),
        (["target.digest=={app1}"], ["example.com/app:1"]),
        (
            ["name==example.com/app:2", 'labels."org.example.team"==b'],
            ["docker.io/library/alpine:edge", "example.com/app:2"],
        ),
        (["labels.env==prod,name~=alpine"], ["docker.io/library/alpine:3"]),
        (
            ['labels."org.example.team"!=a'],
            ["docker.io/library/alpine:edge", "example.com/app:1", "example.com/app:2"],
        ),
    ],
    ids=["regex", "name", "dotted-label", "label", "digest", "or", "and", "not-equal"],
)
def test_ls_filters(filtered: FilterStore, filters: list[str], expected: list[str]) -> None:
    args = [f.replace("{app1}", filtered.digests["example.com/app:1"]) for f in filters]
    assert ok(run(filtered.root, "image", "ls", "-q", *args)).splitlines() == expected


@pytest.mark.parametrize(
    "bad", ["bogus==1", "name~=[", 'labels."unterminated==x'], ids=["field", "regex", "quote"]
)
def test_ls_invalid_filter(filtered: FilterStore, bad: str) -> None:
    proc = run(filtered.root, "image", "ls", "name~=app", bad)
    line = assert_one_error_line(proc)
    assert f"invalid filter '{bad}'" in line
    assert proc.stdout == b""


def test_ls_regex_is_linear_on_a_hostile_name(root: Path, tmp_path: Path) -> None:
    """A backtracking engine would take ages on (a+)+$ against a long run of a's; RE2 does not
    (run() gives up after 60 s, which fails the test)."""
    name = f"example.com/{'a' * 60}:latest"
    load(root, single(tmp_path, name))
    assert ok(run(root, "image", "ls", "-q", "name~=(a+)+$")) == ""
    assert ok(run(root, "image", "ls", "-q", "name~=/(a+)+:latest$/")).splitlines() == [name]


@pytest.mark.parametrize(
    "bad", ["name~=(a)\\1", "name~=a(?=b)", "labels.x~=(?<!a)b"], ids=["backref", "ahead", "behind"]
)
def test_ls_non_re2_pattern_is_one_line_error(filtered: FilterStore, bad: str) -> None:
    proc = run(filtered.root, "image", "ls", bad)
    line = assert_one_error_line(proc)
    assert f"invalid filter '{bad}'" in line and "invalid regular expression" in line
    assert proc.stdout == b""


# -- content --------------------------------------------------------------------------------


def test_content_ls(root: Path, tmp_path: Path) -> None:
    shared = single(tmp_path, "docker.io/library/alpine:3")
    load(root, shared)
    load(root, shared, namespace="other")
    out = ok(run(root, "content", "ls"))
    header, *body = out.splitlines()
    assert header.split() == ["DIGEST", "SIZE", "AGE", "USED", "BY"]
    assert sorted(line.split()[0] for line in body) == sorted(shared.blobs_of())
    for line in body:
        digest, size, unit, *_, used_by = line.split()
        assert f"{size} {unit}" == f"{len(shared.builder.blobs[digest])} B"
        assert used_by == f"{shared.name},other/{shared.name}"

    # seen from the other namespace, the default one's image is the qualified one
    out = ok(run(root, "-n", "other", "content", "ls"))
    assert line_with(out, shared.digest).split()[-1] == f"default/{shared.name},{shared.name}"


def test_content_ls_quiet_and_json(root: Path, tmp_path: Path) -> None:
    image = single(tmp_path, "docker.io/library/alpine:3")
    other = single(tmp_path, "example.com/team/app:1")
    load(root, image)
    load(root, other, namespace="team")
    digests = sorted(image.blobs_of() + other.blobs_of())
    assert ok(run(root, "content", "ls", "-q")).splitlines() == digests

    entries = json.loads(ok(run(root, "content", "ls", "--format", "json")))
    assert [e["digest"] for e in entries] == digests
    for entry in entries:
        assert set(entry) == {"digest", "size", "createdAt", "usedBy"}
        if entry["digest"] in image.blobs_of():
            expected = [{"namespace": "default", "name": image.name}]
            assert entry["size"] == len(image.builder.blobs[entry["digest"]])
        else:
            expected = [{"namespace": "team", "name": other.name}]
        assert entry["usedBy"] == expected


@pytest.mark.parametrize("role", ["manifest", "config", "layer"])
def test_content_get(root: Path, alpine: Built, role: str) -> None:
    digest = dict(zip(["manifest", "config", "layer"], alpine.blobs_of(), strict=True))[role]
    proc = run(root, "content", "get", digest)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == alpine.builder.blobs[digest]


@pytest.mark.parametrize(
    "digest", [UNKNOWN_DIGEST, "sha256:xyz", "md5:" + "0" * 32], ids=["unknown", "bad-hex", "md5"]
)
def test_content_get_failures(root: Path, alpine: Built, digest: str) -> None:
    proc = run(root, "content", "get", digest)
    line = assert_one_error_line(proc)
    assert digest in line
    assert proc.stdout == b""


def test_content_rm_refuses_used_content(root: Path, alpine: Built) -> None:
    before = stored_digests(root)
    [layer] = alpine.layers()
    proc = run(root, "content", "rm", layer)
    line = assert_one_error_line(proc)
    assert layer in line and alpine.name in line and "--force" in line
    assert proc.stdout == b""
    assert stored_digests(root) == before


def test_content_rm_force_leaves_the_image_incomplete(root: Path, alpine: Built) -> None:
    [layer] = alpine.layers()
    assert ok(run(root, "content", "rm", "--force", layer)).splitlines() == [layer]
    assert not blob_file(root, layer).exists()
    proc = run(root, "image", "check")
    assert_one_error_line(proc)
    assert check_row(proc.stdout.decode(), alpine.name)[4] == "incomplete (1/2)"


def test_content_rm_of_unused_content(root: Path, tmp_path: Path) -> None:
    kept = single(tmp_path, "example.com/kept:1")
    dropped = single(tmp_path, "example.com/dropped:1")
    load(root, kept, dropped)
    with Store(root) as store:
        store.remove([dropped.name], collect_garbage=False)
    [layer] = dropped.layers()
    assert ok(run(root, "content", "rm", layer)).splitlines() == [layer]
    assert stored_digests(root) == set(kept.blobs_of() + dropped.blobs_of()) - {layer}


def test_content_rm_of_an_unknown_digest_removes_the_others(root: Path, tmp_path: Path) -> None:
    image = single(tmp_path, "example.com/dropped:1")
    load(root, image)
    with Store(root) as store:
        store.remove([image.name], collect_garbage=False)
    [layer] = image.layers()
    proc = run(root, "content", "rm", "--format", "json", UNKNOWN_DIGEST, layer)
    line = assert_one_error_line(proc)
    assert UNKNOWN_DIGEST in line
    assert json.loads(proc.stdout) == {"removed": [layer], "missing": [UNKNOWN_DIGEST]}
    assert stored_digests(root) == {image.manifest(), image.config()}


def test_content_rm_of_an_invalid_digest(root: Path, alpine: Built) -> None:
    before = stored_digests(root)
    line = assert_one_error_line(run(root, "content", "rm", "--force", "sha256:nothex"))
    assert "sha256:nothex" in line
    assert stored_digests(root) == before


# -- a store blob that is not what was committed --------------------------------------------


def replace_blob(root: Path, digest: str, kind: str, elsewhere: Path) -> Path:
    """Put something other than the blob's regular file under its name in the store: a symlink
    to a faithful copy elsewhere, a symlink to nothing, or a FIFO."""
    path = blob_file(root, digest)
    data = path.read_bytes()
    path.unlink()
    if kind == "symlink":
        elsewhere.write_bytes(data)  # same bytes: a size check alone cannot tell
        path.symlink_to(elsewhere)
    elif kind == "dangling symlink":
        path.symlink_to(elsewhere / "nowhere")
    else:
        os.mkfifo(path)
    return path


def assert_names_the_repair(line: str, digest: str) -> None:
    assert digest in line and "in the store" in line and "the store's copy is damaged" in line
    assert "image check --verify" in line and f"content rm --force {digest}" in line


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_content_get_refuses_a_blob_that_is_not_a_regular_file(
    root: Path, tmp_path: Path, alpine: Built, kind: str
) -> None:
    [layer] = alpine.layers()
    replace_blob(root, layer, kind, tmp_path / "copy")
    proc = run(root, "content", "get", layer)  # a FIFO opened to be read would block here
    line = assert_one_error_line(proc)
    assert_names_the_repair(line, layer)
    assert ("symbolic link" if kind == "symlink" else "FIFO") in line
    assert proc.stdout == b""


def test_export_refuses_a_blob_that_is_a_symlink(root: Path, tmp_path: Path, alpine: Built) -> None:
    [layer] = alpine.layers()
    replace_blob(root, layer, "symlink", tmp_path / "copy")
    out = tmp_path / "out" / "image.tar"
    out.parent.mkdir()
    line = assert_one_error_line(run(root, "image", "export", str(out), alpine.name))
    assert_names_the_repair(line, layer)
    assert list(out.parent.iterdir()) == []
    proc = run(root, "image", "export", "-", alpine.name)
    assert_names_the_repair(assert_one_error_line(proc), layer)


def test_the_named_repair_works_for_a_symlinked_blob(
    root: Path, tmp_path: Path, alpine: Built
) -> None:
    [layer] = alpine.layers()
    replace_blob(root, layer, "symlink", tmp_path / "copy")
    proc = run(root, "image", "check", "--verify")
    assert_one_error_line(proc)
    assert f"{alpine.name} (linux/amd64): corrupt {layer}" in proc.stdout.decode().splitlines()
    assert ok(run(root, "content", "rm", "--force", layer)).splitlines() == [layer]
    ok(run(root, "image", "import", str(alpine.path)))
    proc = run(root, "content", "get", layer)
    assert (proc.returncode, proc.stdout) == (0, alpine.builder.blobs[layer])
    ok(run(root, "image", "check", "--verify"))


def test_content_rm_removes_a_blob_that_is_a_symlink_to_nothing(
    root: Path, tmp_path: Path, alpine: Built
) -> None:
    [layer] = alpine.layers()
    path = replace_blob(root, layer, "dangling symlink", tmp_path)
    assert ok(run(root, "content", "rm", "--force", layer)).splitlines() == [layer]
    assert not os.path.lexists(path)


def test_content_get_verify_hands_out_every_byte_then_fails(root: Path, alpine: Built) -> None:
    [layer] = alpine.layers()
    path = blob_file(root, layer)
    data = path.read_bytes()
    changed = data[:-1] + bytes([data[-1] ^ 0xFF])
    overwrite(path, changed)
    assert run(root, "content", "get", layer).stdout == changed  # sizes only, by default
    proc = run(root, "content", "get", "--verify", layer)
    line = assert_one_error_line(proc)
    assert_names_the_repair(line, layer)
    assert "does not match its digest" in line
    assert proc.stdout == changed
    assert (
        ok(run(root, "content", "get", "--verify", alpine.config())).encode()
        == (alpine.builder.blobs[alpine.config()])
    )


@pytest.mark.parametrize("compress", ["none", "gzip"])
def test_export_verify_fails_on_a_changed_blob(
    root: Path, tmp_path: Path, alpine: Built, compress: str
) -> None:
    [layer] = alpine.layers()
    path = blob_file(root, layer)
    data = path.read_bytes()
    overwrite(path, data[:-1] + bytes([data[-1] ^ 0xFF]))
    out = tmp_path / "out" / "image.tar"
    out.parent.mkdir()
    export = ["image", "export", "--verify", "--compress", compress]
    line = assert_one_error_line(run(root, *export, str(out), alpine.name))
    assert_names_the_repair(line, layer)
    assert list(out.parent.iterdir()) == [], "a file or temporary file was left"

    # On a stream the archive stops short: no index documents, and no compressed stream's end.
    proc = run(root, *export, "-", alpine.name)
    assert_names_the_repair(assert_one_error_line(proc), layer)
    stream = proc.stdout
    if compress == "gzip":
        with pytest.raises(EOFError):
            gzip.decompress(stream)
        stream = zlib.decompressobj(wbits=31).decompress(stream)  # what it holds, if anything
    else:
        assert f"blobs/sha256/{layer.removeprefix('sha256:')}".encode() in stream
    for document in (b"index.json", b"manifest.json", b"oci-layout"):
        assert document not in stream


# -- namespaces -----------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["namespace", "namespaces", "ns"])
def test_namespace_create_and_ls(root: Path, group: str) -> None:
    assert ok(run(root, group, "create", "team")).splitlines() == ["team"]
    header, *body = rows(ok(run(root, group, "ls")))
    assert header == ["NAME", "IMAGES"]
    assert body == [["team", "0"]]


def test_namespace_create_twice_fails(root: Path) -> None:
    with Store(root) as store:
        store.create_namespace("team")
    line = assert_one_error_line(run(root, "namespace", "create", "team"))
    assert "team" in line


def test_namespace_rm_of_a_namespace_with_images_is_refused(root: Path, tmp_path: Path) -> None:
    image = single(tmp_path, "example.com/app:1")
    load(root, image, namespace="team")
    proc = run(root, "namespace", "rm", "team")
    line = assert_one_error_line(proc)
    assert line.endswith("namespace team still has 1 image; remove it first")
    assert proc.stdout == b""
    assert stored_names(root, "team") == [image.name]
    with Store(root) as store:
        assert [(n.name, n.images) for n in store.namespaces()] == [("team", 1)]


def test_namespace_rm_of_an_empty_namespace(root: Path) -> None:
    with Store(root) as store:
        store.create_namespace("team")
        store.create_namespace("keep")
    assert ok(run(root, "ns", "rm", "team")).splitlines() == ["team"]
    with Store(root) as store:
        assert [n.name for n in store.namespaces()] == ["keep"]


def test_namespace_rm_of_an_unknown_namespace_fails(root: Path) -> None:
    line = assert_one_error_line(run(root, "namespace", "rm", "nosuch"))
    assert "nosuch" in line


def test_import_into_a_new_namespace_creates_it(root: Path, tmp_path: Path) -> None:
    image = single(tmp_path, "example.com/app:1")
    load(root, image)
    ok(run(root, "-n", "other", "image", "import", "-q", str(image.path)))
    entries = json.loads(ok(run(root, "namespace", "ls", "--format", "json")))
    for entry in entries:
        assert set(entry) == {"name", "images", "createdAt"}
    assert [(e["name"], e["images"]) for e in entries] == [("default", 1), ("other", 1)]
    assert ok(run(root, "namespaces", "ls", "-q")).splitlines() == ["default", "other"]


# -- tag, rm and export reports -------------------------------------------------------------


def test_tag_json(root: Path, alpine: Built) -> None:
    proc = run(root, "image", "tag", "--format", "json", "alpine:3", "example.com/a:1", "b:2")
    doc = json.loads(ok(proc))
    assert doc == {
        "source": alpine.name,
        "names": ["example.com/a:1", "docker.io/library/b:2"],
        "digest": alpine.digest,
    }
    assert stored_names(root) == [alpine.name, "docker.io/library/b:2", "example.com/a:1"]


def test_tag_and_rm_quiet(root: Path, alpine: Built) -> None:
    assert ok(run(root, "image", "tag", "-q", alpine.name, "example.com/copy:1")) == ""
    assert stored_names(root) == [alpine.name, "example.com/copy:1"]
    assert ok(run(root, "image", "rm", "-q", "example.com/copy:1")) == ""
    assert stored_names(root) == [alpine.name]


def test_rm_json(root: Path, tmp_path: Path) -> None:
    gone = single(tmp_path, "example.com/gone:1")
    kept = single(tmp_path, "example.com/kept:1")
    load(root, gone, kept)
    proc = run(root, "image", "rm", "--format", "json", gone.name, "example.com/nosuch:1")
    line = assert_one_error_line(proc)
    assert "example.com/nosuch:1" in line
    assert json.loads(proc.stdout) == {
        "removed": [gone.name],
        "missing": ["example.com/nosuch:1"],
        "blobsRemoved": 3,
        "bytesFreed": sum(len(gone.builder.blobs[d]) for d in gone.blobs_of()),
    }
    assert stored_digests(root) == set(kept.blobs_of())


def test_rm_no_gc_json(root: Path, alpine: Built) -> None:
    doc = json.loads(ok(run(root, "image", "rm", "--no-gc", "--format", "json", "alpine:3")))
    assert doc == {"removed": [alpine.name], "missing": [], "blobsRemoved": 0, "bytesFreed": 0}
    assert stored_digests(root) == set(alpine.blobs_of())


EXPORT_KEYS = {
    "images",
    "blobs",
    "bytesWritten",
    "skippedNonDistributable",
    "blobsOmitted",
    "bytesOmitted",
}


def test_export_json_report(root: Path, tmp_path: Path, alpine: Built) -> None:
    out = tmp_path / "out.tar"
    doc = json.loads(
        ok(run(root, "image", "export", "--output-format", "json", str(out), "alpine:3"))
    )
    assert set(doc) == EXPORT_KEYS
    assert doc["images"] == [
        {"name": alpine.name, "digest": alpine.digest, "mediaType": OCI_MANIFEST}
    ]
    assert doc["blobs"] == 3
    assert doc["bytesWritten"] == out.stat().st_size
    assert doc["skippedNonDistributable"] == 0
    assert (doc["blobsOmitted"], doc["bytesOmitted"]) == (0, 0)  # no --against: a full archive

    # with the archive on stdout, the report is on stderr
    proc = run(root, "image", "export", "--output-format", "json", "-", alpine.name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == out.read_bytes()
    assert json.loads(proc.stderr) == doc


def test_export_to_a_name_of_stdout_reports_on_stderr(
    root: Path, tmp_path: Path, alpine: Built
) -> None:
    out = tmp_path / "out.tar"
    ok(run(root, "image", "export", str(out), alpine.name))
    proc = run(root, "image", "export", "--output-format", "json", "/dev/stdout", alpine.name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == out.read_bytes()  # the archive alone, no report after it
    assert [i["name"] for i in json.loads(proc.stderr)["images"]] == [alpine.name]


def test_export_quiet_text_prints_nothing(root: Path, tmp_path: Path, alpine: Built) -> None:
    out = tmp_path / "out.tar"
    assert ok(run(root, "image", "export", "-q", str(out), alpine.name)) == ""
    assert out.stat().st_size > 0


# -- stores that do not exist, that this user may only read, or that are damaged ----------

#: Commands that only read the store; IMAGE, LAYER and OUT are filled in by :func:`filled`.
READERS = [
    ("image", "ls"),
    ("image", "ls", "-q"),
    ("image", "inspect", "--format", "json", "IMAGE"),
    ("image", "inspect", "--raw", "manifest", "IMAGE"),
    ("image", "check"),
    ("image", "check", "--verify", "IMAGE"),
    ("image", "export", "OUT", "IMAGE"),
    ("content", "ls", "-q"),
    ("content", "get", "LAYER"),
    ("namespace", "ls"),
]
#: Commands that write it (``image pull`` too, which needs a registry).
WRITERS = [
    ("image", "import", "ARCHIVE"),
    ("image", "tag", "IMAGE", "example.com/other:1"),
    ("image", "label", "IMAGE", "a=b"),
    ("image", "rm", "IMAGE"),
    ("content", "rm", "--force", "LAYER"),
    ("content", "gc", "--dry-run"),
    ("namespace", "create", "team"),
    ("namespace", "rm", "default"),
]


def filled(command: tuple[str, ...], image: Built, out: Path) -> list[str]:
    values = {"IMAGE": image.name, "LAYER": image.layers()[0], "OUT": str(out)}
    values["ARCHIVE"] = str(image.path)
    return [values.get(word, word) for word in command]


def ids(command: tuple[str, ...]) -> str:
    return " ".join(command)


@pytest.mark.parametrize("command", [*READERS, ("image", "push", "IMAGE")], ids=ids)
def test_a_command_that_only_reads_creates_no_store(
    tmp_path: Path, alpine: Built, command: tuple[str, ...]
) -> None:
    typo = tmp_path / "typo"
    for exists in (False, True):
        proc = run(typo, *filled(command, alpine, tmp_path / "out.tar"))
        assert assert_one_error_line(proc) == f"cargohold: error: no cargohold store at {typo}"
        assert proc.stdout == b""
        assert list(typo.iterdir()) == [] if exists else not typo.exists()
        typo.mkdir(exist_ok=True)
    assert not (tmp_path / "out.tar").exists()


def test_a_command_that_writes_creates_the_store(tmp_path: Path) -> None:
    root = tmp_path / "new"
    ok(run(root, "namespace", "create", "team"))
    assert ok(run(root, "namespace", "ls", "-q")).split() == ["team"]


@dataclass
class ReadOnly:
    """Makes a store read-only to a user bound by permissions, and undoes it at the end."""

    root: Path
    modes: dict[Path, int]

    def files(self) -> None:
        """Every file read-only; the directories stay writable."""
        for path in [self.root / "VERSION", self.root / "metadata.db"]:
            self.chmod(path, 0o444)

    def directories(self) -> None:
        """Every directory read-only; the files keep their modes."""
        for path in [self.root, *(p for p in self.root.rglob("*") if p.is_dir())]:
            self.chmod(path, 0o555)

    def everything(self) -> None:
        """Files (the write-ahead log's too, when a writer has the store open) and
        directories: the store as another user sees root's."""
        for path in self.root.glob("metadata.db-*"):
            self.chmod(path, 0o444)
        self.files()
        self.directories()

    def chmod(self, path: Path, mode: int) -> None:
        self.modes.setdefault(path, path.stat().st_mode & 0o7777)
        path.chmod(mode)

    def undo(self) -> None:
        for path, mode in self.modes.items():
            if path.exists():  # the write-ahead log goes when its last user closes the store
                path.chmod(mode)


@pytest.fixture
def read_only(root: Path, alpine: Built) -> Iterator[ReadOnly]:
    made = ReadOnly(root, {})
    yield made
    made.undo()


def succeeded(proc: subprocess.CompletedProcess[bytes]) -> bytes:
    """The stdout (bytes: ``content get`` prints a blob) of a command that succeeded."""
    assert (proc.returncode, proc.stderr) == (0, b""), proc.stderr.decode()
    return proc.stdout


def store_state(root: Path) -> tuple[list[str], set[str], list[str]]:
    """Names, blobs and the files of the store's directory (WAL files aside)."""
    files = sorted(p.name for p in root.iterdir() if not p.name.endswith(("-wal", "-shm")))
    return stored_names(root), stored_digests(root), files


@pytest.mark.parametrize("how", ["files", "directories", "everything"])
def test_a_read_only_store_serves_every_command_that_reads(
    root: Path, tmp_path: Path, alpine: Built, read_only: ReadOnly, how: str
) -> None:
    expected = []
    for i, command in enumerate(READERS):
        out = tmp_path / f"owner{i}.tar"
        expected.append((succeeded(run(root, *filled(command, alpine, out))), out))
    before = store_state(root)
    getattr(read_only, how)()

    for command, (stdout, owners) in zip(READERS, expected, strict=True):
        out = tmp_path / f"reader-{'-'.join(command)}.tar"
        proc = run(root, *filled(command, alpine, out), bound_by_permissions=True)
        assert succeeded(proc) == stdout, command
        if "OUT" in command:
            assert out.read_bytes() == owners.read_bytes()
    read_only.undo()
    assert store_state(root) == before


@pytest.mark.parametrize("command", WRITERS, ids=ids)
@pytest.mark.parametrize("how", ["files", "directories", "everything"])
def test_a_command_that_writes_says_it_needs_write_access(
    root: Path,
    tmp_path: Path,
    alpine: Built,
    read_only: ReadOnly,
    how: str,
    command: tuple[str, ...],
) -> None:
    before = store_state(root)
    getattr(read_only, how)()
    proc = run(root, *filled(command, alpine, tmp_path / "o"), bound_by_permissions=True)
    path = " ".join(command[:2])
    assert assert_one_error_line(proc) == (
        f"cargohold: error: store {root} is read-only for this user:"
        f" cargohold {path} needs write access"
    )
    read_only.undo()
    assert store_state(root) == before


def test_a_reader_sees_what_a_writer_has_not_yet_checkpointed(
    root: Path, alpine: Built, read_only: ReadOnly
) -> None:
    with Store(root) as writer:
        writer.tag(alpine.name, ["example.com/new:1"])  # in the write-ahead log only
        assert (root / "metadata.db-wal").stat().st_size > 0
        read_only.everything()
        proc = run(root, "image", "ls", "-q", bound_by_permissions=True)
        read_only.undo()
    assert ok(proc).split() == [alpine.name, "example.com/new:1"]


@pytest.mark.parametrize("text", ["0", "-1", "+1", "1_0", "one", ""])
@pytest.mark.parametrize("command", [("image", "ls"), ("namespace", "create", "team")], ids=ids)
def test_a_damaged_version_file_is_one_error_line(
    root: Path, alpine: Built, text: str, command: tuple[str, ...]
) -> None:
    (root / "VERSION").write_text(text + "\n")
    line = assert_one_error_line(run(root, *command))
    assert line == f"cargohold: error: {root / 'VERSION'}: unreadable store format {text!r}"


def damage(root: Path, statement: str, *params: str) -> None:
    with contextlib.closing(sqlite3.connect(root / "metadata.db")) as db, db:
        db.execute(statement, params)


@pytest.fixture
def damaged(root: Path, tmp_path: Path) -> list[Built]:
    """Three images: the labels of the second are not JSON, the digest of the third is not
    a digest."""
    images = [single(tmp_path, f"example.com/{n}:1") for n in ("good", "labels", "digest")]
    load(root, *images)
    damage(root, "UPDATE images SET labels = '{oops' WHERE name = ?", images[1].name)
    damage(root, "UPDATE images SET digest = 'sha256:oops' WHERE name = ?", images[2].name)
    return images


def row_warnings(proc: subprocess.CompletedProcess[bytes], *names: str) -> None:
    """A warning naming each unreadable row, then the error line, exit 1."""
    *warnings, error = lines(proc.stderr)
    assert proc.returncode == 1
    assert len(warnings) == len(names)
    for warning, name in zip(warnings, names, strict=True):
        assert warning.startswith("cargohold: warning: metadata.db: image ")
        assert f"{name!r} of namespace 'default'" in warning
    records = "1 unreadable record" if len(names) == 1 else f"{len(names)} unreadable records"
    assert error == f"cargohold: error: {records} of the store's metadata left out"


def test_unreadable_rows_are_left_out_of_listings_and_reported(
    root: Path, damaged: list[Built]
) -> None:
    good, labels, digest = damaged
    bad = (digest.name, labels.name)  # by name

    proc = run(root, "image", "ls", "-q")
    row_warnings(proc, *bad)
    assert lines(proc.stdout) == [good.name]
    proc = run(root, "image", "ls")
    row_warnings(proc, *bad)
    assert [row[0] for row in rows(proc.stdout.decode())[1:]] == [good.name]
    proc = run(root, "image", "ls", "--format", "json")
    row_warnings(proc, *bad)
    assert [i["name"] for i in json.loads(proc.stdout)] == [good.name]

    proc = run(root, "image", "check", "--format", "json")
    row_warnings(proc, *bad)
    assert [(r["name"], r["status"]) for r in json.loads(proc.stdout)] == [(good.name, "complete")]
    proc = run(root, "content", "ls", "--format", "json")
    row_warnings(proc, *bad)
    assert {u["name"] for i in json.loads(proc.stdout) for u in i["usedBy"]} == {good.name}


@pytest.mark.parametrize(
    "command",
    [
        ("image", "inspect", "IMAGE"),
        ("image", "export", "OUT", "IMAGE"),
        ("image", "tag", "IMAGE", "x:1"),
    ],
    ids=ids,
)
def test_an_unreadable_row_named_by_a_command_is_one_error_line(
    root: Path, tmp_path: Path, damaged: list[Built], command: tuple[str, ...]
) -> None:
    _, labels, digest = damaged
    out = tmp_path / "out.tar"
    for image, problem in ((labels, "labels are not a JSON object"), (digest, "invalid digest")):
        line = assert_one_error_line(run(root, *filled(command, image, out)))
        assert line.startswith(
            f"cargohold: error: metadata.db: image {image.name!r} of namespace 'default': {problem}"
        )
    assert not out.exists()
    assert stored_names(root) == [damaged[0].name]  # the library lists what it can read


def test_gc_refuses_to_run_past_an_unreadable_digest(root: Path, damaged: list[Built]) -> None:
    before = stored_digests(root)
    line = assert_one_error_line(run(root, "content", "gc"))
    assert f"image {damaged[2].name!r}" in line and "invalid digest" in line
    assert stored_digests(root) == before
    ok(run(root, "image", "rm", "-q", damaged[1].name, damaged[2].name))  # how to mend it
    assert ok(run(root, "image", "ls", "-q")).split() == [damaged[0].name]


def test_unreadable_namespace_labels_are_reported(root: Path) -> None:
    ok(run(root, "namespace", "create", "team", "other", "third"))
    damage(root, "UPDATE namespaces SET labels = '[]' WHERE name = 'team'")
    damage(root, "UPDATE namespaces SET created_at = 'today' WHERE name = 'third'")
    proc = run(root, "namespace", "ls", "--format", "json")
    assert proc.returncode == 1
    assert [n["name"] for n in json.loads(proc.stdout)] == ["other"]
    labels, created, _ = lines(proc.stderr)
    assert labels.startswith("cargohold: warning: metadata.db: namespace 'team': labels")
    assert created.startswith("cargohold: warning: metadata.db: namespace 'third': invalid")


# -- shell completion -----------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(shell: str) -> None:
    out = ok(run(None, "completion", shell))
    assert "_CARGOHOLD_COMPLETE" in out


def complete(root: Path, *words: str) -> list[str]:
    """The values bash completion offers for the last of *words* (after ``cargohold --root
    ROOT``); click prints them as ``TYPE,VALUE`` lines."""
    all_words = ["cargohold", "--root", str(root), *words]
    proc = run(
        None,
        env={
            "_CARGOHOLD_COMPLETE": "bash_complete",
            "COMP_WORDS": " ".join(shlex.quote(w) for w in all_words),
            "COMP_CWORD": str(len(all_words) - 1),
        },
    )
    offered = ok(proc).splitlines()
    return [line.partition(",")[2] for line in offered if line]


def test_completion_of_image_names(root: Path, tmp_path: Path) -> None:
    load(
        root,
        single(tmp_path, "docker.io/library/alpine:3"),
        single(tmp_path, "docker.io/library/busybox:1"),
        single(tmp_path, "example.com/app:1"),
    )
    offered = complete(root, "image", "inspect", "docker.io/l")
    assert "docker.io/library/alpine:3" in offered
    assert "docker.io/library/busybox:1" in offered
    assert "example.com/app:1" not in offered


def test_completion_of_image_names_of_the_namespace(root: Path, tmp_path: Path) -> None:
    load(root, single(tmp_path, "docker.io/library/alpine:3"), namespace="team")
    assert complete(root, "-n", "team", "image", "rm", "docker.io/l") == [
        "docker.io/library/alpine:3"
    ]
    assert complete(root, "image", "rm", "docker.io/l") == []


def test_completion_of_short_image_names(root: Path, tmp_path: Path) -> None:
    """A name is completed in the form being typed: every command takes the short one."""
    load(root, single(tmp_path, "docker.io/library/alpine:3"), single(tmp_path, "example.com/a:1"))
    assert complete(root, "image", "inspect", "alp") == ["alpine:3"]
    assert complete(root, "image", "tag", "exa") == ["example.com/a:1"]


def test_completion_of_namespaces(root: Path, tmp_path: Path) -> None:
    load(root, single(tmp_path, "docker.io/library/alpine:3"), namespace="team")
    ok(run(root, "namespace", "create", "tools"))
    assert sorted(complete(root, "-n", "t")) == ["team", "tools"]


def test_completion_of_paths(root: Path) -> None:
    """Archive and output arguments are left to the shell's own file completion (click says
    so with a ``file`` item), and --root to its directory completion."""

    def kinds(*words: str) -> list[str]:
        all_words = ["cargohold", *words]
        proc = run(
            None,
            env={
                "_CARGOHOLD_COMPLETE": "bash_complete",
                "COMP_WORDS": " ".join(shlex.quote(w) for w in all_words),
                "COMP_CWORD": str(len(all_words) - 1),
            },
        )
        return [line.partition(",")[0] for line in ok(proc).splitlines()]

    assert kinds("--root", str(root), "image", "import", "ar") == ["file"]
    assert kinds("--root", str(root), "image", "export", "ou") == ["file"]
    assert kinds("--root", str(root), "archive", "inspect", "ar") == ["file"]
    assert kinds("--root", "/v") == ["dir"]


def test_completion_without_a_store_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no-store"
    assert complete(missing, "image", "inspect", "docker.io/l") == []
    assert not missing.exists()


# -- help -----------------------------------------------------------------------------------


def command_paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from command_paths(sub, (*path, name))


@pytest.mark.parametrize("path", list(command_paths(cli)), ids=lambda p: " ".join(p) or "cargohold")
def test_help(root: Path, path: tuple[str, ...]) -> None:
    out = ok(run(root, *path, "--help"))
    assert out.startswith(f"Usage: cargohold {' '.join(path)}".rstrip())
    assert not root.exists()  # help never opens a store
