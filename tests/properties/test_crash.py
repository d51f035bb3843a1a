"""Crash safety: kill -9 at many instants of import, export, tag, rm and gc; run out of disk.

Each operation is first run to its end through ``tests/properties/crashpoints.py`` with N = 0, which
counts the I/O operations (file system calls and SQLite statements) it performs. Then, for many
instants N across that range, a fresh copy of the same store runs the same command killed with
SIGKILL just before (or just after) the N-th operation, and the store must be sound: every
visible image complete, every name as before the command or as the command leaves it (one
transaction: all or nothing), no partial export at the output path, the leftovers reclaimed by
the next gc, and the same command run again must succeed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cargohold.cli import main as cli
from cargohold.oci.digests import Digest
from cargohold.oci.graph import walk
from cargohold.oci.mediatypes import Descriptor
from cargohold.oci.platforms import Platform, PlatformMatcher
from cargohold.operations.store import Store
from clisupport import assert_one_error_line, run
from imagefactory import ArchiveBuilder, write_tar

CRASHPOINTS = Path(__file__).with_name("crashpoints.py")
HOST = str(Platform.host())
#: Incompressible, so that the gzipped layer stays over 1 MiB and takes several writes.
BIG_FILE = random.Random(20240101).randbytes(3 << 20)
ONE = "docker.io/library/crash-one:v1"
TWO = "docker.io/library/crash-two:v1"
SEED = "docker.io/library/crash-seed:v1"
TAGS = ("docker.io/library/crash-one:v2", "docker.io/library/crash-alias:latest")
#: Instants tried in every test of this module, by operation (printed at the end).
TRIED: dict[str, int] = {}
#: Crash points whose N-th call was another thread's than in the counting run.
REORDERED: dict[str, int] = {}
#: Export temp files a SIGKILL left beside the output path (outside the store: no gc sees them).
EXPORT_TEMP_LEFT: list[str] = []


# -- the images and stores ------------------------------------------------------------------


def crash_archive(path: Path, smallest_first: bool = False) -> Path:
    """Two images sharing a 3 MiB layer; the second shares a small layer with SEED."""
    builder = ArchiveBuilder()
    one = builder.image(HOST, files={"big": BIG_FILE}, created="2024-01-01T00:00:00Z")
    two = builder.image(HOST, files={"big": BIG_FILE}, created="2024-02-01T00:00:00Z", layers=2)
    builder.add(one, name=ONE)
    builder.add(two, name=TWO)
    if not smallest_first:
        return builder.write(path)
    members = builder.members()
    return write_tar(path, members[:2] + sorted(members[2:], key=lambda m: len(m[1])))


def seed_archive(path: Path) -> Path:
    builder = ArchiveBuilder()
    builder.add(builder.image(HOST, files={"seed": b"seed"}, layers=2), name=SEED)
    return builder.write(path)


@dataclass(frozen=True)
class World:
    archive: Path
    #: Template stores, copied for every run: SEED only; SEED, ONE and TWO; and the latter
    #: after ``image rm --no-gc ONE TWO`` (content left for a gc to collect).
    seeded: Path
    full: Path
    collectable: Path
    #: An uninterrupted export of ONE and TWO.
    export_ref: bytes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("world")
    archive = crash_archive(base / "crash.tar")
    seeded = base / "seeded"
    with Store(seeded) as store:
        store.import_archive(seed_archive(base / "seed.tar"))
    full = base / "full"
    shutil.copytree(seeded, full)
    with Store(full) as store:
        result = store.import_archive(archive)
        assert [i.name for i in result.images] == [ONE, TWO]
        assert result.bytes_deduplicated > 0  # TWO's small layer is SEED's
        store.export(base / "ref.tar", [ONE, TWO])
    collectable = base / "collectable"
    shutil.copytree(full, collectable)
    with Store(collectable) as store:
        store.remove([ONE, TWO], collect_garbage=False)
    return World(archive, seeded, full, collectable, (base / "ref.tar").read_bytes())


def names_of(root: Path) -> dict[str, str]:
    with Store(root) as store:
        return {r.name: str(r.digest) for r in store.meta.list_images(store.namespace)}


def assert_complete(root: Path) -> None:
    """What ``image check --verify`` says, in-process: every visible image whole and intact."""
    with Store(root) as store:
        bad = [
            f"{r.record.name}: {r.summary()} missing={r.missing} corrupt={r.corrupt}"
            for r in store.check(verify=True)
            if not r.ok
        ]
    assert not bad, f"image check fails: {bad}"


def assert_collected(root: Path) -> None:
    """After a gc: no ingest leftovers, no leases, no lock files, no blob no image needs."""
    with Store(root) as store:
        store.gc()
        ingest = store.blobs.ingest_dir
        left = sorted(p.name for p in ingest.iterdir()) if ingest.exists() else []
        assert not left, f"content/ingest not empty after gc: {left}"
        assert store.meta.lease_ids() == [], "lease rows left after gc"
        locks = sorted(p.name for p in store.leases.directory.glob("*"))
        assert not locks, f"files left under leases/ after gc: {locks}"
        needed: set[Digest] = set()
        for _, record in store.meta.all_images():
            target = Descriptor(record.media_type, record.digest, record.size, record.annotations)
            graph = walk(store.blobs, target, PlatformMatcher.all(), record.name, missing_ok=True)
            needed.update(graph.blobs)
        stored = set(store.blobs.iter_digests())
        extra, missing = sorted(map(str, stored - needed)), sorted(map(str, needed - stored))
        assert not extra and not missing, f"after gc: unneeded blobs {extra}, missing {missing}"


# -- running the command --------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The environment ``clisupport.run`` gives the CLI (no CARGOHOLD_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
    env.update(extra)
    return env


def crash_run(
    root: Path, args: list[str], instant: int, after: bool, stdin: bytes | None, report: Path
) -> tuple[subprocess.CompletedProcess[bytes], dict[str, Any]]:
    """Run the CLI killed at *instant* (0: counted, never killed); what crashpoints.py said."""
    report.unlink(missing_ok=True)
    command = [sys.executable, str(CRASHPOINTS), str(instant)]
    if after:
        command.append("--after")
    proc = subprocess.run(
        [*command, "--", "--root", str(root), *args],
        input=stdin,
        capture_output=True,
        env=clean_env(CRASHPOINTS_OUT=str(report)),
        timeout=60,
        check=False,
    )
    info = json.loads(report.read_text()) if report.exists() else {}
    return proc, info


def rerun(root: Path, args: list[str], stdin: bytes | None) -> tuple[int, BaseException | None]:
    """The same command again, in-process (the real CLI for a few instants: see below)."""
    result = CliRunner().invoke(
        cli.cli,
        ["--root", str(root), *args],
        input=stdin,
        env={k: None for k in os.environ if k.startswith("CARGOHOLD_")},
    )
    return result.exit_code, result.exception


def pick(total: int, budget: int, edge: int = 4) -> list[int]:
    """All of 1..total when that fits in *budget*, else the first and last *edge* and an even
    spread between them."""
    if total <= budget:
        return list(range(1, total + 1))
    chosen = set(range(1, edge + 1)) | set(range(total - edge + 1, total + 1))
    middle, low, high = budget - 2 * edge, edge + 1, total - edge
    for i in range(middle):
        chosen.add(low + round(i * (high - low) / max(middle - 1, 1)))
    return sorted(chosen)


#: Operations after which "killed right after" says more than "killed before the next one".
COMMIT_POINTS = ("sql(COMMIT", "os.rename", "os.replace", "os.unlink", "shutil.rmtree")


def pick_after(ops: list[str], budget: int) -> list[int]:
    """Instants to kill right after: commit points, spread evenly, and always the last one."""
    points = [i + 1 for i, op in enumerate(ops) if op.startswith(COMMIT_POINTS)]
    if len(points) > budget:
        step = len(points) / budget
        points = [points[int(i * step)] for i in range(budget)]
    return sorted({*points, len(ops)})


# -- the operations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    id: str
    template: str
    command: Callable[[World, Path], list[str]]
    budget: int
    after_budget: int
    stdin: bool = False
    #: Where the command writes an archive (export), relative to the run's directory.
    output: str | None = None


OPERATIONS = [
    Operation("import-file", "seeded", lambda w, d: ["image", "import", str(w.archive)], 60, 12),
    Operation("import-stdin", "seeded", lambda w, d: ["image", "import", "-"], 30, 6, stdin=True),
    Operation(
        "export",
        "full",
        lambda w, d: ["image", "export", str(d / "out.tar"), ONE, TWO],
        30,
        6,
        output="out.tar",
    ),
    Operation("tag", "full", lambda w, d: ["image", "tag", ONE, *TAGS], 30, 6),
    Operation("rm", "full", lambda w, d: ["image", "rm", ONE, TWO], 30, 6),
    Operation("gc", "collectable", lambda w, d: ["content", "gc"], 30, 6),
]


@dataclass
class Case:
    """One run of the operation killed at one instant."""

    instant: int
    after: bool
    label: str
    problems: list[str] = field(default_factory=list)


def prepare(world: World, op: Operation, directory: Path) -> tuple[Path, list[str]]:
    directory.mkdir()
    root = directory / "root"
    shutil.copytree(getattr(world, op.template), root)
    return root, op.command(world, directory)


def check_output(world: World, op: Operation, directory: Path, must_exist: bool) -> None:
    if op.output is None:
        return
    out = directory / op.output
    if must_exist or out.exists():
        assert out.exists(), f"{op.output} missing after a successful export"
        assert out.read_bytes() == world.export_ref, f"{op.output} is not the complete archive"


def verify_case(
    world: World,
    op: Operation,
    directory: Path,
    root: Path,
    args: list[str],
    proc: subprocess.CompletedProcess[bytes],
    stdin: bytes | None,
    before: dict[str, str],
    after: dict[str, str],
    past_end: bool,
    real_cli: bool,
) -> None:
    stderr = proc.stderr.decode(errors="replace")
    if past_end:
        assert proc.returncode == 0, f"uninterrupted run failed: {stderr}"
    else:
        assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}, not SIGKILL: {stderr}"

    # Right after the crash: complete images only, names all old or all new, no partial export.
    assert_complete(root)
    if real_cli:
        checked = run(root, "image", "check")
        assert checked.returncode == 0, f"image check: {checked.stdout!r} {checked.stderr!r}"
    names = names_of(root)
    assert names in (before, after), f"names neither before nor after: {names}"
    check_output(world, op, directory, must_exist=past_end)
    if op.output is not None:
        EXPORT_TEMP_LEFT.extend(
            p.name for p in directory.glob(f".{op.output}.*.tmp") if not past_end
        )

    # The same command again succeeds (rm of names already removed says so, as it would
    # twice in a row without any crash).
    if real_cli:
        again = run(root, *args, stdin=stdin)
        code, message = again.returncode, again.stderr.decode(errors="replace")
    else:
        code, exc = rerun(root, args, stdin)
        message = repr(exc)
    if op.id == "rm" and names == after:
        assert code == 1, f"rm again: exit {code}"
        assert "not found" in message, message
    else:
        assert code == 0, f"the command run again failed: exit {code}, {message}"
    assert names_of(root) == after, "the command run again did not leave the expected names"
    assert_complete(root)
    check_output(world, op, directory, must_exist=True)
    if op.output is not None:
        # the export run again removes what a killed export left beside its output
        assert not list(directory.glob(f".{op.output}.*.tmp")), "dead export temp file kept"

    # What the crash left is reclaimed by the next gc.
    assert_collected(root)
    assert_complete(root)


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.id)
def test_kill_at_every_instant(world: World, op: Operation, tmp_path: Path) -> None:
    stdin = world.archive.read_bytes() if op.stdin else None
    report = tmp_path / "crashpoint.json"

    # The uninterrupted run: how many instants, and the names the command leaves.
    count_dir = tmp_path / "count"
    root, args = prepare(world, op, count_dir)
    before = names_of(root)
    proc, info = crash_run(root, args, 0, False, stdin, report)
    assert proc.returncode == 0, proc.stderr.decode()
    total, ops = info["count"], info["ops"]
    after = names_of(root)
    assert_complete(root)
    check_output(world, op, count_dir, must_exist=True)
    if op.id.startswith("import"):
        assert after == {**before, ONE: after[ONE], TWO: after[TWO]}
    elif op.id == "tag":
        assert after == {**before, **dict.fromkeys(TAGS, before[ONE])}
    elif op.id == "rm":
        assert after == {SEED: before[SEED]}
    else:
        assert after == before

    cases = [Case(n, False, ops[n - 1]) for n in pick(total, op.budget)]
    cases += [Case(n, True, ops[n - 1]) for n in pick_after(ops, op.after_budget)]
    cases.append(Case(total + 1, False, "past the end"))
    real_cli = {id(cases[0]), id(cases[len(cases) // 2]), id(cases[-2])}
    for index, case in enumerate(cases):
        directory = tmp_path / f"case{index}"
        root, args = prepare(world, op, directory)
        proc, info = crash_run(root, args, case.instant, case.after, stdin, report)
        past_end = case.instant > total
        if not past_end and info.get("op", "").split("(")[0] != case.label.split("(")[0]:
            # Writes and fsyncs of staged blobs run on background threads, so calls of
            # different threads may come in another order than in the counting run; the
            # process still died at its N-th I/O call, which is what this test needs.
            REORDERED[op.id] = REORDERED.get(op.id, 0) + 1
        try:
            verify_case(
                world,
                op,
                directory,
                root,
                args,
                proc,
                stdin,
                before,
                after,
                past_end,
                id(case) in real_cli,
            )
        except AssertionError as exc:
            case.problems.append(str(exc).splitlines()[0])
        shutil.rmtree(directory)

    TRIED[op.id] = len(cases)
    print(f"{op.id}: {len(cases)} crash points tried of {total} instants")
    failures = [
        f"{op.id}: killed {'after' if c.after else 'before'} instant {c.instant}/{total}"
        f" [{c.label}]: {'; '.join(c.problems)}"
        for c in cases
        if c.problems
    ]
    assert not failures, f"{len(failures)} of {len(cases)} crash points failed:\n" + "\n".join(
        failures
    )


# -- out of disk space ----------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    images: tuple[tuple[str, str, str], ...]
    blobs: frozenset[tuple[str, str]]
    ingest: tuple[str, ...]
    leases: tuple[str, ...]
    lock_files: tuple[str, ...]


def snapshot(root: Path) -> Snapshot:
    with Store(root) as store:
        blobs_dir = store.blobs.blobs_dir
        ingest = store.blobs.ingest_dir
        return Snapshot(
            tuple(
                (r.name, str(r.digest), r.media_type)
                for r in store.meta.list_images(store.namespace)
            ),
            frozenset(
                (p.relative_to(blobs_dir).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
                for p in blobs_dir.rglob("*")
                if p.is_file()
            ),
            tuple(sorted(p.name for p in ingest.rglob("*")) if ingest.exists() else ()),
            tuple(store.meta.lease_ids()),
            tuple(sorted(p.name for p in store.leases.directory.glob("*"))),
        )


def run_limited(
    root: Path, limit: int, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The CLI with no file allowed to grow past *limit* bytes (writes fail with EFBIG)."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "cargohold", "--root", str(root), *args],
        input=stdin,
        capture_output=True,
        env=clean_env(),
        preexec_fn=limit_files,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def ordered_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The crash archive with its small blobs first: some are staged before the big one fails."""
    return crash_archive(tmp_path_factory.mktemp("ordered") / "ordered.tar", smallest_first=True)


