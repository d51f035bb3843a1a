#!/usr/bin/env python3
"""Benchmark ``cargohold serve`` side by side with Distribution (``docker-registry``) serving
the same image: blob throughput (1 and 16 clients on a large layer), manifest GETs per second
(16 keep-alive clients), the server's memory under 64 concurrent downloads, and whether 200
idle (slowloris) connections keep others from being served.

    python3 bench/serve.py [--workdir DIR] [--layer-mb 200] [--manifest-requests 20000]

Needs docker-registry, skopeo, curl and ab (apache2-utils). Blobs are fetched with curl (one
process per client, body to /dev/null), manifests with ``ab -k``. Both servers write one
access-log line per request to a file. Results go to DIR/serve-results.json.

One client's throughput is the layer's size over curl's own ``time_total`` (connect to last
byte), so that starting the curl process (the same for both servers) does not blur the
comparison; 16 or 64 clients are timed from the first start to the last exit. Each server's
CPU seconds over the rounds (user + system, from /proc) are reported too. With
``--compare-src DIR`` a second cargohold (another checkout's ``src``) takes its turns as
``cargohold-base``, for a before/after in the same run. The ratios cargohold/distribution are
printed with the table; the kernel's TCP congestion control is recorded (BBR paces
connections itself when the queueing discipline is not ``fq``, which matters on loopback).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Final

from interpreter import use_bench_venv
from peers import skopeo_env, skopeo_policy, tool, version
from timing import run_checked

BENCH: Final = Path(__file__).resolve().parent
SRC: Final = BENCH.parent / "src"
NAME: Final = "bench.example/serve/app"
TAG: Final = "1"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
MIB: Final = 1 << 20


def log(message: str) -> None:
    print(f"[serve-bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the image -------------------------------------------------------------------------------


def _blob(layout: Path, data: bytes | Path, media_type: str) -> dict[str, Any]:
    if isinstance(data, Path):
        digest = hashlib.sha256()
        with data.open("rb") as f:
            while chunk := f.read(MIB):
                digest.update(chunk)
        hexdigest, size = digest.hexdigest(), data.stat().st_size
        target = layout / "blobs" / "sha256" / hexdigest
        if not target.exists():
            os.replace(data, target)
    else:
        hexdigest, size = hashlib.sha256(data).hexdigest(), len(data)
        (layout / "blobs" / "sha256" / hexdigest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{hexdigest}", "size": size}


def build_image(workdir: Path, layer_mb: int) -> Path:
    """An OCI archive of one image: a small layer and a *layer_mb* MiB one (random bytes,
    stored uncompressed: the servers send them, nobody unpacks them)."""
    archive = workdir / f"image-{layer_mb}.tar"
    if archive.exists():
        return archive
    layout = workdir / "layout"
    shutil.rmtree(layout, ignore_errors=True)
    (layout / "blobs" / "sha256").mkdir(parents=True)
    big = workdir / "big.layer"
    with big.open("wb") as f:
        for _ in range(layer_mb):
            f.write(os.urandom(MIB))
    small = _blob(layout, b"small layer " * 100, "application/vnd.oci.image.layer.v1.tar")
    large = _blob(layout, big, "application/vnd.oci.image.layer.v1.tar")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [small["digest"], large["digest"]]},
    }
    config_desc = _blob(
        layout, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [small, large],
    }
    manifest_desc = _blob(layout, json.dumps(manifest).encode(), OCI_MANIFEST)
    manifest_desc["annotations"] = {
        "io.containerd.image.name": f"{NAME}:{TAG}",
        "org.opencontainers.image.ref.name": TAG,
    }
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest_desc],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    tmp = archive.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    os.replace(tmp, archive)
    shutil.rmtree(layout)
    return archive


# --- the servers -----------------------------------------------------------------------------


def cargohold(*args: str) -> list[str]:
    return [sys.executable, "-m", "cargohold", *args]


def cargohold_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


@contextmanager
def cargohold_server(store: Path, logfile: Path, src: Path = SRC) -> Iterator[tuple[str, int]]:
    """``cargohold serve`` (the code under *src*) on a free port: (URL, pid)."""
    with logfile.open("wb") as err:
        process = subprocess.Popen(
            cargohold("--root", str(store), "serve", "--addr", "127.0.0.1:0"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(src)},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"listening on (http://\S+) ", logfile.read_text())
            if found:
                yield found.group(1), process.pid
                return
            if process.poll() is not None:
                raise SystemExit(f"cargohold serve exited:\n{logfile.read_text()}")
            time.sleep(0.05)
        raise SystemExit("cargohold serve did not start")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@contextmanager
def distribution_server(storage: Path, logfile: Path) -> Iterator[tuple[str, int]]:
    """docker-registry with filesystem storage on a free port: (URL, pid)."""
    port = free_port()
    config = storage.parent / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(storage))}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
    )
    with logfile.open("wb") as out:
        process = subprocess.Popen(
            [tool("docker-registry"), "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if subprocess.run(["curl", "-sf", "-o", "/dev/null", f"{url}/v2/"]).returncode == 0:
                yield url, process.pid
                return
            if process.poll() is not None:
                raise SystemExit(f"docker-registry exited:\n{logfile.read_text()}")
            time.sleep(0.05)
        raise SystemExit("docker-registry did not start")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


# --- the measurements ------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of process *pid* so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def blob_throughput(url: str, clients: int, rounds: int) -> float:
    """MiB/s over *clients* concurrent curl downloads of the blob, *rounds* each: for one
    client by curl's own clock (connect to last byte), else by the wall clock."""
    started = time.perf_counter()
    total, timed = 0, 0.0
    for _ in range(rounds):
        procs = [
            subprocess.Popen(
                ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
                stdout=subprocess.PIPE,
            )
            for _ in range(clients)
        ]
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"curl failed on {url}")
            size, seconds = out.split()
            total += int(size)
            timed += float(seconds)
    elapsed = timed if clients == 1 else time.perf_counter() - started
    return total / MIB / elapsed


