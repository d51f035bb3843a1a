"""Several processes importing, tagging, removing, exporting and collecting on one store.

Six OCI archives share layers in overlapping ways: a base layer in all of them, a middle layer
shared by each pair of neighbours in a ring, a top layer of their own (up to 4 MiB, so imports
take real time), and the last is a multi-platform index whose other platforms share layers too.
Worker processes (``concurrency_worker.py``), each with its own :class:`Store` on the same root,
run a seeded random mix of operations on names they own until a deadline; the parent only waits
for them. Afterwards the store must hold exactly the names the workers expect, with their
digests, every blob of every image present and intact, and after a final gc no ingest leftovers,
no leases, and no blob that no image needs.

``CARGOHOLD_CONCURRENCY_SECONDS``, ``CARGOHOLD_CONCURRENCY_WORKERS`` and
``CARGOHOLD_CONCURRENCY_SEED`` change the duration, the number of processes and the seed.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cargohold.oci.digests import Digest
from cargohold.oci.platforms import Platform
from cargohold.operations.store import Store
from cargohold.storage.gc import GcResult
from imagefactory import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    ArchiveBuilder,
    digest_of,
    dumps,
    layer_tar,
    platform_json,
)

SECONDS = float(os.environ.get("CARGOHOLD_CONCURRENCY_SECONDS", "20"))
WORKERS = int(os.environ.get("CARGOHOLD_CONCURRENCY_WORKERS", "4"))
SEED = int(os.environ.get("CARGOHOLD_CONCURRENCY_SEED", "20240101"))

HOST = str(Platform.host())
OTHERS = [p for p in ("linux/arm64", "linux/amd64", "linux/s390x") if p != HOST][:2]
CREATED = "2024-01-01T00:00:00Z"
MIB = 1 << 20
#: Every kind of operation must have run at least this often, so the test cannot pass vacuously.
AT_LEAST = 3
OPERATIONS = ("import", "tag", "remove", "gc", "export_reimport", "list_check")
#: The full mix every worker of the main test runs (relative weights).
MIX = {"import": 6, "tag": 2, "remove": 4, "gc": 2, "export_reimport": 2, "list_check": 3}
#: Beyond this many names a worker removes before it adds more, so images fall out of use and
#: gc deletes their blobs while other workers may be importing them again.
MAX_NAMES = 4
SRC = Path(__file__).resolve().parents[2] / "src"
WORKER_SCRIPT = Path(__file__).resolve().parent / "concurrency_worker.py"


@dataclass(frozen=True)
class Layer:
    blob: bytes
    diff_id: str


@dataclass
class Archive:
    """An archive built for the test, and the image graph it holds, known independently of the
    store (the digests of the blobs under each document)."""

    path: Path
    target: str
    multi: bool
    children: dict[str, list[str]] = field(default_factory=dict)
    #: The blobs an import for this host needs: the index, the host manifest and its content.
    host_blobs: set[str] = field(default_factory=set)

    def all_blobs(self) -> set[str]:
        found: set[str] = set()
        stack = [self.target]
        while stack:
            digest = stack.pop()
            if digest not in found:
                found.add(digest)
                stack.extend(self.children.get(digest, []))
        return found


def make_layer(rng: random.Random, name: str, size: int) -> Layer:
    """A gzipped layer holding *size* random bytes (incompressible, so the blob is as big)."""
    raw = layer_tar({f"{name}/data": rng.randbytes(size)})
    return Layer(gzip.compress(raw, compresslevel=1, mtime=0), digest_of(raw))


def add_manifest(
    builder: ArchiveBuilder,
    children: dict[str, list[str]],
    platform: str,
    layers: Sequence[Layer],
    with_platform: bool,
) -> dict[str, Any]:
    os_name, arch, *variant = platform.split("/")
    config: dict[str, Any] = {
        "created": CREATED,
        "architecture": arch,
        "os": os_name,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    if variant:
        config["variant"] = variant[0]
    config_desc = builder.blob(dumps(config), OCI_CONFIG)
    layer_descs = [builder.blob(layer.blob, OCI_LAYER_GZIP) for layer in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
    }
    extra = {"platform": platform_json(platform)} if with_platform else {}
    desc = builder.blob(dumps(manifest), OCI_MANIFEST, **extra)
    children[desc["digest"]] = [config_desc["digest"]] + [d["digest"] for d in layer_descs]
    return desc


def write_archive(
    path: Path, host_layers: Sequence[Layer], others: Sequence[tuple[str, Sequence[Layer]]] = ()
) -> Archive:
    """An archive of one image for this host, or (with *others*) of an index of platforms."""
    builder = ArchiveBuilder()
    children: dict[str, list[str]] = {}
    multi = bool(others)
    host = add_manifest(builder, children, HOST, host_layers, with_platform=multi)
    target = host
    if multi:
        descs = [add_manifest(builder, children, p, ls, with_platform=True) for p, ls in others]
        target = builder.index([host, *descs])
        children[target["digest"]] = [host["digest"]] + [d["digest"] for d in descs]
    builder.add(target, name=f"example.com/source/{path.stem}:latest")
    builder.write(path)
    host_blobs = {host["digest"], *children[host["digest"]]}
    if multi:
        host_blobs.add(target["digest"])
    return Archive(path, target["digest"], multi, children, host_blobs)


def build_archives(directory: Path) -> list[Archive]:
    """Six archives: the base layer in all, middle layers shared by ring neighbours, a top
    layer of their own; the last is an index for this host and two other platforms, which
    share the base layer and a middle layer with the host's images."""
    rng = random.Random(SEED)
    base = make_layer(rng, "base", 3 * MIB)
    middles = [make_layer(rng, f"middle{i}", 3 * MIB // 2) for i in range(6)]
    tops = [
        make_layer(rng, f"top{i}", size)
        for i, size in enumerate([64 << 10, MIB // 2, MIB, 2 * MIB, 4 * MIB, MIB // 4])
    ]
    archives = []
    for i in range(6):
        layers = [base, middles[i], middles[(i + 1) % 6], tops[i]]
        others: list[tuple[str, list[Layer]]] = []
        if i == 5:
            others = [
                (OTHERS[0], [base, make_layer(rng, "other0", MIB)]),
                (OTHERS[1], [middles[i], make_layer(rng, "other1", MIB // 2)]),
            ]
        archives.append(write_archive(directory / f"img{i}.tar", layers, others))
    return archives


def run_workers(
    root: Path,
    archives: Sequence[Archive],
    scratch: Path,
    seconds: float,
    mixes: Sequence[dict[str, int]],
    max_names: int,
) -> list[dict[str, Any]]:
    """Start one worker process per mix, wait for each to end by itself, return the reports."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.pop("CARGOHOLD_ROOT", None)
    processes = []
    for n, mix in enumerate(mixes):
        config = {
            "root": str(root),
            "worker": n,
            "seed": f"{SEED}-{n}",
            "seconds": seconds,
            "weights": mix,
            "max_names": max_names,
            "scratch": str(scratch),
            "report": str(scratch / f"report{n}.json"),
            "archives": [
                {"path": str(a.path), "digest": a.target, "multi": a.multi} for a in archives
            ],
        }
        config_path = scratch / f"config{n}.json"
        config_path.write_text(json.dumps(config))
        with (scratch / f"output{n}.txt").open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, str(WORKER_SCRIPT), str(config_path)],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        processes.append((n, process))
    reports = []
    for n, process in processes:
        try:
            code = process.wait(timeout=seconds + 300)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        printed = (scratch / f"output{n}.txt").read_text(errors="replace")
        assert code == 0, f"worker {n} exited with {code}:\n{printed}"
        reports.append(json.loads((scratch / f"report{n}.json").read_text()))
    return reports


def totals_of(reports: Iterable[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for report in reports:
        for kind, count in report.get("counts", {}).items():
            totals[kind] = totals.get(kind, 0) + count
    return dict(sorted(totals.items()))


def summarize(reports: Sequence[dict[str, Any]], elapsed: float) -> str:
    slowest: dict[str, float] = {}
    for report in reports:
        for kind, took in report.get("slowest", {}).items():
            slowest[kind] = max(slowest.get(kind, 0.0), took)
    totals = totals_of(reports)
    return (
        f"{len(reports)} processes for {elapsed:.1f} s (seed {SEED}):"
        f" {sum(totals.get(k, 0) for k in OPERATIONS)} operations {json.dumps(totals)},"
        f" slowest (s) {json.dumps({k: round(v, 2) for k, v in sorted(slowest.items())})},"
        f" {sum(len(r['errors']) for r in reports)} errors"
    )


def describe_errors(reports: Iterable[dict[str, Any]], shown: int = 5) -> str:
    """How many errors of each kind, and the first few in full."""
    errors = [(report["worker"], error) for report in reports for error in report["errors"]]
    kinds: dict[str, int] = {}
    for _, error in errors:
        key = f"{error['op']}: {error['type']}"
        kinds[key] = kinds.get(key, 0) + 1
    lines = [f"{len(errors)} errors: {json.dumps(kinds)}"]
    lines += [
        f"worker {worker} at {error['at']} s, {error['op']}: {error['type']}: {error['message']}"
        f"\n{error['traceback']}"
        for worker, error in errors[:shown]
    ]
    return "\n".join(lines)


def check_store(root: Path, reports: Sequence[dict[str, Any]], archives: Sequence[Archive]) -> str:
    """The store holds exactly what the workers expect, whole and intact; after a final gc,
    nothing of any import and no blob that no image needs is left. Returns a summary."""
    by_target = {a.target: a for a in archives}
    expected: dict[str, str] = {}
    uncertain: set[str] = set()
    for report in reports:
        expected.update(report.get("expected", {}))
        uncertain.update(report.get("uncertain", []))
    with Store(root) as store:
        # Every name a worker expects is there with its digest, and there is no other name.
        stored = {r.name: str(r.digest) for r in store.meta.list_images(store.namespace)}
        lost = sorted(set(expected) - set(stored))
        assert not lost, f"images lost: {lost}"
        wrong = {n: (stored[n], d) for n, d in expected.items() if stored[n] != d}
        assert not wrong, f"images with a wrong digest (stored, expected): {wrong}"
        extra = sorted(set(stored) - set(expected) - uncertain)
        assert not extra, f"names no worker expects: {extra}"
        assert {ns for ns, _ in store.meta.all_images()} <= {store.namespace}

        # Every blob of every image is present and intact.
        results = store.check(verify=True)
        assert {r.record.name for r in results} == set(stored)
        bad = [
            f"{r.record.name}: {r.summary()} missing {r.missing} corrupt {r.corrupt}"
            for r in results
            if not r.ok
        ]
        assert not bad, f"images not whole: {bad}"
        on_disk = {str(d) for d in store.blobs.iter_digests()}
        for name, digest in stored.items():
            missing = by_target[digest].host_blobs - on_disk
            assert not missing, f"{name}: blobs missing {sorted(missing)}"

        # A final gc leaves only what the images need, and nothing of any import.
        final: GcResult = store.gc()
        assert final.leases_removed == 0, "a lease outlived its import"
        assert store.meta.lease_ids() == []
        ingest = root / "content" / "ingest"
        assert not ingest.exists() or os.listdir(ingest) == [], "ingest leftovers"
        leases = root / "leases"
        assert not leases.exists() or os.listdir(leases) == [], "lease lock files left"
        needed: set[str] = set()
        for digest in set(stored.values()):
            needed |= by_target[digest].all_blobs()
        on_disk = {str(d) for d in store.blobs.iter_digests()}
        unneeded = sorted(on_disk - needed)
        assert not unneeded, f"blobs no image needs survived gc: {unneeded}"
        for name, digest in stored.items():
            assert by_target[digest].host_blobs <= on_disk, f"{name}: the final gc took blobs"
        for digest_text in on_disk:
            assert store.blobs.verify(Digest.parse(digest_text)), f"{digest_text} corrupt"
    return (
        f"store after: {len(stored)} names, {len(set(stored.values()))} images,"
        f" {len(on_disk)} blobs; the final gc removed {len(final.removed)} blobs"
    )


def test_concurrent_imports_tags_removes_and_gc_keep_the_store_whole(
    tmp_path: Path, record_property: Any
) -> None:
    archives = build_archives(tmp_path)
    root = tmp_path / "root"  # not created: the workers open a new store together
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    started = time.monotonic()
    reports = run_workers(root, archives, scratch, SECONDS, [MIX] * WORKERS, MAX_NAMES)
    elapsed = time.monotonic() - started
    summary = summarize(reports, elapsed)
    print(summary)
    record_property("concurrency", summary)

    # The store is looked at even when a worker saw an error, so that a failure says both.
    try:
        after, whole = check_store(root, reports, archives), True
    except AssertionError as exc:
        after, whole = f"store check failed: {exc}", False
    print(after)
    record_property("concurrency_store", after)

    # No worker saw an exception, or an answer its own log contradicts.
    assert all(not r["errors"] for r in reports), f"{describe_errors(reports)}\n{after}"
    assert whole, after
    totals = totals_of(reports)
    for kind in OPERATIONS:
        assert totals.get(kind, 0) >= AT_LEAST, f"{kind} ran only {totals.get(kind, 0)} times"
    # The run did make gc delete blobs that imports then wrote again.
    assert totals.get("blobs_collected", 0) >= AT_LEAST
    assert totals.get("blobs_written", 0) >= AT_LEAST + len(archives)


def test_listing_while_another_process_removes_and_collects(
    tmp_path: Path, record_property: Any
) -> None:
    """``list_images`` (``image ls``) of a store where another process keeps importing and
    removing small images: an image removed while it is being listed may be listed or not,
    but listing must not fail."""
    rng = random.Random(SEED)
    shared = make_layer(rng, "shared", 4096)
    archives = [
        write_archive(
            tmp_path / "small.tar", [shared, *(make_layer(rng, f"s{i}", 512) for i in range(3))]
        ),
        write_archive(
            tmp_path / "small-index.tar",
            [shared, make_layer(rng, "x", 512)],
            [(OTHERS[0], [make_layer(rng, "y", 512)])],
        ),
    ]
    root = tmp_path / "root"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    churn = {"import": 1, "remove": 1}
    lister = {"list_check": 1}
    started = time.monotonic()
    reports = run_workers(root, archives, scratch, SECONDS / 4, [churn, lister, lister], 1)
    summary = summarize(reports, time.monotonic() - started)
    print(summary)
    record_property("listing", summary)
    assert all(not r["errors"] for r in reports), describe_errors(reports)
    totals = totals_of(reports)
    assert totals.get("remove", 0) >= AT_LEAST
    assert totals.get("list_check", 0) >= AT_LEAST
    print(check_store(root, reports, archives))