def big_layer_size(world: World) -> int:
    with Store(world.full) as store:
        return max(store.blobs.blob_size(d) or 0 for d in store.blobs.iter_digests())


@pytest.fixture(params=["1KiB", "64KiB", "2MiB", "big-1"])
def limit(request: pytest.FixtureRequest, world: World) -> int:
    text: str = request.param
    if text == "big-1":
        return big_layer_size(world) - 1
    return int(text.removesuffix("KiB").removesuffix("MiB")) << (10 if "K" in text else 20)


@pytest.mark.parametrize("from_stdin", [False, True], ids=["file", "stdin"])
def test_import_out_of_disk(
    world: World, ordered_archive: Path, tmp_path: Path, limit: int, from_stdin: bool
) -> None:
    """A clean error and the store unchanged, whichever write runs out of room first.

    RLIMIT_FSIZE caps every file: at 1 KiB SQLite cannot even map its shared-memory file; at
    64 KiB the small blobs are staged but the big layer fails and SQLite's write-ahead log is
    at the limit too (as on a full disk); at 2 MiB and just under the big layer's size only
    the staging of the big layer fails.
    """
    root = tmp_path / "root"
    shutil.copytree(world.seeded, root)
    before = snapshot(root)
    source = "-" if from_stdin else str(ordered_archive)
    stdin = ordered_archive.read_bytes() if from_stdin else None
    proc = run_limited(root, limit, "image", "import", source, stdin=stdin)
    line = assert_one_error_line(proc)
    print(f"limit {limit}: {line}")
    assert snapshot(root) == before, f"the failed import changed the store ({line})"
    # Room again: the import succeeds.
    again = run(root, "image", "import", source, stdin=stdin)
    assert again.returncode == 0, again.stderr.decode()
    assert set(names_of(root)) == {SEED, ONE, TWO}
    assert_complete(root)


