"""Reading image archives: one streaming pass over the members, every one verified on the way in.

The archive is hostile until proven otherwise. Member names are normalised and checked before
they mean anything, only regular files and directories are accepted (and symlinks a docker
archive uses, resolved inside it), each ``blobs/<alg>/<hex>`` member is hashed while it is
staged and must match its name, and the small layout documents are kept for parsing. Nothing
reaches the store here: blobs go to the import's private staging directory, and the caller
commits the ones the selected images need once the whole archive has passed.
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ..errors import CargoholdError, ContentError, InvalidArchiveError, InvalidDigestError
from ..oci.digests import Digest
from ..oci.mediatypes import DEFAULT_JSON_LIMIT
from ..progress import BLOB_PROGRESS_THRESHOLD, Progress
from ..storage.blobs import BlobStore
from ..storage.staged import HASH_ONLY, StagedBlob
from .contents import ArchiveContents
from .delta import DELTA_MEMBER
from .docker import stored_layers
from .members import BLOB_NAME, Member, member_name, resolve_link

#: Most members an archive may have; an image with more is an attack on our memory.
MAX_MEMBERS: Final = 200_000
#: Most bytes of documents kept in memory when an archive is only inspected.
MAX_KEPT_BYTES: Final = 256 << 20

#: The small members kept in memory, and the field of ArchiveContents each goes to.
SMALL_FILES: Final = {
    "oci-layout": "layout",
    "index.json": "index_json",
    "manifest.json": "manifest_json",
    "repositories": "repositories",
    DELTA_MEMBER: "delta",
}


@dataclass(slots=True)
class ScanHooks:
    """What a resumed scan starts from and what it reports (``operations.resuming``): the
    findings of an earlier run over the archive's first members, blobs an earlier run staged,
    and a call after each member is done with."""

    #: Fills the new contents with what an earlier run found before the first member here.
    restore: Callable[[ArchiveContents], None] | None = None
    #: Members an earlier run already counted (the limit on members counts them too).
    counted: int = 0
    #: Blobs an earlier run staged and verified: a member of one of these digests is skipped.
    prestaged: Mapping[Digest, StagedBlob] = field(default_factory=dict)
    #: Called with each member once the scan is done with it.
    after_member: Callable[[Member], None] | None = None
    #: Whether a large blob of known digest may be staged alongside the next members (on
    #: another core, see ``storage.writers.Alongside``). A resumed import stages one blob at a
    #: time: it records members as staged as it goes (a blob still being verified must not be
    #: recorded), and its other core checks the volumes.
    alongside: bool = True


def scan(
    members: Iterable[Member],
    store: BlobStore,
    staging: Path | None,
    already_stored: Callable[[Digest, int], bool],
    progress: Progress | None = None,
    document_limit: int = DEFAULT_JSON_LIMIT,
    held: Callable[[Digest, int], bool] | None = None,
    hooks: ScanHooks | None = None,
) -> ArchiveContents:
    """Read every member once, staging blobs and keeping the small layout documents.

    *already_stored* is asked, with the member's size, before a blob's bytes are read: when
    it says the store's copy may stand for the member (the importing namespace holds the blob,
    the copy looks intact, and the import's lease now protects it), the member is skipped.
    With *staging* None nothing is written (``archive inspect``): blobs are hashed, and the
    ones that look like JSON documents kept in memory. *held* (default: *already_stored*)
    says the same of a blob the archive does not contain at all, when the walk needs it.
    *hooks*: see :class:`ScanHooks`.
    """
    contents = ArchiveContents(store, document_limit=document_limit, held=held or already_stored)
    hooks = hooks or ScanHooks()
    if hooks.restore is not None:
        hooks.restore(contents)
    stager = _Stager(store, staging, progress or Progress(), document_limit, hooks.alongside)
    deferred: dict[str, Member] = {}
    try:
        for count, member in enumerate(members, hooks.counted + 1):
            if count > MAX_MEMBERS:
                raise InvalidArchiveError(f"archive has more than {MAX_MEMBERS} members")
            _scan_member(member, contents, stager, already_stored, deferred, hooks.prestaged)
            if hooks.after_member is not None:
                hooks.after_member(member)
        if deferred:
            _read_deferred(contents, deferred, stager, already_stored)
        stager.wait()
    except tarfile.TarError as exc:
        # A member's data is read here, after the tar reader has handed the member over, so
        # an archive truncated inside a member fails here rather than in tar_members.
        raise InvalidArchiveError(f"not a valid tar archive or truncated ({exc})") from None
    finally:
        stager.stop()  # nothing reads the archive once the scan is over
    for link, target in list(contents.symlinks.items()):
        if target not in contents.files and target not in contents.present_files:
            raise InvalidArchiveError(
                f"member {link!r}: symbolic link to {target!r}, which is not a regular file"
            )
    return contents


class _Stager:
    """Stages members (or only hashes them) and shows large ones on the progress display."""

    def __init__(
        self,
        store: BlobStore,
        staging: Path | None,
        progress: Progress,
        document_limit: int,
        alongside: bool,
    ) -> None:
        self.store = store
        # Large blobs of known digest may be copied and hashed alongside the next members.
        self.sink = HASH_ONLY if staging is None else store.staging_sink(staging, alongside)
        self.progress = progress
        self.document_limit = document_limit
        self.kept = 0

    def wait(self) -> None:
        """Wait for the blobs staged alongside; a wrong one fails the scan here."""
        try:
            self.sink.wait()
        except ContentError as exc:
            raise InvalidArchiveError(str(exc)) from None

    def stop(self) -> None:
        """At the scan's end: after a failure, stop the blobs still staged alongside (their
        import will use none of them) and wait for them, whatever they find. After success
        :meth:`wait` has seen every one of them end."""
        self.sink.cancel()
        with contextlib.suppress(CargoholdError, OSError):  # the scan's own error stands
            self.sink.wait()

    def stage(
        self,
        member: Member,
        what: str,
        expected: Digest | None = None,
        label: str | None = None,
    ) -> StagedBlob:
        """Stage *member* (a blob of *expected*, when known); a large one is shown on the
        progress display as *label* (by default its digest, else its name)."""
        large = member.size >= BLOB_PROGRESS_THRESHOLD
        if large:
            shown = label or (str(expected) if expected else member.name)
            self.progress.blob_start(shown, member.size)
        try:
            with member.open() as source:
                staged = self.store.stage(
                    source,
                    member.size,
                    self.sink,
                    expected,
                    what=what,
                    on_chunk=self.progress.blob_advance if large else None,
                    keep_limit=self.document_limit,
                )
        except ContentError as exc:
            raise InvalidArchiveError(str(exc)) from None
        finally:
            if large:
                self.progress.blob_finish()
        self.kept += len(staged.kept)
        if self.kept > MAX_KEPT_BYTES:
            raise InvalidArchiveError(
                f"member {member.name!r}: the archive's documents exceed {MAX_KEPT_BYTES} bytes"
            )
        return staged


def _scan_member(
    member: Member,
    contents: ArchiveContents,
    stager: _Stager,
    already_stored: Callable[[Digest, int], bool],
    deferred: dict[str, Member],
    prestaged: Mapping[Digest, StagedBlob],
) -> None:
    name = member_name(member.name)
    if member.kind == "dir":
        if name in contents.members:
            raise InvalidArchiveError(
                f"member {name!r}: appears twice in the archive, as a file and a directory"
            )
        contents.directories.add(name)
        return
    _claim_name(member, name, contents)
    if member.kind == "symlink":
        # Only docker archives link (a duplicate layer to its first copy); the link is
        # resolved lexically, one hop, and must land on a regular member of the archive.
        target = member.linkname
        if target.startswith("/") or "\x00" in target:
            raise InvalidArchiveError(f"member {name!r}: symbolic link to {target!r}")
        contents.symlinks[name] = resolve_link(name, target)
        return
    if member.kind != "file":
        raise InvalidArchiveError(f"member {name!r}: {member.kind} not allowed in an image archive")
    small = SMALL_FILES.get(name)
    if small is not None:
        setattr(contents, small, _read_small(member, name, contents.document_limit))
        return
    what = f"member {name!r}"
    match = BLOB_NAME.match(name)
    if match is None:
        # Not a blob of an OCI layout (which only finds blobs by their path), but perhaps a
        # layer or config of a docker archive: plan_docker adds these by content. Read them
        # after the last member when that is possible: docker's manifest.json comes last, and
        # it says which of them are layers the store may already have.
        if member.random_access:
            deferred[name] = member
        else:
            contents.files[name] = stager.stage(member, what)
        return
    try:
        expected = Digest.parse(f"{match.group(1)}:{match.group(2)}")
    except InvalidDigestError as exc:
        raise InvalidArchiveError(f"{what}: {exc}") from None
    earlier = prestaged.get(expected)
    if earlier is not None and earlier.size == member.size:
        contents.staged[expected] = earlier
        return
    if already_stored(expected, member.size):
        contents.present.add(expected)
        return
    contents.staged[expected] = stager.stage(member, what, expected)


def _claim_name(member: Member, name: str, contents: ArchiveContents) -> None:
    """Record a member that is not a directory; a name may appear once in an archive."""
    if not name:
        raise InvalidArchiveError(f"member {member.name!r}: empty name")
    if name in contents.members:
        raise InvalidArchiveError(f"member {name!r}: appears twice in the archive")
    if name in contents.directories:
        raise InvalidArchiveError(
            f"member {name!r}: appears twice in the archive, as a file and a directory"
        )
    contents.members.add(name)


def _read_deferred(
    contents: ArchiveContents,
    deferred: dict[str, Member],
    stager: _Stager,
    already_stored: Callable[[Digest, int], bool],
) -> None:
    """Read the members left for after the last header, but the docker layers the store has."""

    def stage(member: Member, what: str) -> StagedBlob:
        return stager.stage(member, what)

    stored, expected = stored_layers(contents, deferred, stage, already_stored)
    for name, member in deferred.items():
        if name in stored:
            contents.present_files[name] = stored[name]
        elif name not in contents.files:
            diff_id = expected.get(name)
            what = f"member {name!r}" + (f" (diff_id {diff_id})" if diff_id else "")
            staged = stager.stage(member, what, diff_id, label=member.name)
            contents.files[name] = staged


def _read_small(member: Member, name: str, limit: int) -> bytes:
    if member.size > limit:
        raise InvalidArchiveError(
            f"member {name!r}: {member.size} bytes exceeds the document limit of {limit}"
            " (raise it with --max-document-size)"
        )
    with member.open() as source:
        data = source.read(member.size)
    if len(data) != member.size:
        raise InvalidArchiveError(f"member {name!r}: truncated")
    return data
