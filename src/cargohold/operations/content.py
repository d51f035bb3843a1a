"""The store's content as a whole: every blob with the images that use it, reading one, and
removing blobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

from ..errors import (
    InUseError,
)
from ..oci.digests import Digest
from ..oci.tree import tree
from .context import (
    StoreContext,
    image_target,
)
from .results import (
    ContentInfo,
    ImageUser,
    RemoveResult,
)


def content_list(ctx: StoreContext) -> list[ContentInfo]:
    """Every blob of the store, with the images (of every namespace) that use it."""
    users = image_users(ctx)
    infos = []
    for digest, size, mtime in sorted(ctx.blobs.iter_blobs(), key=lambda b: str(b[0])):
        infos.append(ContentInfo(digest, size, mtime, users.get(digest, [])))
    return infos


def read_content(ctx: StoreContext, digest: str | Digest, verify: bool = False) -> BinaryIO:
    """An open reader of a blob's bytes (the store's regular file, never what a link in
    its place points to). With *verify* the bytes are hashed as they are read, and the
    read that reaches the end raises :class:`DamagedBlobError` if they do not match."""
    return ctx.blobs.open(
        digest if isinstance(digest, Digest) else Digest.parse(digest), verify=verify
    )


def remove_content(
    ctx: StoreContext, digests: Sequence[str | Digest], force: bool = False
) -> RemoveResult:
    """Delete blobs. Content an image uses is refused unless *force*; content an import in
    progress holds is always refused. Unknown digests are reported after the rest."""
    wanted = [d if isinstance(d, Digest) else Digest.parse(d) for d in digests]
    result = RemoveResult()
    with ctx.meta.transaction() as db:
        live = [lease for lease in ctx.meta.lease_ids() if ctx.leases.is_alive(lease)]
        leased = ctx.meta.leased_digests(live)
        users = image_users(ctx)
        for digest in wanted:
            if ctx.blobs.blob_size(digest) is None:
                result.missing.append(str(digest))
            elif str(digest) in leased:
                raise InUseError(f"blob {digest} is being written by an import in progress")
            elif users.get(digest) and not force:
                names = _some_names(users[digest], ctx.namespace)
                raise InUseError(f"blob {digest} is used by {names} (use --force to remove it)")
        for digest in wanted:
            size = ctx.blobs.blob_size(digest)
            if size is not None:
                ctx.blobs.delete(digest)
                result.removed.append(str(digest))
        ctx.meta.release_content(db, wanted)
    return result


def _some_names(users: list[ImageUser], namespace: str, shown: int = 3) -> str:
    """The first few users of a blob and a count of the rest: one readable error line even
    when a thousand tags share the blob."""
    names = ", ".join(u.qualified(namespace) for u in users[:shown])
    return f"{names} and {len(users) - shown} more" if len(users) > shown else names


def image_users(ctx: StoreContext) -> dict[Digest, list[ImageUser]]:
    """Every blob an image of any namespace reaches, with the images that reach it.

    Each distinct target (digest and media type) is walked once, however many names point at
    it: a thousand tags of one image cost one walk, not a thousand.
    """
    reached: dict[tuple[Digest, str], list[Digest]] = {}
    users: dict[Digest, list[ImageUser]] = {}
    for namespace, record in ctx.meta.all_images():
        key = (record.digest, record.media_type)
        digests = reached.get(key)
        if digests is None:
            walked = (
                node.descriptor.digest for node in tree(ctx.blobs, image_target(record)).walk()
            )
            digests = reached[key] = list(dict.fromkeys(walked))
        # A (namespace, name) is one record and a target's digests are distinct: no repeats.
        user = ImageUser(namespace, record.name)
        for digest in digests:
            users.setdefault(digest, []).append(user)
    return users
