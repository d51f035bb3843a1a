#!/usr/bin/env python3
"""Benchmark cargohold's push and pull against ``skopeo copy``, with a local Distribution
registry (Debian's ``docker-registry``) over plain HTTP on loopback.

One image of ``--layers`` gzip layers of ``--layer-mb`` MiB of random bytes each is built as an
OCI layout, imported into a cargohold store, and timed, each round (the two tools take turns,
``sync`` untimed before every command):

* push-all-present: ``cargohold image push`` of the stored image to a registry that holds every
  blob and the manifest, against ``skopeo copy oci:LAYOUT docker://…`` to the same;
* cold push: the same push to a new, empty registry (started untimed for each command);
* cold pull: ``cargohold image pull`` into a new store against ``skopeo copy docker://…
  oci:DIR`` into a new directory.

    python3 bench/registry.py [--workdir DIR] [--layers 4] [--layer-mb 64] [--repeat 3]

Also times ``python3 -c pass`` and ``cargohold --version`` each round, the start-up every
command pays, and the floor of a pull on this machine: every layer fetched at once with
``curl`` into ``openssl dgst -sha256`` (the registry's sending and the hashing, no Python, no
disk). Prints the median seconds of each, cargohold / skopeo (below 1: cargohold is faster)
beside the goal, the median CPU seconds (user + system, the command and its children) and
peak RSS of each operation, and writes everything to WORKDIR/registry-results.json. Like
``run.py``, it times a byte-compiled copy of this checkout's ``src/`` taken at the start.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from interpreter import use_bench_venv
from peers import skopeo_policy, tool, version
from run import snapshot_source
from sync import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    digest_of,
    gzip_layer,
    put_blob,
    registry,
)
from timing import run_observed, summarise_phases, timed_run

BENCH: Final = Path(__file__).resolve().parent
SRC: Final = BENCH.parent / "src"
#: The repository and tag the image is pushed to and pulled from.
REPOSITORY: Final = "bench/image"
TAG: Final = "1"
#: cargohold's time over skopeo's that the issue asks for, per operation.
GOALS: Final = {"push-all-present": 2.0, "cold push": 0.8, "cold pull": 0.6}
#: The tools compared, in the order of the report's columns.
TOOLS: Final = ("cargohold", "skopeo")


def build_layout(directory: Path, layers: int, layer_mb: int) -> list[str]:
    """An OCI layout holding one image, tagged ``TAG`` (``org.opencontainers.image.ref.name``)
    and named ``bench.invalid/REPOSITORY:TAG`` for containerd-style imports; returns the
    digests of its layers."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    put = functools.partial(put_blob, blobs)

    descriptors, diff_ids = [], []
    for i in range(layers):
        compressed, raw = gzip_layer(f"layer{i}/blob", layer_mb << 20)
        descriptors.append({"mediaType": OCI_LAYER, **put(compressed)})
        diff_ids.append(digest_of(raw))
    config = {
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }  # fmt: skip
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **put(json.dumps(config).encode())},
        "layers": descriptors,
    }  # fmt: skip
    desc: dict[str, object] = {"mediaType": OCI_MANIFEST, **put(json.dumps(manifest).encode())}
    desc["annotations"] = {
        "io.containerd.image.name": f"bench.invalid/{REPOSITORY}:{TAG}",
        "org.opencontainers.image.ref.name": TAG,
    }
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]}
    (directory / "index.json").write_text(json.dumps(index))
    return [str(d["digest"]) for d in descriptors]


