"""The import of a split archive, and its resumption after a bad or missing volume.

A split archive's import runs under a lease of its own, named after its checksum list's
SHA-256 and kept after the process dies, unlike every other lease: what was staged from
volumes already verified stays staged, and a re-run of the same import does not read those
volumes again. Progress is recorded when a volume has been verified (and when the import
fails on a later one):

- the staged files are made durable (``BlobStore.settle_staging``);
- the records of the members scanned so far (``archive.checkpoints``) are appended to a
  journal in the lease's staging directory, up to the last member that ends inside the
  verified volumes (a member whose bytes run into the next volume is read again);
- a small state file says how far the journal, the archive and the verified volumes go,
  written atomically.

A re-run of an uncompressed archive replays the journal and reads on from that member's end,
in the volume that holds it: the verified volumes are trusted, not hashed again, and of them
only the start of the member that runs into the first unverified volume is read (from the
end of the member before it). A compressed archive (gzip, zstd, xz, bzip2 of the whole tar)
cannot be entered in the middle of its stream: a re-run reads and decompresses every volume
again (those verified before are not hashed again), but blobs already staged are skipped, not
hashed or written again. gc keeps a resumable import's staging for ``RESUMABLE_MAX_AGE``
after its last progress, or until ``content gc --resumable``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ..archive import checkpoints
from ..archive.checkpoints import Record
from ..archive.compression import detect
from ..archive.contents import ArchiveContents
from ..archive.members import Member
from ..archive.scan import ScanHooks
from ..archive.sources import open_members
from ..archive.volumefile import VolumeFile, volume_members
from ..archive.volumes import RESEND, VolumeReader, VolumeSet, volume_stream
from ..errors import CargoholdError, InUseError, VolumeError
from ..limits import Limits
from ..progress import Progress, Relay
from .context import StoreContext

STATE_FILE: Final = "resume.json"
JOURNAL_FILE: Final = "members.jsonl"
#: Lease names of resumable imports start with this, then the checksum list's digest.
LEASE_PREFIX: Final = "resume-"


@dataclass(slots=True)
class _State:
    """How far earlier runs got: the journal's first *records* records (*journal_bytes*
    bytes) describe the archive up to byte *offset* (0 for a compressed archive, which is
    read from its start again)."""

    archive: str
    compression: str
    offset: int = 0
    records: int = 0
    journal_bytes: int = 0
    #: Volumes 1 … this one were verified by earlier runs.
    verified: int = 0


@dataclass(slots=True)
class ResumableRun:
    """One run of a split archive's import: its lease, staging, reader and scan hooks."""

    ctx: StoreContext
    volumes: VolumeSet
    lease_id: str
    root: Path
    staging: Path
    state: _State
    records: list[Record]
    reader: VolumeReader | VolumeFile = field(init=False)
    hooks: ScanHooks = field(init=False)
    contents: ArchiveContents | None = None
    #: Member ends (archive offsets) and how many records reach each, not yet recorded.
    pending: list[tuple[int, int]] = field(default_factory=list)
    #: Where in the archive this run's tar stream starts (a member's header).
    base_offset: int = 0

    def __post_init__(self) -> None:
        size = self.volumes.listed.volume_size
        seeking = self.state.compression == "none" and self.state.offset > 0
        self.base_offset = self.state.offset if seeking else 0
        first, skip = divmod(self.base_offset, size)
        first += 1
        trusted = min(self.state.verified, self.volumes.listed.count - 1)
        if self.state.compression == "none":  # read at random, as an archive file is
            self.reader = VolumeFile(self.volumes, trusted)
        else:
            self.reader = VolumeReader(self.volumes, first, skip, self._verified, trusted)
        earlier = self.records if seeking else []
        self.hooks = ScanHooks(
            restore=lambda contents: self._restore(contents, earlier),
            counted=len(earlier),
            prestaged={} if seeking else checkpoints.staged_blobs(self.records, self.root),
            after_member=self._after_member,
            alongside=False,
        )
        if not seeking:  # read from the start: the journal starts again
            self.records = []
            self.state.offset = self.state.records = self.state.journal_bytes = 0

    @contextmanager
    def members(self, progress: Progress, limits: Limits | None) -> Iterator[Iterator[Member]]:
        """The archive's members from where this run starts; the stream is read to its end
        (every volume checked) when the block ends. A failure records first what was scanned
        from verified volumes."""
        remaining = self.volumes.listed.total_size - self.base_offset
        try:
            if isinstance(self.reader, VolumeFile):
                progress.start("import", remaining)
                done = 0

                def advance(n: int) -> None:
                    nonlocal done
                    done += n
                    progress.update(done)

                self.reader.on_read = advance
                with volume_members(self.reader, self.base_offset) as found:
                    yield found
                progress.update(remaining)
                return
            with open_members(
                volume_stream(self.reader), _Sized(progress, remaining), "import", limits
            ) as found:
                yield found
        except Exception as exc:
            cause = self._blame(exc)
            with contextlib.suppress(Exception):  # the failure is the one to report
                self.stopped()
            if cause is not None:
                raise cause from None
            raise

    def _blame(self, failure: Exception) -> VolumeError | None:
        """The damaged volume behind *failure*, when one is: a swapped or damaged volume can
        break a member (or the decompressor) before its own checksum is compared, and the
        volume to re-send is what the user must be told. Either way the checks of the
        volumes read are waited for first, so that what this run recorded as verified (and a
        re-run need not read again) is all it verified."""
        try:
            self.reader.blame()
        except VolumeError as exc:
            return None if isinstance(failure, VolumeError) else exc
        except Exception:  # the volume could not be looked at again: the failure stands
            return None
        return None

    def _restore(self, contents: ArchiveContents, earlier: list[Record]) -> None:
        self.contents = contents
        checkpoints.replay(contents, earlier, self.root)

    @property
    def verified_end(self) -> int:
        """Where the volumes verified so far end, in the archive."""
        return self.volumes.listed.start(self.reader.verified + 1)

    def _after_member(self, member: Member) -> None:
        assert self.contents is not None
        self.records.append(checkpoints.record(member, self.contents, self.root))
        if member.end < 0:
            return
        if isinstance(self.reader, VolumeReader):  # a stream's offsets start where it does
            self.pending.append((self.base_offset + member.end, len(self.records)))
            return
        self.pending.append((member.end, len(self.records)))
        # read at random, a volume is verified before its members are read: record when the
        # members read reach a volume further than the last record
        size = self.volumes.listed.volume_size
        done = [p for p in self.pending if p[0] <= self.verified_end]
        if done and done[-1][0] // size > self.state.offset // size:
            self._record_verified()

    def _verified(self, number: int) -> None:
        """Volume *number* checked out: record the members read from verified volumes."""
        if number == self.volumes.listed.count:
            return  # the whole archive is read; the import commits or fails on its own
        if self.state.compression != "none":
            # everything scanned so far came from bytes handed out before this volume's last
            self._record(0, len(self.records))
        else:
            self._record_verified()

    def stopped(self) -> None:
        """The import failed: record what was scanned from verified volumes since the last
        record. (Of a compressed archive, what was scanned since may have come from the
        volume that failed, which the decompressor had read into; only the records made as
        each volume was verified count.)"""
        if self.state.compression == "none":
            self._record_verified()

    def _record_verified(self) -> None:
        """Record up to the last member that ends inside the verified volumes."""
        done = [p for p in self.pending if p[0] <= self.verified_end]
        self.pending = self.pending[len(done) :]
        if done and done[-1][1] > self.state.records:
            self._record(*done[-1])

    def _record(self, offset: int, count: int) -> None:
        """Make the staged blobs durable, then the journal up to record *count*, then the
        state that points into it."""
        self.ctx.blobs.settle_staging(self.staging)
        journal = self.root / JOURNAL_FILE
        with journal.open("ab") as f:
            f.truncate(self.state.journal_bytes)  # what a killed run appended past its state
            f.seek(self.state.journal_bytes)
            for entry in self.records[self.state.records : count]:
                f.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
            self.state.journal_bytes = f.tell()
        self.state.offset, self.state.records = offset, count
        self.state.verified = max(self.state.verified, self.reader.verified)
        _write_state(self.root, self.state)
        self.ctx.meta.touch_resumable(self.lease_id)


