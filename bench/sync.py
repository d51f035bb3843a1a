#!/usr/bin/env python3
"""Benchmark ``cargohold sync`` against ``skopeo sync``: 20 images sharing a base layer, from a
local Distribution registry (Debian's ``docker-registry``) over plain HTTP on loopback.

Times, per round (a fresh store and a fresh skopeo directory each round):

* ``cargohold sync --plain-http LIST`` into an empty store (cold);
* ``skopeo sync --src yaml --dest dir`` of the same images into an empty directory;
* ``cargohold sync`` again with nothing changed (goal: under 1 s for 20 images).

    python3 bench/sync.py [--workdir DIR] [--images 20] [--base-mb 64] [--own-mb 2] [--repeat 3]

Prints the median, min and max of each, and writes them to WORKDIR/sync-results.json.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import io
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from interpreter import use_bench_venv
from peers import skopeo_policy, tool, version
from timing import timed_run

BENCH: Final = Path(__file__).resolve().parent
SRC: Final = BENCH.parent / "src"
sys.path.insert(0, str(SRC))

from cargohold.operations.store import Store  # noqa: E402
from cargohold.registry.client import RegistryClient  # noqa: E402

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar+gzip"


def gzip_layer(name: str, size: int) -> tuple[bytes, bytes]:
    """A gzip layer of one file of *size* random bytes: (compressed, uncompressed)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    data = raw.getvalue()
    return gzip.compress(data, compresslevel=1, mtime=0), data


def digest_of(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(blobs: Path, data: bytes) -> dict[str, object]:
    """*data* written into an OCI layout's ``blobs/sha256`` directory; its digest and size."""
    digest = digest_of(data)
    (blobs / digest.split(":")[1]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def build_layout(directory: Path, host: str, images: int, base_mb: int, own_mb: int) -> None:
    """An OCI layout of *images* images named ``HOST/bench/appN:1``, sharing one base."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    put = functools.partial(put_blob, blobs)

    base, base_raw = gzip_layer("base/blob", base_mb << 20)
    base_desc = {"mediaType": OCI_LAYER, **put(base)}
    entries = []
    for i in range(images):
        own, own_raw = gzip_layer(f"app{i}/blob", own_mb << 20)
        config = {
            "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [digest_of(base_raw), digest_of(own_raw)]},
        }  # fmt: skip
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **put(json.dumps(config).encode())},
            "layers": [base_desc, {"mediaType": OCI_LAYER, **put(own)}],
        }  # fmt: skip
        desc = {"mediaType": OCI_MANIFEST, **put(json.dumps(manifest).encode())}
        desc["annotations"] = {"io.containerd.image.name": f"{host}/bench/app{i}:1"}
        entries.append(desc)
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    (directory / "index.json").write_text(json.dumps(index))


@contextmanager
def registry(workdir: Path) -> Iterator[str]:
    """A docker-registry on a free loopback port, plain HTTP; yields ``host:port``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(workdir / 'storage'))}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
    )
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen(
        [tool("docker-registry"), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)  # waiting for a server to listen, not timing anything
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def publish(workdir: Path, host: str, images: int, base_mb: int, own_mb: int) -> None:
    layout = workdir / "layout"
    shutil.rmtree(layout, ignore_errors=True)
    build_layout(layout, host, images, base_mb, own_mb)

    def factory(name: str) -> RegistryClient:
        return RegistryClient(name, plain_http=True, use_docker_config=False, trust_env=False)

    with Store(workdir / "publisher") as store:
        store.import_archive(layout)
        result = store.push_all(host, client_factory=factory)
        if result.failed:
            raise SystemExit(f"publishing failed: {result.failed[0].error}")


def main() -> int:
    use_bench_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/cargohold-bench-sync"))
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--base-mb", type=int, default=64)
    parser.add_argument("--own-mb", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    policy = skopeo_policy(workdir / "policy.json")
    env = {**os.environ, "PYTHONPATH": str(SRC), "TMPDIR": str(workdir)}
    cargohold = [sys.executable, "-m", "cargohold"]
    samples: dict[str, list[float]] = {"cargohold": [], "skopeo": [], "cargohold-again": []}
    load_before = os.getloadavg()
    with registry(workdir) as host:
        publish(workdir, host, args.images, args.base_mb, args.own_mb)
        names = [f"{host}/bench/app{i}:1" for i in range(args.images)]
        text = workdir / "list.txt"
        text.write_text("\n".join(names) + "\n")
        yaml = workdir / "sync.yaml"
        tags = "".join(f"    bench/app{i}: ['1']\n" for i in range(args.images))
        yaml.write_text(f"{host}:\n  tls-verify: false\n  images:\n{tags}")
        for _ in range(args.repeat):
            root, out = workdir / "root", workdir / "skopeo-out"
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            sync = [*cargohold, "--root", str(root), "sync", "-q", "--plain-http", str(text)]
            samples["cargohold"].append(timed_run(sync, env=env)[0])
            samples["cargohold-again"].append(timed_run(sync, env=env)[0])
            skopeo = [tool("skopeo"), "--policy", str(policy), "sync", "--src", "yaml",
                      "--dest", "dir", str(yaml), str(out)]  # fmt: skip
            samples["skopeo"].append(timed_run(skopeo, env=env)[0])
    report(workdir, args, samples, (load_before, os.getloadavg()))
    return 0


def report(
    workdir: Path,
    args: argparse.Namespace,
    samples: dict[str, list[float]],
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> None:
    total_mb = args.base_mb + args.images * args.own_mb
    print(f"{args.images} images, {args.base_mb} MiB shared base + {args.own_mb} MiB each"
          f" ({total_mb} MiB of distinct blobs), {args.repeat} rounds")  # fmt: skip
    rows = {}
    for key, values in samples.items():
        rows[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        print(f"  {key:<16} median {rows[key]['median']:7.2f} s"
              f"  (min {rows[key]['min']:.2f}, max {rows[key]['max']:.2f})")  # fmt: skip
    ratio = rows["skopeo"]["median"] / rows["cargohold"]["median"]
    print(f"  skopeo sync / cargohold sync: {ratio:.2f}x;"
          f" re-sync unchanged {rows['cargohold-again']['median']:.2f} s (goal < 1 s)")  # fmt: skip
    print(f"  load average {load[0][0]:.2f} before, {load[1][0]:.2f} after"
          f" ({os.cpu_count()} CPUs): wall times grow with it")  # fmt: skip
    result = {
        "images": args.images, "base_mb": args.base_mb, "own_mb": args.own_mb,
        "samples": samples, "summary": rows, "load": load,
        "skopeo": version([tool("skopeo"), "--version"]),
    }  # fmt: skip
    (workdir / "sync-results.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
