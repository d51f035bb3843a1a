"""Docker archives (``docker save``): everything that reads their ``manifest.json``.

A docker archive names layers and configs by path, not digest. Two things follow. During the
scan, a plain-tar layer whose diff_id the namespace holds need not be read (its diff_id is its
digest): :func:`stored_layers`. After it, each image is converted into a schema 2 manifest
built from the archive alone, so its digest never depends on what the store already holds:
:func:`plan_docker`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ..errors import CargoholdError, InvalidArchiveError, InvalidReferenceError
from ..oci.digests import Digest
from ..oci.graph import ImageGraph
from ..oci.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    MAX_JSON_LIMIT,
    OCI_LAYER_ZSTD,
    Descriptor,
    config_platform,
    dump_json,
    load_json,
    parse_config,
)
from ..oci.platforms import PlatformMatcher
from ..oci.references import Reference, parse_repository
from ..storage.staged import StagedBlob
from . import compression
from .contents import ArchiveContents, walk_archive
from .members import Member
from .plan import ImportPlan, assign_names

#: Bytes enough to tell a compressed layer from a plain tar.
_SNIFF_BYTES: Final = 6


def stored_layers(
    contents: ArchiveContents,
    deferred: dict[str, Member],
    stage: Callable[[Member, str], StagedBlob],
    already_stored: Callable[[Digest, int], bool],
) -> tuple[dict[str, Digest], dict[str, Digest]]:
    """Layers of a docker archive that need not be read (the store has their content), and
    the digests the others must have.

    A docker archive names layers by path, not digest; the config's ``diff_ids`` give the
    digest of each uncompressed layer, and an uncompressed layer's digest is its diff_id (the
    plan checks that of every layer it reads). So when a layer member starts as a plain tar
    and the store holds its diff_id, the store's verified copy stands for it, as it does for
    an OCI blob the store holds; when the store does not, the member is staged as a blob of
    that digest (known before it is read, it can be hashed alongside the next). Configs are
    read here (they are small, *stage* stages them). Anything malformed is left alone: the
    layer is then read, and the plan reports the problem.
    """
    if contents.manifest_json is None or contents.index_json is not None:
        return {}, {}
    try:
        doc = load_json(contents.manifest_json, "manifest.json", MAX_JSON_LIMIT, strict_keys=False)
    except CargoholdError:
        return {}, {}
    stored: dict[str, Digest] = {}
    claimed: dict[str, Digest | None] = {}
    for entry in doc if isinstance(doc, list) else []:
        for name, digest in _layer_claims(contents, entry, deferred, stage):
            member = deferred.get(name)
            if member is None or name in stored or name in contents.files:
                continue
            with member.open() as source:
                head = source.read(_SNIFF_BYTES)
            if compression.detect(head) != "none":
                continue
            if already_stored(digest, member.size):
                stored[name] = digest
                contents.present.add(digest)
            else:  # two configs that disagree about a member: it is read for what it is
                claimed[name] = digest if claimed.get(name, digest) == digest else None
    return stored, {name: d for name, d in claimed.items() if d is not None and name not in stored}


def _layer_claims(
    contents: ArchiveContents,
    entry: object,
    deferred: dict[str, Member],
    stage: Callable[[Member, str], StagedBlob],
) -> list[tuple[str, Digest]]:
    """(member, diff_id) of each layer of one manifest.json entry, staging its config; empty
    when anything about the entry is malformed (the plan reports it)."""
    if not isinstance(entry, dict):
        return []
    config_path, layer_paths = entry.get("Config"), entry.get("Layers")
    if not isinstance(config_path, str) or not isinstance(layer_paths, list):
        return []
    if not all(isinstance(path, str) for path in layer_paths):
        return []
    try:
        config_name = contents.link_target(config_path)
    except InvalidArchiveError:
        return []
    member = deferred.get(config_name)
    if member is None or member.size > contents.document_limit:
        return []
    if config_name not in contents.files:
        contents.files[config_name] = stage(member, f"member {config_name!r}")
    try:
        config = parse_config(contents.files[config_name].read(), config_name)
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layer_paths):
            return []
        return [
            (contents.link_target(path), Digest.parse(diff_id))
            for path, diff_id in zip(layer_paths, diff_ids, strict=True)
        ]
    except CargoholdError:
        return []


def plan_docker(
    contents: ArchiveContents,
    matcher: PlatformMatcher,
    base_name: str,
    stage: Callable[[bytes], StagedBlob],
    tags: tuple[str, ...] = (),
    digest_names: bool = False,
    compress_layer: Callable[[StagedBlob], StagedBlob] | None = None,
) -> ImportPlan:
    """Convert the images of a docker archive (``manifest.json``) into schema 2 manifests.

    The manifests are built from the archive alone, so their digests never depend on what the
    store already holds; layers are kept byte for byte, labelled by what their bytes are.
    """
    assert contents.manifest_json is not None
    for staged in contents.files.values():  # docker archives keep content under any path
        contents.staged.setdefault(staged.digest, staged)
    # docker's own keys (Config, Layers) are case-variants of OCI's: read this file leniently
    doc = load_json(contents.manifest_json, "manifest.json", MAX_JSON_LIMIT, strict_keys=False)
    if not isinstance(doc, list):
        raise InvalidArchiveError("manifest.json: must be a JSON array")
    repositories = _repositories(contents.repositories)
    base = parse_repository(base_name)
    plan = ImportPlan()
    graphs: list[tuple[Descriptor, ImageGraph, list[str]]] = []
    for i, entry in enumerate(doc):
        what = f"manifest.json[{i}]"
        desc, last_layer = _docker_manifest(contents, entry, what, stage, compress_layer)
        if not matcher.matches(desc.platform):
            continue
        graph = walk_archive(contents, desc, matcher, what)
        names = _docker_names(entry, what)
        if not names:
            layer_id = last_layer.rpartition("/")[0]
            names = [n for n, v1 in repositories if v1 == layer_id or len(doc) == 1]
        graphs.append((desc, graph, names))
    if not graphs:
        if doc:
            raise InvalidArchiveError(f"no image in the archive matches {matcher}")
        raise InvalidArchiveError("manifest.json lists no images")
    assign_names(plan, graphs, base, tags, digest_names)
    return plan


def _docker_manifest(
    contents: ArchiveContents,
    entry: object,
    what: str,
    stage: Callable[[bytes], StagedBlob],
    compress_layer: Callable[[StagedBlob], StagedBlob] | None,
) -> tuple[Descriptor, str]:
    """The schema 2 manifest of one ``manifest.json`` entry, staged; and its last layer's path
    (older archives name their images by the id of that layer, in ``repositories``)."""
    if not isinstance(entry, dict):
        raise InvalidArchiveError(f"{what}: must be an object")
    config_path = entry.get("Config")
    layer_paths = entry.get("Layers")
    if not isinstance(config_path, str):
        raise InvalidArchiveError(f"{what}: 'Config' must be a path")
    if not isinstance(layer_paths, list) or not all(isinstance(p, str) for p in layer_paths):
        raise InvalidArchiveError(f"{what}: 'Layers' must be a list of paths")
    config, config_doc, diff_ids = _docker_config(contents, config_path, len(layer_paths), what)
    layers = [
        _docker_layer(contents, path, j, diff_ids[j], what, compress_layer)
        for j, path in enumerate(layer_paths)
    ]
    manifest = dump_json(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": Descriptor(DOCKER_CONFIG, config.digest, config.size).to_json(),
            "layers": layers,
        }
    )
    staged = stage(manifest)
    contents.staged.setdefault(staged.digest, staged)
    platform = config_platform(config_doc)
    last = layer_paths[-1] if layer_paths else ""
    return Descriptor(DOCKER_MANIFEST, staged.digest, staged.size, platform=platform), last


def _docker_config(
    contents: ArchiveContents, config_path: str, layer_count: int, what: str
) -> tuple[StagedBlob, dict[str, Any], list[object]]:
    """An entry's config, its parsed document and its diff_ids (one per layer)."""
    config = contents.file(config_path, f"{what} Config")
    if config.size > contents.document_limit:
        raise InvalidArchiveError(
            f"{what}: config {config_path!r} exceeds the document limit of"
            f" {contents.document_limit} bytes (raise it with --max-document-size)"
        )
    config_doc = parse_config(config.read(), f"{what} config {config_path!r}")
    rootfs = config_doc.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise InvalidArchiveError(f"{what}: config {config_path!r} has no rootfs.diff_ids")
    if len(diff_ids) != layer_count:
        raise InvalidArchiveError(
            f"{what}: {layer_count} layers but the config lists {len(diff_ids)} diff_ids"
        )
    return config, config_doc, diff_ids


