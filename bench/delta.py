#!/usr/bin/env python3
"""Benchmark delta exports: what an update of one small layer costs to ship, in full and as a
delta, and how long ``content inventory`` takes on a store of 20,000 blobs.

    python3 bench/delta.py [--workdir DIR] [--size-mb 1024] [--new-layer-kb 512] [--repeat 3]

Builds (offline, in seconds) a base image of four layers of random data, ``--size-mb`` in
all, and its update: the same four layers and one new layer of ``--new-layer-kb``. The
sender's store holds the update, the receiver's the base. Timed, each the median of
``--repeat`` runs of the CLI (``python3 -m cargohold`` on this checkout's ``src/``):

- ``content inventory`` of the receiver;
- the full export of the update, and the delta export ``--against`` the inventory;
- the import of each into the receiver (which holds the base; the update is removed and
  collected again between runs), and the full import into an empty store;
- ``content inventory`` of a store whose namespace holds 20,000 blobs (100 images of a
  manifest, a config and 198 one-file layers), and the inventory's size.

Random layers do not compress, so the sizes are the data's. Results are printed and written to
``DIR/delta-results.json``. Not a test; nothing in ``tests/`` runs it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

BENCH: Final = Path(__file__).resolve().parent
SRC: Final = BENCH.parent / "src"
sys.path[:0] = [str(BENCH), str(SRC)]

from cargohold import Store  # noqa: E402
from interpreter import use_bench_venv  # noqa: E402
from stores import oci_archive, tiny_layer  # noqa: E402

OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
BASE: Final = "example.com/bench/app:1"
UPDATE: Final = "example.com/bench/app:2"
BASE_LAYERS: Final = 4
INVENTORY_IMAGES: Final = 100
INVENTORY_LAYERS: Final = 198
CHUNK: Final = 4 << 20


def cargohold(root: Path, *args: str) -> float:
    """Run the CLI on *root*; its wall-clock time in seconds."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cargohold", "--root", str(root), *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def median_of(
    repeat: int, run: Callable[[], float], reset: Callable[[], None] | None = None
) -> float:
    samples = []
    for _ in range(repeat):
        if reset is not None:
            reset()
        samples.append(run())
    return statistics.median(samples)


def write_layer(path: Path, size: int, seed: int) -> dict[str, Any]:
    """An uncompressed layer tar holding one file of *size* random bytes."""
    rng = random.Random(seed)
    info = tarfile.TarInfo(f"data/layer-{seed}.bin")
    info.size = size
    info.mtime = 1704067200
    hasher = hashlib.sha256()
    with path.open("wb") as out:

        def put(data: bytes) -> None:
            hasher.update(data)
            out.write(data)

        put(info.tobuf(tarfile.USTAR_FORMAT))
        left = size
        while left:
            n = min(CHUNK, left)
            put(rng.randbytes(n))
            left -= n
        put(b"\0" * (-size % 512 + 1024))
    return {
        "mediaType": OCI_LAYER,
        "digest": f"sha256:{hasher.hexdigest()}",
        "size": path.stat().st_size,
    }