class _Sized(Relay):
    """Progress of a read whose size the checksum list tells (a stream's is unknown)."""

    def __init__(self, inner: Progress, total: int) -> None:
        super().__init__(inner)
        self.total = total

    def start(self, title: str, total: int | None) -> None:
        self.inner.start(title, self.total if total is None else total)


@contextmanager
def resumable_import(ctx: StoreContext, volumes: VolumeSet, force: bool) -> Iterator[ResumableRun]:
    """The lease and staging of a split archive's import, resumed where an earlier run
    stopped. On success the lease and its staging go; on a failure they stay (released: a
    re-run takes them over), and gc keeps them for its age for resumable imports."""
    lease_id = LEASE_PREFIX + volumes.list_digest[:32]
    fd = _take_lease(ctx, lease_id, volumes)
    root = ctx.blobs.staging_dir(lease_id)
    try:
        state, records = _load(ctx, lease_id, root, volumes, force)
        staging = ctx.blobs.staging_dir(f"{lease_id}/{os.urandom(8).hex()}")
        run = ResumableRun(ctx, volumes, lease_id, root, staging, state, records)
        with run.reader:
            yield run
    except BaseException:
        if (root / STATE_FILE).exists():
            os.close(fd)  # the lock file stays: its lease is kept, not orphaned
        else:  # nothing to resume from: the store is left as it was
            _end_lease(ctx, lease_id, fd, failed=True)
        raise
    _end_lease(ctx, lease_id, fd, failed=False)


