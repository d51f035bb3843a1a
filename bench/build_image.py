#!/usr/bin/env python3
"""Build the benchmark image and write it as a gzip OCI archive and an uncompressed docker archive.

The image has up to three layers, each an uncompressed tar built deterministically with
:mod:`tarfile` (members sorted by name, mtime fixed, no owner names):

1. ``base``: a Debian root filesystem from ``debootstrap --variant=minbase bookworm`` (without
   the downloaded ``.deb`` files and apt lists, as Debian's container images ship it).
2. ``wheels``: Python wheels from PyPI unpacked under ``usr/local/lib/python3.11/site-packages``:
   thousands of files of every size, from tiny ``.py`` files to shared libraries of tens of MB.
   Wheels are taken in the order of ``--packages`` while the image is below ``--size-mb``.
3. ``data``: seeded generated files (incompressible, text-like and sparse) that fill the image
   up to ``--size-mb`` when the first two layers fall short.

Layer tars and their gzip copies are cached in ``WORKDIR/cache``: a rebuild runs neither
debootstrap nor pip when their inputs did not change. Run as a script to build without
benchmarking: ``python3 bench/build_image.py --workdir DIR [--size-mb N]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gzip
import hashlib
import io
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Final

SUITE: Final = "bookworm"
MIRROR: Final = "http://deb.debian.org/debian"
#: The wheels of the second layer, in the order they are taken.
DEFAULT_PACKAGES: Final = (
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "matplotlib",
    "pillow",
    "sympy",
    "statsmodels",
    "plotly",
    "babel",
    "botocore",
    "networkx",
)
DEFAULT_SIZE_MB: Final = 1024
IMAGE_NAME: Final = "docker.io/library/cargohold-bench:latest"
IMAGE_TAG: Final = "latest"
DOCKER_REPO_TAG: Final = "cargohold-bench:latest"
SEED: Final = 20240101
#: Every member's mtime, and the config's ``created`` (2024-01-01T00:00:00Z).
FIXED_MTIME: Final = 1_704_067_200
CREATED: Final = "2024-01-01T00:00:00Z"
SITE_PACKAGES: Final = "usr/local/lib/python3.11/site-packages"
CHUNK: Final = 1 << 20
MIB: Final = 1 << 20

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"

#: Root filesystem paths left out of the base layer: mount points keep only the directory,
#: and the package downloads and lists are removed as in Debian's container images.
_EMPTIED_DIRS: Final = ("dev", "proc", "sys", "var/lib/apt/lists", "var/cache/apt/archives")

Log = Callable[[str], None]


class BuildError(Exception):
    """The image could not be built (a tool failed, or is missing)."""


@dataclass
class Layer:
    """One layer: its uncompressed tar and the gzip copy in the cache."""

    name: str
    tar: str
    size: int
    diff_id: str
    files: int
    gz: str = ""
    gz_size: int = 0
    gz_digest: str = ""
    note: str = ""


@dataclass
class BuiltImage:
    """What run.py needs to know about the built archives (stored as ``image.json``)."""

    name: str
    oci_archive: str
    docker_archive: str
    oci_archive_size: int
    docker_archive_size: int
    uncompressed_size: int
    compressor: str
    manifest_digest: str
    config_digest: str
    layers: list[Layer] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> BuiltImage:
        data = json.loads(path.read_text())
        layers = [Layer(**layer) for layer in data.pop("layers")]
        return cls(**data, layers=layers)

    def save(self, path: Path) -> None:
        _write_text(path, json.dumps(asdict(self), indent=2) + "\n")


# --- helpers ----------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(view):
            hasher.update(view[:n])
    return "sha256:" + hasher.hexdigest()


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _read_meta(path: Path, key: str) -> dict[str, Any] | None:
    """The cached metadata at *path* when it was made from the same inputs (*key*)."""
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("key") == key else None


@contextlib.contextmanager
def _atomic_output(path: Path) -> Iterator[IO[bytes]]:
    """A file written beside *path* and renamed over it only when the block succeeds."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as f:
            yield f
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = FIXED_MTIME
    info.uname = info.gname = ""
    return info