def manifest_rate(url: str, requests: int, concurrency: int = 16) -> float:
    out = run_checked(
        [
            tool("ab"),
            "-q",
            "-k",
            "-c",
            str(concurrency),
            "-n",
            str(requests),
            "-H",
            f"Accept: {OCI_MANIFEST}",
            url,
        ],
        timeout=600,
    )
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if (failed and int(failed.group(1))) or non2xx:
        raise SystemExit(f"ab saw failures:\n{out}")
    found = re.search(r"Requests per second:\s+([\d.]+)", out)
    assert found, out
    return float(found.group(1))


def peak_memory(pid: int, action: Callable[[], object]) -> tuple[float, float]:
    """(RSS before, peak RSS while *action* runs), MiB, sampled every 20 ms."""
    before = rss_mib(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        action()
    finally:
        done.set()
        sampler.join()
    return before, peak[0]


def slowloris(base: str, manifest: str, idle: int = 200) -> float:
    """With *idle* connections each holding half a request, the seconds 100 manifest GETs of
    another client take (it fails when one is not served)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    sockets = []
    try:
        for _ in range(idle):
            sock = socket.create_connection((host, int(port)))
            sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
            sockets.append(sock)
        started = time.perf_counter()
        run_checked([tool("ab"), "-q", "-s", "10", "-c", "1", "-n", "100", manifest], timeout=60)
        return time.perf_counter() - started
    finally:
        for sock in sockets:
            sock.close()


def measure(
    servers: dict[str, tuple[str, int]], layer: str, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Every measurement of every server, the servers taking turns round by round (the
    machine's load changes; each number is the median of its rounds)."""
    blob = {name: f"{base}/v2/{NAME}/blobs/{layer}" for name, (base, _) in servers.items()}
    manifest = {name: f"{base}/v2/{NAME}/manifests/{TAG}" for name, (base, _) in servers.items()}
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in servers}

    def rounds(key: str, count: int, probe: Callable[[str], float]) -> None:
        log(key)
        for _ in range(count):
            for name, (_, pid) in servers.items():
                cpu = cpu_seconds(pid)
                samples[name].setdefault(key, []).append(probe(name))
                samples[name].setdefault(f"{key}:cpu_s", []).append(cpu_seconds(pid) - cpu)

    rounds("warm-up", 1, lambda n: blob_throughput(blob[n], 1, 1) + manifest_rate(manifest[n], 500))
    rounds("blob_1_client_mib_s", args.rounds, lambda n: blob_throughput(blob[n], 1, 1))
    rounds("blob_16_clients_mib_s", args.rounds, lambda n: blob_throughput(blob[n], 16, 1))
    rounds(
        "manifest_gets_per_s",
        args.rounds,
        lambda n: manifest_rate(manifest[n], args.manifest_requests),
    )
    for name, (_, pid) in servers.items():
        log(f"{name}: memory under 64 downloads")
        downloads = functools.partial(blob_throughput, blob[name], 64, 1)
        before, peak = peak_memory(pid, downloads)
        samples[name]["rss_idle_mib"], samples[name]["rss_peak_64_downloads_mib"] = [before], [peak]
    rounds("seconds_100_gets_with_200_idle", 1, lambda n: slowloris(servers[n][0], manifest[n]))
    results: dict[str, dict[str, Any]] = {}
    for name, measured in samples.items():
        measured.pop("warm-up")
        measured.pop("warm-up:cpu_s")
        cpu = {
            key.removesuffix(":cpu_s"): sum(measured.pop(key))
            for key in list(measured)
            if key.endswith(":cpu_s")
        }
        results[name] = {key: statistics.median(values) for key, values in measured.items()}
        results[name]["samples"] = measured
        results[name]["cpu_seconds"] = cpu
    return results


