"""Benchmark of archives in volumes: a split import against the unsplit one, and a resume.

Builds an OCI archive of incompressible layers (``--size-mb`` in ``--layers`` layers), imports
it into a store, exports it whole and with ``--split-size``, then times, in fresh stores:

- ``whole``: ``image import ARCHIVE`` (the median of ``--repeat`` runs);
- ``split``: ``image import ARCHIVE.001`` (every volume read and checked);
- ``resume k``: volume k of n damaged, the import stopped there, the volume replaced and the
  import run again: that second run's time and ``bytesRead``, against the share of the
  archive in volumes k … n (about (n - k + 1) / n; the last volume is usually short).

The goal stated for splitting is ``split / whole <= 1.1``. Beside it, the floors of both on
this machine, measured in the same run on the unsplit archive: the least work of an import is
one durable copy (``copy_file_range`` into a new file, then ``fsync``) with one SHA-256 pass
over the archive on another thread (each blob's digest); a split import must also compute each
volume's checksum, a second pass (neither hash can stand in for the other), on a third thread.
``floorRatio`` is the split floor over the unsplit one: where it is above 1.1, the goal is out
of this machine's reach (its cores hash slower than its disk writes).

Everything lives in ``--workdir``
(about four times the image's size); page cache is warm for both, as the files were just
written. Self-contained: it needs only this checkout (``src/`` on the path, as run.py does).

    python3 bench/volumes.py --size-mb 1024 --split-size 128MiB --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, Final

from interpreter import use_bench_venv

REPO: Final = Path(__file__).resolve().parent.parent
NAME: Final = "example.com/bench/volumes:1"
CHUNK: Final = 8 << 20


def cargohold(root: Path, *args: str) -> tuple[float, dict[str, Any]]:
    """Run the CLI of this checkout; (wall seconds, its JSON output or {})."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
    env["PYTHONPATH"] = str(REPO / "src")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # time byte-compiled modules, as installed ones are
    os.sync()  # the writeback of earlier runs (and of the archives) is not charged to this one
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cargohold", "--root", str(root), *args],
        capture_output=True,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        return elapsed, {"error": proc.stderr.decode().strip()}
    text = proc.stdout.decode().strip()
    return elapsed, json.loads(text) if text.startswith("{") else {}


def random_blob(path: Path, size: int) -> tuple[str, int]:
    hasher = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK, left))
            hasher.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return "sha256:" + hasher.hexdigest(), size


