"""A real registry for the interop tests: CNCF Distribution (Debian's ``docker-registry``) on
a free loopback port, in plain HTTP without authentication, or over TLS with a certificate made
here and htpasswd basic authentication."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import pytest
from conftest import _log_tail, _stop, require_tool, run_text

from cargohold.operations.transfer import ClientFactory
from cargohold.registry.client import Credentials, RegistryClient
from tlscerts import self_signed_certificate

#: The user of the TLS registry's htpasswd file.
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

    def factory(self, **options: int) -> ClientFactory:
        """Clients of this registry (*options*: more keyword arguments of the client)."""
        credentials = Credentials(USER, self.password) if self.password else None

        def make(host: str) -> RegistryClient:
            return RegistryClient(
                host,
                credentials=credentials,
                use_docker_config=False,
                trust_env=False,
                plain_http=not self.tls,
                verify=str(self.cert) if self.cert is not None else True,
                **options,  # type: ignore[arg-type]
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


def free_port() -> int:
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


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the registry at *url* answers (200, or 401 behind htpasswd); waiting on the
    process (it may exit) paces the polls."""
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


def start_registry(directory: Path, secure: bool) -> Generator[Registry, None, None]:
    """Run a registry in *directory* until the generator is closed."""
    port = free_port()
    tls = htpasswd = cert_dir = None
    password = None
    if secure:
        cert_dir = directory / "certs"
        cert_dir.mkdir()
        cert, key = self_signed_certificate(directory)  # the key stays out of the cert dir
        tls = (cert.rename(cert_dir / "ca.crt"), key)
        password = secrets.token_hex(12)
        htpasswd = directory / "htpasswd"
        line = run_text([require_tool("htpasswd"), "-Bbn", USER, password]).stdout.strip()
        htpasswd.write_text(line + "\n")
    scheme = "https" if secure else "http"
    config = _config(directory / "storage", port, tls, htpasswd)
    with running_registry(directory, config, f"{scheme}://127.0.0.1:{port}/v2/"):
        yield Registry(f"127.0.0.1:{port}", secure, cert_dir, password)


@contextmanager
def running_registry(directory: Path, config: str, url: str) -> Iterator[None]:
    """docker-registry serving the configuration *config* (written into *directory*, with
    its log) until the block ends; the block starts once *url* answers."""
    binary = require_tool("docker-registry")
    path = directory / "config.yml"
    path.write_text(config)
    log = directory / "registry.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, "serve", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_ready(url, process, log)
        yield
    finally:
        _stop(process)
