#!/usr/bin/env python3
"""Benchmark cargohold against containerd's ctr, skopeo and a minimal Python floor.

One command builds a ~1 GB test image (see build_image.py), writes it as a gzip OCI archive and
an uncompressed docker archive, and times, in alternating rounds (a warm-up round first, which
is not counted), every operation below; it prints the median, min and max of each, the ratios
the targets are stated in, and peak RSS, and writes everything to WORKDIR/results.json.

    python3 bench/run.py [--workdir DIR] [--repeat N] [--size-mb N] [--skip-build] ...

See bench/README.md for what it needs, how long it takes and what each number means.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import hashlib
import io
import json
import os
import platform
import pstats
import shlex
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

import build_image
from build_image import MIB, BuildError, BuiltImage
from interpreter import use_bench_venv
from peers import Containerd, skopeo_env, skopeo_policy, tool, version
from timing import CommandError, run_checked, run_observed, summarise_phases, timed_run

BENCH: Final = Path(__file__).resolve().parent
REPO: Final = BENCH.parent
DEFAULT_WORKDIR: Final = Path("/var/tmp/cargohold-bench")
DEPENDENCIES: Final = ("click", "rich", "zstandard", "platformdirs")


class BenchError(Exception):
    """The benchmark cannot go on (a tool failed, or an output is not what it must be)."""


# --- what is measured ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Op:
    key: str
    label: str
    #: Which archive the operation reads or writes ("oci", "docker", "export"), for MiB/s.
    data: str = ""


OPS: Final = (
    Op("ch_import_oci", "cargohold import  OCI gzip  file   cold", "oci"),
    Op("ch_import_oci_warm", "cargohold import  OCI gzip  file   all blobs present", "oci"),
    Op("ch_import_oci_stdin", "cargohold import  OCI gzip  stdin  cold", "oci"),
    Op("ch_import_oci_stdin_warm", "cargohold import  OCI gzip  stdin  all blobs present", "oci"),
    Op("ch_import_oci_redirect", "cargohold import  OCI gzip  - < FILE  cold", "oci"),
    Op("ctr_import_oci", "ctr import --no-unpack  OCI gzip  file", "oci"),
    Op("skopeo_oci", "skopeo copy oci-archive: -> oci:", "oci"),
    Op("floor_oci", "floor (1 thread)   OCI gzip archive", "oci"),
    Op("floor2_oci", "floor (2 threads)  OCI gzip archive", "oci"),
    Op("floor_oci_stdin", "floor (1 thread)   OCI gzip archive, stdin", "oci"),
    Op("ch_import_docker", "cargohold import  docker     file   cold", "docker"),
    Op("ch_import_docker_warm", "cargohold import  docker     file   all blobs present", "docker"),
    Op("ch_import_docker_stdin", "cargohold import  docker     stdin  cold", "docker"),
    Op("ch_import_docker_redirect", "cargohold import  docker     - < FILE  cold", "docker"),
    Op("ctr_import_docker", "ctr import --no-unpack  docker  file", "docker"),
    Op("floor_docker", "floor (1 thread)   docker archive", "docker"),
    Op("floor2_docker", "floor (2 threads)  docker archive", "docker"),
    Op("floor_docker_stdin", "floor (1 thread)   docker archive, stdin", "docker"),
    Op("ch_export", "cargohold export (image from the OCI archive)", "export"),
    Op("ctr_export", "ctr export (image from the OCI archive)", "export"),
    Op("cp_oci", "cp of the OCI archive", "oci"),
    Op("cp_sync_oci", "cp of the OCI archive + sync FILE", "oci"),
    Op("cp_sync_docker", "cp of the docker archive + sync FILE", "docker"),
    Op("python_pass", "python3 -c pass (the interpreter's start-up alone)"),
    Op("ch_startup", "cargohold --version (start-up cost of every command)"),
    Op("ch_ls_empty", "cargohold image ls, empty store"),
    Op("ch_ls_1000", "cargohold image ls, 1,000 images (table)"),
    Op("ch_ls_1000_json", "cargohold image ls, 1,000 images (--format json)"),
    Op("ch_gc_20000", "cargohold content gc, 20,050 blobs, 10,000 removed"),
    Op("ch_gc_noop", "cargohold content gc, 10,050 blobs, none removed"),
    Op("rm_gc_10000", "xargs -P 32 rm of the same 10,000 blob files (the floor)"),
)
OP_BY_KEY: Final = {op.key: op for op in OPS}


@dataclass(frozen=True, slots=True)
class Check:
    """A number the targets are stated in, and the most it may be (None: reported only).

    kind "ratio": median(numerator) / median(denominator); "seconds": median(numerator);
    "rss": peak RSS of numerator in MiB over the counted rounds.
    """

    key: str
    kind: str
    numerator: str
    denominator: str = ""
    label: str = ""
    name: str = ""


CHECKS: Final = (
    Check("oci_file_vs_ctr", "ratio", "ch_import_oci", "ctr_import_oci",
          "cold import, gzip OCI archive, file", "cargohold/ctr"),
    Check("oci_file_vs_floor", "ratio", "ch_import_oci", "floor_oci",
          "cold import, gzip OCI archive, file", "cargohold/floor"),
    Check("oci_file_vs_floor2", "ratio", "ch_import_oci", "floor2_oci",
          "cold import, gzip OCI archive, file", "cargohold/floor2"),
    Check("oci_file_vs_cp_sync", "ratio", "ch_import_oci", "cp_sync_oci",
          "cold import, gzip OCI archive, file", "cargohold/cp+sync"),
    Check("docker_file_vs_cp_sync", "ratio", "ch_import_docker", "cp_sync_docker",
          "cold import, docker archive, file", "cargohold/cp+sync"),
    Check("oci_redirect_vs_file", "ratio", "ch_import_oci_redirect", "ch_import_oci",
          "cold import, gzip OCI archive, - < FILE", "redirect/file"),
    Check("docker_redirect_vs_file", "ratio", "ch_import_docker_redirect", "ch_import_docker",
          "cold import, docker archive, - < FILE", "redirect/file"),
    Check("startup_vs_python", "ratio", "ch_startup", "python_pass",
          "cargohold --version", "cargohold/python -c pass"),
    Check("ls_empty_vs_python", "ratio", "ch_ls_empty", "python_pass",
          "cargohold image ls, empty store", "cargohold/python -c pass"),
    Check("oci_file_vs_skopeo", "ratio", "ch_import_oci", "skopeo_oci",
          "cold import, gzip OCI archive, file", "cargohold/skopeo"),
    Check("docker_file_vs_ctr", "ratio", "ch_import_docker", "ctr_import_docker",
          "cold import, docker archive, file", "cargohold/ctr"),
    Check("docker_file_vs_floor", "ratio", "ch_import_docker", "floor_docker",
          "cold import, docker archive, file", "cargohold/floor"),
    Check("docker_file_vs_floor2", "ratio", "ch_import_docker", "floor2_docker",
          "cold import, docker archive, file", "cargohold/floor2"),
    Check("oci_stdin_vs_floor", "ratio", "ch_import_oci_stdin", "floor_oci",
          "cold import, gzip OCI archive, stdin", "cargohold/floor"),
    Check("oci_stdin_vs_floor_stdin", "ratio", "ch_import_oci_stdin", "floor_oci_stdin",
          "cold import, gzip OCI archive, stdin", "cargohold/floor-stdin"),
    Check("oci_stdin_vs_file", "ratio", "ch_import_oci_stdin", "ch_import_oci",
          "cold import, gzip OCI archive, stdin", "stdin/file"),
    Check("docker_stdin_vs_floor", "ratio", "ch_import_docker_stdin", "floor_docker",
          "cold import, docker archive, stdin", "cargohold/floor"),
    Check("docker_stdin_vs_floor_stdin", "ratio", "ch_import_docker_stdin",
          "floor_docker_stdin", "cold import, docker archive, stdin", "cargohold/floor-stdin"),
    Check("docker_stdin_vs_file", "ratio", "ch_import_docker_stdin", "ch_import_docker",
          "cold import, docker archive, stdin", "stdin/file"),
    Check("oci_warm_vs_cold", "ratio", "ch_import_oci_warm", "ch_import_oci",
          "import, all blobs present, gzip OCI, file", "present/cold"),
    Check("oci_stdin_warm_vs_cold", "ratio", "ch_import_oci_stdin_warm", "ch_import_oci_stdin",
          "import, all blobs present, gzip OCI, stdin", "present/cold"),
    Check("docker_warm_vs_cold", "ratio", "ch_import_docker_warm", "ch_import_docker",
          "import, all blobs present, docker, file", "present/cold"),
    Check("export_vs_ctr", "ratio", "ch_export", "ctr_export", "export", "cargohold/ctr"),
    Check("export_vs_cp", "ratio", "ch_export", "cp_oci", "export", "cargohold/cp"),
    Check("export_vs_cp_sync", "ratio", "ch_export", "cp_sync_oci", "export", "cargohold/cp+sync"),
    Check("floor2_vs_floor_oci", "ratio", "floor2_oci", "floor_oci",
          "the floor, 2 threads vs 1, gzip OCI", "floor2/floor"),
    Check("floor2_vs_floor_docker", "ratio", "floor2_docker", "floor_docker",
          "the floor, 2 threads vs 1, docker", "floor2/floor"),
    Check("ls_1000_seconds", "seconds", "ch_ls_1000", name="median s"),
    Check("gc_20000_seconds", "seconds", "ch_gc_20000", name="median s"),
    Check("gc_noop_seconds", "seconds", "ch_gc_noop", name="median s"),
    Check("gc_vs_rm", "ratio", "ch_gc_20000", "rm_gc_10000",
          "content gc removing 10,000 vs rm of them", "cargohold/rm"),
    *(
        Check(f"rss_{op.key.removeprefix('ch_')}", "rss", op.key, name="peak RSS MiB")
        for op in OPS
        if op.key.startswith("ch_") and op.key not in ("ch_startup", "ch_ls_empty")
    ),
)  # fmt: skip

#: The most each number may be for PASS (None: reported, no target). Ratios are time over time.
#: These are the benchmark's defaults; override any with --target KEY=VALUE (or KEY=none).
#: The targets of the performance issue, as ratios of medians (seconds for ls and gc, MiB for
#: peak RSS). "Well under a second" is read as at most half a second.
TARGETS: Final[dict[str, float | None]] = {
    "oci_file_vs_ctr": 0.3,
    "oci_file_vs_floor": 0.8,
    "oci_file_vs_cp_sync": 1.2,
    "docker_file_vs_ctr": 0.3,
    "docker_file_vs_floor": 0.8,
    "docker_file_vs_cp_sync": 1.2,
    "oci_redirect_vs_file": 1.05,
    "docker_redirect_vs_file": 1.05,
    "startup_vs_python": 3.0,
    "ls_empty_vs_python": 3.0,
    "oci_stdin_vs_floor": 1.0,
    "docker_stdin_vs_floor": 1.0,
    "oci_warm_vs_cold": 0.3,
    "docker_warm_vs_cold": 0.3,
    "export_vs_ctr": 0.1,
    "export_vs_cp": 2.0,
    "ls_1000_seconds": 0.5,
    "gc_20000_seconds": 0.5,
    **{check.key: 100.0 for check in CHECKS if check.kind == "rss"},
}

#: The groups a round runs, in order (each round starts one later: see Bench.round).
GROUPS: Final = (
    "cargohold-oci",
    "ctr-oci",
    "skopeo",
    "floor-oci",
    "cp",
    "cargohold-oci-stdin",
    "cargohold-docker",
    "ctr-docker",
    "floor-docker",
    "cargohold-docker-stdin",
    "ls",
    "gc",
)
CTR_GROUPS: Final = frozenset({"ctr-oci", "ctr-docker"})


@dataclass
class Sample:
    seconds: float
    rss: int
    daemon_rss: int | None = None


@dataclass
class Results:
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, key: str, sample: Sample) -> None:
        self.samples.setdefault(key, []).append(sample)

    def median(self, key: str) -> float | None:
        samples = self.samples.get(key)
        return statistics.median(s.seconds for s in samples) if samples else None

    def peak_rss(self, key: str) -> int | None:
        samples = self.samples.get(key)
        return max(s.rss for s in samples) if samples else None

    def peak_daemon_rss(self, key: str) -> int | None:
        values = [s.daemon_rss for s in self.samples.get(key, []) if s.daemon_rss is not None]
        return max(values) if values else None


# --- the benchmark ---------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace, image: BuiltImage) -> None:
        self.workdir: Path = args.workdir
        self.image = image
        self.oci = Path(image.oci_archive)
        self.docker = Path(image.docker_archive)
        self.scratch: Path = self.workdir / "run"
        self.groups: tuple[str, ...] = args.groups
        self.results = Results()
        self.counting = False
        self.containerd: Containerd | None = None
        self.export_size = 0
        self.ctr_export_size = 0
        self.ctr_leftovers = 0
        self.custom = bool(args.cargohold)
        if args.cargohold:
            self.cargohold = shlex.split(args.cargohold)
        else:
            self.cargohold = [sys.executable, "-m", "cargohold"]
        # Every round times the same code, even if the checkout changes meanwhile: a copy of
        # src/ taken now (stores.py uses it too, whatever --cargohold says).
        self.source = self.workdir / "src"
        self.source_digest = snapshot_source(REPO / "src" / "cargohold", self.source / "cargohold")
        path = (str(self.source), os.environ.get("PYTHONPATH"))
        self.library_env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
        #: The environment of the timed cargohold commands.
        self.env = dict(os.environ) if args.cargohold else self.library_env
        self.policy = skopeo_policy(self.workdir / "skopeo-policy.json")
        self.expected_blobs = len(image.layers) + 2
        self.ls_store = self.workdir / "stores" / "ls"
        self.gc_template = self.workdir / "stores" / "gc-template"

    # -- helpers ---------------------------------------------------------------------------

    def ch(self, *args: str | Path) -> list[str]:
        return [*self.cargohold, *map(str, args)]

    def fresh(self, name: str) -> Path:
        """A path in the scratch directory with nothing at it (removed outside any timing)."""
        path = self.scratch / name
        remove(path)
        return path

    def timed(
        self,
        key: str,
        argv: list[str],
        *,
        pipe_from: Path | None = None,
        stdin_from: Path | None = None,
        stdout: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Sample:
        """Run one measured command and record it (when the round counts).

        ``sync`` runs before (and after) it, untimed: no run pays for the writes and deletions
        of the one before, which the kernel would otherwise flush while it runs."""
        os.sync()
        daemon = self.containerd if key.startswith("ctr_") else None
        if daemon is not None:
            daemon.reset_peak_rss()
        try:
            seconds, rss = timed_run(
                argv, pipe_from=pipe_from, stdin_from=stdin_from, stdout=stdout, env=env or self.env
            )
        except CommandError as exc:
            raise BenchError(str(exc)) from None
        sample = Sample(seconds, rss, daemon.peak_rss() if daemon is not None else None)
        if self.counting:
            self.results.add(key, sample)
        extra = f" (containerd {sample.daemon_rss / MIB:.0f} MiB)" if sample.daemon_rss else ""
        log(f"    {key:26} {seconds:8.3f} s  {rss / MIB:7.1f} MiB{extra}")
        os.sync()
        return sample

    def read_output(self, path: Path) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(path.read_text())
        path.unlink()
        return data

    def check_import(self, out: Path, what: str, cold: bool, digest: str | None) -> None:
        """An import must have named the image, and written every blob (cold) or none."""
        result = self.read_output(out)
        names = [image["name"] for image in result["images"]]
        if names != [self.image.name]:
            raise BenchError(f"{what}: imported {names}, expected [{self.image.name}]")
        if digest is not None and result["images"][0]["digest"] != digest:
            raise BenchError(f"{what}: digest {result['images'][0]['digest']}, expected {digest}")
        expected = self.expected_blobs if cold else 0
        if result["blobs"] != expected:
            raise BenchError(f"{what}: wrote {result['blobs']} blobs, expected {expected}")

    def ch_import(
        self,
        key: str,
        store: Path,
        archive: Path,
        *,
        stdin: bool,
        cold: bool,
        digest: str | None,
        redirect: bool = False,
    ) -> None:
        """Import *archive* named, or with *stdin* through a pipe (``cat FILE |``), or with
        *redirect* as standard input (``- < FILE``)."""
        out = self.scratch / "import.json"
        source = "-" if stdin or redirect else archive
        argv = self.ch("--root", store, "image", "import", "--progress", "none")
        argv += ["--format", "json"]
        self.timed(
            key,
            [*argv, str(source)],
            pipe_from=archive if stdin else None,
            stdin_from=archive if redirect else None,
            stdout=out,
        )
        self.check_import(out, key, cold, digest)

    # -- groups ----------------------------------------------------------------------------

    def group_cargohold_oci(self) -> None:
        store = self.fresh("store")
        digest = self.image.manifest_digest
        self.ch_import("ch_import_oci", store, self.oci, stdin=False, cold=True, digest=digest)
        self.ch_import(
            "ch_import_oci_warm", store, self.oci, stdin=False, cold=False, digest=digest
        )
        out = self.fresh("export.tar")
        self.timed(
            "ch_export",
            self.ch("--root", store, "image", "export", "--progress", "none", out, self.image.name),
        )
        self.export_size = out.stat().st_size
        remove(out)
        remove(store)

    def group_cargohold_oci_stdin(self) -> None:
        store = self.fresh("store")
        digest = self.image.manifest_digest
        self.ch_import("ch_import_oci_stdin", store, self.oci, stdin=True, cold=True, digest=digest)
        self.ch_import(
            "ch_import_oci_stdin_warm", store, self.oci, stdin=True, cold=False, digest=digest
        )
        remove(store)
        self.redirected_import("ch_import_oci_redirect", self.oci, digest)

    def group_cargohold_docker(self) -> None:
        store = self.fresh("store")
        self.ch_import("ch_import_docker", store, self.docker, stdin=False, cold=True, digest=None)
        self.ch_import(
            "ch_import_docker_warm", store, self.docker, stdin=False, cold=False, digest=None
        )
        remove(store)

    def group_cargohold_docker_stdin(self) -> None:
        store = self.fresh("store")
        self.ch_import(
            "ch_import_docker_stdin", store, self.docker, stdin=True, cold=True, digest=None
        )
        remove(store)
        self.redirected_import("ch_import_docker_redirect", self.docker, None)

    def redirected_import(self, key: str, archive: Path, digest: str | None) -> None:
        """A cold import of ``- < ARCHIVE`` (standard input a regular file)."""
        store = self.fresh("store")
        self.ch_import(key, store, archive, stdin=False, redirect=True, cold=True, digest=digest)
        remove(store)

    def ctr_import(self, key: str, archive: Path) -> None:
        assert self.containerd is not None
        self.timed(key, self.containerd.ctr_argv("image", "import", "--no-unpack", archive))
        if self.image.name not in self.containerd.ctr("image", "ls", "-q").split():
            raise BenchError(f"{key}: ctr did not create {self.image.name}")

    def ctr_clear(self) -> None:
        assert self.containerd is not None
        self.ctr_leftovers += self.containerd.clear()

    def group_ctr_oci(self) -> None:
        assert self.containerd is not None
        self.ctr_import("ctr_import_oci", self.oci)
        out = self.fresh("ctr-export.tar")
        self.timed("ctr_export", self.containerd.ctr_argv("image", "export", out, self.image.name))
        self.ctr_export_size = out.stat().st_size
        remove(out)
        self.ctr_clear()

    def group_ctr_docker(self) -> None:
        self.ctr_import("ctr_import_docker", self.docker)
        self.ctr_clear()

    def group_skopeo(self) -> None:
        target = self.fresh("skopeo-oci")
        tmpdir = self.fresh("skopeo-tmp")
        argv = [tool("skopeo"), "--policy", str(self.policy), "copy", "--quiet"]
        argv += [f"oci-archive:{self.oci}", f"oci:{target}:latest"]
        self.timed("skopeo_oci", argv, env=skopeo_env(tmpdir))
        remove(target)
        remove(tmpdir)

    def group_floor(self, key: str, archive: Path) -> None:
        runs: tuple[tuple[int, str, bool], ...] = (
            (1, f"floor_{key}", False),
            (2, f"floor2_{key}", False),
            (1, f"floor_{key}_stdin", True),
        )
        for threads, name, stdin in runs:
            out = self.fresh("floor")
            floor = [sys.executable, str(BENCH / "floor.py"), "--threads", str(threads)]
            source = "-" if stdin else str(archive)
            self.timed(name, [*floor, source, str(out)], pipe_from=archive if stdin else None)
            remove(out)

    def group_cp(self) -> None:
        out = self.fresh("cp.tar")
        self.timed("cp_oci", ["cp", str(self.oci), str(out)])
        remove(out)
        script = 'cp -- "$1" "$2" && sync -- "$2"'
        self.timed("cp_sync_oci", ["sh", "-c", script, "sh", str(self.oci), str(out)])
        remove(out)
        self.timed("cp_sync_docker", ["sh", "-c", script, "sh", str(self.docker), str(out)])
        remove(out)

    def group_ls(self) -> None:
        self.timed("python_pass", [sys.executable, "-c", "pass"])
        self.timed("ch_startup", self.ch("--version"))
        empty = self.fresh("empty-store")
        run_checked(self.ch("--root", empty, "namespace", "create", "bench"), env=self.env)
        self.timed("ch_ls_empty", self.ch("--root", empty, "image", "ls"))
        remove(empty)
        self.timed("ch_ls_1000", self.ch("--root", self.ls_store, "image", "ls"))
        out = self.scratch / "ls.json"
        argv = self.ch("--root", self.ls_store, "image", "ls", "--format", "json")
        self.timed("ch_ls_1000_json", argv, stdout=out)
        listed = len(json.loads(out.read_text()))
        out.unlink()
        if listed != 1000:
            raise BenchError(f"image ls listed {listed} images, expected 1000")

    def group_gc(self) -> None:
        store = self.fresh("gc-store")
        shutil.copytree(self.gc_template, store, symlinks=True)
        os.sync()
        out = self.scratch / "gc.json"
        for key, expected in (("ch_gc_20000", 10_000), ("ch_gc_noop", 0)):
            argv = self.ch("--root", store, "content", "gc", "--format", "json")
            self.timed(key, argv, stdout=out)
            removed = len(self.read_output(out)["removed"])
            if removed != expected:
                raise BenchError(f"{key}: removed {removed} blobs, expected {expected}")
        remove(store)
        # The floor: deleting the same files, as many at once as gc does, with rm.
        shutil.copytree(self.gc_template, store, symlinks=True)
        argv = self.ch("--root", store, "content", "gc", "--dry-run", "--format", "json")
        doomed = json.loads(run_checked(argv, env=self.env))["removed"]
        listing = self.scratch / "gc-doomed"
        blobs = store / "content" / "blobs"
        listing.write_bytes(
            b"".join(f"{blobs}/{'/'.join(item['digest'].split(':'))}\0".encode() for item in doomed)
        )
        os.sync()
        self.timed(
            "rm_gc_10000",
            ["xargs", "-0", "-P", "32", "-n", "16", "rm", "-f", "--"],
            pipe_from=listing,
        )
        if any((blobs / "/".join(item["digest"].split(":"))).exists() for item in doomed):
            raise BenchError("rm_gc_10000: files are left")
        remove(listing)
        remove(store)

    # -- preparing and running -------------------------------------------------------------

    def prepare_stores(self) -> None:
        """The ls store (rebuilt every run: a second) and the gc template (cached: it takes
        half a minute, because every blob is fsynced)."""
        stores = self.workdir / "stores"
        stores.mkdir(exist_ok=True)
        script = [sys.executable, str(BENCH / "stores.py")]
        if "ls" in self.groups:
            remove(self.ls_store)
            log("building the image ls store (1,000 names) through the library")
            run_checked([*script, "ls", str(self.ls_store)], env=self.library_env)
        marker = stores / "gc-template.json"
        if "gc" in self.groups and not (marker.is_file() and self.gc_template.is_dir()):
            remove(self.gc_template)
            marker.unlink(missing_ok=True)
            log("building the content gc store (20,050 blobs) through the library (~40 s)")
            summary = run_checked([*script, "gc", str(self.gc_template)], env=self.library_env)
            marker.write_text(summary)

    def validate(self) -> None:
        """Import both archives once with cargohold, and inspect them with skopeo."""
        log("validating the archives (cargohold import of each, skopeo inspect)")
        store = self.fresh("validate-store")
        digest = self.image.manifest_digest
        for archive, expected in ((self.oci, digest), (self.docker, None)):
            argv = self.ch("--root", store, "image", "import", "--progress", "none")
            run_checked([*argv, "-q", "--force", str(archive)], env=self.env)
            argv = self.ch("--root", store, "image", "ls", "--format", "json")
            listed = json.loads(run_checked(argv, env=self.env))
            if [image["name"] for image in listed] != [self.image.name]:
                raise BenchError(f"cargohold imported {listed} from {archive}")
            if expected is not None and listed[0]["digest"] != expected:
                raise BenchError(f"cargohold imported {listed[0]['digest']}, not {expected}")
        remove(store)
        tmpdir = self.fresh("skopeo-tmp")
        env = skopeo_env(tmpdir)
        for transport, archive in (("oci-archive", self.oci), ("docker-archive", self.docker)):
            inspected = json.loads(
                run_checked([tool("skopeo"), "inspect", f"{transport}:{archive}"], env=env)
            )
            if len(inspected.get("Layers", [])) != len(self.image.layers):
                raise BenchError(f"skopeo inspect {transport}: {inspected}")
        remove(tmpdir)

    def round(self, index: int, counting: bool) -> None:
        """One round: every group once, starting one group later than the previous round,
        so that no tool always runs right after the same other one."""
        self.counting = counting
        shift = index % len(self.groups)
        order = self.groups[shift:] + self.groups[:shift]
        groups: dict[str, Callable[[], None]] = {
            "cargohold-oci": self.group_cargohold_oci,
            "ctr-oci": self.group_ctr_oci,
            "skopeo": self.group_skopeo,
            "floor-oci": lambda: self.group_floor("oci", self.oci),
            "cp": self.group_cp,
            "cargohold-oci-stdin": self.group_cargohold_oci_stdin,
            "cargohold-docker": self.group_cargohold_docker,
            "ctr-docker": self.group_ctr_docker,
            "floor-docker": lambda: self.group_floor("docker", self.docker),
            "cargohold-docker-stdin": self.group_cargohold_docker_stdin,
            "ls": self.group_ls,
            "gc": self.group_gc,
        }
        for name in order:
            groups[name]()

    def run(self, repeat: int, warmup: int) -> None:
        remove(self.scratch)
        self.scratch.mkdir(parents=True)
        self.prepare_stores()
        with contextlib.ExitStack() as stack:
            if CTR_GROUPS & set(self.groups):
                log("starting a private containerd")
                self.containerd = stack.enter_context(Containerd(self.workdir / "containerd"))
                self.ctr_clear()
                self.ctr_leftovers = 0
            for index in range(warmup + repeat):
                counting = index >= warmup
                what = f"round {index - warmup + 1}/{repeat}" if counting else "warm-up round"
                log(f"{what}:")
                self.round(index, counting)
            self.containerd = None
        remove(self.scratch)

    def profile(self) -> dict[str, str]:
        """Cold imports of both archives under cProfile; the top 15 functions by cumulative
        time of each, printed and returned."""
        reports: dict[str, str] = {}
        self.scratch.mkdir(parents=True, exist_ok=True)
        runs: tuple[tuple[str, Path, bool], ...] = (
            ("oci", self.oci, False),
            ("docker", self.docker, False),
            ("docker-stdin", self.docker, True),
        )
        for name, archive, stdin in runs:
            store = self.fresh("profile-store")
            output = self.workdir / f"profile-import-{name}.prof"
            argv = [sys.executable, "-m", "cProfile", "-o", str(output), "-m", "cargohold"]
            argv += ["--root", str(store), "image", "import", "--progress", "none", "-q"]
            argv.append("-" if stdin else str(archive))
            pipe_from = archive if stdin else None
            seconds, _ = timed_run(argv, env=self.library_env, pipe_from=pipe_from)
            remove(store)
            text = output.with_suffix(".txt")
            with text.open("w") as f:
                stats = pstats.Stats(str(output), stream=f)
                stats.sort_stats("cumulative").print_stats(15)
                stats.sort_stats("tottime").print_stats(15)
            top = pstats.Stats(str(output), stream=(buffer := io.StringIO()))
            top.sort_stats("cumulative").print_stats(15)
            reports[name] = buffer.getvalue()
            log(f"\ncProfile of a cold import, {name} ({seconds:.2f} s under the profiler),")
            log(f"top 15 by cumulative time (by own time too in {text}):")
            log(trim_profile(reports[name]))
        remove(self.scratch)
        return reports

    def phases(self, repeat: int) -> dict[str, dict[str, float]]:
        """Cold imports of both archives under phases.py, *repeat* each, taking turns: the
        medians of each phase in milliseconds, and the data phase over ``cp`` + ``sync`` of
        the same archive (from the timed rounds)."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        archives = {"oci": self.oci, "docker": self.docker}
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in archives}
        for _ in range(repeat):
            for name, archive in archives.items():
                store = self.fresh("phases-store")
                args: list[str | Path] = ["--root", store, "image", "import", "-q"]
                args += ["--progress", "none", archive]
                samples[name].append(run_observed(args, self.library_env))
                remove(store)
        remove(self.scratch)
        interpreter = (self.results.median("python_pass") or 0.0) * 1000
        out: dict[str, dict[str, float]] = {}
        log("\nwhere a cold import's time goes (phases.py; medians, ms):")
        log(f"  {'archive':8} {'python':>7} {'start-up':>9} {'data':>7} {'commit':>7}"
            f" {'exit':>6} {'wall':>7} {'cp+sync':>8}  data/(cp+sync)")  # fmt: skip
        for name, found in samples.items():
            summary = summarise_phases(found, interpreter)
            cp_sync = (self.results.median(f"cp_sync_{name}") or 0.0) * 1000
            summary["cpSync"] = round(cp_sync, 1)
            summary["dataOverCpSync"] = round(summary["data"] / cp_sync, 2) if cp_sync else 0.0
            out[name] = summary
            columns = ("interpreter", "startUp", "data", "commit", "exit", "wall", "cpSync")
            widths = (7, 9, 7, 7, 6, 7, 8)
            cells = " ".join(f"{summary[c]:{w}.0f}" for c, w in zip(columns, widths, strict=True))
            log(f"  {name:8} {cells}  {summary['dataOverCpSync']:.2f}")
        return out


