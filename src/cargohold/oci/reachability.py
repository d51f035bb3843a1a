"""Reachability: which blobs a set of roots reaches, for collection and namespace holdings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

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
)

Role = Literal["index", "manifest", "blob"]


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
