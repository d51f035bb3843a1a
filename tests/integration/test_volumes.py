"""Archives in volumes: ``image export --split-size``, and the import of the volumes, each one
checked, with a bad or missing volume named in one line and the import resumed once it is
replaced (also after a kill -9)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cargohold.archive.volumefile import VolumeFile
from cargohold.archive.volumes import find_volumes
from cargohold.errors import VolumeError
from cargohold.operations.store import Store
from cargohold.storage.ingest import ALONGSIDE_MIN
from cargohold.storage.volumes import VolumeList
from clisupport import assert_one_error_line, clean_environment, run
from imagefactory import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    ArchiveBuilder,
    digest_of,
    dumps,
    layer_tar,
)
from snapshots import HOST, snapshot

NAME = "example.com/volumes/app:1"
#: Layers of these sizes (random bytes: incompressible), so members cross volume boundaries,
#: some within a volume, one over several; tiny ones go to the staging pack.
LAYER_SIZES = (300_000, 1_600_000, 20_000, 2_600_000, 900_000, 40_000, 1_200_000)
VOLUME = 1 << 20
CRASHPOINTS = Path(__file__).parents[1] / "properties" / "crashpoints.py"


@dataclass(frozen=True)
class Exported:
    """One image exported whole and in volumes, from a store that holds it."""

    root: Path
    whole: Path
    split: Path  # the base name: split.001, … and split.sha256 beside it
    count: int
    manifest: str

    def volume(self, number: int) -> Path:
        return self.split.with_name(f"{self.split.name}.{number:03d}")

    @property
    def checksums(self) -> Path:
        return self.split.with_name(f"{self.split.name}.sha256")

    def copy_to(self, directory: Path) -> Exported:
        """The volumes and their list copied into *directory* (to damage them there)."""
        directory.mkdir()
        for path in [*(self.volume(n) for n in range(1, self.count + 1)), self.checksums]:
            shutil.copy(path, directory / path.name)
        return Exported(
            self.root, self.whole, directory / self.split.name, self.count, self.manifest
        )


def build_image(path: Path, sizes: tuple[int, ...] = LAYER_SIZES) -> str:
    """An archive of one image with layers of *sizes* random bytes; its manifest's digest."""
    builder, rng = ArchiveBuilder(), random.Random(15)
    layers, diff_ids = [], []
    for i, size in enumerate(sizes):
        raw = layer_tar({f"file{i}": rng.randbytes(size)})
        diff_ids.append(digest_of(raw))
        layers.append(builder.blob(raw, OCI_LAYER))
    os_name, arch = HOST.split("/")[:2]
    config = {
        "architecture": arch,
        "os": os_name,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    manifest = builder.blob(
        dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": builder.blob(dumps(config), OCI_CONFIG),
                "layers": layers,
            }
        ),
        OCI_MANIFEST,
    )
    builder.add(manifest, name=NAME)
    builder.write(path)
    return str(manifest["digest"])