class Bench:
    """The commands of one run, and their samples."""

    def __init__(self, workdir: Path, src: Path) -> None:
        self.workdir = workdir
        self.env = {**os.environ, "PYTHONPATH": str(src), "TMPDIR": str(workdir)}
        self.policy = skopeo_policy(workdir / "policy.json")
        self.layout = workdir / "layout"
        self.store = workdir / "store"
        self.samples: dict[str, list[float]] = {}
        #: CPU seconds (user + system) and peak RSS (bytes) of each sample, by the same keys.
        self.cpu: dict[str, list[float]] = {}
        self.rss: dict[str, list[int]] = {}

    def cargohold(self, *args: str | Path) -> list[str]:
        return [sys.executable, "-m", "cargohold", *(str(arg) for arg in args)]

    def skopeo(self, *args: str | Path) -> list[str]:
        return [tool("skopeo"), "--policy", str(self.policy), *(str(arg) for arg in args)]

    def push(self, host: str) -> list[str]:
        ref = f"bench.invalid/{REPOSITORY}:{TAG}"
        dest = f"{host}/{REPOSITORY}:{TAG}"
        return self.cargohold(
            "--root", self.store, "image", "push", "--plain-http", "--progress", "none", ref, dest
        )

    def skopeo_push(self, host: str) -> list[str]:
        return self.skopeo(
            "copy", "-q", "--dest-tls-verify=false", f"oci:{self.layout}:{TAG}",
            f"docker://{host}/{REPOSITORY}:{TAG}",
        )  # fmt: skip

    def timed(self, key: str, argv: list[str]) -> None:
        subprocess.run(["sync"], check=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds, rss = timed_run(argv, env=self.env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        self.samples.setdefault(key, []).append(seconds)
        self.cpu.setdefault(key, []).append(cpu)  # the small launcher's CPU included
        self.rss.setdefault(key, []).append(rss)
        subprocess.run(["sync"], check=True)

    def floor(self, host: str, layers: list[str]) -> list[str]:
        """Every layer at once through ``curl`` into ``openssl dgst -sha256``: what the
        registry and hashing cost on this machine, without Python or a disk."""
        fetches = " & ".join(
            f"{tool('curl')} -sf http://{host}/v2/{REPOSITORY}/blobs/{digest} "
            f"| {tool('openssl')} dgst -sha256 >/dev/null"
            for digest in layers
        )
        return ["sh", "-c", f"{fetches} & wait"]

    def phases(self, host: str, repeat: int) -> dict[str, dict[str, float]]:
        """Cold pulls and pushes the registry has in full under phases.py, *repeat* each,
        taking turns; the medians of each phase in milliseconds."""
        source = f"{host}/{REPOSITORY}:{TAG}"
        samples: dict[str, list[dict[str, float]]] = {"cold pull": [], "push-all-present": []}
        for _ in range(repeat):
            target = self.fresh("phases-store")
            pull: list[str | Path] = ["--root", target, "image", "pull", "--plain-http"]
            pull += ["--progress", "none"]
            samples["cold pull"].append(run_observed([*pull, source], self.env))
            shutil.rmtree(target, ignore_errors=True)
            push = self.push(host)[3:]  # cargohold's own arguments
            samples["push-all-present"].append(run_observed(push, self.env))
        interpreter = statistics.median(self.samples["python -c pass"]) * 1000
        return {name: summarise_phases(found, interpreter) for name, found in samples.items()}

    def fresh(self, name: str) -> Path:
        path = self.workdir / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def round(self, host: str, flip: bool, layers: list[str]) -> None:
        """Every operation once, the tools in the order *flip* says."""
        # The floor of any Python command, and cargohold's own start-up, for reference.
        self.timed("python -c pass", [sys.executable, "-c", "pass"])
        self.timed("cargohold --version", self.cargohold("--version"))
        self.timed("curl | openssl sha256", self.floor(host, layers))
        tools = ["cargohold", "skopeo"]
        for name in reversed(tools) if flip else tools:
            is_ch = name == "cargohold"
            self.timed(f"{name} push-all-present", (self.push if is_ch else self.skopeo_push)(host))
            cold_dir = self.fresh(f"cold-registry-{name}")
            cold_dir.mkdir()
            with registry(cold_dir) as cold:
                self.timed(f"{name} cold push", (self.push if is_ch else self.skopeo_push)(cold))
            source = f"{host}/{REPOSITORY}:{TAG}"
            target = self.fresh(f"pulled-{name}")
            if is_ch:
                argv = self.cargohold(
                    "--root", target, "image", "pull", "--plain-http", "--progress", "none", source
                )
            else:
                argv = self.skopeo(
                    "copy", "-q", "--src-tls-verify=false", f"docker://{source}", f"oci:{target}:1"
                )
            self.timed(f"{name} cold pull", argv)
            shutil.rmtree(target, ignore_errors=True)


def main() -> int:
    use_bench_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/cargohold-bench-registry"))
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--layer-mb", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--phases",
        action="store_true",
        help="finally, run --repeat cold pulls and pushes the registry has in full under"
        " phases.py and report where their time goes (start-up, data, commit, exit)",
    )
    args = parser.parse_args()
    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    snapshot_source(SRC / "cargohold", workdir / "src" / "cargohold")
    bench = Bench(workdir, workdir / "src")
    layers = build_layout(bench.layout, args.layers, args.layer_mb)
    setup: Callable[[list[str]], object] = lambda argv: subprocess.run(  # noqa: E731
        argv, env=bench.env, check=True, stdout=subprocess.DEVNULL
    )
    setup(bench.cargohold("--root", bench.store, "image", "import", bench.layout))
    load_before = os.getloadavg()
    (workdir / "main-registry").mkdir()
    with registry(workdir / "main-registry") as host:
        setup(bench.push(host))  # the registry now holds every blob
        for i in range(args.repeat + 1):  # the first round warms up, uncounted
            bench.round(host, flip=i % 2 == 1, layers=layers)
            if i == 0:
                bench.samples.clear()
                bench.cpu.clear()
                bench.rss.clear()
        found = bench.phases(host, args.repeat) if args.phases else {}
    report(workdir, args, bench, (load_before, os.getloadavg()), found)
    return 0


def report(
    workdir: Path,
    args: argparse.Namespace,
    bench: Bench,
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
    found: dict[str, dict[str, float]],
) -> None:
    samples = bench.samples
    print(f"one image, {args.layers} layers of {args.layer_mb} MiB; medians of {args.repeat}")
    print(f"  {'operation':<18} {'cargohold':>10} {'skopeo':>10} {'ratio':>7} {'goal':>7}")
    rows: dict[str, dict[str, float]] = {}
    for operation, goal in GOALS.items():
        ch = statistics.median(samples[f"cargohold {operation}"])
        sk = statistics.median(samples[f"skopeo {operation}"])
        verdict = "PASS" if ch / sk <= goal else "MISS"
        rows[operation] = {"cargohold": ch, "skopeo": sk, "ratio": ch / sk, "goal": goal}
        print(
            f"  {operation:<18} {ch:9.3f}s {sk:9.3f}s {ch / sk:7.2f} {'≤':>2}{goal:4.1f} {verdict}"
        )
    print(f"  {'CPU s (user+sys)':<18} {'cargohold':>10} {'skopeo':>10}   peak RSS MB: both")
    for operation in GOALS:
        cpu = [statistics.median(bench.cpu[f"{name} {operation}"]) for name in TOOLS]
        rss = [max(bench.rss[f"{name} {operation}"]) / (1 << 20) for name in TOOLS]
        rows[operation].update({"cpu_cargohold": cpu[0], "cpu_skopeo": cpu[1]})
        rows[operation].update({"rss_mb_cargohold": rss[0], "rss_mb_skopeo": rss[1]})
        print(f"  {operation:<18} {cpu[0]:9.3f}s {cpu[1]:9.3f}s   {rss[0]:6.1f} {rss[1]:6.1f}")
    references = {
        "python -c pass": "start-up alone",
        "cargohold --version": "start-up alone",
        "curl | openssl sha256": "floor of a pull: registry + hashing",
    }
    for key, what in references.items():
        rows[key] = {"median": statistics.median(samples[key])}
        rows[key]["cpu"] = statistics.median(bench.cpu[key])
        print(f"  {key:<29} {rows[key]['median']:9.3f}s  (reference: {what})")
    if found:
        print("  where the time goes (phases.py; medians, ms):")
        columns = ("interpreter", "startUp", "data", "commit", "exit", "wall")
        print(f"    {'':18}" + "".join(f"{c:>12}" for c in columns))
        for operation, summary in found.items():
            print(f"    {operation:18}" + "".join(f"{summary[c]:12.0f}" for c in columns))
    print(f"  load average {load[0][0]:.2f} before, {load[1][0]:.2f} after ({os.cpu_count()} CPUs)")
    result = {
        "layers": args.layers, "layer_mb": args.layer_mb, "samples": samples, "summary": rows,
        "cpu_seconds": bench.cpu, "max_rss": bench.rss,
        "load": load, "skopeo": version([tool("skopeo"), "--version"]), "phases": found,
    }  # fmt: skip
    (workdir / "registry-results.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