def _end_lease(ctx: StoreContext, lease_id: str, fd: int, failed: bool) -> None:
    """Remove the lease, its row and its staging (after a failure, as far as possible)."""
    ctx.blobs.remove_staging(lease_id)
    with contextlib.suppress(*((OSError, CargoholdError) if failed else ())):
        try:
            ctx.meta.end_lease(lease_id)
        finally:
            ctx.leases.release(lease_id, fd)


def _take_lease(ctx: StoreContext, lease_id: str, volumes: VolumeSet) -> int:
    """The lock and row of the archive's resumable lease; refused while another process
    imports the same archive."""
    for _ in range(10):
        fd = ctx.leases.take(lease_id)
        if fd is None:
            raise InUseError(f"{volumes.list_name}: another import of this archive is running")
        ctx.meta.keep_resumable(lease_id, volumes.label)
        if ctx.leases.holds(lease_id, fd):
            return fd  # the row is written and the lock file is ours: gc sees it alive
        os.close(fd)  # gc collected the lease meanwhile: take it anew
    raise InUseError(f"{volumes.list_name}: could not take the lease of its import")


def _load(
    ctx: StoreContext, lease_id: str, root: Path, volumes: VolumeSet, force: bool
) -> tuple[_State, list[Record]]:
    """What earlier runs recorded, when all of it still holds; else a fresh start (with
    whatever a run left in the staging directory removed)."""
    found = _read_state(root, volumes.list_digest)
    if found is not None:
        state, records = found
        if _still_valid(ctx, lease_id, root, records, force):
            _remove_unrecorded(ctx, lease_id, root, records)
            return state, records
    ctx.blobs.remove_staging(lease_id)
    root = ctx.blobs.staging_dir(lease_id)
    return _State(volumes.list_digest, _compression(volumes)), []


def _read_state(root: Path, archive: str) -> tuple[_State, list[Record]] | None:
    try:
        raw: dict[str, Any] = json.loads((root / STATE_FILE).read_bytes())
        state = _State(**raw)
        if state.archive != archive:
            return None
        with (root / JOURNAL_FILE).open("rb") as f:
            data = f.read(state.journal_bytes)
        records = [json.loads(line) for line in data.splitlines()]
    except (OSError, ValueError, TypeError):
        return None
    if len(data) != state.journal_bytes or len(records) != state.records:
        return None
    return state, records


def _still_valid(
    ctx: StoreContext, lease_id: str, root: Path, records: list[Record], force: bool
) -> bool:
    """Whether the staged files are all there and the stored blobs an earlier run let stand
    for the archive's still may (the namespace holds them, or gc took them meanwhile)."""
    for blob in checkpoints.staged_blobs(records, root).values():
        assert blob.path is not None
        try:
            if os.stat(blob.path).st_size < max(blob.offset, 0) + blob.size:
                return False
        except OSError:
            return False
    return all(
        not force and ctx.reusable(lease_id, digest, size)
        for digest, size in checkpoints.present_blobs(records)
    )


def _remove_unrecorded(ctx: StoreContext, lease_id: str, root: Path, records: list[Record]) -> None:
    """Remove what earlier runs staged past their last record: the staging directories of
    runs no record names (each run stages into a directory of its own)."""
    named = {
        Path(str(entry["path"])).parts[0] for entry in records if isinstance(entry.get("path"), str)
    }
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False) and entry.name not in named:
            ctx.blobs.remove_staging(f"{lease_id}/{entry.name}")


def _write_state(root: Path, state: _State) -> None:
    temp = root / f".{STATE_FILE}.new"
    with temp.open("wb") as f:
        f.write(json.dumps(_as_dict(state)).encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, root / STATE_FILE)


def _as_dict(state: _State) -> dict[str, Any]:
    return {
        "archive": state.archive,
        "compression": state.compression,
        "offset": state.offset,
        "records": state.records,
        "journal_bytes": state.journal_bytes,
        "verified": state.verified,
    }


def _compression(volumes: VolumeSet) -> str:
    """The archive's compression, from the first bytes of its first volume (which are checked
    with the rest of that volume when it is read)."""
    name = volumes.listed.name(1)
    try:
        fd = os.open(volumes.path(1), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise VolumeError(name, f"missing: {RESEND}") from None
    try:
        return detect(os.pread(fd, 8, 0))
    except OSError as exc:
        raise VolumeError(name, f"cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
