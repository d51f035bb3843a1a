"""``image push`` and ``image pull`` against the real registry (CNCF Distribution, Debian's
``docker-registry``), checked with skopeo: once in plain HTTP without authentication, once over
TLS with a certificate made here and htpasswd basic authentication."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from conftest import DEMO_REF, Skopeo, run_text
from registries import USER, Registry, start_registry

from cargohold.oci.digests import Digest
from cargohold.operations.store import Store
from clisupport import run
from imagefactory import ArchiveBuilder

HOST_PLATFORM: Final = "linux/amd64"
OTHER_PLATFORM: Final = "linux/arm64"


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from start_registry(tmp_path_factory.mktemp("registry-plain"), secure=False)


@pytest.fixture(scope="module")
def secure_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from start_registry(tmp_path_factory.mktemp("registry-tls"), secure=True)


@pytest.fixture(params=["plain", "tls-auth"])
def registry(request: pytest.FixtureRequest) -> Registry:
    name = "plain_registry" if request.param == "plain" else "secure_registry"
    value: Registry = request.getfixturevalue(name)
    return value


def _oci_layout_digest(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    [entry] = index["manifests"]
    digest: str = entry["digest"]
    return digest


# -- tests -------------------------------------------------------------------------------------


def test_push_then_pull_through_the_api(
    registry: Registry, oci_archive: Path, skopeo: Skopeo, tmp_path: Path
) -> None:
    dest = f"{registry.netloc}/demo/api:1.0"
    with Store(tmp_path / "a") as store:
        store.import_archive(oci_archive)
        stored = store.resolve(DEMO_REF).digest
        pushed = store.push(DEMO_REF, dest, client_factory=registry.factory())
        assert pushed.digest == stored and pushed.blobs_uploaded == 3
        again = store.push(DEMO_REF, dest, client_factory=registry.factory())
        assert (again.blobs_present, again.blobs_uploaded) == (3, 0)
    with Store(tmp_path / "b") as fresh:
        pulled = fresh.pull(dest, client_factory=registry.factory())
        assert pulled.digest == stored and pulled.blobs_downloaded == 3
        assert all(c.ok for c in fresh.check([dest], verify=True))

    inspected = json.loads(
        run_text(skopeo.argv("inspect", *registry.skopeo_args(), f"docker://{dest}")).stdout
    )
    assert inspected["Digest"] == str(stored)
    layout = tmp_path / "copied"
    run_text(
        skopeo.argv(
            "copy", "--quiet", *registry.skopeo_args("src-"), f"docker://{dest}",
            f"oci:{layout}:copied",
        )
    )  # fmt: skip
    assert _oci_layout_digest(layout) == str(stored)


def test_push_and_pull_through_the_cli(
    registry: Registry, oci_archive: Path, skopeo: Skopeo, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    proc = run(root, "image", "import", "-q", str(oci_archive))
    assert proc.returncode == 0, proc.stderr
    dest = f"{registry.netloc}/demo/cli:2"
    proc = run(root, "image", "push", "--format", "json", *registry.cli_args(), DEMO_REF, dest)
    assert proc.returncode == 0, proc.stderr
    pushed = json.loads(proc.stdout)
    # A second repository of the same registry: its blobs are mounted, not sent again.
    assert run(root, "image", "tag", DEMO_REF, dest).returncode == 0
    other = f"{registry.netloc}/demo/cli-copy:2"
    proc = run(root, "image", "push", "--format", "json", *registry.cli_args(), dest, other)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["blobsMounted"] == 3

    args = ["--plain-http"] if not registry.tls else ["--tls-verify=false"]
    stdin = None
    if registry.password:
        args += ["--user", USER, "--password-stdin"]
        stdin = registry.password.encode() + b"\n"
    proc = run(tmp_path / "fresh", "image", "pull", "--format", "json", *args, other, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    pulled = json.loads(proc.stdout)
    assert pulled["digest"] == pushed["digest"] and pulled["action"] == "created"
    raw = subprocess.run(
        skopeo.argv("inspect", "--raw", *registry.skopeo_args(), f"docker://{other}"),
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == pushed["digest"]


def test_multi_platform_index_round_trips(
    registry: Registry, skopeo: Skopeo, tmp_path: Path
) -> None:
    builder = ArchiveBuilder()
    top = builder.multi_platform([HOST_PLATFORM, OTHER_PLATFORM])
    name = "example.com/multi/app:1"
    builder.add(top, name=name)
    dest = f"{registry.netloc}/demo/multi:1"
    with Store(tmp_path / "a") as store:
        store.import_archive(builder.write(tmp_path / "multi.tar"), platforms="all")
        pushed = store.push(name, dest, platforms="all", client_factory=registry.factory())
        assert str(pushed.digest) == top["digest"] and pushed.manifests == 3
    with Store(tmp_path / "b") as fresh:
        pulled = fresh.pull(dest, platforms="all", client_factory=registry.factory())
        assert str(pulled.digest) == top["digest"]
        assert sorted(str(p) for p in pulled.platforms) == [HOST_PLATFORM, OTHER_PLATFORM]
        assert all(c.ok for c in fresh.check([dest], platforms="all", verify=True))
    raw = subprocess.run(
        skopeo.argv("inspect", "--raw", *registry.skopeo_args(), f"docker://{dest}"),
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == top["digest"]
    assert len(json.loads(raw)["manifests"]) == 2


@pytest.mark.parametrize("direct_read_min", [0, 4 << 20])
def test_pull_of_a_large_layer_reads_it_whole(
    registry: Registry, tmp_path: Path, direct_read_min: int
) -> None:
    """A layer large enough to be read from the socket over plain HTTP (every blob, with 0)
    and the small ones beside it are stored whole and verified."""
    builder = ArchiveBuilder()
    rng = random.Random(7)
    top = builder.image(files={"big.bin": rng.randbytes(5 << 20)}, layers=3)
    name = "example.com/large/app:1"
    builder.add(top, name=name)
    dest = f"{registry.netloc}/demo/large:1"
    with Store(tmp_path / "a") as store:
        store.import_archive(builder.write(tmp_path / "large.tar"))
        store.push(name, dest, client_factory=registry.factory())
    factory = registry.factory(direct_read_min=direct_read_min)
    with Store(tmp_path / "b") as fresh:
        pulled = fresh.pull(dest, client_factory=factory)
        assert str(pulled.digest) == top["digest"] and pulled.blobs_downloaded == 4
        assert pulled.bytes_downloaded > 5 << 20
        assert all(c.ok for c in fresh.check([dest], verify=True))
        for digest, data in builder.blobs.items():
            assert fresh.blobs.read_blob(Digest.parse(digest), len(data)) == data
