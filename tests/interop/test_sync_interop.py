"""``sync``, ``image push --all``, ``login`` and credential helpers against real Distribution
registries (Debian's ``docker-registry``) on loopback, plain and TLS with htpasswd, checked
with skopeo. Requests are counted by a proxy in front of the plain registry, never timed."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from conftest import Skopeo, run_text
from registries import USER, Registry, start_registry

from cargohold.operations.store import Store
from cargohold.operations.syncing import SyncEntry
from cargohold.operations.synclists import read
from cargohold.operations.transfer import ClientFactory
from cargohold.registry.client import RegistryClient, RetryPolicy
from clisupport import run
from countingproxy import CountingProxy, counting_proxy
from imagefactory import OCI_LAYER_GZIP, OCI_MANIFEST, ArchiveBuilder, dumps, layer_tar

BASE: Final = layer_tar({"etc/os-release": b"ID=base\n" * 200})
IMAGES: Final = 4


def _image(builder: ArchiveBuilder, i: int, version: str = "1") -> dict[str, Any]:
    """An image of a shared base layer and a layer of its own."""
    base = builder.blob(gzip.compress(BASE, mtime=0), OCI_LAYER_GZIP)
    own_raw = layer_tar({f"app/{i}": f"app {i} version {version}\n".encode()})
    own = builder.blob(gzip.compress(own_raw, mtime=0), OCI_LAYER_GZIP)
    diff_ids = ["sha256:" + hashlib.sha256(raw).hexdigest() for raw in (BASE, own_raw)]
    config_doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config = builder.blob(dumps(config_doc), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                "layers": [base, own]}  # fmt: skip
    return builder.blob(dumps(manifest), OCI_MANIFEST)


def _publish(tmp: Path, registry: Registry, names: list[str], version: str = "1") -> None:
    """Put images named *names* (``repo:tag`` under the registry) into the registry."""
    builder = ArchiveBuilder()
    for i, name in enumerate(names):
        builder.add(_image(builder, i, version), name=f"{registry.netloc}/{name}")
    archive = builder.write(tmp / f"publish-{version}.tar")
    with Store(tmp / f"publisher-{version}") as store:
        store.import_archive(archive)
        result = store.push_all(registry.netloc, client_factory=registry.factory())
        assert not result.failed, result.failed


def _environment(tmp: Path) -> dict[str, str]:
    """No credentials of this machine: every place they are looked up is under *tmp*."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home), "XDG_RUNTIME_DIR": str(tmp / "runtime"),
        "XDG_CONFIG_HOME": str(home / ".config"), "DOCKER_CONFIG": str(home / ".docker"),
        "REGISTRY_AUTH_FILE": "",
    }  # fmt: skip


def _fast() -> ClientFactory:
    """Plain HTTP, no stored credentials, failures retried once without waiting."""

    def make(host: str) -> RegistryClient:
        return RegistryClient(
            host, plain_http=True, use_docker_config=False, trust_env=False,
            retry=RetryPolicy(attempts=2, sleep=lambda _: None),
        )  # fmt: skip

    return make


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from start_registry(tmp_path_factory.mktemp("origin"), secure=False)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from start_registry(tmp_path_factory.mktemp("mirror"), secure=False)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from start_registry(tmp_path_factory.mktemp("secure"), secure=True)


@pytest.fixture
def proxy(origin: Registry) -> Iterator[CountingProxy]:
    with counting_proxy(origin.netloc) as counting:
        yield counting


