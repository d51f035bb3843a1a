"""Fixtures that run the real peer tools: a private containerd daemon, umoci and skopeo.

The interop tests compare cargohold with the tools it has to agree with, so they never skip: a
missing tool is a broken test machine, and each test that needs it fails saying which one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

#: The reference the umoci image is given when skopeo turns it into an archive.
DEMO_REF: Final = "example.com/umoci/demo:1.0"
#: The tag of the image inside the umoci layout.
UMOCI_TAG: Final = "1.0"

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"

#: Which Debian package provides each peer tool, for the failure message.
PEER_PACKAGES: Final = {
    "containerd": "containerd",
    "ctr": "containerd",
    "skopeo": "skopeo",
    "umoci": "umoci",
    "docker-registry": "docker-registry",
    "htpasswd": "apache2-utils",
    "openssl": "openssl",
    "podman": "podman",
}

#: How long one peer-tool command may take before the test gives up on it.
COMMAND_TIMEOUT: Final = 120.0
#: How long the private containerd may take to answer its first request.
STARTUP_DEADLINE: Final = 30.0
#: A unix socket path must fit in sun_path (108 bytes with its terminating NUL).
MAX_SOCKET_PATH: Final = 100

#: Plugins the private daemon does not load: the CRI server, snapshotters that need kernel
#: support or privileges, and everything that runs containers. Importing and exporting
#: content needs only the content store, the metadata store and the image service.
DISABLED_PLUGINS: Final = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.restart",
    "io.containerd.runtime.v1.linux",
    "io.containerd.runtime.v2.task",
    "io.containerd.monitor.v1.cgroups",
    "io.containerd.service.v1.tasks-service",
    "io.containerd.grpc.v1.tasks",
)

_INTEROP_DIR: Final = Path(__file__).parent

# The main suite's helpers (clisupport, imagefactory, fakeregistry) for interop tests run alone.
_SUPPORT_DIR: Final = _INTEROP_DIR.parent / "support"
if str(_SUPPORT_DIR) not in sys.path:
    sys.path.append(str(_SUPPORT_DIR))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/interop as ``interop``, whichever module it is in."""
    for item in items:
        if item.path.is_relative_to(_INTEROP_DIR):
            item.add_marker(pytest.mark.interop)


# --- running tools -------------------------------------------------------------------------


class ToolError(subprocess.CalledProcessError):
    """A peer tool exited non-zero; unlike its base class, the message includes its output."""

    def __str__(self) -> str:
        def text(value: str | bytes | None) -> str:
            if isinstance(value, bytes):
                return value.decode("utf-8", "replace")
            return value or ""

        command = " ".join(str(part) for part in self.cmd)
        return (
            f"{command!r} exited with status {self.returncode}\n"
            f"--- stderr ---\n{text(self.stderr).strip()}\n"
            f"--- stdout ---\n{text(self.stdout).strip()[:4000]}"
        )


def require_tool(name: str) -> str:
    """Return the path of peer tool *name*, or fail the test saying that it is missing."""
    path = shutil.which(name)
    if path is None:
        package = PEER_PACKAGES.get(name, name)
        pytest.fail(
            f"interop peer tool {name!r} is not installed (not found on PATH); "
            f"install the Debian package {package!r} (.ci/run does this)",
            pytrace=False,
        )
    return path


