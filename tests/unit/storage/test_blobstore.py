"""The blob store only ever shows whole, verified, immutable blobs."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import pytest

from cargohold.archive.members import tar_members
from cargohold.errors import ContentError, InvalidArchiveError, NotFoundError
from cargohold.oci.digests import Digest
from cargohold.storage.blobs import BlobStore
from cargohold.storage.ingest import ALONGSIDE_MIN, PACK_LIMIT, RESERVE_AHEAD
from cargohold.storage.staged import HASH_ONLY

#: Larger than PACK_LIMIT: staged to a file of its own.
DATA = b"some layer bytes\n" * 5000


def digest_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "content")


def files_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def test_stage_and_commit_gives_a_read_only_blob(store: BlobStore, tmp_path: Path) -> None:
    staging = store.staging_dir("lease1")
    staged = store.stage(io.BytesIO(DATA), len(DATA), staging, digest_of(DATA))
    assert staged.digest == digest_of(DATA)
    assert staged.size == len(DATA)
    assert not store.exists(staged.digest)  # staged content is not visible yet

    assert store.commit(staged) is True

    path = tmp_path / "content" / "blobs" / "sha256" / digest_of(DATA).hex
    assert path.is_file()
    assert path.read_bytes() == DATA
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert store.exists(digest_of(DATA))
    assert store.blob_size(digest_of(DATA)) == len(DATA)
    assert files_in(staging) == []


def test_stage_without_expected_digest_computes_it(store: BlobStore) -> None:
    staged = store.stage_bytes(DATA, store.staging_dir("l"))
    assert staged.digest == digest_of(DATA)
    assert staged.path is not None
    assert staged.path.read_bytes() == DATA


def test_stage_sha512(store: BlobStore) -> None:
    expected = Digest("sha512", hashlib.sha512(DATA).hexdigest())
    staged = store.stage(io.BytesIO(DATA), len(DATA), store.staging_dir("l"), expected)
    assert store.commit(staged)
    assert (store.root / "blobs" / "sha512" / expected.hex).read_bytes() == DATA


def test_empty_blob(store: BlobStore) -> None:
    staged = store.stage(io.BytesIO(b""), 0, store.staging_dir("l"), digest_of(b""))
    assert store.commit(staged)
    assert store.blob_size(digest_of(b"")) == 0


def test_wrong_expected_digest_raises_and_leaves_nothing(store: BlobStore) -> None:
    staging = store.staging_dir("lease1")
    wrong = digest_of(b"something else")
    with pytest.raises(ContentError, match=str(wrong)):
        store.stage(io.BytesIO(DATA), len(DATA), staging, wrong, what="layer 0")
    assert files_in(staging) == []
    assert not store.exists(wrong)
    assert not store.exists(digest_of(DATA))


def test_short_source_raises_and_leaves_nothing(store: BlobStore) -> None:
    staging = store.staging_dir("lease1")
    with pytest.raises(ContentError, match="truncated"):
        store.stage(io.BytesIO(DATA[:-1]), len(DATA), staging, digest_of(DATA))
    assert files_in(staging) == []


def test_short_source_without_expected_digest_raises(store: BlobStore) -> None:
    staging = store.staging_dir("lease1")
    with pytest.raises(ContentError, match="truncated"):
        store.stage(io.BytesIO(b"abc"), 10, staging)
    assert files_in(staging) == []


def test_stage_reads_only_the_declared_size(store: BlobStore) -> None:
    source = io.BytesIO(DATA + b"trailing bytes of the next tar member")
    staged = store.stage(source, len(DATA), store.staging_dir("l"), digest_of(DATA))
    assert staged.path is not None
    assert staged.path.read_bytes() == DATA
    assert source.tell() == len(DATA)


def test_commit_of_an_existing_digest_deduplicates(store: BlobStore) -> None:
    first = store.stage_bytes(DATA, store.staging_dir("a"))
    assert store.commit(first) is True
    staging = store.staging_dir("b")
    second = store.stage_bytes(DATA, staging)
    assert second.path is not None
    assert second.path.exists()

    assert store.commit(second) is False

    assert not second.path.exists()
    assert files_in(staging) == []
    assert store.path(first.digest).read_bytes() == DATA
    assert files_in(store.root / "blobs") == [store.path(first.digest)]


def test_verify_accepts_an_intact_blob(store: BlobStore) -> None:
    staged = store.stage_bytes(DATA, store.staging_dir("l"))
    store.commit(staged)
    assert store.verify(staged.digest) is True


def test_verify_detects_a_corrupted_blob(store: BlobStore) -> None:
    staged = store.stage_bytes(DATA, store.staging_dir("l"))
    store.commit(staged)
    path = store.path(staged.digest)
    path.chmod(0o644)
    path.write_bytes(DATA[:-1] + b"X")
    assert store.verify(staged.digest) is False


def test_verify_of_a_missing_blob_is_not_found(store: BlobStore) -> None:
    with pytest.raises(NotFoundError):
        store.verify(digest_of(DATA))


def test_open_and_read_blob(store: BlobStore) -> None:
    staged = store.stage_bytes(DATA, store.staging_dir("l"))
    store.commit(staged)
    with store.open(staged.digest) as f:
        assert f.read() == DATA
    assert store.read_blob(staged.digest, len(DATA)) == DATA
    with pytest.raises(ContentError):
        store.read_blob(staged.digest, len(DATA) - 1)
    with pytest.raises(NotFoundError):
        store.open(digest_of(b"absent"))
    assert store.blob_size(digest_of(b"absent")) is None


def test_iter_digests_lists_committed_blobs_only(store: BlobStore) -> None:
    committed = [store.stage_bytes(data, store.staging_dir("l")) for data in (b"a", b"b")]
    for staged in committed:
        store.commit(staged)
    store.stage_bytes(b"staged only", store.staging_dir("l"))
    (store.root / "blobs" / "sha256" / "not-a-digest").write_bytes(b"junk")
    assert sorted(store.iter_digests()) == sorted(s.digest for s in committed)


def test_delete_and_staging_removal(store: BlobStore) -> None:
    staged = store.stage_bytes(DATA, store.staging_dir("keep"))
    store.commit(staged)
    store.delete(staged.digest)
    assert not store.exists(staged.digest)
    store.delete(staged.digest)  # deleting twice is harmless

    store.stage_bytes(DATA, store.staging_dir("gone"))
    assert sorted(store.staging_names()) == ["gone", "keep"]
    store.remove_staging("gone")
    assert store.staging_names() == ["keep"]


@pytest.mark.parametrize("count", [3, 40])  # one at a time, and in parallel
def test_delete_many_removes_exactly_those_blobs(store: BlobStore, count: int) -> None:
    staging = store.staging_dir("l")
    staged = [store.stage_bytes(b"blob %d" % i, staging) for i in range(count + 1)]
    for blob in staged:
        store.commit(blob)
    kept, doomed = staged[0].digest, [blob.digest for blob in staged[1:]]

    store.delete_many([*doomed, digest_of(b"never stored")])  # a missing blob is no error

    assert list(store.iter_digests()) == [kept]


# -- staging a member of an archive file: copied by the kernel, hashed where it landed ------

BIG = bytes(range(256)) * (9 * 4096 + 17)  # over two pipeline chunks, not a multiple of one


@pytest.fixture
def member(tmp_path: Path) -> Iterator[Callable[[bytes], IO[bytes]]]:
    """Opens a reader of *data* as the one member of a tar file, as a file import reads it."""
    files: list[IO[bytes]] = []

    def open_member(data: bytes, declared: int | None = None) -> IO[bytes]:
        path = tmp_path / f"archive-{len(files)}.tar"
        info = tarfile.TarInfo("blob")
        info.size = len(data)
        path.write_bytes(info.tobuf() + data + bytes(-len(data) % 512) + bytes(1024))
        if declared is not None:  # the file ends before the member does
            with path.open("r+b") as cut:
                cut.truncate(512 + declared)
        f = path.open("rb")
        files.append(f)
        tar = tarfile.open(fileobj=f)  # noqa: SIM115 (closed with the file, after the test)
        entry = next(tar_members(tar, f.fileno()))
        assert entry.random_access
        return entry.open()

    yield open_member
    for f in files:
        f.close()


def test_member_of_a_file_is_copied_by_the_kernel(
    store: BlobStore, member: Callable[..., IO[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    copies: list[int] = []
    real = os.copy_file_range

    def counted(*a: Any) -> int:
        copies.append(a[2])
        return real(*a)

    monkeypatch.setattr(os, "copy_file_range", counted)
    source = member(BIG)
    seen: list[int] = []

    staged = store.stage(
        source, len(BIG), store.staging_dir("l"), digest_of(BIG), on_chunk=seen.append
    )

    assert staged.path is not None and staged.path.read_bytes() == BIG
    assert sum(copies) == sum(seen) == len(BIG) and len(copies) > 2
    assert source.tell() == len(BIG)
    assert store.commit(staged)
    assert store.verify(digest_of(BIG))


def test_member_copied_with_a_wrong_digest_leaves_nothing(
    store: BlobStore, member: Callable[..., IO[bytes]]
) -> None:
    staging = store.staging_dir("l")
    wrong = digest_of(b"other")
    with pytest.raises(ContentError, match=str(wrong)):
        store.stage(member(BIG), len(BIG), staging, wrong)
    assert files_in(staging) == []


def test_member_claiming_more_than_the_file_holds_is_refused_before_it_is_read(
    member: Callable[..., IO[bytes]],
) -> None:
    """Its header is a claim: a member that would end past the end of the archive file is an
    error naming it, before anything reserves room for what it claims."""
    with pytest.raises(
        InvalidArchiveError, match=r"member 'blob': truncated, it claims \d+ bytes but the"
    ):
        member(BIG, declared=len(BIG) - 5000)


def test_member_is_read_when_the_kernel_cannot_copy(
    store: BlobStore, member: Callable[..., IO[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def cross_device(*args: object) -> int:
        calls.append(1)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", cross_device)
    staging = store.staging_dir("l")
    first = store.stage(member(BIG), len(BIG), staging, digest_of(BIG))
    second = store.stage(member(DATA), len(DATA), staging, digest_of(DATA))

    assert first.path is not None and first.path.read_bytes() == BIG
    assert second.path is not None and second.path.read_bytes() == DATA
    assert calls == [1]  # tried once, then the store reads and writes
    assert sorted(files_in(staging)) == sorted([first.path, second.path])


def test_member_is_staged_where_the_kernel_has_no_copy_or_fallocate(
    tmp_path: Path, member: Callable[..., IO[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "copy_file_range")
    monkeypatch.delattr(os, "posix_fallocate")
    store = BlobStore(tmp_path / "elsewhere")
    staged = store.stage(member(BIG), len(BIG), store.staging_dir("l"), digest_of(BIG))
    assert staged.path is not None and staged.path.read_bytes() == BIG


# -- reserving room: never more than the source can deliver ---------------------------------


class _Trickle(io.RawIOBase):
    """A stream that claims much and delivers *chunks* MiB of zeros, then ends; at each read
    it records how many bytes the staging directory has allocated on disk so far."""

    def __init__(self, staging: Path, chunks: int) -> None:
        self.staging = staging
        self.chunks = chunks
        self.allocated: list[int] = []

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self.allocated.append(sum(p.stat().st_blocks * 512 for p in files_in(self.staging)))
        if not self.chunks:
            return 0
        self.chunks -= 1
        n = min(len(buffer), 1 << 20)
        memoryview(buffer)[:n] = bytes(n)
        return n


def test_a_stream_claiming_gigabytes_reserves_only_a_step_ahead_of_its_bytes(
    store: BlobStore,
) -> None:
    staging = store.staging_dir("l")
    source = _Trickle(staging, chunks=3)
    with pytest.raises(ContentError, match=r"truncated, 3145728 of 4294967296 bytes present"):
        store.stage(cast(IO[bytes], source), 4 << 30, staging, what="member 'x'")
    assert source.allocated[0] == 0  # nothing before the first byte
    assert 0 < max(source.allocated) <= 3 * (1 << 20) + RESERVE_AHEAD
    assert files_in(staging) == []


# -- small blobs share the staging directory's pack -----------------------------------------


def test_small_blobs_share_one_staged_file_and_only_committed_ones_get_their_own(
    store: BlobStore,
) -> None:
    staging = store.staging_dir("l")
    blobs = [b"blob %d" % i for i in range(100)] + [b"", b"x" * PACK_LIMIT]
    staged = [store.stage(io.BytesIO(b), len(b), staging, digest_of(b)) for b in blobs]
    assert len(files_in(staging)) == 1
    assert [s.read() for s in staged] == blobs
    assert staged[3].head(4) == b"blob" and staged[-1].head(3) == b"xxx"

    assert store.commit_many([staged[3], staged[-2], staged[-1], staged[3]]) == [
        True,
        True,
        True,
        False,  # the same blob twice: already there
    ]

    assert sorted(store.iter_digests()) == sorted(digest_of(b) for b in [blobs[3], b"", blobs[-1]])
    for data in (blobs[3], b"", blobs[-1]):
        path = store.path(digest_of(data))
        assert path.read_bytes() == data
        assert not path.stat().st_mode & stat.S_IWUSR
    store.remove_staging("l")
    assert store.staging_names() == []


def test_a_small_blob_with_a_wrong_digest_or_cut_short_stages_nothing(store: BlobStore) -> None:
    staging = store.staging_dir("l")
    with pytest.raises(ContentError, match="content has digest"):
        store.stage(io.BytesIO(b"abc"), 3, staging, digest_of(b"abd"))
    with pytest.raises(ContentError, match="truncated, 3 of 10 bytes present"):
        store.stage(io.BytesIO(b"abc"), 10, staging)
    assert files_in(staging) == []


def test_a_packed_blob_the_store_already_has_is_not_written_again(store: BlobStore) -> None:
    first = store.stage_bytes(b"small", store.staging_dir("a"))
    assert store.commit(first) is True
    second = store.stage_bytes(b"small", store.staging_dir("b"))
    assert second.packed

    assert store.commit(second) is False
    assert files_in(store.root / "blobs") == [store.path(first.digest)]


def test_the_hash_only_sink_checks_like_staging_and_writes_nothing(
    store: BlobStore, tmp_path: Path
) -> None:
    document = b'{"schemaVersion": 2, "layers": []}'
    kept = store.stage_bytes(document, HASH_ONLY, "manifest")
    assert (kept.digest, kept.path, kept.read()) == (digest_of(document), None, document)
    layer = store.stage(io.BytesIO(DATA), len(DATA), HASH_ONLY, digest_of(DATA), keep_limit=1 << 20)
    assert layer.digest == digest_of(DATA) and layer.path is None
    assert layer.head(16) == DATA[:16] and len(layer.kept) < len(DATA)  # a layer: its head
    with pytest.raises(ContentError, match="truncated"):
        store.stage(io.BytesIO(DATA[:-1]), len(DATA), HASH_ONLY, digest_of(DATA))
    with pytest.raises(ContentError, match=str(digest_of(b"other"))):
        store.stage(io.BytesIO(document), len(document), HASH_ONLY, digest_of(b"other"))
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"schemaVersion": 2}', True),
        (b'\n\t  {"schemaVersion": 2}', True),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 100, False),  # gzip
        (b"\x28\xb5\x2f\xfd" + b"\x00" * 100, False),  # zstd
        (b"layer/file" + b"\x00" * 500, False),  # tar
        (b"", False),
    ],
)
def test_starts_like_json_reads_only_a_blobs_head(
    store: BlobStore, data: bytes, expected: bool
) -> None:
    """gc asks this of every leased blob before reading one whole to see if it is a document."""
    staged = store.stage_bytes(data, store.staging_dir("sniff"))
    store.commit(staged)
    assert store.starts_like_json(staged.digest) is expected
    absent = Digest.of_bytes(b"not stored")
    assert store.starts_like_json(absent) is False


def test_a_blob_staged_alongside_is_read_only_once_verified(
    store: BlobStore, member: Callable[..., IO[bytes]]
) -> None:
    # A member of a file with a known digest, large enough to be staged on another core:
    # stage() returns before it is verified; reading it waits for that.
    data = os.urandom(ALONGSIDE_MIN + 4096)
    sink = store.staging_sink(store.staging_dir("a"), alongside=True)
    with member(data) as source:
        staged = store.stage(source, len(data), sink, digest_of(data))
        assert staged.read() == data
        sink.wait()
    assert store.commit(staged)
    assert store.verify(digest_of(data))


def test_each_import_waits_for_its_own_blobs_staged_alongside(
    store: BlobStore, member: Callable[..., IO[bytes]]
) -> None:
    # Two imports through one store: a wrong blob of one fails that one alone.
    good, bad = os.urandom(ALONGSIDE_MIN + 4096), os.urandom(ALONGSIDE_MIN + 4096)
    first = store.staging_sink(store.staging_dir("first"), alongside=True)
    second = store.staging_sink(store.staging_dir("second"), alongside=True)
    with member(bad) as wrong, member(good) as right:
        store.stage(wrong, len(bad), first, digest_of(good), what="member 'wrong'")
        staged = store.stage(right, len(good), second, digest_of(good))
        second.wait()
        with pytest.raises(ContentError, match="member 'wrong': content has digest"):
            first.wait()
    assert store.commit(staged)
    assert not list((store.staging_dir("first")).iterdir())


def test_a_blob_staged_alongside_is_read_when_the_kernel_cannot_copy(
    store: BlobStore, member: Callable[..., IO[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", cross_device)
    data = os.urandom(ALONGSIDE_MIN + 4096)
    sink = store.staging_sink(store.staging_dir("a"), alongside=True)
    with member(data) as source:
        staged = store.stage(source, len(data), sink, digest_of(data))
        sink.wait()
    assert staged.path is not None and staged.path.read_bytes() == data
    assert store.commit(staged)
    assert store.verify(digest_of(data))