def ok(proc: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


def import_json(root: Path, source: Path | str, *options: str) -> dict[str, Any]:
    proc = ok(run(root, "image", "import", "--format", "json", *options, str(source)))
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def stored(root: Path) -> dict[str, str]:
    with Store(root) as store:
        return {i.record.name: str(i.record.digest) for i in store.list_images()}


def content(root: Path) -> tuple[object, ...]:
    """What a refused import must not change: names, targets and committed blobs."""
    with Store(root) as store:
        shot = snapshot(store)
    return shot.images, shot.targets, shot.blobs


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    base = tmp_path_factory.mktemp("volumes")
    root = base / "source"
    manifest = build_image(base / "image.tar")
    ok(run(root, "image", "import", str(base / "image.tar")))
    whole = base / "whole" / "app.tar"
    whole.parent.mkdir()
    ok(run(root, "image", "export", str(whole), NAME))
    split = base / "split" / "app.tar"
    split.parent.mkdir()
    proc = ok(
        run(
            root,
            "image",
            "export",
            "--split-size",
            "1MiB",
            "--output-format",
            "json",
            str(split),
            NAME,
        )
    )
    count = json.loads(proc.stdout)["volumes"]
    return Exported(root, whole, split, count, manifest)


# -- export ---------------------------------------------------------------------------------


def test_volumes_are_slices_of_the_archive_and_sha256sum_checks_them(exported: Exported) -> None:
    whole = exported.whole.read_bytes()
    assert exported.count == -(-len(whole) // VOLUME) > 3
    names = sorted(p.name for p in exported.split.parent.iterdir())
    assert names == [f"app.tar.{n:03d}" for n in range(1, exported.count + 1)] + ["app.tar.sha256"]
    joined = b"".join(exported.volume(n).read_bytes() for n in range(1, exported.count + 1))
    assert joined == whole
    assert all(exported.volume(n).stat().st_size == VOLUME for n in range(1, exported.count))
    for strict in ([], ["--strict"]):
        proc = subprocess.run(
            ["sha256sum", "-c", *strict, exported.checksums.name],
            cwd=exported.split.parent,
            capture_output=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == b""
        assert proc.stdout.decode().splitlines() == [
            f"app.tar.{n:03d}: OK" for n in range(1, exported.count + 1)
        ]
    text = exported.checksums.read_text()
    assert f"# total-size {len(whole)}\n" in text
    assert f"# volumes {exported.count}\n" in text


def test_compressed_split_export_is_the_compressed_archive_cut(
    exported: Exported, tmp_path: Path
) -> None:
    whole, split = tmp_path / "whole.tar.zst", tmp_path / "split.tar.zst"
    ok(run(exported.root, "image", "export", "--compress", "zstd", str(whole), NAME))
    ok(
        run(
            exported.root,
            "image",
            "export",
            "--compress",
            "zstd",
            "--split-size",
            "1MiB",
            str(split),
            NAME,
        )
    )
    volumes = sorted(tmp_path.glob("split.tar.zst.0*"))
    assert len(volumes) > 1
    assert b"".join(v.read_bytes() for v in volumes) == whole.read_bytes()
    report = import_json(tmp_path / "store", volumes[0])
    assert report["volumes"] == len(volumes)
    assert stored(tmp_path / "store") == {NAME: exported.manifest}


def test_failed_split_export_leaves_no_volume(exported: Exported, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(exported.root, root)
    largest = max((root / "content" / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    largest.chmod(0o644)
    with largest.open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00damaged")
    out = tmp_path / "out" / "app.tar"
    out.parent.mkdir()
    (out.parent / "app.tar.009").write_bytes(b"an older export's")
    proc = run(root, "image", "export", "--verify", "--split-size", "1MiB", str(out), NAME)
    assert_one_error_line(proc)
    assert sorted(p.name for p in out.parent.iterdir()) == ["app.tar.009"]


def test_split_export_replaces_an_earlier_set(exported: Exported, tmp_path: Path) -> None:
    out = tmp_path / "app.tar"
    (tmp_path / "app.tar.2024").write_bytes(b"not a volume: no list names it")
    ok(run(exported.root, "image", "export", "--split-size", "512KiB", str(out), NAME))
    many = len(list(tmp_path.glob("app.tar.0*")))
    ok(run(exported.root, "image", "export", "--split-size", "4MiB", str(out), NAME))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert many > 4
    assert names == ["app.tar.001", "app.tar.002", "app.tar.2024", "app.tar.sha256"]


def test_split_size_needs_a_file_path(exported: Exported, tmp_path: Path) -> None:
    proc = run(exported.root, "image", "export", "--split-size", "1MiB", "-", NAME)
    assert "--split-size" in assert_one_error_line(proc)


# -- import ---------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["001", "sha256"])
def test_import_of_volumes_gives_the_archives_images(
    exported: Exported, tmp_path: Path, given: str
) -> None:
    whole = import_json(tmp_path / "whole", exported.whole)
    split = import_json(tmp_path / "split", exported.split.with_name(f"app.tar.{given}"))
    assert stored(tmp_path / "split") == stored(tmp_path / "whole") == {NAME: exported.manifest}
    assert split["images"] == whole["images"]
    assert split["volumes"] == exported.count
    assert split["bytesRead"] == whole["bytesRead"] == exported.whole.stat().st_size
    assert whole["volumes"] == 0
    with Store(tmp_path / "split") as store:
        assert store.resumable_imports() == []
        assert not any((store.root / "content" / "ingest").iterdir())


def test_joined_volumes_import_from_stdin_and_inspect(exported: Exported, tmp_path: Path) -> None:
    joined = b"".join(exported.volume(n).read_bytes() for n in range(1, exported.count + 1))
    ok(run(tmp_path / "store", "image", "import", "--base-name", "x", "-", stdin=joined))
    assert stored(tmp_path / "store") == {NAME: exported.manifest}
    inspected = ok(run(None, "archive", "inspect", "--format", "json", str(exported.volume(1))))
    assert json.loads(inspected.stdout)["images"][0]["digest"] == exported.manifest


def member_ends(archive: Path) -> list[int]:
    """Where each member of a tar ends (its data padded to a block): where the next begins."""
    with tarfile.open(archive) as tar:
        return [m.offset_data + -(-m.size // 512) * 512 for m in tar.getmembers()]


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def swap(first: Path, second: Path) -> None:
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)


#: Damage to volume 3 of the set, and the error it must give.
FAULTS: dict[str, tuple[Callable[[Exported], None], str]] = {
    "flipped": (
        lambda e: flip(e.volume(3), 4321),
        "app.tar.003: checksum mismatch: re-send this volume",
    ),
    "truncated": (
        lambda e: truncate(e.volume(3)),
        f"app.tar.003: {VOLUME - 100} bytes, the checksum list says {VOLUME}: re-send this volume",
    ),
    "missing": (lambda e: e.volume(3).unlink(), "app.tar.003: missing: re-send this volume"),
    "swapped": (
        lambda e: swap(e.volume(3), e.volume(4)),
        "app.tar.003: checksum mismatch: re-send this volume",
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_bad_volume_is_named_and_the_import_resumes_once_it_is_replaced(
    exported: Exported, tmp_path: Path, fault: str
) -> None:
    damaged = exported.copy_to(tmp_path / "damaged")
    root = tmp_path / "store"
    Store(root).close()
    before = content(root)
    damage, message = FAULTS[fault]
    damage(damaged)
    proc = run(root, "image", "import", str(damaged.volume(1)))
    assert assert_one_error_line(proc) == f"cargohold: error: {message}"
    assert content(root) == before
    listing = ok(run(root, "content", "ls")).stdout.decode()
    assert f"resumable import of {damaged.split}:" in listing

    for number in (3, 4):
        shutil.copy(exported.volume(number), damaged.volume(number))
    report = import_json(root, damaged.checksums)
    assert stored(root) == {NAME: exported.manifest}
    # the volumes before the bad one are not read again, but for the start of the member
    # that runs into it (from the first byte after the last member that ends before it)
    resumed_at = max(end for end in member_ends(exported.whole) if end <= 2 * VOLUME)
    assert report["bytesRead"] == exported.whole.stat().st_size - resumed_at
    assert report["volumes"] == exported.count - resumed_at // VOLUME
    assert "resumable" not in ok(run(root, "content", "ls")).stdout.decode()


def write_list(exported: Exported, edit: Callable[[list[str]], list[str]]) -> None:
    lines = exported.checksums.read_text().splitlines()
    exported.checksums.write_text("\n".join(edit(lines)) + "\n")


def renamed_line(lines: list[str], number: int, name: str) -> list[str]:
    index = next(i for i, line in enumerate(lines) if line.endswith(f".{number:03d}"))
    lines[index] = lines[index].split()[0] + "  " + name
    return lines


#: A checksum list that names something other than its own volumes is refused outright.
BAD_LISTS: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "parent": (lambda ls: renamed_line(ls, 2, "../app.tar.002"), "'../app.tar.002'"),
    "absolute": (lambda ls: renamed_line(ls, 2, "/etc/passwd"), "'/etc/passwd'"),
    "subfolder": (lambda ls: renamed_line(ls, 2, "sub/app.tar.002"), "'sub/app.tar.002'"),
    "order": (lambda ls: renamed_line(ls, 2, "app.tar.005"), "'app.tar.005'"),
    "count": (lambda ls: [*ls[:3], "# volumes 2", *ls[4:]], "says 2 volumes"),
    "size": (lambda ls: [ls[0], "# total-size 1", *ls[2:]], "cannot hold 1 bytes"),
}


@pytest.mark.parametrize("lie", sorted(BAD_LISTS))
def test_a_checksum_list_naming_other_files_is_refused(
    exported: Exported, tmp_path: Path, lie: str
) -> None:
    damaged = exported.copy_to(tmp_path / "set")
    edit, said = BAD_LISTS[lie]
    write_list(damaged, edit)
    root = tmp_path / "store"
    Store(root).close()
    with Store(root) as store:
        before = snapshot(store)
    line = assert_one_error_line(run(root, "image", "import", str(damaged.volume(1))))
    assert line.startswith("cargohold: error: app.tar.sha256: ") and said in line
    with Store(root) as store:
        assert snapshot(store) == before


def test_a_lying_digest_names_its_volume(exported: Exported, tmp_path: Path) -> None:
    damaged = exported.copy_to(tmp_path / "set")
    write_list(
        damaged,
        lambda ls: [
            line.replace(line[:64], "0" * 64) if line.endswith(".002") else line for line in ls
        ],
    )
    line = assert_one_error_line(run(tmp_path / "store", "image", "import", str(damaged.checksums)))
    assert line == "cargohold: error: app.tar.002: checksum mismatch: re-send this volume"


def test_an_extra_volume_is_refused(exported: Exported, tmp_path: Path) -> None:
    damaged = exported.copy_to(tmp_path / "set")
    extra = damaged.volume(exported.count + 1)
    shutil.copy(damaged.volume(1), extra)
    root = tmp_path / "store"
    Store(root).close()
    with Store(root) as store:
        before = snapshot(store)
    line = assert_one_error_line(run(root, "image", "import", str(damaged.volume(1))))
    assert line.startswith(f"cargohold: error: {extra.name}: not listed in app.tar.sha256")
    with Store(root) as store:
        assert snapshot(store) == before


def test_a_volume_without_its_list_is_refused(exported: Exported, tmp_path: Path) -> None:
    damaged = exported.copy_to(tmp_path / "set")
    damaged.checksums.unlink()
    line = assert_one_error_line(run(tmp_path / "store", "image", "import", str(damaged.volume(1))))
    assert "app.tar.sha256 not found" in line


# -- resume and gc --------------------------------------------------------------------------


def test_gc_keeps_a_resumable_import_until_its_age_or_asked(
    exported: Exported, tmp_path: Path
) -> None:
    damaged = exported.copy_to(tmp_path / "set")
    flip(damaged.volume(4), 10)
    root = tmp_path / "store"
    assert_one_error_line(run(root, "image", "import", str(damaged.volume(1))))
    dry = json.loads(ok(run(root, "content", "gc", "--dry-run", "--format", "json")).stdout)
    assert [i["archive"] for i in dry["resumableKept"]] == [str(damaged.split)]
    assert dry["resumableKept"][0]["stagedBytes"] > 2 * VOLUME
    ok(run(root, "content", "gc"))
    text = ok(run(root, "content", "gc", "--dry-run", "--resumable-max-age", "0")).stdout.decode()
    assert f"resumable import of {damaged.split}:" in text and "would be removed" in text
    with Store(root) as store:
        assert len(store.resumable_imports()) == 1
    gone = json.loads(ok(run(root, "content", "gc", "--resumable", "--format", "json")).stdout)
    assert [i["archive"] for i in gone["resumableRemoved"]] == [str(damaged.split)]
    with Store(root) as store:
        assert store.resumable_imports() == [] and store.meta.lease_ids() == []
        assert not any((root / "content" / "ingest").iterdir())
    shutil.copy(exported.volume(4), damaged.volume(4))
    assert import_json(root, damaged.checksums)["volumes"] == exported.count  # from the start


def test_compressed_resume_reads_everything_but_writes_only_what_is_missing(
    exported: Exported, tmp_path: Path
) -> None:
    split = tmp_path / "set" / "app.tar.gz"
    split.parent.mkdir()
    ok(
        run(
            exported.root,
            "image",
            "export",
            "--compress",
            "gzip",
            "--split-size",
            "1MiB",
            str(split),
            NAME,
        )
    )
    volumes = sorted(split.parent.glob("app.tar.gz.0*"))
    good = volumes[-2].read_bytes()
    flip(volumes[-2], 100)
    root = tmp_path / "store"
    assert_one_error_line(run(root, "image", "import", str(volumes[0])))
    staged = {
        p.stat().st_ino: p.stat().st_size
        for p in (root / "content" / "ingest").rglob("*")
        if p.is_file() and p.stat().st_size > 64 << 10
    }
    assert staged
    volumes[-2].write_bytes(good)
    report = import_json(root, volumes[0])
    assert report["volumes"] == len(volumes)  # a compressed stream is read from its start
    committed = {p.stat().st_ino for p in (root / "content" / "blobs" / "sha256").iterdir()}
    assert set(staged) <= committed  # the staged files of the first run became the blobs
    assert stored(root) == {NAME: exported.manifest}


def test_kill_during_a_volume_then_resume(exported: Exported, tmp_path: Path) -> None:
    root, report_file = tmp_path / "store", tmp_path / "crash.json"
    args = ["--root", str(root), "image", "import", str(exported.volume(1))]

    def crashing(*options: str) -> subprocess.CompletedProcess[bytes]:
        """The import, killed at the point *options* name (see crashpoints.py)."""
        env = clean_environment()
        env["CRASHPOINTS_OUT"] = str(report_file)
        command = [sys.executable, str(CRASHPOINTS), *options, "--", *args]
        return subprocess.run(command, capture_output=True, env=env, timeout=60, check=False)

    # the points where the import records its progress: the resume state's writes
    ok(crashing("0", "--matching", "resume.json"))
    ops: list[str] = json.loads(report_file.read_text())["ops"]
    writes = [op for op in ops if op.startswith("os.replace(")]
    assert len(writes) >= 3 and ops[:3] == writes[:3]
    shutil.rmtree(root)
    killed = crashing("3", "--after", "--matching", "resume.json")
    assert killed.returncode == -9, killed.stderr
    assert stored(root) == {}
    with Store(root) as store:
        [resumable] = store.resumable_imports()
        assert resumable.archive == str(exported.split)
    report = import_json(root, exported.volume(1))
    assert stored(root) == {NAME: exported.manifest}
    assert report["volumes"] < exported.count
    assert report["bytesRead"] < exported.whole.stat().st_size - VOLUME
    ok(run(root, "image", "check", NAME))
    with Store(root) as store:
        assert store.resumable_imports() == [] and store.meta.lease_ids() == []


def test_one_import_of_an_archive_at_a_time(exported: Exported, tmp_path: Path) -> None:
    from cargohold.archive.volumes import find_volumes
    from cargohold.operations.resuming import LEASE_PREFIX

    found = find_volumes(exported.checksums)
    assert found is not None
    root = tmp_path / "store"
    with Store(root) as store:
        fd = store.leases.take(LEASE_PREFIX + found.list_digest[:32])
        assert fd is not None
        try:
            line = assert_one_error_line(run(root, "image", "import", str(exported.volume(1))))
        finally:
            os.close(fd)
    assert line == "cargohold: error: app.tar.sha256: another import of this archive is running"
    assert import_json(root, exported.volume(1))["volumes"] == exported.count


def test_numbered_files_that_are_not_volumes(exported: Exported, tmp_path: Path) -> None:
    for year in ("2023", "2024"):
        shutil.copy(exported.whole, tmp_path / f"app.tar.{year}")
    report = import_json(tmp_path / "store", tmp_path / "app.tar.2024")
    assert report["volumes"] == 0 and stored(tmp_path / "store") == {NAME: exported.manifest}


def test_the_last_volume_is_checked_before_anything_is_committed(
    exported: Exported, tmp_path: Path
) -> None:
    # 3 MiB of zeros after the tar's end (a writer's padding, which a reader accepts): the
    # members are all read long before the last volume's end, which is what is damaged
    data = exported.whole.read_bytes() + bytes(3 << 20)
    directory = tmp_path / "set"
    directory.mkdir()
    count = -(-len(data) // VOLUME)
    digests = []
    for number in range(1, count + 1):
        part = data[(number - 1) * VOLUME : number * VOLUME]
        digests.append(hashlib.sha256(part).hexdigest())
        (directory / f"app.tar.{number:03d}").write_bytes(part)
    listed = VolumeList("app.tar", len(data), VOLUME, tuple(digests))
    (directory / "app.tar.sha256").write_bytes(listed.render())
    last = directory / f"app.tar.{count:03d}"
    flip(last, last.stat().st_size - 1)
    root = tmp_path / "store"
    Store(root).close()
    before = content(root)
    line = assert_one_error_line(run(root, "image", "import", str(directory / "app.tar.001")))
    assert line == f"cargohold: error: {last.name}: checksum mismatch: re-send this volume"
    assert content(root) == before
    flip(last, last.stat().st_size - 1)
    assert import_json(root, directory / "app.tar.sha256")["volumes"] < count


def test_an_export_removes_what_killed_exports_to_the_same_name_left(
    exported: Exported, tmp_path: Path
) -> None:
    dead = tmp_path / ".app.tar.volumes-0123456789abcdef.tmp"
    live = tmp_path / ".app.tar.volumes-fedcba9876543210.tmp"
    other = tmp_path / ".other.tar.volumes-0123456789abcdef.tmp"
    for directory in (dead, live, other):
        directory.mkdir()
        (directory / "1").write_bytes(b"part of a volume")
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running export holds its own
        ok(
            run(
                exported.root,
                "image",
                "export",
                "--split-size",
                "4MiB",
                str(tmp_path / "app.tar"),
                NAME,
            )
        )
    finally:
        os.close(fd)
    assert not dead.exists() and live.exists() and other.exists()


def test_swapped_compressed_volumes_are_named_not_the_stream_they_break(
    exported: Exported, tmp_path: Path
) -> None:
    """Two volumes of a gzip set swapped: the decompressor fails inside the first of them,
    before its checksum is compared; the volume is what the user must re-send, so it is the
    one named (the decompressor's complaint would send them looking at the wrong thing)."""
    split = tmp_path / "set" / "app.tar.gz"
    split.parent.mkdir()
    ok(run(exported.root, "image", "export", "--compress", "gzip", "--split-size", "1MiB",
           str(split), NAME))  # fmt: skip
    volumes = sorted(split.parent.glob("app.tar.gz.0*"))
    assert len(volumes) >= 3
    swap(volumes[1], volumes[2])
    proc = run(tmp_path / "store", "image", "import", str(volumes[0]))
    assert assert_one_error_line(proc) == (
        "cargohold: error: app.tar.gz.002: checksum mismatch: re-send this volume"
    )


def test_a_volume_read_before_its_check_is_blamed_when_the_import_fails(
    exported: Exported, tmp_path: Path
) -> None:
    """Read at random, member bytes may come from a volume whose check (on its own thread) has
    not finished: when what was read fails, the checks of the volumes read are waited for,
    and a bad one is the cause reported."""
    damaged = exported.copy_to(tmp_path / "damaged")
    swap(damaged.volume(3), damaged.volume(4))
    volumes = find_volumes(damaged.volume(1))
    assert volumes is not None
    with VolumeFile(volumes) as archive:
        archive.seek(2 * VOLUME + 10)
        assert len(archive.read(100)) == 100  # from volume 3, checked or not yet
        with pytest.raises(VolumeError, match=r"^app\.tar\.003: checksum mismatch"):
            archive.blame()
    sound = exported.copy_to(tmp_path / "sound")
    volumes = find_volumes(sound.volume(1))
    assert volumes is not None
    with VolumeFile(volumes) as archive:
        archive.seek(2 * VOLUME + 10)
        archive.read(100)
        archive.blame()  # nothing to blame: the failure would stand


def test_a_large_blob_in_a_bad_volume_leaves_the_volumes_before_it_resumable(
    tmp_path: Path,
) -> None:
    # Regression: a layer large enough to be staged alongside the next members (on another
    # core) and broken by a bad volume left a failed staging behind, the record of what the
    # verified volumes held could then not be made, and the resumed import read every volume
    # again. A resumed import stages one blob at a time. Layer 0 (7 MiB) ends in volume 1,
    # layer 1 (8 MiB and more) runs into volume 2, which is damaged.
    root, whole, split = tmp_path / "source", tmp_path / "whole.tar", tmp_path / "split" / "a.tar"
    # (an export orders blobs by digest: these sizes put layer 0 first)
    build_image(tmp_path / "image.tar", ((7 << 20) + 4 * 4096, ALONGSIDE_MIN + 100_000))
    ok(run(root, "image", "import", str(tmp_path / "image.tar")))
    ok(run(root, "image", "export", str(whole), NAME))
    split.parent.mkdir()
    proc = ok(
        run(root, "image", "export", "--split-size", "8MiB", "--output-format", "json",
            str(split), NAME)
    )  # fmt: skip
    exported = Exported(root, whole, split, json.loads(proc.stdout)["volumes"], "")
    damaged = exported.copy_to(tmp_path / "damaged")
    flip(damaged.volume(2), 1000)
    target = tmp_path / "store"
    assert run(target, "image", "import", str(damaged.volume(1))).returncode == 1

    shutil.copy(exported.volume(2), damaged.volume(2))
    report = import_json(target, damaged.checksums)

    resumed_at = max(end for end in member_ends(whole) if end <= 8 << 20)
    assert resumed_at > 7 << 20  # after layer 0
    assert report["bytesRead"] == whole.stat().st_size - resumed_at
    with Store(target) as store:
        assert [check.status for check in store.check(verify=True)] == ["complete"]