def _member(
    name: str, size: int = 0, mode: int = 0o644, directory: bool = False
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = mode
    return _normalised(info)


def _parents(path: str) -> Iterator[str]:
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def host_platform() -> dict[str, str]:
    """The OCI platform of this machine (the one cargohold and ctr import by default)."""
    machine = platform.machine().lower()
    arch, variant = {
        "x86_64": ("amd64", ""),
        "amd64": ("amd64", ""),
        "aarch64": ("arm64", ""),
        "arm64": ("arm64", ""),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i686": ("386", ""),
        "i386": ("386", ""),
        "ppc64le": ("ppc64le", ""),
        "s390x": ("s390x", ""),
        "riscv64": ("riscv64", ""),
    }.get(machine, (machine, ""))
    result = {"architecture": arch, "os": "linux"}
    if variant:
        result["variant"] = variant
    return result


# --- layer 1: debootstrap ---------------------------------------------------------------------


def _unmount_under(path: Path) -> None:
    """Unmount whatever an interrupted debootstrap left mounted inside *path*."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def _remove_rootfs(path: Path) -> None:
    if path.exists():
        _unmount_under(path)
        shutil.rmtree(path)


def _tar_tree(root: Path, out: Path) -> int:
    """Write the tree at *root* as a layer tar with sorted members; returns the member count."""
    paths: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel in _EMPTIED_DIRS:
            dirnames[:] = []
            continue
        for name in (*dirnames, *filenames):
            paths.append(name if rel == "." else f"{rel}/{name}")
    paths.sort()
    with (
        _atomic_output(out) as f,
        tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        count = 0
        for rel in paths:
            full = root / rel
            info = tar.gettarinfo(str(full), arcname=rel)
            if info is None:  # a socket: not representable in a tar
                continue
            _normalised(info)
            if info.isreg():
                with full.open("rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)
            count += 1
    return count


def build_base_layer(cache: Path, log: Log) -> Layer:
    """``debootstrap --variant=minbase bookworm`` as a layer tar (cached)."""
    tar_path = cache / "layer-base.tar"
    meta_path = cache / "layer-base.json"
    key = f"debootstrap --variant=minbase {SUITE} {MIRROR}"
    meta = _read_meta(meta_path, key)
    if meta is not None and tar_path.is_file():
        log(f"base layer: cached ({meta['size'] / MIB:.0f} MiB)")
        return Layer(**meta["layer"])
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise BuildError("debootstrap is not installed (run bench/setup.sh)")
    if os.geteuid() != 0:
        raise BuildError("debootstrap needs root (run the benchmark as root)")
    rootfs = cache / "rootfs"
    _remove_rootfs(rootfs)
    log(f"base layer: {key} (about a minute)")
    started = time.monotonic()
    with (cache / "debootstrap.log").open("wb") as out:
        status = subprocess.run(
            [debootstrap, "--variant=minbase", SUITE, str(rootfs), MIRROR],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    if status != 0:
        tail = (cache / "debootstrap.log").read_text(errors="replace")[-3000:]
        _remove_rootfs(rootfs)
        raise BuildError(f"debootstrap exited with status {status}:\n{tail}")
    try:
        files = _tar_tree(rootfs, tar_path)
    finally:
        _remove_rootfs(rootfs)
    layer = Layer(
        "base",
        str(tar_path),
        tar_path.stat().st_size,
        sha256_file(tar_path),
        files,
        note=f"debootstrap --variant=minbase {SUITE}",
    )
    elapsed = time.monotonic() - started
    log(f"base layer: {layer.size / MIB:.0f} MiB, {files} members ({elapsed:.0f} s)")
    _write_text(meta_path, json.dumps({"key": key, "size": layer.size, "layer": asdict(layer)}))
    return layer


# --- layer 2: wheels --------------------------------------------------------------------------


def _download_wheels(packages: Iterable[str], directory: Path, log: Log) -> list[Path]:
    """``pip download`` each package's wheel for this interpreter, in *packages* order."""
    directory.mkdir(parents=True, exist_ok=True)
    packages = list(packages)
    log(f"wheels layer: pip download {' '.join(packages)}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--no-deps",
            "--dest",
            str(directory),
            *packages,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(f"pip download failed:\n{result.stderr[-3000:]}")
    wheels = sorted(directory.glob("*.whl"))
    ordered: list[Path] = []
    for package in packages:
        prefix = package.lower().replace("-", "_") + "-"
        matches = [w for w in wheels if w.name.lower().startswith(prefix)]
        if not matches:
            raise BuildError(f"pip download left no wheel for {package} in {directory}")
        ordered.append(max(matches, key=lambda w: w.stat().st_mtime))
    return ordered


def _wheel_size(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as zf:
        return sum(i.file_size for i in zf.infolist() if not i.is_dir())


def build_wheels_layer(
    cache: Path, packages: tuple[str, ...], budget: int, log: Log
) -> Layer | None:
    """Wheels unpacked into one layer, taken in order while below *budget* bytes (cached)."""
    tar_path = cache / "layer-wheels.tar"
    meta_path = cache / "layer-wheels.json"
    key = json.dumps({"packages": packages, "budget": budget})
    meta = _read_meta(meta_path, key)
    if meta is not None and tar_path.is_file():
        log(f"wheels layer: cached ({meta['size'] / MIB:.0f} MiB)")
        return Layer(**meta["layer"])
    if budget <= 0 or not packages:
        return None
    wheels = _download_wheels(packages, cache / "wheels", log)
    chosen: list[Path] = []
    total = 0
    for wheel in wheels:
        if total >= budget:
            break
        chosen.append(wheel)
        total += _wheel_size(wheel)
    members: dict[str, tuple[zipfile.ZipFile, zipfile.ZipInfo]] = {}
    with contextlib.ExitStack() as stack:
        for wheel in chosen:
            zf = stack.enter_context(zipfile.ZipFile(wheel))
            for info in zf.infolist():
                if not info.is_dir():
                    members.setdefault(f"{SITE_PACKAGES}/{info.filename}", (zf, info))
        directories = {parent for name in members for parent in _parents(name)}
        names = sorted(directories | members.keys())
        with (
            _atomic_output(tar_path) as f,
            tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name in names:
                if name in directories:
                    tar.addfile(_member(name, directory=True))
                    continue
                zf, info = members[name]
                mode = (info.external_attr >> 16) & 0o777 or 0o644
                with zf.open(info) as data:
                    tar.addfile(_member(name, info.file_size, mode), data)
    note = ", ".join(w.name.split("-")[0] + "-" + w.name.split("-")[1] for w in chosen)
    layer = Layer(
        "wheels",
        str(tar_path),
        tar_path.stat().st_size,
        sha256_file(tar_path),
        len(names),
        note=note,
    )
    log(f"wheels layer: {layer.size / MIB:.0f} MiB, {len(names)} members ({note})")
    _write_text(meta_path, json.dumps({"key": key, "size": layer.size, "layer": asdict(layer)}))
    return layer


# --- layer 3: generated data ------------------------------------------------------------------


def _generated_files(budget: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """Seeded files of log-uniform size (4 KiB to 16 MiB) and three kinds of compressibility:
    random bytes (incompressible), text-like (gzip about 3:1) and sparse (mostly zeros)."""
    rng = random.Random(seed)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
        for _ in range(4000)
    ]
    pool_words: list[str] = []
    pool_len = 0
    while pool_len < 4 * MIB:
        word = rng.choice(words)
        pool_words.append(word)
        pool_len += len(word) + 1
        if rng.random() < 0.08:
            pool_words.append("\n")
    pool = " ".join(pool_words).encode()
    remaining = budget
    index = 0
    while remaining > 0:
        size = min(remaining, int(2 ** rng.uniform(12, 24)))
        kind = rng.choices(("bin", "txt", "sparse"), weights=(35, 45, 20))[0]
        if kind == "bin":
            data = rng.randbytes(size)
        elif kind == "txt":
            parts = bytearray()
            while len(parts) < size:
                start = rng.randrange(len(pool) - 65536)
                parts += pool[start : start + rng.randint(4096, 65536)]
            data = bytes(parts[:size])
        else:
            buffer = bytearray(size)
            for offset in range(0, size, 65536):
                patch = rng.randbytes(min(512, size - offset))
                buffer[offset : offset + len(patch)] = patch
            data = bytes(buffer)
        yield f"srv/bench-data/{index:05d}.{kind}", data
        remaining -= size
        index += 1


def build_data_layer(cache: Path, budget: int, log: Log) -> Layer | None:
    """Generated files of mixed size and compressibility, *budget* bytes of content (cached)."""
    if budget < MIB:
        return None
    tar_path = cache / "layer-data.tar"
    meta_path = cache / "layer-data.json"
    key = json.dumps({"budget": budget, "seed": SEED, "version": 1})
    meta = _read_meta(meta_path, key)
    if meta is not None and tar_path.is_file():
        log(f"data layer: cached ({meta['size'] / MIB:.0f} MiB)")
        return Layer(**meta["layer"])
    log(f"data layer: generating {budget / MIB:.0f} MiB")
    count = 0
    with (
        _atomic_output(tar_path) as f,
        tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(_member("srv", directory=True))
        tar.addfile(_member("srv/bench-data", directory=True))
        for name, data in _generated_files(budget, SEED):
            tar.addfile(_member(name, len(data)), io.BytesIO(data))
            count += 1
    layer = Layer(
        "data",
        str(tar_path),
        tar_path.stat().st_size,
        sha256_file(tar_path),
        count + 2,
        note=f"{count} generated files (random, text-like, sparse; seed {SEED})",
    )
    log(f"data layer: {layer.size / MIB:.0f} MiB, {count} files")
    _write_text(meta_path, json.dumps({"key": key, "size": layer.size, "layer": asdict(layer)}))
    return layer


# --- compression ------------------------------------------------------------------------------


def compressor_name() -> str:
    return "pigz -6" if shutil.which("pigz") else "python gzip -6"


def _gzip_layer(layer: Layer, cache: Path, log: Log) -> None:
    """Fill in the layer's gzip copy (``gzip -6`` semantics, no name, mtime 0; cached)."""
    gz_path = cache / f"layer-{layer.name}.tar.gz"
    meta_path = cache / f"layer-{layer.name}.gz.json"
    key = f"{layer.diff_id} {compressor_name()}"
    meta = _read_meta(meta_path, key)
    if meta is None or not gz_path.is_file():
        log(f"{layer.name} layer: compressing with {compressor_name()}")
        pigz = shutil.which("pigz")
        with _atomic_output(gz_path) as out, open(layer.tar, "rb") as src:
            if pigz is not None:
                subprocess.run([pigz, "-6", "-n", "-T", "-c"], stdin=src, stdout=out, check=True)
            else:
                with gzip.GzipFile(
                    filename="", mode="wb", fileobj=out, compresslevel=6, mtime=0
                ) as gz:
                    shutil.copyfileobj(src, gz, CHUNK)
        meta = {"key": key, "digest": sha256_file(gz_path), "size": gz_path.stat().st_size}
        _write_text(meta_path, json.dumps(meta))
    layer.gz = str(gz_path)
    layer.gz_digest = meta["digest"]
    layer.gz_size = meta["size"]


def gzip_layers(layers: list[Layer], cache: Path, log: Log) -> None:
    """Compress the layers, in parallel (zlib and pigz run outside the GIL)."""
    workers = 1 if shutil.which("pigz") else max(1, min(len(layers), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(_gzip_layer, layer, cache, log) for layer in layers]:
            future.result()


# --- archives ---------------------------------------------------------------------------------


def json_bytes(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def descriptor(media_type: str, data_or_digest: bytes | str, size: int = 0) -> dict[str, Any]:
    if isinstance(data_or_digest, bytes):
        digest = "sha256:" + hashlib.sha256(data_or_digest).hexdigest()
        size = len(data_or_digest)
    else:
        digest = data_or_digest
    return {"mediaType": media_type, "digest": digest, "size": size}


def _write_archive(out: Path, members: dict[str, bytes | Path | None]) -> None:
    """A tar of *members* (name → bytes, a file to copy, or None for a directory), sorted."""
    with (
        _atomic_output(out) as f,
        tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in sorted(members):
            content = members[name]
            if content is None:
                tar.addfile(_member(name, directory=True))
            elif isinstance(content, bytes):
                tar.addfile(_member(name, len(content)), io.BytesIO(content))
            else:
                with content.open("rb") as data:
                    tar.addfile(_member(name, content.stat().st_size, 0o444), data)


def _config(layers: list[Layer]) -> bytes:
    history = [
        {"created": CREATED, "created_by": f"cargohold bench: {layer.name} layer ({layer.note})"}
        for layer in layers
    ]
    return json_bytes(
        {
            **host_platform(),
            "created": CREATED,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["bash"],
                "Labels": {"org.opencontainers.image.title": "cargohold benchmark image"},
            },
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": history,
        }
    )


def write_archives(workdir: Path, layers: list[Layer], log: Log) -> BuiltImage:
    """The gzip OCI image layout tar and the uncompressed docker archive of *layers*."""
    config = _config(layers)
    config_desc = descriptor(OCI_CONFIG, config)
    manifest = json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": [
                descriptor(OCI_LAYER_GZIP, layer.gz_digest, layer.gz_size) for layer in layers
            ],
        }
    )
    manifest_desc = descriptor(OCI_MANIFEST, manifest)
    index = json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    **manifest_desc,
                    "platform": host_platform(),
                    "annotations": {
                        "io.containerd.image.name": IMAGE_NAME,
                        "org.opencontainers.image.ref.name": IMAGE_TAG,
                    },
                }
            ],
        }
    )

    def blob(digest: str) -> str:
        return "blobs/sha256/" + digest.removeprefix("sha256:")

    oci: dict[str, bytes | Path | None] = {
        "blobs": None,
        "blobs/sha256": None,
        "oci-layout": json_bytes({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
        blob(config_desc["digest"]): config,
        blob(manifest_desc["digest"]): manifest,
    }
    for layer in layers:
        oci[blob(layer.gz_digest)] = Path(layer.gz)
    oci_path = workdir / "image-oci-gzip.tar"
    log(f"writing {oci_path.name}")
    _write_archive(oci_path, oci)

    config_name = config_desc["digest"].removeprefix("sha256:") + ".json"
    docker_manifest = [
        {
            "Config": config_name,
            "RepoTags": [DOCKER_REPO_TAG],
            "Layers": [f"{layer.diff_id.removeprefix('sha256:')}/layer.tar" for layer in layers],
        }
    ]
    docker: dict[str, bytes | Path | None] = {
        "manifest.json": json_bytes(docker_manifest),
        config_name: config,
    }
    for layer in layers:
        hex_id = layer.diff_id.removeprefix("sha256:")
        docker[hex_id] = None
        docker[f"{hex_id}/layer.tar"] = Path(layer.tar)
    docker_path = workdir / "image-docker.tar"
    log(f"writing {docker_path.name}")
    _write_archive(docker_path, docker)

    return BuiltImage(
        name=IMAGE_NAME,
        oci_archive=str(oci_path),
        docker_archive=str(docker_path),
        oci_archive_size=oci_path.stat().st_size,
        docker_archive_size=docker_path.stat().st_size,
        uncompressed_size=sum(layer.size for layer in layers),
        compressor=compressor_name(),
        manifest_digest=manifest_desc["digest"],
        config_digest=config_desc["digest"],
        layers=layers,
    )


def build(
    workdir: Path,
    size_mb: int = DEFAULT_SIZE_MB,
    packages: tuple[str, ...] = DEFAULT_PACKAGES,
    log: Log = print,
) -> BuiltImage:
    """Build (or reuse from the cache) the layers, write both archives and ``image.json``."""
    cache = workdir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    target = size_mb * MIB
    layers = [build_base_layer(cache, log)]
    wheels = build_wheels_layer(cache, packages, target - layers[0].size, log)
    if wheels is not None:
        layers.append(wheels)
    data = build_data_layer(cache, target - sum(layer.size for layer in layers), log)
    if data is not None:
        layers.append(data)
    gzip_layers(layers, cache, log)
    image = write_archives(workdir, layers, log)
    image.save(workdir / "image.json")
    return image


def describe(image: BuiltImage) -> str:
    lines = [
        f"image {image.name}: {image.uncompressed_size / MIB:.0f} MiB uncompressed,"
        f" OCI archive (gzip layers, {image.compressor}) {image.oci_archive_size / MIB:.0f} MiB,"
        f" docker archive {image.docker_archive_size / MIB:.0f} MiB"
    ]
    for layer in image.layers:
        lines.append(
            f"  {layer.name:6} {layer.size / MIB:7.1f} MiB -> {layer.gz_size / MIB:7.1f} MiB gzip,"
            f" {layer.files:6} members  {layer.note}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/cargohold-bench"))
    parser.add_argument("--size-mb", type=int, default=DEFAULT_SIZE_MB)
    parser.add_argument("--packages", default=",".join(DEFAULT_PACKAGES))
    args = parser.parse_args(argv)
    packages = tuple(p for p in args.packages.split(",") if p)
    try:
        image = build(args.workdir.resolve(), args.size_mb, packages)
    except BuildError as exc:
        print(f"build_image: error: {exc}", file=sys.stderr)
        return 1
    print(describe(image))
    return 0


if __name__ == "__main__":
    sys.exit(main())