def run_text(
    argv: list[str], *, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run *argv* with captured text output; raise :class:`ToolError` if it fails."""
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise ToolError(result.returncode, argv, result.stdout, result.stderr)
    return result


def run_bytes(argv: list[str], *, timeout: float = COMMAND_TIMEOUT) -> bytes:
    """Run *argv* and return its standard output unchanged; raise :class:`ToolError` if it fails."""
    result = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise ToolError(result.returncode, argv, result.stdout, result.stderr)
    return result.stdout


# --- containerd ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CtrImage:
    """One row of ``ctr image ls``."""

    name: str
    media_type: str
    digest: str
    platforms: tuple[str, ...]


def parse_ctr_image_ls(output: str) -> dict[str, CtrImage]:
    """Parse the table ``ctr image ls`` prints: REF TYPE DIGEST SIZE PLATFORMS LABELS.

    SIZE is two words ("1.3 KiB"); REF, TYPE, DIGEST and PLATFORMS contain no blanks.
    """
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        return {}
    header = lines[0].split()
    if header[:3] != ["REF", "TYPE", "DIGEST"]:
        raise ValueError(f"unexpected `ctr image ls` header: {lines[0]!r}")
    images: dict[str, CtrImage] = {}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 3:
            raise ValueError(f"unexpected `ctr image ls` row: {line!r}")
        platforms = fields[5].split(",") if len(fields) >= 6 and fields[5] != "-" else []
        images[fields[0]] = CtrImage(fields[0], fields[1], fields[2], tuple(platforms))
    return images


@dataclass(frozen=True, slots=True)
class Containerd:
    """A private containerd daemon, and its ``ctr`` client bound to its socket."""

    address: str
    ctr_path: str
    root: Path

    def ctr(self, *args: str, namespace: str = "default") -> subprocess.CompletedProcess[str]:
        """Run ``ctr --address SOCK --namespace NS ARGS...``; fail on a non-zero exit."""
        argv = [self.ctr_path, "--address", self.address, "--namespace", namespace, *args]
        return run_text(argv)

    def images(self, namespace: str = "default") -> dict[str, CtrImage]:
        """The images of *namespace*, by name, as ``ctr image ls`` lists them."""
        return parse_ctr_image_ls(self.ctr("image", "ls", namespace=namespace).stdout)


def _socket_dir(candidate: Path) -> tuple[Path, bool]:
    """Where the daemon's sockets go: *candidate*, or a short temporary directory.

    Returns the directory and whether it was created here (and so must be removed here).
    """
    if len(str(candidate / "containerd.sock").encode()) <= MAX_SOCKET_PATH:
        return candidate, False
    return Path(tempfile.mkdtemp(prefix="ch-ctr-", dir="/tmp")), True


def _containerd_config(run_dir: Path, socket_dir: Path) -> str:
    def toml_string(path: Path) -> str:
        return json.dumps(str(path))  # a JSON string is a valid TOML basic string

    disabled = ", ".join(json.dumps(plugin) for plugin in DISABLED_PLUGINS)
    return (
        "version = 2\n"
        f"root = {toml_string(run_dir / 'root')}\n"
        f"state = {toml_string(run_dir / 'state')}\n"
        f"temp = {toml_string(run_dir / 'tmp')}\n"
        f"disabled_plugins = [{disabled}]\n"
        "\n[grpc]\n"
        f"  address = {toml_string(socket_dir / 'containerd.sock')}\n"
        "\n[ttrpc]\n"
        f"  address = {toml_string(socket_dir / 'containerd.ttrpc.sock')}\n"
        "\n[debug]\n"
        '  address = ""\n'
        '  level = "info"\n'
        "\n[metrics]\n"
        '  address = ""\n'
    )


def _log_tail(log: Path, limit: int = 6000) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return text[-limit:]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """Start a private containerd daemon for the session, and stop it at the end."""
    containerd_path = require_tool("containerd")
    ctr_path = require_tool("ctr")

    run_dir = tmp_path_factory.mktemp("containerd")
    (run_dir / "tmp").mkdir()
    socket_dir, own_socket_dir = _socket_dir(run_dir)
    config = run_dir / "config.toml"
    config.write_text(_containerd_config(run_dir, socket_dir))
    log = run_dir / "containerd.log"
    address = str(socket_dir / "containerd.sock")

    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [containerd_path, "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        daemon = Containerd(address=address, ctr_path=ctr_path, root=run_dir)
        _wait_until_ready(daemon, process, log)
        yield daemon
    finally:
        _stop(process)
        if own_socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)


def _wait_until_ready(daemon: Containerd, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``ctr version`` until the daemon answers; fail with its log if it never does."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    last_error = f"{daemon.address} never appeared"
    while True:
        if Path(daemon.address).exists():
            try:
                daemon.ctr("version", namespace="default")
                return
            except (ToolError, subprocess.TimeoutExpired) as exc:
                last_error = str(exc)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            # Waiting on the process both paces the polling and notices an early exit.
            status = process.wait(timeout=min(0.1, remaining))
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(
            f"containerd exited with status {status} before it answered on {daemon.address}\n"
            f"--- containerd log ---\n{_log_tail(log)}",
            pytrace=False,
        )
    _stop(process)
    pytest.fail(
        f"containerd did not answer `ctr version` within {STARTUP_DEADLINE:.0f} s\n"
        f"last error: {last_error}\n--- containerd log ---\n{_log_tail(log)}",
        pytrace=False,
    )


@pytest.fixture
def ctr_namespace() -> str:
    """A containerd namespace of the test's own, so tests sharing the daemon never collide."""
    return f"t-{uuid.uuid4().hex[:16]}"


# --- umoci ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OciLayout:
    """An OCI image layout directory holding one tagged image."""

    path: Path
    tag: str

    @property
    def image(self) -> str:
        """The ``path:tag`` form umoci and skopeo's ``oci:`` transport take."""
        return f"{self.path}:{self.tag}"

    def index(self) -> dict[str, Any]:
        index: dict[str, Any] = json.loads((self.path / "index.json").read_text())
        return index

    def manifest_descriptor(self) -> dict[str, Any]:
        """The descriptor index.json holds for :attr:`tag`."""
        matches: list[dict[str, Any]] = [
            descriptor
            for descriptor in self.index()["manifests"]
            if descriptor.get("annotations", {}).get("org.opencontainers.image.ref.name")
            == self.tag
        ]
        assert len(matches) == 1, f"expected one manifest tagged {self.tag!r}: {self.index()}"
        return matches[0]

    @property
    def manifest_digest(self) -> str:
        digest: str = self.manifest_descriptor()["digest"]
        return digest

    def blob(self, digest: str) -> bytes:
        algorithm, _, encoded = digest.partition(":")
        return (self.path / "blobs" / algorithm / encoded).read_bytes()

    def manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(self.blob(self.manifest_digest))
        return manifest


def _write_first_layer(rootfs: Path) -> None:
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc" / "motd").write_text("Hello from a umoci image.\n")
    bin_dir = rootfs / "bin"
    bin_dir.mkdir(exist_ok=True)
    hello = bin_dir / "hello"
    hello.write_text("#!/bin/sh\necho hello\n")
    hello.chmod(0o755)
    data_dir = rootfs / "srv" / "app" / "data"
    data_dir.mkdir(parents=True)
    (data_dir / "blob.bin").write_bytes(bytes(range(256)) * 16 + b"\x00\xff" * 100)
    (data_dir / "nested.txt").write_text("nested\n" * 50)
    (rootfs / "srv" / "app" / "obsolete.txt").write_text("removed by the second layer\n")
    (rootfs / "srv" / "current").symlink_to("app/data")


def _write_second_layer(rootfs: Path) -> None:
    (rootfs / "srv" / "app" / "obsolete.txt").unlink()  # becomes a whiteout
    (rootfs / "srv" / "app" / "data" / "nested.txt").write_text("changed in layer two\n")
    (rootfs / "srv" / "app" / "VERSION").write_text("1.0\n")


@dataclass(frozen=True, slots=True)
class Umoci:
    """The umoci command."""

    path: str

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_text([self.path, *args])

    def unpack(self, image: str, bundle: Path) -> Path:
        """Unpack ``layout:tag`` *image* into *bundle*; return the bundle's root filesystem."""
        self.run("unpack", "--rootless", "--image", image, str(bundle))
        return bundle / "rootfs"


@pytest.fixture(scope="session")
def umoci() -> Umoci:
    return Umoci(require_tool("umoci"))


@pytest.fixture(scope="session")
def umoci_image(umoci: Umoci, tmp_path_factory: pytest.TempPathFactory) -> OciLayout:
    """A small two-layer image built offline with umoci: ``(layout directory, tag)``."""
    work = tmp_path_factory.mktemp("umoci")
    layout = OciLayout(work / "layout", UMOCI_TAG)

    umoci.run("init", "--layout", str(layout.path))
    umoci.run("new", "--image", layout.image)

    first = work / "bundle-1"
    _write_first_layer(umoci.unpack(layout.image, first))
    umoci.run("repack", "--image", layout.image, str(first))
    umoci.run(
        "config",
        "--image",
        layout.image,
        "--config.cmd=/bin/hello",
        "--config.env=A=1",
        "--config.workingdir=/srv/app",
        "--config.label=org.example.kind=demo",
        "--author=cargohold interop tests",
    )

    second = work / "bundle-2"
    _write_second_layer(umoci.unpack(layout.image, second))
    umoci.run("repack", "--image", layout.image, str(second))
    umoci.run("gc", "--layout", str(layout.path))

    assert layout.manifest_descriptor()["mediaType"] == OCI_MANIFEST
    assert len(layout.manifest()["layers"]) == 2
    return layout


# --- skopeo --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Skopeo:
    """skopeo with a trust policy of its own, so no /etc/containers/policy.json is needed."""

    path: str
    policy: Path

    def argv(self, *args: str) -> list[str]:
        return [self.path, "--policy", str(self.policy), *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_text(self.argv(*args))

    def copy(self, source: str, destination: str) -> None:
        self.run("copy", "--quiet", source, destination)

    def inspect(self, image: str) -> dict[str, Any]:
        """``skopeo inspect IMAGE``, parsed."""
        inspected: dict[str, Any] = json.loads(self.run("inspect", image).stdout)
        return inspected

    def raw_manifest(self, image: str) -> bytes:
        """``skopeo inspect --raw IMAGE``: the manifest's bytes exactly as stored."""
        return run_bytes(self.argv("inspect", "--raw", image))

    def oci_archive(self, layout: OciLayout, out: Path, ref: str = DEMO_REF) -> Path:
        """Copy *layout* into an ``oci-archive:`` tarball whose image is named *ref*."""
        self.copy(f"oci:{layout.image}", f"oci-archive:{out}:{ref}")
        return out

    def docker_archive(self, layout: OciLayout, out: Path, ref: str = DEMO_REF) -> Path:
        """Copy *layout* into a ``docker-archive:`` (``docker save`` format) tarball."""
        self.copy(f"oci:{layout.image}", f"docker-archive:{out}:{ref}")
        return out


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    path = require_tool("skopeo")
    policy = tmp_path_factory.mktemp("skopeo") / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return Skopeo(path, policy)


@pytest.fixture(scope="session")
def oci_archive(
    skopeo: Skopeo, umoci_image: OciLayout, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The umoci image as skopeo's ``oci-archive:`` named :data:`DEMO_REF` (read-only)."""
    return skopeo.oci_archive(umoci_image, tmp_path_factory.mktemp("archives") / "demo-oci.tar")


@pytest.fixture(scope="session")
def docker_archive(
    skopeo: Skopeo, umoci_image: OciLayout, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The umoci image as skopeo's ``docker-archive:`` tagged :data:`DEMO_REF` (read-only)."""
    out = tmp_path_factory.mktemp("archives") / "demo-docker.tar"
    return skopeo.docker_archive(umoci_image, out)


#: The working tree's sources, so the tests run this checkout's cargohold even if not installed.
SRC_DIR: Final = Path(__file__).resolve().parents[2] / "src"


def cargohold(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cargohold --root ROOT ARGS...``; the caller checks the outcome."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "cargohold", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env=env,
    )