@pytest.mark.parametrize("limit", [1 << 10, 1 << 20, -1], ids=["1KiB", "1MiB", "archive-1"])
def test_export_out_of_disk(world: World, tmp_path: Path, limit: int) -> None:
    root = tmp_path / "root"
    shutil.copytree(world.full, root)
    before = snapshot(root)
    out = tmp_path / "out" / "images.tar"
    out.parent.mkdir()
    limit = len(world.export_ref) - 1 if limit < 0 else limit
    proc = run_limited(root, limit, "image", "export", str(out), ONE, TWO)
    line = assert_one_error_line(proc)
    print(f"limit {limit}: {line}")
    assert not out.exists(), "a partial export sits at the output path"
    assert sorted(p.name for p in out.parent.iterdir()) == [], "temp file left beside the output"
    assert snapshot(root) == before


# -- the tally ------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def tally(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not TRIED:
        return
    capture = request.config.pluginmanager.getplugin("capturemanager")
    lines = [f"crash points tried: {sum(TRIED.values())} ({TRIED})"]
    if EXPORT_TEMP_LEFT:
        lines.append(
            f"export: {len(EXPORT_TEMP_LEFT)} killed runs left a temp file beside the output"
            " (removed by the next export to the same path)"
        )
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print("\n" + "\n".join(lines))
    else:
        print("\n".join(lines))


def test_rm_twice_fails_the_second_time(world: World, tmp_path: Path) -> None:
    """Without any crash, ``image rm`` of names already gone is an error: what a rerun after a
    crash past the removal's commit is held to."""
    root = tmp_path / "root"
    shutil.copytree(world.full, root)
    assert run(root, "image", "rm", ONE, TWO).returncode == 0
    assert "not found" in assert_one_error_line(run(root, "image", "rm", ONE, TWO))