def json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def write_archive(out: Path, name: str, layers: list[tuple[dict[str, Any], Path]]) -> None:
    """An OCI archive of one image made of *layers* (descriptor, file), streamed from files."""
    platform = {"architecture": "amd64", "os": "linux"}
    config = json_bytes(
        {
            **platform,
            "created": "2024-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d, _ in layers]},
        }
    )
    config_desc: dict[str, Any] = {
        "mediaType": OCI_CONFIG,
        "digest": digest(config),
        "size": len(config),
    }
    manifest = json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": [d for d, _ in layers],
        }
    )
    entry: dict[str, Any] = {
        "mediaType": OCI_MANIFEST,
        "digest": digest(manifest),
        "size": len(manifest),
        "annotations": {"io.containerd.image.name": name},
    }
    index = json_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in (
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", index),
            (blob_name(config_desc["digest"]), config),
            (blob_name(entry["digest"]), manifest),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for desc, path in layers:
            info = tarfile.TarInfo(blob_name(desc["digest"]))
            info.size = desc["size"]
            with path.open("rb") as f:
                tar.addfile(info, f)


def digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def blob_name(value: str) -> str:
    return "blobs/sha256/" + value.removeprefix("sha256:")


def build(work: Path, size_mb: int, new_layer_kb: int) -> tuple[Path, Path]:
    layers_dir = work / "layers"
    layers_dir.mkdir()
    per_layer = size_mb * (1 << 20) // BASE_LAYERS
    base = [
        (write_layer(layers_dir / f"{i}.tar", per_layer, i), layers_dir / f"{i}.tar")
        for i in range(BASE_LAYERS)
    ]
    new = layers_dir / "new.tar"
    update = [*base, (write_layer(new, new_layer_kb << 10, 99), new)]
    write_archive(work / "base.tar", BASE, base)
    write_archive(work / "update.tar", UPDATE, update)
    shutil.rmtree(layers_dir)
    return work / "base.tar", work / "update.tar"


def inventory_store(root: Path) -> int:
    """A store whose default namespace holds 20,000 blobs; returns how many it holds."""
    rng = random.Random(5)
    with Store(root) as store:
        for batch in range(0, INVENTORY_IMAGES, 10):
            images = [
                (
                    f"docker.io/bench/inv-{i}:latest",
                    [
                        tiny_layer(f"d/{i}/{j}", rng.randbytes(rng.randint(16, 2048)))
                        for j in range(INVENTORY_LAYERS)
                    ],
                )
                for i in range(batch, batch + 10)
            ]
            store.import_archive(io.BytesIO(oci_archive(images)), platforms="all")
        return len(store.meta.holdings(store.namespace))


def run(args: argparse.Namespace) -> dict[str, Any]:
    work: Path = args.workdir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    base_tar, update_tar = build(work, args.size_mb, args.new_layer_kb)
    sender, receiver = work / "sender", work / "receiver"
    cargohold(sender, "image", "import", str(update_tar))
    cargohold(receiver, "image", "import", str(base_tar))
    inv, full, delta = work / "receiver.inventory", work / "full.tar", work / "delta.tar"
    r = args.repeat
    times = {
        "inventory_receiver": median_of(
            r, lambda: cargohold(receiver, "content", "inventory", "-o", str(inv))
        ),
        "export_full": median_of(
            r, lambda: cargohold(sender, "image", "export", str(full), UPDATE)
        ),
        "export_delta": median_of(
            r,
            lambda: cargohold(sender, "image", "export", "--against", str(inv), str(delta), UPDATE),
        ),
    }

    def back_to_base() -> None:
        if has_update(receiver):
            cargohold(receiver, "image", "rm", UPDATE)
        cargohold(receiver, "content", "gc")

    for key, archive in (("import_full_into_receiver", full), ("import_delta", delta)):
        times[key] = median_of(
            r, functools.partial(cargohold, receiver, "image", "import", str(archive)), back_to_base
        )
    empty = work / "empty"

    def fresh() -> None:
        shutil.rmtree(empty, ignore_errors=True)

    times["import_full_into_empty"] = median_of(
        r, lambda: cargohold(empty, "image", "import", str(full)), fresh
    )
    fresh()
    cargohold(receiver, "image", "check", "--verify", UPDATE)
    big = work / "inventory-store"
    held = inventory_store(big)
    big_inv = work / "big.inventory"
    times["inventory_20k"] = median_of(
        r, lambda: cargohold(big, "content", "inventory", "-o", str(big_inv))
    )
    sizes = {
        "full_archive": full.stat().st_size,
        "delta_archive": delta.stat().st_size,
        "receiver_inventory": inv.stat().st_size,
        "inventory_20k": big_inv.stat().st_size,
        "inventory_20k_blobs": held,
    }
    return {
        "times_s": times,
        "sizes_bytes": sizes,
        "args": {k: str(v) for k, v in vars(args).items()},
    }


def has_update(root: Path) -> bool:
    with Store(root, mode="read") as store:
        return any(i.record.name == UPDATE for i in store.list_images())


def report(result: dict[str, Any]) -> None:
    t, s = result["times_s"], result["sizes_bytes"]
    ratio = s["delta_archive"] / s["full_archive"]
    lines = [
        f"full archive   {s['full_archive'] / (1 << 20):10.1f} MiB",
        f"delta archive  {s['delta_archive'] / (1 << 20):10.3f} MiB  ({ratio:.4%} of the full)",
        f"inventory of the receiver          {t['inventory_receiver']:6.2f} s,"
        f" {s['receiver_inventory']} bytes",
        f"export full                        {t['export_full']:6.2f} s",
        f"export delta                       {t['export_delta']:6.2f} s",
        f"import full into the receiver      {t['import_full_into_receiver']:6.2f} s",
        f"import delta into the receiver     {t['import_delta']:6.2f} s",
        f"import full into an empty store    {t['import_full_into_empty']:6.2f} s",
        f"content inventory, {s['inventory_20k_blobs']} blobs  {t['inventory_20k']:6.2f} s,"
        f" {s['inventory_20k'] / 1024:.0f} KiB",
    ]
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    use_bench_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/cargohold-bench-delta"))
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--new-layer-kb", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args)
    report(result)
    (args.workdir / "delta-results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
