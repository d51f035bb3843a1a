"""Media types, descriptors, and the strict reading of OCI/Docker JSON documents.

Everything an archive says about its content passes through here before anything trusts it.
Documents are parsed strictly because several tools read the same bytes: parsers disagree on
which of two duplicate keys counts, and Go matches keys case-insensitively,
so lax parsing lets one archive mean different images to different tools. Parsed documents
keep their original bytes' digest; we never re-serialise content we store or forward.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from ..errors import InvalidDigestError, InvalidDocumentError, InvalidPlatformError
from .digests import Digest
from .platforms import Platform

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYOUT_HEADER: Final = "application/vnd.oci.layout.header.v1+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER: Final = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1: Final = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES: Final = frozenset({OCI_CONFIG, DOCKER_CONFIG})

#: Annotation keys that carry image names in index.json.
ANNOTATION_IMAGE_NAME: Final = "io.containerd.image.name"
ANNOTATION_REF_NAME: Final = "org.opencontainers.image.ref.name"

#: Largest JSON document (manifest, index, config, index.json) an import reads into memory,
#: unless the user raises it (up to MAX_JSON_LIMIT).
DEFAULT_JSON_LIMIT: Final = 4 * 1024 * 1024
#: The ceiling of that limit, and the limit for documents already in the store (verified when
#: they were imported, perhaps under a raised limit).
MAX_JSON_LIMIT: Final = 64 * 1024 * 1024
#: Deepest nesting of JSON containers we accept; real documents stay below 10.
MAX_JSON_DEPTH: Final = 64
#: Largest size a descriptor may declare (1 TiB); beyond that it is an attack, not an image.
MAX_BLOB_SIZE: Final = 1 << 40
#: Most entries an index or a manifest's layer list may have.
MAX_FANOUT: Final = 10_000

_MEDIA_TYPE: Final = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)

#: Keys of OCI and Docker documents; a case-variant of one of these is refused (see module doc).
_KNOWN_KEYS: Final = frozenset(
    {
        "schemaVersion", "mediaType", "manifests", "config", "layers", "digest", "size",
        "annotations", "platform", "urls", "data", "artifactType", "subject", "architecture",
        "os", "variant", "os.version", "os.features", "features", "rootfs", "diff_ids", "type",
        "created", "history", "imageLayoutVersion", "Config", "RepoTags", "Layers", "Parent",
        "LayerSources",
    }
)  # fmt: skip
#: Keys folded as Go folds them: ``casefold`` also maps U+017F (long s) to "s", which Go's
#: case-insensitive key matching accepts and ``lower`` misses.
_KNOWN_FOLDED: Final = {k.casefold(): k for k in sorted(_KNOWN_KEYS)}
#: Keys of docker's manifest.json that are case-variants of OCI keys. Go reads them as
#: ``config`` and ``layers``, so an image manifest or index must not carry them.
_DOCKER_ARCHIVE_VARIANTS: Final = frozenset({"Config", "Layers"})


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def is_non_distributable(media_type: str) -> bool:
    return media_type.startswith(
        (
            "application/vnd.oci.image.layer.nondistributable.",
            "application/vnd.docker.image.rootfs.foreign.",
        )
    )


def _object_hook(pairs: list[tuple[str, Any]], strict_keys: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {}
    folded: dict[str, str] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidDocumentError(f"duplicate key {key!r}")
        lower = key.casefold()
        if strict_keys and lower in folded:
            raise InvalidDocumentError(f"keys {folded[lower]!r} and {key!r} differ only in case")
        if strict_keys and lower in _KNOWN_FOLDED and key not in _KNOWN_KEYS:
            raise InvalidDocumentError(f"key {key!r} is a case-variant of {_KNOWN_FOLDED[lower]!r}")
        folded[lower] = key
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise InvalidDocumentError(f"{name} is not valid JSON")


def _depth(value: Any, limit: int) -> int:
    """Depth of nested containers, without recursion (so hostile input cannot overflow)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _lenient_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return _object_hook(pairs, strict_keys=False)


