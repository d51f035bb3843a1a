"""``image push`` and ``image pull`` against the real registry (CNCF Distribution, Debian's
``docker-registry``), checked with skopeo: once in plain HTTP without authentication, once over
TLS with a certificate made here and htpasswd basic authentication."""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import pytest
from conftest import DEMO_REF, Skopeo, _log_tail, _stop, require_tool, run_text

from cargohold.operations.store import Store
from cargohold.operations.transfer import ClientFactory
from cargohold.registry.client import Credentials, RegistryClient
from clisupport import run
from imagefactory import ArchiveBuilder

HOST_PLATFORM: Final = "linux/amd64"
OTHER_PLATFORM: Final = "linux/arm64"
USER: Final = "pusher"
#: How long the registry may take to answer its first ``GET /v2/``.
STARTUP_DEADLINE: Final = 30.0


@dataclass(frozen=True)
class Registry:
    """A running docker-registry: where it answers and how to log in."""

    netloc: str
    tls: bool
    cert_dir: Path | None = None
    password: str | None = None

    @property
    def cert(self) -> Path | None:
        return self.cert_dir / "ca.crt" if self.cert_dir is not None else None

    def factory(self) -> ClientFactory:
        credentials = Credentials(USER, self.password) if self.password else None

        def make(host: str) -> RegistryClient:
            return RegistryClient(
                host,
                credentials=credentials,
                use_docker_config=False,
                trust_env=False,
                plain_http=not self.tls,
                verify=str(self.cert) if self.cert is not None else True,
            )

        return make

    def skopeo_args(self, prefix: str = "") -> list[str]:
        """``--tls-verify=false`` and the credentials, for skopeo inspect (prefix "") or the
        source of skopeo copy (prefix "src-")."""
        args = [f"--{prefix}tls-verify=false"]
        if self.password:
            args.append(f"--{prefix}creds={USER}:{self.password}")
        return args

    def cli_args(self) -> list[str]:
        if not self.tls:
            return ["--plain-http"]
        assert self.cert is not None and self.password is not None
        return ["--ca-cert", str(self.cert), "--user", f"{USER}:{self.password}"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(storage: Path, port: int, tls: tuple[Path, Path] | None, htpasswd: Path | None) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {json.dumps(str(storage))}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        f"  secret: {secrets.token_hex(16)}",
    ]
    if tls is not None:
        cert, key = tls
        lines += [
            "  tls:",
            f"    certificate: {json.dumps(str(cert))}",
            f"    key: {json.dumps(str(key))}",
        ]
    if htpasswd is not None:
        lines += [
            "auth:",
            "  htpasswd:",
            "    realm: cargohold-test",
            f"    path: {json.dumps(str(htpasswd))}",
        ]
    return "\n".join(lines) + "\n"


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    last = "no answer"
    with httpx.Client(verify=False, trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(url).status_code in (200, 401):
                    return
            except httpx.TransportError as exc:
                last = str(exc)
            try:
                status = process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(
                f"docker-registry exited with status {status}\n{_log_tail(log)}", pytrace=False
            )
    _stop(process)
    pytest.fail(f"docker-registry did not answer {url}: {last}\n{_log_tail(log)}", pytrace=False)


def _start(directory: Path, secure: bool) -> Iterator[Registry]:
    binary = require_tool("docker-registry")
    port = _free_port()
    tls = htpasswd = cert_dir = None
    password = None
    if secure:
        openssl = require_tool("openssl")
        cert_dir = directory / "certs"
        cert_dir.mkdir()
        cert, key = cert_dir / "ca.crt", directory / "key.pem"
        run_text(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
             "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
        )  # fmt: skip
        tls = (cert, key)
        password = secrets.token_hex(12)
        htpasswd = directory / "htpasswd"
        line = run_text([require_tool("htpasswd"), "-Bbn", USER, password]).stdout.strip()
        htpasswd.write_text(line + "\n")
    config = directory / "config.yml"
    config.write_text(_config(directory / "storage", port, tls, htpasswd))
    log = directory / "registry.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        scheme = "https" if secure else "http"
        _wait_until_ready(f"{scheme}://127.0.0.1:{port}/v2/", process, log)
        yield Registry(f"127.0.0.1:{port}", secure, cert_dir, password)
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from _start(tmp_path_factory.mktemp("registry-plain"), secure=False)


@pytest.fixture(scope="module")
def secure_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from _start(tmp_path_factory.mktemp("registry-tls"), secure=True)


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
        store.import_archive(builder.write(tmp_path / "multi.tar"), all_platforms=True)
        pushed = store.push(name, dest, all_platforms=True, client_factory=registry.factory())
        assert str(pushed.digest) == top["digest"] and pushed.manifests == 3
    with Store(tmp_path / "b") as fresh:
        pulled = fresh.pull(dest, all_platforms=True, client_factory=registry.factory())
        assert str(pulled.digest) == top["digest"]
        assert sorted(str(p) for p in pulled.platforms) == [HOST_PLATFORM, OTHER_PLATFORM]
        assert all(c.ok for c in fresh.check([dest], all_platforms=True, verify=True))
    raw = subprocess.run(
        skopeo.argv("inspect", "--raw", *registry.skopeo_args(), f"docker://{dest}"),
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == top["digest"]
    assert len(json.loads(raw)["manifests"]) == 2