def _sync(root: Path, *args: str, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    proc = run(root, "sync", "--format", "json", *args, env=env)
    return proc.returncode, json.loads(proc.stdout or b"{}"), proc.stderr.decode()


def _actions(doc: dict[str, Any]) -> dict[str, str]:
    return {image["name"]: image["action"] for image in doc["images"]}


# -- sync --------------------------------------------------------------------------------------


def test_sync_a_text_list_then_again_unchanged_moved_and_pruned(
    origin: Registry, proxy: CountingProxy, tmp_path: Path
) -> None:
    names = [f"sync/app{i}:1" for i in range(IMAGES)]
    _publish(tmp_path, origin, names)
    env = _environment(tmp_path)
    listed = [f"{proxy.netloc}/{n}" for n in names]
    text = tmp_path / "images.txt"
    text.write_text("# the site's images\n\n" + "\n".join(listed) + "  # pinned later\n")
    root = tmp_path / "root"

    status, doc, stderr = _sync(root, "--plain-http", "--dry-run", str(text), env=env)
    assert status == 0, stderr
    assert _actions(doc) == dict.fromkeys(listed, "created")
    assert run(root, "image", "ls", "-q").stdout == b""
    would = doc["bytes"]
    status, doc, stderr = _sync(root, "--plain-http", str(text), env=env)
    assert status == 0, stderr
    assert _actions(doc) == dict.fromkeys(listed, "created")
    assert doc["bytes"] == would  # the shared base counted once, as it moves once
    assert doc["created"] == IMAGES and doc["bytes"] > 0
    # the shared base went once: the first image alone, the rest found it in the store
    assert proxy.count("GET", f"/blobs/{_base_digest()}") == 1

    proxy.clear()
    status, doc, stderr = _sync(root, "--plain-http", str(text), env=env)
    assert status == 0, stderr
    assert _actions(doc) == dict.fromkeys(listed, "unchanged") and doc["bytes"] == 0
    manifests = [r for r in proxy.requests if "/manifests/" in r[1]]
    assert sorted(manifests) == sorted(("HEAD", f"/v2/{n.replace(':', '/manifests/')}")
                                       for n in names)  # fmt: skip
    assert all(method == "HEAD" or path == "/v2/" for method, path in proxy.requests)

    text_out = run(root, "sync", "--plain-http", str(text), env=env)
    lines = text_out.stdout.decode().splitlines()
    assert lines[0].split() == ["NAME", "ACTION", "DIGEST", "DOWNLOADED"]
    assert sorted(line.split()[:2] for line in lines[1:-1]) == sorted(
        [name, "unchanged"] for name in listed
    )
    assert lines[-1].startswith(f"0 created, 0 updated, {IMAGES} unchanged, 0 failed;")

    # a tag moved upstream is updated; the others stay
    _publish(tmp_path, origin, names[:1], version="2")
    status, doc, stderr = _sync(root, "--plain-http", str(text), env=env)
    assert status == 0, stderr
    assert _actions(doc) == {listed[0]: "updated", **dict.fromkeys(listed[1:], "unchanged")}

    # --prune removes what the list no longer names, only names its syncs created
    assert run(root, "image", "tag", listed[3], f"{proxy.netloc}/sync/kept:1").returncode == 0
    text.write_text("\n".join(listed[:2]) + "\n")
    status, doc, stderr = _sync(root, "--plain-http", "--prune", "--dry-run", str(text), env=env)
    assert status == 0, stderr
    assert sorted(doc["pruned"]) == sorted(listed[2:]) and doc["dryRun"]
    status, doc, stderr = _sync(root, "--plain-http", "--prune", str(text), env=env)
    assert status == 0, stderr
    assert sorted(doc["pruned"]) == sorted(listed[2:])
    left = run(root, "image", "ls", "-q").stdout.decode().split()
    assert sorted(left) == sorted([*listed[:2], f"{proxy.netloc}/sync/kept:1"])


def _base_digest() -> str:
    return "sha256:" + hashlib.sha256(gzip.compress(BASE, mtime=0)).hexdigest()


def test_sync_a_skopeo_yaml_from_tls_with_htpasswd(
    secure: Registry, skopeo: Skopeo, tmp_path: Path
) -> None:
    names = ["yaml/one:1", "yaml/one:2", "yaml/two:1", "yaml/three:v1", "yaml/three:v2"]
    _publish(tmp_path, secure, names)
    assert secure.password is not None
    spec = tmp_path / "sync.yaml"
    spec.write_text(
        f"{secure.netloc}:\n"
        "  images:\n"
        "    yaml/one: []\n"
        '    yaml/two: ["1"]\n'
        "  images-by-tag-regex:\n"
        "    yaml/three: ^v2$\n"
        "  tls-verify: false\n"
        f"  credentials:\n    username: {USER}\n    password: {secure.password}\n"
    )
    # the file works unchanged with skopeo itself
    run_text(skopeo.argv("sync", "--src", "yaml", "--dest", "dir", str(spec),
                         str(tmp_path / "skopeo")))  # fmt: skip
    root = tmp_path / "root"
    status, doc, stderr = _sync(root, str(spec), env=_environment(tmp_path))
    assert status == 0, stderr
    wanted = ["yaml/one:1", "yaml/one:2", "yaml/two:1", "yaml/three:v2"]
    assert _actions(doc) == {f"{secure.netloc}/{n}": "created" for n in wanted}
    status, doc, stderr = _sync(root, str(spec), env=_environment(tmp_path))
    assert status == 0 and doc["unchanged"] == len(wanted), stderr


def test_sync_failures_do_not_stop_the_others(
    origin: Registry, secure: Registry, tmp_path: Path
) -> None:
    names = ["fail/ok:1", "fail/ok:2"]
    _publish(tmp_path, origin, names)
    _publish(tmp_path, secure, ["fail/locked:1"])
    listed = [
        f"{origin.netloc}/fail/ok:1",
        f"{origin.netloc}/fail/missing:1",
        f"{secure.netloc}/fail/locked:1",
        f"{origin.netloc}/fail/ok:2",
    ]
    text = tmp_path / "list.txt"
    text.write_text("\n".join(listed) + "\n")
    env = _environment(tmp_path)
    proc = run(tmp_path / "root", "sync", "--creds", "u:p", "--tls-verify=false", str(text))
    assert proc.returncode == 2 and b"--creds is for one registry" in proc.stderr
    proc = run(tmp_path / "root", "sync", "--format", "json", "--tls-verify=false",
               "--progress", "plain", str(text), env=env)  # fmt: skip
    assert proc.returncode == 1
    progress = proc.stderr.decode().splitlines()[:-1]
    assert [line.split(" ")[0] for line in progress] == ["[1]", "[2]", "[3]", "[4]"]
    assert sorted(line.split(" ")[1].rstrip(":") for line in progress) == sorted(listed)
    doc = json.loads(proc.stdout)
    assert _actions(doc) == {listed[0]: "created", listed[1]: "failed",
                             listed[2]: "failed", listed[3]: "created"}  # fmt: skip
    errors = {i["name"]: i["error"] for i in doc["images"]}
    assert "not found" in errors[listed[1]]
    assert "authentication required" in errors[listed[2]] and "HTTP 401" in errors[listed[2]]
    assert proc.stderr.decode().splitlines()[-1] == "cargohold: error: 2 of 4 images failed"

    # a repository whose tags cannot be listed: its names are unknown, so nothing is pruned
    spec = tmp_path / "absent.yaml"
    spec.write_text(f"{origin.netloc}:\n  images:\n    fail/absent: []\n")
    proc = run(tmp_path / "root", "sync", "-q", "--prune", "--plain-http", str(spec), env=env)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    assert f"warning: nothing pruned: the tags of {origin.netloc}/fail/absent" in stderr
    assert len(run(tmp_path / "root", "image", "ls", "-q").stdout.split()) == 2


def test_sync_survives_its_registry_going_down(tmp_path: Path) -> None:
    (tmp_path / "doomed-registry").mkdir()
    started = start_registry(tmp_path / "doomed-registry", secure=False)
    doomed = next(started)
    names = [f"down/app{i}:1" for i in range(4)]
    _publish(tmp_path, doomed, names)
    text = tmp_path / "list.txt"
    text.write_text("\n".join(f"{doomed.netloc}/{n}" for n in names) + "\n")
    seen: list[SyncEntry] = []

    def report(entry: SyncEntry) -> None:
        seen.append(entry)
        if len(seen) == 2:
            started.close()  # the registry process is stopped mid-sync

    with Store(tmp_path / "root") as store:
        result = store.sync(read([text]), client_factory=_fast(), jobs=1, report=report)
        assert [e.action for e in result.entries] == ["created", "created", "failed", "failed"]
        assert "unreachable" in (result.entries[3].error or "")
        assert sorted(store.list_names()) == sorted(f"{doomed.netloc}/{n}" for n in names[:2])


# -- push --all --------------------------------------------------------------------------------


def test_push_all_into_a_second_registry(
    origin: Registry, mirror: Registry, skopeo: Skopeo, tmp_path: Path
) -> None:
    names = [f"fleet/app{i}:1" for i in range(IMAGES)]
    _publish(tmp_path, origin, names)
    root = tmp_path / "root"
    text = tmp_path / "list.txt"
    text.write_text("\n".join(f"{origin.netloc}/{n}" for n in names) + "\n")
    env = _environment(tmp_path)
    assert run(root, "sync", "-q", "--plain-http", str(text), env=env).returncode == 0
    dest = f"{mirror.netloc}/site"
    proc = run(root, "image", "push", "--all", "--plain-http", "--format", "json", dest,
               "name~=fleet/", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["pushed"] == IMAGES and doc["failed"] == 0
    assert sum(i["blobsMounted"] for i in doc["images"]) == IMAGES - 1  # the shared base
    for image in doc["images"]:
        assert image["destination"] == image["name"].replace(origin.netloc, dest)
        inspected = json.loads(
            skopeo.run("inspect", "--tls-verify=false", f"docker://{image['destination']}").stdout
        )
        assert inspected["Digest"] == image["digest"]
    again = json.loads(run(root, "image", "push", "--all", "--plain-http", "--format", "json",
                           dest, env=env).stdout)  # fmt: skip
    assert again["bytes"] == 0 and all(i["blobsPresent"] == 3 for i in again["images"])


# -- credentials -------------------------------------------------------------------------------


def test_login_then_pull_with_the_stored_credentials(
    secure: Registry, skopeo: Skopeo, tmp_path: Path
) -> None:
    _publish(tmp_path, secure, ["login/app:1"])
    assert secure.password is not None and secure.cert is not None
    env = _environment(tmp_path)
    ref = f"{secure.netloc}/login/app:1"
    root = tmp_path / "root"
    wrong = run(None, "login", "-u", USER, "--password-stdin", "--ca-cert", str(secure.cert),
                secure.netloc, stdin=b"wrong\n", env=env)  # fmt: skip
    assert wrong.returncode == 1 and b"authentication failed" in wrong.stderr
    auth = tmp_path / "runtime" / "containers" / "auth.json"
    assert not auth.exists()
    login = run(None, "login", "-u", USER, "--password-stdin", "--ca-cert", str(secure.cert),
                secure.netloc, stdin=secure.password.encode() + b"\n", env=env)  # fmt: skip
    assert login.returncode == 0, login.stderr
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert secure.netloc in json.loads(auth.read_text())["auths"]
    # podman's file, read by skopeo as it is
    skopeo.run("inspect", "--tls-verify=false", "--authfile", str(auth), f"docker://{ref}")

    pulled = run(root, "image", "pull", "--ca-cert", str(secure.cert), ref, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert run(None, "logout", secure.netloc, env=env).returncode == 0
    refused = run(tmp_path / "other", "image", "pull", "--ca-cert", str(secure.cert), ref,
                  env=env)  # fmt: skip
    assert refused.returncode == 1 and b"authentication required" in refused.stderr
    # --authfile: that file alone, written and read
    own = tmp_path / "own-auth.json"
    login = run(None, "login", "--authfile", str(own), "-u", USER, "-p", secure.password,
                "--tls-verify=false", secure.netloc, env=env)  # fmt: skip
    assert login.returncode == 0, login.stderr
    assert b"is not verified" not in login.stderr  # loopback: no warning
    pulled = run(tmp_path / "other", "image", "pull", "--authfile", str(own), "--ca-cert",
                 str(secure.cert), ref, env=env)  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr


def test_a_credential_helper_supplies_the_password(secure: Registry, tmp_path: Path) -> None:
    _publish(tmp_path, secure, ["helper/app:1"])
    assert secure.password is not None and secure.cert is not None
    env = _environment(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-sitevault"
    answer = json.dumps({"ServerURL": secure.netloc, "Username": USER, "Secret": secure.password})
    asked = tmp_path / "asked"
    helper.write_text(f"#!/bin/sh\n[ \"$1\" = get ] || exit 1\ncat > {asked}\necho '{answer}'\n")
    helper.chmod(0o755)
    docker = Path(env["DOCKER_CONFIG"])
    docker.mkdir(parents=True)
    (docker / "config.json").write_text(json.dumps({"credHelpers": {secure.netloc: "sitevault"}}))
    env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    ref = f"{secure.netloc}/helper/app:1"
    assert secure.cert_dir is not None  # podman's --cert-dir: the directory's *.crt
    pulled = run(tmp_path / "root", "image", "pull", "--cert-dir", str(secure.cert_dir), ref,
                 env=env)  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    assert asked.read_text() == secure.netloc