def _docker_layer(
    contents: ArchiveContents,
    path: str,
    j: int,
    diff_id: object,
    what: str,
    compress_layer: Callable[[StagedBlob], StagedBlob] | None,
) -> dict[str, object]:
    """The descriptor of one layer, labelled by its bytes; a plain tar must match its diff_id
    (and is compressed here when the import asks for it)."""
    layer = contents.file(path, f"{what} layer {j}")
    media_type = _layer_type(layer)
    if media_type == DOCKER_LAYER and diff_id != str(layer.digest):
        raise InvalidArchiveError(
            f"{what}: layer {path!r} has digest {layer.digest}, its diff_id is {diff_id}"
        )
    if media_type == DOCKER_LAYER and compress_layer is not None:
        layer = compress_layer(layer)
        contents.staged.setdefault(layer.digest, layer)
        media_type = DOCKER_LAYER_GZIP
    return Descriptor(media_type, layer.digest, layer.size).to_json()


def _layer_type(layer: StagedBlob) -> str:
    """Docker layers are labelled by what their bytes are (ctr calls zstd gzip: we do not)."""
    kind = compression.detect(layer.head(6))
    if kind == "gzip":
        return DOCKER_LAYER_GZIP
    if kind == "zstd":
        return OCI_LAYER_ZSTD
    if kind == "none":
        return DOCKER_LAYER
    raise InvalidArchiveError(f"layer {layer.digest}: {kind} compressed layers are not supported")


def _docker_names(entry: dict[str, object], what: str) -> list[str]:
    tags = entry.get("RepoTags")
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidArchiveError(f"{what}: 'RepoTags' must be a list of names")
    try:
        return [str(Reference.parse(t)) for t in tags]
    except InvalidReferenceError as exc:
        raise InvalidArchiveError(f"{what}: RepoTags: {exc}") from None


def _repositories(data: bytes | None) -> list[tuple[str, str]]:
    """Names from docker's legacy ``repositories`` file: ``{"repo": {"tag": "<layer id>"}}``."""
    if data is None:
        return []
    doc = load_json(data, "repositories", MAX_JSON_LIMIT, strict_keys=False)
    if not isinstance(doc, dict):
        raise InvalidArchiveError("repositories: must be a JSON object")
    names = []
    for repo, tags in doc.items():
        if not isinstance(tags, dict):
            raise InvalidArchiveError(f"repositories: {repo!r} must map tags to layer ids")
        for tag, layer_id in tags.items():
            try:
                names.append((str(Reference.parse(f"{repo}:{tag}")), str(layer_id)))
            except InvalidReferenceError as exc:
                raise InvalidArchiveError(f"repositories: {exc}") from None
    return names