def main() -> int:
    use_bench_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/cargohold-serve-bench"))
    parser.add_argument("--layer-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each measurement")
    parser.add_argument("--manifest-requests", type=int, default=10000)
    parser.add_argument(
        "--compare-src", type=Path, help="another checkout's src/: served too, as cargohold-base"
    )
    args = parser.parse_args()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    log("building the image")
    archive = build_image(work, args.layer_mb)
    store = work / "store"
    if not store.exists():
        log("importing it into cargohold")
        run_checked(
            cargohold("--root", str(store), "image", "import", "-q", str(archive)),
            env=cargohold_env(),
            timeout=600,
        )
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest_digest = index["manifests"][0]["digest"]
        manifest = json.load(tar.extractfile("blobs/sha256/" + manifest_digest[7:]))  # type: ignore[arg-type]
    layer = max(manifest["layers"], key=lambda d: d["size"])["digest"]
    results: dict[str, Any] = {
        "layer_mib": args.layer_mb,
        "cpus": os.cpu_count(),
        "kernel": os.uname().release,
        "tcp_congestion_control": sysctl("net/ipv4/tcp_congestion_control"),
    }
    registry_storage = work / "registry"
    with ExitStack() as stack:
        url, pid = stack.enter_context(distribution_server(registry_storage, work / "registry.log"))
        servers = {
            "cargohold": stack.enter_context(cargohold_server(store, work / "cargohold.log"))
        }
        if args.compare_src is not None:
            servers["cargohold-base"] = stack.enter_context(
                cargohold_server(store, work / "cargohold-base.log", args.compare_src.resolve())
            )
        servers["distribution"] = (url, pid)
        host = url.removeprefix("http://")
        log("pushing the image into docker-registry with skopeo")
        policy = skopeo_policy(work / "policy.json")
        run_checked(
            [
                tool("skopeo"),
                "--policy",
                str(policy),
                "copy",
                "--quiet",
                "--preserve-digests",
                "--dest-tls-verify=false",
                f"oci-archive:{archive}",
                f"docker://{host}/{NAME}:{TAG}",
            ],
            env=skopeo_env(work / "tmp"),
            timeout=600,
        )
        results.update(measure(servers, layer, args))
    results["versions"] = {
        "docker-registry": version([tool("docker-registry"), "--version"]),
        "ab": version([tool("ab"), "-V"]),
    }
    (work / "serve-results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    return 0


def print_table(results: dict[str, Any]) -> None:
    rows = [
        ("blob, 1 client (MiB/s)", "blob_1_client_mib_s"),
        ("blob, 16 clients (MiB/s)", "blob_16_clients_mib_s"),
        ("manifest GETs/s, 16 keep-alive", "manifest_gets_per_s"),
        ("RSS idle (MiB)", "rss_idle_mib"),
        ("RSS peak, 64 downloads (MiB)", "rss_peak_64_downloads_mib"),
        ("100 GETs with 200 idle conns (s)", "seconds_100_gets_with_200_idle"),
    ]
    names = [name for name in ("cargohold", "cargohold-base", "distribution") if name in results]
    print(f"{'':36}" + "".join(f" {name:>14}" for name in names) + f" {'ratio':>7}")
    for label, key in rows:
        ratio = results["cargohold"][key] / results["distribution"][key]
        print(
            f"{label:36}"
            + "".join(f" {results[name][key]:14.1f}" for name in names)
            + f" {ratio:7.2f}"
        )
    for label, key in (
        ("server CPU s, 1-client rounds", "blob_1_client_mib_s"),
        ("server CPU s, 16-client rounds", "blob_16_clients_mib_s"),
    ):
        print(
            f"{label:36}" + "".join(f" {results[name]['cpu_seconds'][key]:14.2f}" for name in names)
        )
    print(
        f"(ratio: cargohold / distribution; kernel {results['kernel']},"
        f" tcp_congestion_control {results['tcp_congestion_control']})"
    )


def sysctl(name: str) -> str:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
