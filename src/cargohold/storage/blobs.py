"""The blob store: content-addressed files under ``content/blobs/<alg>/<hex>``.

Writes follow containerd's local content store: bytes stream into a private file under
``content/ingest/`` while they are hashed (see :mod:`.ingest`), the size and digest are
checked, the file is fsynced and then renamed into place. A rename within one filesystem is
atomic, so a reader or a crash only ever sees a whole, verified blob or none. Committed blobs
are made read-only so that an accidental write fails instead of corrupting content that other
images share.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, BinaryIO, Final, cast

from ..errors import ContentError, DamagedBlobError, NotFoundError
from ..oci.digests import ALGORITHMS, Digest
from ..oci.mediatypes import MAX_JSON_LIMIT
from .files import CHUNK_SIZE, fsync_dir, open_regular, parallel_map
from .ingest import Ingest
from .staged import Sink, StagedBlob

_BLOB_MODE: Final = 0o444
#: Bytes read to tell whether a blob could be a JSON document (white space may come first).
_JSON_SNIFF: Final = 64
#: Unlinks or fsyncs in flight at once when many blobs are deleted or committed (see
#: BlobStore.delete_many and commit_many).
_MANY_THREADS: Final = 32


class BlobStore:
    """Verified, immutable blobs on disk, shared by every namespace of a store."""

    #: Documents in the store were verified on the way in, perhaps under a raised limit.
    document_limit: int = MAX_JSON_LIMIT

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs_dir = root / "blobs"
        self.ingest_dir = root / "ingest"
        self._ingest = Ingest(self.ingest_dir)

    def path(self, digest: Digest) -> Path:
        return self.blobs_dir / digest.algorithm / digest.hex

    def _path_name(self, digest: Digest) -> str:
        """The blob's path as a string: for the checks made once per archive member (a Path
        costs more time, and interns the digest's hex digits for as long as it lives)."""
        return f"{self.blobs_dir}/{digest.algorithm}/{digest.hex}"

    def exists(self, digest: Digest) -> bool:
        return os.path.isfile(self._path_name(digest))

    def blob_size(self, digest: Digest) -> int | None:
        """The blob's size on disk, or None when the store does not have it.

        An entry that is there but cannot be followed (a symlink to nothing, a loop) counts
        as present with its own size: :meth:`open` then says what is wrong with it, and
        ``content rm`` can remove it.
        """
        name = self._path_name(digest)
        try:
            return os.stat(name).st_size
        except OSError:
            pass
        try:
            return os.lstat(name).st_size
        except FileNotFoundError:
            return None

    def starts_like_json(self, digest: Digest) -> bool:
        """Whether the blob's first bytes could begin a JSON object (``{`` after white space):
        what gc asks before it reads a leased blob whole to see whether it is a document, so
        that a leased layer is never read (gzip, zstd and tar never begin so)."""
        try:
            with self.open(digest) as f:
                head = f.read(_JSON_SNIFF)
        except (NotFoundError, ContentError):
            return False
        return head.lstrip(b" \t\r\n").startswith(b"{")

    def regular_size(self, digest: Digest) -> int | None:
        """The size of the blob when it is a regular file (the only thing a blob may be), else
        None: absent, or an entry that :meth:`open` would refuse."""
        try:
            st = os.lstat(self._path_name(digest))
        except FileNotFoundError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def regular_sizes(self, digests: Iterable[str]) -> dict[str, int]:
        """:meth:`regular_size` of many blobs named by digest strings (``algorithm:hex``, as
        the metadata keeps them), those that are regular files: one ``lstat`` each, no
        objects per blob (an inventory asks this of every blob a namespace holds)."""
        base = str(self.blobs_dir)
        sizes: dict[str, int] = {}
        for digest in digests:
            algorithm, _, encoded = digest.partition(":")
            if algorithm not in ALGORITHMS or "/" in encoded:
                continue
            try:
                st = os.lstat(f"{base}/{algorithm}/{encoded}")
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISREG(st.st_mode):
                sizes[digest] = st.st_size
        return sizes

    def open(self, digest: Digest, verify: bool = False) -> BinaryIO:
        """The committed blob, for reading. Only a regular file is a blob: an entry that is a
        symlink, FIFO, device, socket or directory is refused (:class:`DamagedBlobError`),
        never followed or opened in a way that could block or touch a device.

        With *verify*, the reader hashes what it reads (it must be read in order, with
        ``read(n)``) and the read that finds the end raises :class:`DamagedBlobError` when the
        bytes do not match *digest*: every byte is handed out first, then the error.
        """
        f = open_regular(self.path(digest), digest)
        if not verify:
            return f
        return cast(BinaryIO, _VerifyingReader(f, digest))

    def read_blob(self, digest: Digest, limit: int) -> bytes:
        """A small blob (a manifest, index or config) in memory; refuses anything over *limit*."""
        with self.open(digest) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ContentError(f"blob {digest} is larger than {limit} bytes")
        # Documents are small and decide what else is read, kept or deleted: a damaged one is
        # reported as the store's fault (with the repair), never parsed as if it were valid.
        if Digest.of_bytes(data, digest.algorithm) != digest:
            raise DamagedBlobError(digest, "does not match its digest")
        return data

    def iter_digests(self) -> Iterator[Digest]:
        """Every committed blob; files whose names are not valid digests are skipped."""
        for digest, _, _ in self.iter_blobs():
            yield digest

    def iter_blobs(self) -> Iterator[tuple[Digest, int, float]]:
        """Every committed blob with its size and modification time, from one directory scan
        (a store holds tens of thousands of blobs: no per-blob path objects or lookups)."""
        for algorithm in ALGORITHMS:
            try:
                entries = os.scandir(self.blobs_dir / algorithm)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    try:
                        digest = Digest.from_hex(algorithm, entry.name)
                        st = entry.stat(follow_symlinks=False)
                    except (ValueError, FileNotFoundError):
                        continue
                    yield digest, st.st_size, st.st_mtime

    # -- staging -------------------------------------------------------------------------

    def staging_dir(self, name: str) -> Path:
        """A private directory under ``ingest/`` for one writer (one import's lease)."""
        return self._ingest.staging_dir(name)

    def stage(
        self,
        source: IO[bytes],
        size: int,
        staging: Path | Sink,
        expected: Digest | None = None,
        what: str = "blob",
        algorithm: str = "sha256",
        on_chunk: Callable[[int], None] | None = None,
        keep_limit: int = 0,
    ) -> StagedBlob:
        """Copy exactly *size* bytes from *source* into *staging*, hashing as they pass.

        The copy is verified against *expected* (when given) before it returns; a short read
        or a wrong digest raises :class:`ContentError` naming *what*. *staging* is a staging
        directory (from :meth:`staging_dir`), or a :class:`Sink`: with
        :data:`~cargohold.storage.staged.HASH_ONLY` nothing is written, the bytes are hashed,
        and kept in memory when the blob is at most *keep_limit* bytes and looks like JSON
        (it may be a manifest or config).
        """
        sink = self._ingest.sink(staging) if isinstance(staging, Path) else staging
        return self._ingest.stage(
            source, size, sink, expected, what, algorithm, on_chunk, keep_limit
        )

    def staging_sink(self, staging: Path, alongside: bool = False) -> Sink:
        """The sink of *staging* (a directory from :meth:`staging_dir`). With *alongside*,
        :meth:`stage` may return a large blob whose digest it was given before the blob is
        verified, and stage it on another core while the caller reads on: the caller must
        call the sink's ``wait`` before it closes what it read from."""
        return self._ingest.sink(staging, alongside)

    def stage_bytes(self, data: bytes, staging: Path | Sink, what: str = "blob") -> StagedBlob:
        return self.stage(io.BytesIO(data), len(data), staging, what=what, keep_limit=len(data))

    def stage_gzipped(self, source: StagedBlob, staging: Path) -> StagedBlob:
        """A gzip-compressed copy of a staged blob, hashed as it is written (one pass)."""
        return self._ingest.gzipped(source, staging)

    def settle_staging(self, staging: Path) -> None:
        """Make what is staged in *staging* durable now (see :meth:`Ingest.settle`)."""
        self._ingest.settle(staging)

    def staging_bytes(self, name: str) -> int:
        """How many bytes the staging directory *name* holds (its files, recursively)."""
        total = 0
        for directory, _, names in os.walk(self._ingest.directory / name):
            for entry in names:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(directory, entry)).st_size
        return total

    def remove_staging(self, name: str) -> None:
        self._ingest.remove_staging(name)

    def staging_names(self) -> list[str]:
        return self._ingest.staging_names()

    # -- committing ----------------------------------------------------------------------

    def commit(self, staged: StagedBlob) -> bool:
        """Move a staged blob into place; False when the store already had a copy.

        A staged blob was verified as it was written, so it replaces whatever copy is there:
        an import reads a blob the store holds only when that copy cannot be trusted for it
        (another namespace's, or damaged), and then the verified copy must win. The rename is
        atomic, and readers that opened the old copy keep reading it.

        The caller fsyncs the blob directories once per batch with :meth:`sync`.
        """
        assert staged.path is not None, "a blob that was only hashed cannot be committed"
        target = self.path(staged.digest)
        staged = self._ingest.ready(staged)
        assert staged.path is not None
        existed = os.path.lexists(target)
        os.chmod(staged.path, _BLOB_MODE)
        try:
            os.rename(staged.path, target)
        except FileNotFoundError:  # the store's first blob of this algorithm
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged.path, target)
        return not existed

    def commit_many(self, blobs: Iterable[StagedBlob]) -> list[bool]:
        """:meth:`commit` each of *blobs*, in order. The packed ones are written out to files
        of their own by many threads at once, a little ahead of their renames: each waits on
        its fsync, and the filesystem's journal serves many waiting fsyncs with one commit."""

        def prepared(blob: StagedBlob) -> StagedBlob:
            return self._ingest.unpacked(blob) if blob.packed else blob

        return [self.commit(blob) for blob in parallel_map(prepared, blobs, _MANY_THREADS)]

    def sync(self) -> None:
        """Make renames into the blob directories durable before metadata points at them."""
        for directory in [
            *(self.blobs_dir / algorithm for algorithm in ALGORITHMS),
            self.blobs_dir,  # a new algorithm directory is an entry here
            self.root,  # and a new blobs directory one here
        ]:
            if directory.is_dir():
                fsync_dir(directory)

    def delete(self, digest: Digest) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def delete_many(self, digests: Iterable[Digest]) -> None:
        """Delete blobs with many unlinks in flight at once.

        An unlink can wait on the device: on a filesystem mounted with ``discard`` it waits
        for the discard of the file's blocks (about 0.1 ms each on a virtual disk), so one at
        a time, 10,000 small blobs take a second; thirty-two at once take half that.
        """
        paths = [self._path_name(digest) for digest in digests]

        def unlink(path: str) -> None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

        if len(paths) < 8:
            for path in paths:
                unlink(path)
            return
        for _ in parallel_map(unlink, paths, _MANY_THREADS):
            pass

    def verify(self, digest: Digest) -> bool:
        """Re-hash a committed blob; False when its bytes no longer match its name, or when
        it is not a regular file at all."""
        hasher = digest.hasher()
        try:
            f = self.open(digest)
        except DamagedBlobError:
            return False
        with f:
            while chunk := f.read(CHUNK_SIZE):
                hasher.update(chunk)
        return hasher.hexdigest() == digest.hex


class _VerifyingReader(io.RawIOBase):
    """A blob's bytes as they are read, hashed; at the end they must match the digest.

    Unbuffered, so that no bytes read before the end are held back when the end raises; and
    without a descriptor, since a kernel copy from one would bypass the hash.
    """

    def __init__(self, raw: BinaryIO, digest: Digest) -> None:
        self._raw = raw
        self._digest = digest
        self._hasher = digest.hasher()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n: int = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._hasher.update(memoryview(buffer)[:n])
        elif self._hasher.hexdigest() != self._digest.hex:
            actual = f"{self._hasher.name}:{self._hasher.hexdigest()}"
            raise DamagedBlobError(
                self._digest, f"does not match its digest (its bytes hash to {actual})"
            )
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()