def json_blob(blobs: dict[str, Path], work: Path, value: object) -> dict[str, Any]:
    data = json.dumps(value, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = work / digest.split(":")[1]
    path.write_bytes(data)
    blobs[digest] = path
    return {"digest": digest, "size": len(data)}


def build(work: Path, size_mb: int, layers: int) -> Path:
    """An OCI archive with *layers* layers of random bytes, *size_mb* MiB in all."""
    archive = work / "image.tar"
    if archive.exists():
        return archive
    parts = work / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    blobs: dict[str, Path] = {}
    descriptors = []
    for i in range(layers):
        path = parts / f"layer{i}"
        digest, size = random_blob(path, (size_mb << 20) // layers + i * 4097)
        blobs[digest] = path.rename(parts / digest.split(":")[1])
        descriptors.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}
        )
    config = json_blob(
        blobs,
        parts,
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
        },
    )
    manifest = json_blob(
        blobs,
        parts,
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": descriptors,
        },
    )
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest,
                "annotations": {"io.containerd.image.name": NAME},
            }
        ],
    }
    (parts / "index.json").write_text(json.dumps(index))
    (parts / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(parts / "oci-layout", "oci-layout")
        tar.add(parts / "index.json", "index.json")
        for digest, path in sorted(blobs.items()):
            tar.add(path, "blobs/sha256/" + digest.split(":")[1])
    shutil.rmtree(parts)
    return archive


def floor_seconds(work: Path, archive: Path, hashes: int) -> float:
    """Seconds for the least work of an import of *archive*: a durable copy of it into a new
    file in *work* on one thread, while *hashes* threads each SHA-256 the whole of it (1 MiB
    reads, as the import's own hashing reads; hashlib and the copy let go of the GIL)."""
    size = archive.stat().st_size
    copy = work / "floor-copy"

    def copy_durably() -> None:
        source = os.open(archive, os.O_RDONLY)
        target = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            done = 0
            while done < size:
                done += os.copy_file_range(source, target, min(CHUNK, size - done))
            os.fsync(target)
        finally:
            os.close(target)
            os.close(source)

    def hash_once() -> None:
        fd = os.open(archive, os.O_RDONLY)
        try:
            hasher, view, offset = hashlib.sha256(), memoryview(bytearray(1 << 20)), 0
            while offset < size:
                n = os.preadv(fd, [view], offset)
                hasher.update(view[:n])
                offset += n
        finally:
            os.close(fd)

    threads = [threading.Thread(target=copy_durably)]
    threads += [threading.Thread(target=hash_once) for _ in range(hashes)]
    os.sync()
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    copy.unlink()
    return elapsed


def floors(work: Path, archive: Path, repeat: int) -> tuple[float, float]:
    """The medians of the unsplit floor (the copy and one hash) and the split floor (the copy
    and two hashes), taking turns like the imports."""
    whole: list[float] = []
    split: list[float] = []
    for _ in range(repeat):
        whole.append(floor_seconds(work, archive, 1))
        split.append(floor_seconds(work, archive, 2))
    return statistics.median(whole), statistics.median(split)


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def timed_import(work: Path, source: Path) -> tuple[float, dict[str, Any]]:
    elapsed, report = cargohold(
        fresh(work / "target"), "image", "import", "--format", "json", str(source)
    )
    if "error" in report:
        raise SystemExit(f"import of {source} failed: {report['error']}")
    return elapsed, report


def alternating_imports(
    work: Path, sources: list[Path], repeat: int
) -> list[tuple[list[float], dict[str, Any]]]:
    """Each source imported *repeat* times into a fresh store, the sources taking turns (so
    that neither always runs first, on a machine whose other load changes over time)."""
    times: list[list[float]] = [[] for _ in sources]
    reports: list[dict[str, Any]] = [{} for _ in sources]
    for round_ in range(repeat):
        order = list(range(len(sources)))
        if round_ % 2:
            order.reverse()
        for i in order:
            elapsed, reports[i] = timed_import(work, sources[i])
            times[i].append(elapsed)
    return list(zip(times, reports, strict=True))


def resume(work: Path, split: Path, total: int, volume_size: int, k: int) -> dict[str, Any]:
    """Volume *k* damaged, the import stopped there; then replaced and the import re-run."""
    damaged = fresh(work / "damaged")
    damaged.mkdir()
    for path in split.parent.iterdir():
        os.link(path, damaged / path.name)
    bad = damaged / f"{split.name}.{k:03d}"
    bad.unlink()
    data = bytearray((split.parent / bad.name).read_bytes())
    data[len(data) // 2] ^= 1
    bad.write_bytes(bytes(data))
    root = fresh(work / "target")
    first_time, first = cargohold(
        root, "image", "import", "--format", "json", str(damaged / f"{split.name}.001")
    )
    assert "error" in first, "the damaged volume was not noticed"
    bad.unlink()
    os.link(split.parent / bad.name, bad)
    elapsed, report = cargohold(root, "image", "import", "--format", "json", str(bad))
    if "error" in report:
        raise SystemExit(f"resume failed: {report['error']}")
    return {
        "k": k,
        "stoppedAfter": round(first_time, 3),
        "seconds": round(elapsed, 3),
        "bytesRead": report["bytesRead"],
        "volumesRead": report["volumes"],
        # volumes k … n hold this share of the archive's bytes (the last is usually short)
        "expectedShare": round((total - (k - 1) * volume_size) / total, 3),
    }


def main() -> None:
    use_bench_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/cargohold-bench-volumes"))
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--split-size", default="128MiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--resume", default="2,5,8", help="volumes k to damage, comma-separated")
    args = parser.parse_args()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    archive = build(work, args.size_mb, args.layers)
    source = work / "source"
    if not source.exists():
        cargohold(source, "image", "import", str(archive))
    whole = work / "export" / "whole.tar"
    split = work / "split" / "image.tar"
    for path in (whole.parent, split.parent):
        fresh(path).mkdir(parents=True)
    cargohold(source, "image", "export", str(whole), NAME)
    _, exported = cargohold(
        source,
        "image",
        "export",
        "--split-size",
        args.split_size,
        "--output-format",
        "json",
        str(split),
        NAME,
    )
    count = int(exported["volumes"])
    (whole_times, whole_report), (split_times, split_report) = alternating_imports(
        work, [whole, split.with_name(f"{split.name}.001")], args.repeat
    )
    whole_time, split_time = statistics.median(whole_times), statistics.median(split_times)
    whole_floor, split_floor = floors(work, whole, args.repeat)
    total = whole.stat().st_size
    volume_size = split.with_name(f"{split.name}.001").stat().st_size
    resumes = [
        resume(work, split, total, volume_size, int(k))
        for k in args.resume.split(",")
        if int(k) <= count
    ]
    results = {
        "archiveBytes": total,
        "volumes": count,
        "splitSize": args.split_size,
        "wholeSeconds": round(whole_time, 3),
        "splitSeconds": round(split_time, 3),
        "splitOverWhole": round(split_time / whole_time, 3),
        "wholeSamples": [round(t, 3) for t in whole_times],
        "splitSamples": [round(t, 3) for t in split_times],
        "goal": "splitOverWhole <= 1.1",
        # the least work of each (a durable copy beside one or two SHA-256 passes)
        "wholeFloorSeconds": round(whole_floor, 3),
        "splitFloorSeconds": round(split_floor, 3),
        "floorRatio": round(split_floor / whole_floor, 3),
        "wholeOverFloor": round(whole_time / whole_floor, 3),
        "splitOverFloor": round(split_time / split_floor, 3),
        "resumes": [
            {
                **r,
                "bytesShare": round(r["bytesRead"] / total, 3),
                "timeShare": round(r["seconds"] / split_time, 3),
            }
            for r in resumes
        ],
        "wholeReport": {k: whole_report[k] for k in ("bytesRead", "volumes", "bytesWritten")},
        "splitReport": {k: split_report[k] for k in ("bytesRead", "volumes", "bytesWritten")},
    }
    print(json.dumps(results, indent=2))
    (work / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
