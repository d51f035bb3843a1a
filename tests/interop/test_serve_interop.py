"""``cargohold serve`` with real clients: skopeo, containerd through a hosts.toml mirror
(``?ns=``), cargohold's own pull, TLS with htpasswd, podman, and Distribution as a
pull-through cache in front of it. Every image they get has the store's digests."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from conftest import DEMO_REF, Containerd, Skopeo, require_tool, run_text
from registries import free_port, running_registry

from cargohold.operations.store import Store
from clisupport import run
from servehelpers import Server, serving
from tlscerts import self_signed_certificate

#: The demo image's name without its registry, as a mirror is asked for it.
DEMO_HOST: Final = "example.com"
DEMO_PATH: Final = "umoci/demo"
DEMO_TAG: Final = "1.0"
USER: Final = "puller"


@dataclass(frozen=True)
class ServedStore:
    root: Path
    digest: str
    blobs: frozenset[str]


@pytest.fixture(scope="module")
def store(oci_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> ServedStore:
    root = tmp_path_factory.mktemp("served") / "store"
    with Store(root) as store:
        store.import_archive(oci_archive)
        digest = str(store.resolve(DEMO_REF).digest)
        blobs = frozenset(str(c.digest) for c in store.content())
    return ServedStore(root, digest, blobs)


@pytest.fixture(scope="module")
def server(store: ServedStore) -> Iterator[Server]:
    with serving(store.root) as running:
        yield running


def copied_digest(layout: Path) -> str:
    [entry] = json.loads((layout / "index.json").read_text())["manifests"]
    digest: str = entry["digest"]
    return digest


def layout_blobs(layout: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (layout / "blobs" / "sha256").iterdir()}


def test_skopeo_inspects_and_copies_the_stored_image(
    store: ServedStore, server: Server, skopeo: Skopeo, tmp_path: Path
) -> None:
    image = f"docker://{server.netloc}/{DEMO_HOST}/{DEMO_PATH}:{DEMO_TAG}"
    inspected = json.loads(skopeo.run("inspect", "--tls-verify=false", image).stdout)
    assert inspected["Digest"] == store.digest
    assert inspected["RepoTags"] == [DEMO_TAG]
    layout = tmp_path / "copy"
    skopeo.run("copy", "--quiet", "--src-tls-verify=false", image, f"oci:{layout}:x")
    assert copied_digest(layout) == store.digest
    assert layout_blobs(layout) == set(store.blobs)


def test_cargohold_pulls_from_cargohold(store: ServedStore, server: Server, tmp_path: Path) -> None:
    ref = f"{server.netloc}/{DEMO_HOST}/{DEMO_PATH}:{DEMO_TAG}"
    proc = run(tmp_path / "other", "image", "pull", "--format", "json", "--plain-http", ref)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["digest"] == store.digest


def test_containerd_pulls_through_a_hosts_toml_mirror(
    store: ServedStore,
    server: Server,
    containerd: Containerd,
    ctr_namespace: str,
    tmp_path: Path,
) -> None:
    """The image keeps its own name (example.com/...); containerd asks the mirror with
    ``?ns=example.com``, and never the real host."""
    hosts = tmp_path / "certs.d" / DEMO_HOST
    hosts.mkdir(parents=True)
    (hosts / "hosts.toml").write_text(
        f'server = "https://{DEMO_HOST}"\n\n'
        f'[host."http://{server.netloc}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )
    containerd.ctr(
        "image", "pull", "--hosts-dir", str(tmp_path / "certs.d"), DEMO_REF,
        namespace=ctr_namespace,
    )  # fmt: skip
    assert containerd.images(ctr_namespace)[DEMO_REF].digest == store.digest
    line = server.wait_for_line(f"/v2/{DEMO_PATH}/manifests/{DEMO_TAG}?ns={DEMO_HOST}")
    assert '" 200 ' in line


def test_containerd_pulls_a_docker_hub_name_through_the_mirror(
    store: ServedStore,
    server: Server,
    containerd: Containerd,
    ctr_namespace: str,
    tmp_path: Path,
) -> None:
    """``docker.io/library/demo`` through a docker.io mirror: containerd asks for
    ``library/demo?ns=docker.io``."""
    with Store(store.root) as writable:
        writable.tag(DEMO_REF, ["demo:hub"])
    hosts = tmp_path / "certs.d" / "docker.io"
    hosts.mkdir(parents=True)
    (hosts / "hosts.toml").write_text(
        'server = "https://registry-1.docker.io"\n\n'
        f'[host."http://{server.netloc}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )
    name = "docker.io/library/demo:hub"
    containerd.ctr(
        "image", "pull", "--hosts-dir", str(tmp_path / "certs.d"), name, namespace=ctr_namespace
    )
    assert containerd.images(ctr_namespace)[name].digest == store.digest
    server.wait_for_line("/v2/library/demo/manifests/hub?ns=docker.io")


def test_skopeo_over_tls_with_htpasswd(store: ServedStore, skopeo: Skopeo, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    password = secrets.token_hex(12)
    line = run_text([require_tool("htpasswd"), "-Bbn", USER, password]).stdout.strip()
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(line + "\n")
    args = ("--tls-cert", str(cert), "--tls-key", str(key), "--htpasswd", str(htpasswd))
    with serving(store.root, *args) as server:
        assert server.scheme == "https"
        image = f"docker://{server.netloc}/{DEMO_HOST}/{DEMO_PATH}:{DEMO_TAG}"
        refused = subprocess.run(
            skopeo.argv("inspect", "--tls-verify=false", image),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "401" in refused.stderr or "unauthorized" in refused.stderr.lower()
        layout = tmp_path / "copy"
        skopeo.run(
            "copy", "--quiet", "--src-tls-verify=false", f"--src-creds={USER}:{password}",
            image, f"oci:{layout}:x",
        )  # fmt: skip
        assert copied_digest(layout) == store.digest
        assert layout_blobs(layout) == set(store.blobs)


@pytest.fixture
def pull_through(server: Server, tmp_path: Path) -> Iterator[str]:
    """Distribution (docker-registry) as a pull-through cache of the cargohold server."""
    port = free_port()
    config = (
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(tmp_path / 'cache'))}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
        f"proxy:\n  remoteurl: {server.url}\n"
    )
    with running_registry(tmp_path, config, f"http://127.0.0.1:{port}/v2/"):
        yield f"127.0.0.1:{port}"


def test_distribution_as_a_pull_through_cache_in_front(
    store: ServedStore, server: Server, pull_through: str, skopeo: Skopeo, tmp_path: Path
) -> None:
    image = f"docker://{pull_through}/{DEMO_HOST}/{DEMO_PATH}:{DEMO_TAG}"
    inspected = json.loads(skopeo.run("inspect", "--tls-verify=false", image).stdout)
    assert inspected["Digest"] == store.digest
    layout = tmp_path / "copy"
    skopeo.run("copy", "--quiet", "--src-tls-verify=false", image, f"oci:{layout}:x")
    assert copied_digest(layout) == store.digest
    assert layout_blobs(layout) == set(store.blobs)
    server.wait_for_line(f"/v2/{DEMO_HOST}/{DEMO_PATH}/manifests/{DEMO_TAG}")


@pytest.fixture
def podman_dirs() -> Iterator[Path]:
    """A short private directory for podman's root and runroot (podman wants a runroot of at
    most 50 characters)."""
    directory = Path(tempfile.mkdtemp(prefix="ch-podman-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_podman_pulls_the_stored_image(
    store: ServedStore, server: Server, skopeo: Skopeo, podman_dirs: Path
) -> None:
    podman = require_tool("podman")
    storage = [
        "--root", str(podman_dirs / "root"), "--runroot", str(podman_dirs / "run"),
        "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
    ]  # fmt: skip
    image = f"{server.netloc}/{DEMO_HOST}/{DEMO_PATH}:{DEMO_TAG}"
    run_text(
        [podman, *storage, "pull", "--quiet", "--tls-verify=false",
         "--signature-policy", str(skopeo.policy), image]
    )  # fmt: skip
    listed = json.loads(run_text([podman, *storage, "images", "--format", "json"]).stdout)
    assert [entry["Digest"] for entry in listed] == [store.digest]