def load_json(
    data: bytes, what: str, limit: int = DEFAULT_JSON_LIMIT, strict_keys: bool = True
) -> Any:
    """Parse untrusted JSON strictly; *what* names the document in error messages.

    Duplicate keys are always refused. *strict_keys* also refuses case-variants of the keys of
    OCI documents; image configs are free-form (docker writes its own capitalised keys there), so
    they are read with it off.
    """
    hook = _object_hook if strict_keys else _lenient_hook
    if len(data) > limit:
        raise InvalidDocumentError(f"{what}: JSON document of {len(data)} bytes exceeds {limit}")
    try:
        text = data.decode("utf-8")
        value = json.loads(text, object_pairs_hook=hook, parse_constant=_reject_constant)
    except InvalidDocumentError as exc:
        raise InvalidDocumentError(f"{what}: {exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidDocumentError(f"{what}: invalid JSON ({_short(exc)})") from None
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise InvalidDocumentError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def dump_json(value: Any) -> bytes:
    """Compact, key-order-preserving JSON, as Go's encoding/json writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:120]


#: The annotations of a descriptor that has none, shared (read-only) by all of them.
_NO_ANNOTATIONS: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A typed pointer to content: what it is, its digest and size, where it runs."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None

    @classmethod
    def from_json(cls, obj: object, what: str) -> Descriptor:
        """Validate a descriptor object of an untrusted document; *what* locates it for errors."""
        if not isinstance(obj, dict):
            raise InvalidDocumentError(f"{what}: descriptor must be an object")
        media_type = obj.get("mediaType")
        if not isinstance(media_type, str) or not _MEDIA_TYPE.fullmatch(media_type):
            raise InvalidDocumentError(f"{what}: invalid or missing mediaType {media_type!r}")
        try:
            digest = Digest.parse(obj.get("digest"))
        except InvalidDigestError as exc:
            raise InvalidDocumentError(f"{what}: {exc}") from None
        size = obj.get("size")
        if type(size) is not int:
            raise InvalidDocumentError(f"{what}: size of {digest} must be an integer, not {size!r}")
        if size < 0 or size > MAX_BLOB_SIZE:
            raise InvalidDocumentError(f"{what}: size {size} of {digest} is out of range")
        annotations: Mapping[str, str] = _NO_ANNOTATIONS
        if obj.get("annotations") is not None:
            annotations = _string_map(obj["annotations"], f"{what}: annotations of {digest}")
        platform = None
        if obj.get("platform") is not None:
            try:
                platform = Platform.from_json(obj["platform"])
            except InvalidPlatformError as exc:
                raise InvalidDocumentError(f"{what}: platform of {digest}: {exc}") from None
        urls = obj.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise InvalidDocumentError(f"{what}: urls of {digest} must be a list of strings")
        if "data" in obj:
            _check_embedded_data(obj["data"], digest, size, what)
        artifact_type = obj.get("artifactType")
        if artifact_type is not None and not (
            isinstance(artifact_type, str) and _MEDIA_TYPE.fullmatch(artifact_type)
        ):
            raise InvalidDocumentError(f"{what}: invalid artifactType of {digest}")
        # A manifest may list 10,000 layers of one media type: one string for them all.
        media_type = sys.intern(media_type)
        return cls(media_type, digest, size, annotations, platform, tuple(urls), artifact_type)

    def to_json(self) -> dict[str, Any]:
        """Go's field order (mediaType, digest, size, urls, annotations, platform, artifactType)."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out


def _check_embedded_data(data: object, digest: Digest, size: int, what: str) -> None:
    """A descriptor's ``data`` must be the content itself: strict base64 of exactly *size*
    bytes with the descriptor's digest (it is not used, but a lie in it is refused)."""
    try:
        if not isinstance(data, str):
            raise ValueError("not a string")
        decoded = base64.b64decode(data, validate=True)
    except ValueError:
        raise InvalidDocumentError(f"{what}: data of {digest} is not valid base64") from None
    if len(decoded) != size or Digest.of_bytes(decoded, digest.algorithm) != digest:
        raise InvalidDocumentError(f"{what}: data of {digest} does not match the descriptor")


def _string_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidDocumentError(f"{what} must map strings to strings")
    return dict(value)


@dataclass(frozen=True, slots=True)
class Index:
    """An image index (or Docker manifest list): a set of manifests, usually one per platform."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest: one config and an ordered list of layers."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        return (self.config, *self.layers)


def parse_index(data: bytes, what: str, expected_type: str | None = None) -> Index:
    """Parse an index; *expected_type* is the media type of the descriptor pointing here.

    Callers cap the size of *data* as they read it (the limit depends on where it comes from).
    """
    doc = load_json(data, what, MAX_JSON_LIMIT)
    if not isinstance(doc, dict):
        raise InvalidDocumentError(f"{what}: an image index must be a JSON object")
    _check_schema(doc, what)
    _check_oci_keys(doc, what)
    media_type = _document_type(doc, what, expected_type, INDEX_TYPES, OCI_INDEX)
    if "layers" in doc or "config" in doc:
        raise InvalidDocumentError(
            f"{what}: ambiguous document: an index must not carry 'layers' or 'config'"
        )
    manifests = doc.get("manifests")
    if manifests is None:
        manifests = []
    if not isinstance(manifests, list):
        raise InvalidDocumentError(f"{what}: 'manifests' must be a list")
    if len(manifests) > MAX_FANOUT:
        raise InvalidDocumentError(
            f"{what}: index lists {len(manifests)} manifests, over {MAX_FANOUT}"
        )
    descriptors = tuple(
        Descriptor.from_json(m, f"{what} manifests[{i}]") for i, m in enumerate(manifests)
    )
    return Index(
        media_type, descriptors, _string_map(doc.get("annotations"), f"{what}: annotations")
    )


def parse_manifest(data: bytes, what: str, expected_type: str | None = None) -> Manifest:
    """Parse a manifest; refuses schema1 and documents that could also be read as an index."""
    doc = load_json(data, what, MAX_JSON_LIMIT)
    if not isinstance(doc, dict):
        raise InvalidDocumentError(f"{what}: a manifest must be a JSON object")
    _check_schema(doc, what)
    _check_oci_keys(doc, what)
    media_type = _document_type(doc, what, expected_type, MANIFEST_TYPES, OCI_MANIFEST)
    if "manifests" in doc:
        raise InvalidDocumentError(
            f"{what}: ambiguous document: a manifest must not carry 'manifests'"
        )
    config = Descriptor.from_json(doc.get("config"), f"{what} config")
    layers = doc.get("layers")
    if layers is None:
        layers = []
    if not isinstance(layers, list):
        raise InvalidDocumentError(f"{what}: 'layers' must be a list")
    if len(layers) > MAX_FANOUT:
        raise InvalidDocumentError(
            f"{what}: manifest lists {len(layers)} layers, over {MAX_FANOUT}"
        )
    descriptors = tuple(
        Descriptor.from_json(d, f"{what} layers[{i}]") for i, d in enumerate(layers)
    )
    return Manifest(
        media_type, config, descriptors, _string_map(doc.get("annotations"), f"{what}: annotations")
    )


def _check_schema(doc: dict[str, Any], what: str) -> None:
    version = doc.get("schemaVersion")
    if type(version) is not int or version != 2:
        raise InvalidDocumentError(f"{what}: schemaVersion must be 2, not {version!r}")


def _check_oci_keys(doc: dict[str, Any], what: str) -> None:
    """Refuse docker's manifest.json keys, which :func:`load_json` lets through for that file."""
    variants = sorted(_DOCKER_ARCHIVE_VARIANTS.intersection(doc))
    if variants:
        key = variants[0]
        raise InvalidDocumentError(f"{what}: key {key!r} is a case-variant of {key.lower()!r}")


def _document_type(
    doc: dict[str, Any], what: str, expected: str | None, allowed: frozenset[str], default: str
) -> str:
    """The document's type: its own mediaType must agree with the descriptor that points at it."""
    own = doc.get("mediaType")
    if own is not None and not isinstance(own, str):
        raise InvalidDocumentError(f"{what}: mediaType must be a string")
    if own in DOCKER_SCHEMA1 or expected in DOCKER_SCHEMA1:
        raise InvalidDocumentError(f"{what}: Docker schema 1 manifests are not supported")
    if own is not None and own not in allowed:
        raise InvalidDocumentError(
            f"{what}: document mediaType {own!r} is not one of {sorted(allowed)}"
        )
    if expected is not None:
        if expected not in allowed:
            raise InvalidDocumentError(
                f"{what}: descriptor mediaType {expected!r} does not fit this document"
            )
        if own is not None and own != expected:
            raise InvalidDocumentError(
                f"{what}: document mediaType {own!r} disagrees with its descriptor's {expected!r}"
            )
        return expected
    return own or default


def parse_config(data: bytes, what: str) -> dict[str, Any]:
    """An image config, read once for everything wanted from it. Configs are free-form
    (docker writes its own capitalised keys), so case-variant keys are allowed here."""
    doc = load_json(data, what, MAX_JSON_LIMIT, strict_keys=False)
    if not isinstance(doc, dict):
        raise InvalidDocumentError(f"{what}: an image config must be a JSON object")
    return doc


def config_created(config: Mapping[str, Any]) -> str | None:
    """The ``created`` timestamp of a parsed config, used to tell which of two images is
    newer."""
    created = config.get("created")
    return created if isinstance(created, str) else None


def config_platform(config: Mapping[str, Any]) -> Platform | None:
    """The platform a parsed config declares, if it declares one we can read."""
    try:
        return Platform.from_json(
            {
                k: config[k]
                for k in ("architecture", "os", "variant", "os.version", "os.features")
                if k in config
            }
        )
    except InvalidPlatformError:
        return None
