"""The whole graph below an image as inspection shows it: every platform, absent and broken
content marked, never failing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import (
    ContentError,
    InvalidArchiveError,
    InvalidDocumentError,
    NotFoundError,
)
from .digests import Digest
from .graph import MAX_INDEX_DEPTH, ContentSource, read_document
from .mediatypes import (
    Descriptor,
    is_index,
    is_manifest,
    parse_index,
    parse_manifest,
)


@dataclass(slots=True)
class TreeNode:
    """One descriptor of an image's graph as ``image inspect`` shows it, absent ones included."""

    descriptor: Descriptor
    role: str  # "index", "manifest", "config", "layer" or "blob"
    present: bool
    children: list[TreeNode] = field(default_factory=list)
    #: Why the node's document could not be read (present but unreadable or malformed).
    problem: str | None = None
    #: The document appears earlier in the tree; its children are shown there.
    repeated: bool = False

    def walk(self) -> Iterator[TreeNode]:
        yield self
        for child in self.children:
            yield from child.walk()


def tree(source: ContentSource, target: Descriptor) -> TreeNode:
    """The whole graph below *target*, every platform, with absent content marked, never
    raising for content problems (inspection is how users find them).

    A document met a second time (indexes may list a manifest more than once) is shown
    without its children, marked ``repeated``: a small archive of indexes that list each
    other many times would otherwise unfold into an exponential tree.
    """
    role = "manifest" if is_manifest(target.media_type) else "index"
    return _tree_node(source, target, role, 0, set())


def _tree_node(
    source: ContentSource, desc: Descriptor, role: str, depth: int, seen: set[Digest]
) -> TreeNode:
    if role == "index":  # a child of an index: named by what it is
        if is_manifest(desc.media_type):
            role = "manifest"
        elif not is_index(desc.media_type):
            role = "blob"
    size = source.blob_size(desc.digest)
    node = TreeNode(desc, role, size is not None)
    if size is None:
        return node
    if size != desc.size:
        node.problem = f"{desc.digest} has {size} bytes, its descriptor says {desc.size}"
        return node
    if is_index(desc.media_type) or is_manifest(desc.media_type):
        if desc.digest in seen:
            node.repeated = True
            node.role = "index" if is_index(desc.media_type) else "manifest"
            return node
        seen.add(desc.digest)
    try:
        if is_index(desc.media_type):
            node.role = "index"
            if depth >= MAX_INDEX_DEPTH:
                raise InvalidDocumentError(f"indexes nested deeper than {MAX_INDEX_DEPTH}")
            index = parse_index(
                read_document(source, desc), f"index {desc.digest}", desc.media_type
            )
            node.children = [
                _tree_node(source, c, "index", depth + 1, seen) for c in index.manifests
            ]
        elif is_manifest(desc.media_type):
            node.role = "manifest"
            manifest = parse_manifest(
                read_document(source, desc), f"manifest {desc.digest}", desc.media_type
            )
            node.children = [_tree_node(source, manifest.config, "config", depth + 1, seen)]
            node.children += [
                _tree_node(source, x, "layer", depth + 1, seen) for x in manifest.layers
            ]
    except (InvalidArchiveError, ContentError, NotFoundError) as exc:
        node.problem = str(exc)
    return node