def snapshot_source(package: Path, copy: Path) -> str:
    """Copy the cargohold package to *copy*, byte-compiled as ``pip install`` leaves it (so
    that no timed command compiles its source, even with PYTHONDONTWRITEBYTECODE set);
    returns a digest of its Python files."""
    remove(copy)
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    if not compileall.compile_dir(copy, quiet=1):
        raise BenchError(f"cannot byte-compile the copy of cargohold in {copy}")
    hasher = hashlib.sha256()
    for path in sorted(copy.rglob("*.py")):
        hasher.update(path.relative_to(copy).as_posix().encode() + b"\0" + path.read_bytes())
    return hasher.hexdigest()[:16]


def trim_profile(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line for line in lines[start:] if line.strip())


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# --- the report ------------------------------------------------------------------------------


def check_value(results: Results, check: Check) -> float | None:
    if check.kind == "rss":
        peak = results.peak_rss(check.numerator)
        return peak / MIB if peak is not None else None
    numerator = results.median(check.numerator)
    if check.kind == "seconds" or numerator is None:
        return numerator
    denominator = results.median(check.denominator)
    return numerator / denominator if denominator else None


def report(
    bench: Bench, targets: dict[str, float | None], repeat: int, warmup: int
) -> dict[str, Any]:
    results = bench.results
    image = bench.image
    sizes = {
        "oci": image.oci_archive_size,
        "docker": image.docker_archive_size,
        "export": bench.export_size,
    }
    lines = [
        "",
        f"image: {image.uncompressed_size / MIB:.0f} MiB uncompressed in {len(image.layers)}"
        f" layers; gzip OCI archive {image.oci_archive_size / MIB:.0f} MiB ({image.compressor}),"
        f" docker archive {image.docker_archive_size / MIB:.0f} MiB",
        f"cargohold: {' '.join(bench.cargohold)}"
        + ("" if bench.custom else f" (src/cargohold copied, *.py digest {bench.source_digest})"),
        f"median of {repeat} counted rounds, after {warmup} warm-up round(s)"
        + (f"; exports: cargohold {bench.export_size / MIB:.1f} MiB" if bench.export_size else "")
        + (f", ctr {bench.ctr_export_size / MIB:.1f} MiB" if bench.ctr_export_size else ""),
        "",
        f"{'operation':56} {'median s':>9} {'min s':>8} {'max s':>8} {'MiB/s':>7}"
        f" {'peak RSS MiB':>13}",
    ]
    table: list[dict[str, Any]] = []
    for op in OPS:
        samples = results.samples.get(op.key)
        if not samples:
            continue
        times = [s.seconds for s in samples]
        median = statistics.median(times)
        rate = sizes.get(op.data, 0) / MIB / median if op.data and median else None
        rss = results.peak_rss(op.key) or 0
        daemon = results.peak_daemon_rss(op.key)
        rss_text = f"{rss / MIB:13.1f}"
        if daemon is not None:
            rss_text += f" (containerd {daemon / MIB:.0f})"
        rate_text = f"{rate:7.0f}" if rate is not None else f"{'':7}"
        lines.append(
            f"{op.label:56} {median:9.3f} {min(times):8.3f} {max(times):8.3f} {rate_text}"
            f" {rss_text}"
        )
        table.append(
            {
                "key": op.key,
                "label": op.label,
                "median_s": median,
                "min_s": min(times),
                "max_s": max(times),
                "mib_per_s": rate,
                "peak_rss_mib": rss / MIB,
                "daemon_peak_rss_mib": daemon / MIB if daemon is not None else None,
                "samples_s": times,
            }
        )
    lines += ["", "ratios and targets (time ratios are of medians; PASS when ≤ the target):"]
    checks: list[dict[str, Any]] = []
    passed = missed = 0
    for check in CHECKS:
        value = check_value(results, check)
        if value is None:
            continue
        target = targets.get(check.key)
        verdict = "" if target is None else ("PASS" if value <= target else "MISS")
        passed += verdict == "PASS"
        missed += verdict == "MISS"
        target_text = f"(target ≤ {target:g})" if target is not None else "(no target)"
        label = check.label or OP_BY_KEY[check.numerator].label
        digits = {"ratio": 2, "seconds": 3, "rss": 1}[check.kind]
        lines.append(
            f"  {label:56} {check.name:>21} = {value:7.{digits}f}  {target_text:15} {verdict:4}"
            f"  [{check.key}]"
        )
        checks.append(
            {
                "key": check.key,
                "label": label,
                "name": check.name,
                "value": value,
                "target": target,
                "verdict": verdict or None,
            }
        )
    lines.append(f"\n{passed} PASS, {missed} MISS")
    if bench.ctr_leftovers:
        lines.append(
            f"note: `ctr image rm --sync` left {bench.ctr_leftovers} blobs behind in all;"
            " they were removed with `ctr content rm` before the next run"
        )
    log("\n".join(lines))
    return {"operations": table, "checks": checks, "passed": passed, "missed": missed}


