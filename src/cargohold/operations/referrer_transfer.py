"""Referrers between a registry and the store: found for a pull, sent after a push.

A pull asks, for each manifest and index it brings, the registry's referrers API; where the
registry has none (404, as Distribution 2.8), the referrers tag schema (an index tagged
``sha256-<hex>``). It also asks for cosign's attachment tags (``sha256-<hex>.sig``, ``.att``,
``.sbom``), which no referrers API lists. What a listing names is fetched by digest, and an
OCI referrer whose own ``subject`` does not name the image is left out: a listing is only a
hint, the referrer's document is what says whom it belongs to.

A push sends each referrer after its subject: blobs, then the manifest by digest (an
attachment under its cosign tag); then, for a registry without the referrers API, it merges
the pushed referrers into the tag-schema index of their subject.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import CargoholdError, RegistryNotFoundError
from ..oci.digests import Digest
from ..oci.graph import walk
from ..oci.mediatypes import (
    MAX_JSON_LIMIT,
    OCI_INDEX,
    Descriptor,
    dump_json,
    is_index,
    is_manifest,
    parse_index,
)
from ..oci.platforms import PlatformMatcher
from ..oci.referrers import (
    ATTACHMENT_KINDS,
    MAX_REFERRERS,
    Referrer,
    attachment_tag,
    document_links,
    entry_descriptor,
    follow_referrers,
    referrer_descriptor,
    tag_schema_tag,
)
from ..registry.client import ManifestResponse, RegistryClient
from .context import StoreContext
from .referrers import referrer_closure


@dataclass(frozen=True, slots=True)
class Fetched:
    """A referrer found in a registry, and its manifest's verified bytes."""

    referrer: Referrer
    data: bytes


def discover_referrers(
    client: RegistryClient, repository: str, subjects: Iterable[Digest], warnings: list[str]
) -> list[Fetched]:
    """The referrers the registry has for *subjects*, and theirs in turn, parents first; at
    most :data:`MAX_REFERRERS` in all (a registry listing more is not to be followed)."""
    found: list[Fetched] = []
    seen: set[tuple[Digest, Digest]] = set()
    over: list[str] = []  # the warning, once the registry listed more than the limit

    def visit(subject: Digest) -> list[Digest]:
        following: list[Digest] = []
        for desc, kind, data in [] if over else _listed(client, repository, subject):
            if (subject, desc.digest) in seen:
                continue
            if len(seen) >= MAX_REFERRERS:
                over.append(f"{repository}: more than {MAX_REFERRERS} referrers; the rest are left")
                return []  # nothing more is followed
            seen.add((subject, desc.digest))
            fetched = _fetch(client, repository, subject, desc, kind, data, warnings)
            if fetched is not None:
                found.append(fetched)
                following.append(desc.digest)
        return following

    follow_referrers(subjects, visit)
    warnings += over
    return found


def _listed(
    client: RegistryClient, repository: str, subject: Digest
) -> list[tuple[Descriptor, str, bytes | None]]:
    """What the registry lists for *subject*: its OCI referrers (by the API, else the tag
    schema) and its cosign attachments (with their bytes, fetched by tag)."""
    out: list[tuple[Descriptor, str, bytes | None]] = []
    body = client.get_referrers(repository, subject)
    if body is None:
        response = maybe_manifest(client, repository, tag_schema_tag(subject))
        body = response.data if response is not None and is_index(response.media_type) else None
    if body is not None:
        index = parse_index(body, f"referrers of {subject}")
        out += [(d, "", None) for d in index.manifests[:MAX_REFERRERS]]
    for kind in ATTACHMENT_KINDS:
        response = maybe_manifest(client, repository, attachment_tag(subject, kind))
        if response is not None:
            desc = Descriptor(response.media_type, response.digest, len(response.data))
            out.append((desc, kind, response.data))
    return out


def _fetch(
    client: RegistryClient,
    repository: str,
    subject: Digest,
    desc: Descriptor,
    kind: str,
    data: bytes | None,
    warnings: list[str],
) -> Fetched | None:
    what = f"referrer {desc.digest} of {subject.short}"
    media_type = desc.media_type
    if data is None:
        response = client.get_manifest(repository, desc.digest)
        data, media_type = response.data, response.media_type
    if not is_manifest(media_type):
        warnings.append(f"{what}: left out, a {media_type} is not an image manifest")
        return None
    links = document_links(data, what)
    if not kind and (links.subject is None or links.subject.digest != subject):
        warnings.append(f"{what}: left out, its subject is not {subject}")
        return None
    found = Descriptor(media_type, desc.digest, len(data))
    return Fetched(Referrer(subject, referrer_descriptor(found, links), kind), data)


def maybe_manifest(
    client: RegistryClient, repository: str, reference: str
) -> ManifestResponse | None:
    """The manifest at a tag, or None when the registry has none there."""
    try:
        return client.get_manifest(repository, reference)
    except RegistryNotFoundError:
        return None


def push_referrers(
    store: StoreContext,
    client: RegistryClient,
    repository: str,
    subjects: Iterable[Digest],
    push_blob: Callable[[Descriptor], object],
) -> int:
    """Send the referrers the store keeps for *subjects* (pushed already), and theirs;
    returns how many were sent."""
    referrers = referrer_closure(store, subjects)
    for referrer in referrers:
        desc = referrer.descriptor
        target = Descriptor(desc.media_type, desc.digest, desc.size)
        graph = walk(
            store.blobs, target, PlatformMatcher.all(), f"referrer {desc.digest}",
            read_configs=False,
        )  # fmt: skip
        for leaf in graph.leaves.values():
            push_blob(leaf)
        nested = [d for d in graph.documents.values() if d.digest != desc.digest]
        for child in sorted(nested, key=lambda d: is_index(d.media_type)):  # manifests first
            child_data = store.blobs.read_blob(child.digest, MAX_JSON_LIMIT)
            client.put_manifest(repository, child.digest, child_data, child.media_type)
        data = store.blobs.read_blob(desc.digest, MAX_JSON_LIMIT)
        reference = attachment_tag(referrer.subject, referrer.kind) if referrer.kind else None
        client.put_manifest(repository, reference or desc.digest, data, desc.media_type)
    by_subject: dict[Digest, list[Referrer]] = {}
    for referrer in referrers:
        if not referrer.kind:
            by_subject.setdefault(referrer.subject, []).append(referrer)
    for subject, listed in by_subject.items():
        if client.get_referrers(repository, subject) is None:
            _update_tag_schema(client, repository, subject, listed)
    return len(referrers)


def _update_tag_schema(
    client: RegistryClient, repository: str, subject: Digest, referrers: list[Referrer]
) -> None:
    """Add *referrers* to the index at *subject*'s tag-schema tag, keeping what it lists."""
    tag = tag_schema_tag(subject)
    manifests: list[dict[str, object]] = []
    existing = maybe_manifest(client, repository, tag)
    if existing is not None and is_index(existing.media_type):
        try:
            index = parse_index(existing.data, f"{repository}:{tag}")
            manifests = [d.to_json() for d in index.manifests]
        except CargoholdError:
            manifests = []  # not a listing we can read: replaced by ours
    listed = {m["digest"] for m in manifests}
    for referrer in referrers:
        entry = entry_descriptor(referrer).to_json()
        if entry["digest"] not in listed:
            manifests.append(entry)
    body = dump_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    client.put_manifest(repository, tag, body, OCI_INDEX)
