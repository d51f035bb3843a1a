"""Reachability: which blobs a set of roots reaches, for collection and namespace holdings."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Literal

from ..errors import (
    CargoholdError,
    NotFoundError,
    UnreadableContentError,
)
from .digests import Digest
from .graph import ContentSource, iter_children
from .mediatypes import (
    Descriptor,
    is_index,
    is_manifest,
    parse_index,
    parse_manifest,
)

Role = Literal["index", "manifest", "blob"]
#: The media type a blob of unknown kind is followed as when it is not a document.
UNKNOWN_TYPE: Final = "application/octet-stream"


def role_of(media_type: str) -> Role:
    """How a descriptor with *media_type* is followed: an index or a manifest is read for its
    children, anything else is a leaf."""
    if is_index(media_type):
        return "index"
    return "manifest" if is_manifest(media_type) else "blob"


class Reachability:
    """Which blobs a set of roots reaches, every platform, through every way a digest is reached.

    One walk for garbage collection, namespace holdings and content users. A digest is visited
    once per *role* (index, manifest, leaf), not once: the same bytes may be named as a layer by
    one image and as a manifest by another, and a walk that met the layer first and then skipped
    the manifest would miss that manifest's config and layers (and gc would sweep them). The
    children of a document depend only on its digest and role, so they are read once and
    remembered across every :meth:`closure` of this object.
    """

    def __init__(
        self,
        source: ContentSource,
        present: Callable[[Digest], bool] | None = None,
        *,
        skip_unreadable: bool = False,
    ) -> None:
        self._source = source
        self._present = present or (lambda digest: source.blob_size(digest) is not None)
        self._skip_unreadable = skip_unreadable
        self._children: dict[tuple[Digest, Role], tuple[Descriptor, ...]] = {}

    def closure(self, roots: Iterable[Descriptor]) -> set[Digest]:
        """Every digest reachable from *roots* (absent ones included: they are still needed).

        Raises :class:`UnreadableContentError` for a present document that does not parse
        (unless *skip_unreadable*, which treats it as a leaf): a caller that deletes what is not
        reached must not guess what it would have reached.
        """
        reached: set[Digest] = set()
        visited: set[tuple[Digest, Role]] = set()
        stack = list(roots)
        while stack:
            desc = stack.pop()
            key = (desc.digest, role_of(desc.media_type))
            if key in visited:
                continue
            visited.add(key)
            reached.add(desc.digest)
            if key[1] != "blob":
                stack.extend(self._children_of(desc, key))
        return reached

    def closure_of_blobs(self, sizes: Mapping[Digest, int | None]) -> set[Digest]:
        """Every digest reachable from blobs whose media types are not known, by their sizes
        (None: absent, or known not to be a document). An import leases a blob when it
        decides to use the store's copy, before it knows what the blob is; a manifest kept
        that way must keep what it lists, or it outlives its config and layers, and an image
        whose index lists it (committed by that import next) reads as incomplete. A present
        blob small enough to be a document is read and followed as the index or manifest it
        parses as, else a leaf.
        """
        return self.closure(self._as_document(digest, size) for digest, size in sizes.items())

    def _as_document(self, digest: Digest, size: int | None) -> Descriptor:
        leaf = Descriptor(UNKNOWN_TYPE, digest, 0)
        if size is None or size > self._source.document_limit:
            return leaf
        try:
            data = self._source.read_blob(digest, self._source.document_limit)
        except CargoholdError:
            return leaf  # gone since, or damaged: what it would list is not known
        what = f"blob {digest}"
        with contextlib.suppress(CargoholdError):
            index = parse_index(data, what)
            self._children.setdefault((digest, "index"), index.manifests)
            return Descriptor(index.media_type, digest, size)
        with contextlib.suppress(CargoholdError):
            manifest = parse_manifest(data, what)
            self._children.setdefault((digest, "manifest"), manifest.blobs)
            return Descriptor(manifest.media_type, digest, size)
        return leaf

    def _children_of(self, desc: Descriptor, key: tuple[Digest, Role]) -> tuple[Descriptor, ...]:
        found = self._children.get(key)
        if found is None:
            found = ()
            if self._present(desc.digest):
                try:
                    found = tuple(iter_children(self._source, desc))
                except NotFoundError:
                    found = ()  # removed since it was seen: nothing below it to keep
                except CargoholdError as exc:
                    if not self._skip_unreadable:
                        raise UnreadableContentError(desc.digest, exc) from None
            self._children[key] = found
        return found