def machine_info(bench: Bench) -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split()
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / (1 << 20), 1),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cargohold": version(bench.ch("--version"), bench.env),
        "cargohold_source_digest": None if bench.custom else bench.source_digest,
    }
    for name, argv in (
        ("containerd", ["containerd", "--version"]),
        ("skopeo", ["skopeo", "--version"]),
    ):
        info[name] = version(argv) if shutil.which(argv[0]) else None
    return info


# --- command line ----------------------------------------------------------------------------


def parse_targets(values: list[str]) -> dict[str, float | None]:
    targets = dict(TARGETS)
    known = {check.key for check in CHECKS}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise SystemExit(
                f"--target {item!r}: expected KEY=VALUE with KEY one of {sorted(known)}"
            )
        targets[key] = None if value.lower() in ("", "none") else float(value)
    return targets


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark cargohold import/export against ctr, skopeo and a Python floor."
        " See bench/README.md."
    )
    add = parser.add_argument
    add(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"image, caches, stores and results (about 6 GB; default {DEFAULT_WORKDIR})",
    )
    add("--repeat", type=int, default=5, help="counted rounds, reported as their median (5)")
    add("--warmup", type=int, default=1, help="rounds run first and not counted (1)")
    add(
        "--size-mb",
        type=int,
        default=build_image.DEFAULT_SIZE_MB,
        help=f"uncompressed size of the image to build, MiB ({build_image.DEFAULT_SIZE_MB})",
    )
    add(
        "--packages",
        default=",".join(build_image.DEFAULT_PACKAGES),
        help="wheels of the second layer, comma-separated, taken in order (default: "
        + ",".join(build_image.DEFAULT_PACKAGES)
        + ")",
    )
    add(
        "--skip-build",
        action="store_true",
        help="reuse the archives of the last build in WORKDIR, unvalidated",
    )
    add(
        "--only",
        default="",
        metavar="GROUP,...",
        help="run only these groups of operations: " + ", ".join(GROUPS),
    )
    add(
        "--cargohold",
        default="",
        metavar="COMMAND",
        help="the cargohold command to time (default: python3 -m cargohold from this"
        " checkout's src/)",
    )
    add(
        "--target",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a target (the keys are shown in brackets in the report; VALUE none"
        " removes it); repeatable",
    )
    add(
        "--profile",
        action="store_true",
        help="finally, run cold imports under cProfile and print the top 15 functions",
    )
    add(
        "--phases",
        action="store_true",
        help="finally, run --repeat cold imports of each archive under phases.py and report"
        " where their time goes: start-up, moving the data (beside cp+sync), commit, exit",
    )
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(GROUPS)
    args.groups = tuple(g for g in GROUPS if g in only)
    unknown = only - set(GROUPS)
    if unknown:
        parser.error(f"--only: unknown groups {sorted(unknown)}")
    if args.repeat < 1 or args.warmup < 0:
        parser.error("--repeat must be at least 1 and --warmup at least 0")
    args.workdir = args.workdir.resolve()
    args.targets = parse_targets(args.target)
    return args


def _terminate(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _stopwatch() -> Iterator[Callable[[], float]]:
    started = time.monotonic()
    yield lambda: time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    use_bench_venv()
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # so that the daemon is stopped on the way out
    args.workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with _stopwatch() as elapsed:
        try:
            if args.skip_build:
                image = BuiltImage.load(args.workdir / "image.json")
                log(build_image.describe(image))
            else:
                packages = tuple(p for p in args.packages.split(",") if p)
                image = build_image.build(args.workdir, args.size_mb, packages, log)
                log(build_image.describe(image))
            bench = Bench(args, image)
            if not args.skip_build:
                bench.validate()
            build_seconds = elapsed()
            bench.run(args.repeat, args.warmup)
            profiles = bench.profile() if args.profile else {}
            phase_report = bench.phases(args.repeat) if args.phases else {}
        except FileNotFoundError as exc:
            print(f"run.py: error: {exc} (build first, without --skip-build)", file=sys.stderr)
            return 1
        except (BenchError, BuildError, CommandError) as exc:
            print(f"run.py: error: {exc}", file=sys.stderr)
            return 1
        summary = report(bench, args.targets, args.repeat, args.warmup)
        total = elapsed()
    log(f"\nwall time: {total:.0f} s ({build_seconds:.0f} s building and validating)")
    log(f"load average (1, 5, 15 min) at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds": total,
        "build_seconds": build_seconds,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "groups": list(args.groups),
        "machine": machine_info(bench),
        # other work on the machine disturbs the timings: the 1, 5 and 15 minute load averages
        "load_average": {"start": load_before, "end": os.getloadavg()},
        "image": asdict(image),
        "export_size": bench.export_size,
        "ctr_export_size": bench.ctr_export_size,
        "ctr_leftover_blobs": bench.ctr_leftovers,
        "targets": args.targets,
        **summary,
        "samples": {k: [asdict(s) for s in v] for k, v in bench.results.samples.items()},
        "profiles": profiles,
        "phases": phase_report,
    }
    text = json.dumps(results, indent=2) + "\n"
    out = args.workdir / time.strftime("results-%Y%m%d-%H%M%S.json", time.gmtime())
    out.write_text(text)
    (args.workdir / "results.json").write_text(text)  # the latest run's
    log(f"results: {out} (and results.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
