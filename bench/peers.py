"""The peer tools the benchmark compares against: a private containerd daemon, and skopeo."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final

from timing import CommandError, run_checked

#: The containerd namespace the benchmark imports into.
NAMESPACE: Final = "bench"
#: How long the daemon may take to answer its first request.
STARTUP_DEADLINE: Final = 30.0
#: A unix socket path must fit in sun_path (108 bytes with its terminating NUL).
MAX_SOCKET_PATH: Final = 100
#: Plugins the private daemon does not load: the CRI server, snapshotters that need kernel
#: support, and everything that runs containers. ``ctr image import --no-unpack`` and
#: ``ctr image export`` need only the content store, the metadata store and the image service.
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


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise CommandError(f"{name} is not installed (run bench/setup.sh)")
    return path


def version(argv: list[str], env: dict[str, str] | None = None) -> str:
    """The first line a ``--version`` command prints (or why there is none)."""
    try:
        return run_checked(argv, env=env, timeout=30).strip().splitlines()[0]
    except (CommandError, OSError, IndexError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"


class Containerd:
    """A containerd daemon of the benchmark's own (own root, state and socket).

    Use as a context manager: the daemon is stopped on leaving, whatever happened.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.containerd = tool("containerd")
        self.ctr_path = tool("ctr")
        self.process: subprocess.Popen[bytes] | None = None
        self.socket_dir = directory
        self.own_socket_dir = False
        self.log = directory / "containerd.log"

    @property
    def address(self) -> str:
        return str(self.socket_dir / "containerd.sock")

    def ctr_argv(self, *args: str | Path) -> list[str]:
        """``ctr --address SOCK -n bench ARGS``."""
        return [self.ctr_path, "--address", self.address, "-n", NAMESPACE, *map(str, args)]

    def ctr(self, *args: str | Path) -> str:
        return run_checked(self.ctr_argv(*args))

    def __enter__(self) -> Containerd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.directory.exists():
            shutil.rmtree(self.directory)
        (self.directory / "tmp").mkdir(parents=True)
        if len(str(self.directory / "containerd.sock").encode()) > MAX_SOCKET_PATH:
            self.socket_dir = Path(tempfile.mkdtemp(prefix="cargohold-bench-"))
            self.own_socket_dir = True
        config = self.directory / "config.toml"
        config.write_text(self._config())
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [self.containerd, "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C reaches us, and we stop the daemon
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _config(self) -> str:
        def toml(value: str | Path) -> str:
            return json.dumps(str(value))  # a JSON string is a TOML basic string

        disabled = ", ".join(json.dumps(plugin) for plugin in DISABLED_PLUGINS)
        return (
            "version = 2\n"
            f"root = {toml(self.directory / 'root')}\n"
            f"state = {toml(self.directory / 'state')}\n"
            f"temp = {toml(self.directory / 'tmp')}\n"
            f"disabled_plugins = [{disabled}]\n"
            f"\n[grpc]\n  address = {toml(self.address)}\n"
            f"\n[ttrpc]\n  address = {toml(self.socket_dir / 'containerd.ttrpc.sock')}\n"
            '\n[debug]\n  address = ""\n  level = "warn"\n'
            '\n[metrics]\n  address = ""\n'
        )

    def _wait_until_ready(self) -> None:
        """Poll ``ctr version`` (once the socket exists) until the daemon answers."""
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_DEADLINE
        last_error = f"{self.address} never appeared"
        while time.monotonic() < deadline:
            if Path(self.address).exists():
                try:
                    self.ctr("version")
                    return
                except (CommandError, subprocess.TimeoutExpired) as exc:
                    last_error = str(exc)
            try:
                status = self.process.wait(timeout=0.05)  # paces the polling, notices an exit
            except subprocess.TimeoutExpired:
                continue
            raise CommandError(f"containerd exited with status {status}:\n{self._log_tail()}")
        raise CommandError(
            f"containerd did not answer within {STARTUP_DEADLINE:.0f} s ({last_error})\n"
            f"{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.own_socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.own_socket_dir = False

    # -- measuring the daemon ----------------------------------------------------------------

    def reset_peak_rss(self) -> None:
        """Reset the daemon's peak RSS (``VmHWM``), so the next reading covers one command."""
        if self.process is not None:
            with contextlib.suppress(OSError):
                Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak_rss(self) -> int | None:
        """The daemon's peak RSS in bytes since the last reset, when the kernel tells it."""
        if self.process is None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return None

    # -- keeping it cold ---------------------------------------------------------------------

    def content(self) -> list[str]:
        return self.ctr("content", "ls", "-q").split()

    def clear(self) -> int:
        """Remove every image of the namespace and its content (``image rm --sync``), and
        check that the content store is empty; returns how many blobs had to be removed by
        hand (0 when ``image rm --sync`` collected everything)."""
        images = self.ctr("image", "ls", "-q").split()
        if images:
            self.ctr("image", "rm", "--sync", *images)
        leftover = self.content()
        if leftover:
            self.ctr("content", "rm", *leftover)
            if self.content():
                raise CommandError(f"containerd still holds content: {self.content()}")
        return len(leftover)


def skopeo_policy(path: Path) -> Path:
    """A signature policy that accepts anything (the archives are local and unsigned)."""
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}) + "\n")
    return path


def skopeo_env(tmpdir: Path) -> dict[str, str]:
    """skopeo unpacks an ``oci-archive:`` into TMPDIR first; keep that in the work directory."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmpdir)}
