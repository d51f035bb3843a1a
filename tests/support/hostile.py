"""A corpus of hostile image archives, as data: each case builds one archive and says how an
import must refuse it.

Every archive here is wrong in exactly one way (the rest of it is a valid image, so the defect
is what the importer has to find): member names that escape or collide, links and special
files, digests and sizes that lie, JSON that parsers disagree on, graphs that are too deep or
too wide, truncated and corrupt streams, decompression bombs, invalid names, and docker
``manifest.json`` files that point anywhere. ``tests/properties/test_hostile.py`` imports each
one into a store and checks the one-line error and that the store did not change.

Raw tar headers are written by hand where :mod:`tarfile` would refuse to write the bytes
(non-UTF-8 names, sparse members, absurd extended headers); bombs are streamed to disk, never
built in memory.
"""

from __future__ import annotations

import base64
import bz2
import functools
import gzip
import hashlib
import io
import json
import lzma
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

import zstandard

from cargohold.limits import Limits
from cargohold.oci.platforms import Platform
from dockerimages import (
    DOCKER_MANIFEST,
    OCI_LAYER,
    DockerImage,
    classic_save,
    crane_save,
    demo_image,
    hex_of,
    skopeo_save,
)
from imagefactory import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    digest_of,
    dumps,
    layer_tar,
)
from streams import BLOCK, DIR, END, Content, Entry, Link, Special, tar_body, tar_bytes

# --- the corpus ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One hostile archive: how to build it, and the error an import must give.

    *build* writes the archive into the directory it is given and returns its path. *expect* is
    a regular expression the one-line error message must match (searched, not anchored).
    *kwargs* go to ``Store.import_archive`` (``limits=``, ``tags=``...). Marks: ``pipe`` also
    imports the archive from a pipe; ``isolated`` runs the import in a child process with a
    time limit (the case could hang or exhaust memory in-process).
    """

    name: str
    build: Callable[[Path], Path]
    expect: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    marks: frozenset[str] = frozenset()

    def __str__(self) -> str:
        return self.name


CASES: list[Case] = []


def add(
    name: str,
    expect: str,
    make: Callable[[], bytes],
    *,
    suffix: str = ".tar",
    marks: Iterable[str] = (),
    **kwargs: Any,
) -> None:
    """Register a case whose archive is small enough to build in memory."""

    def build(directory: Path) -> Path:
        path = directory / f"{name}{suffix}"
        path.write_bytes(make())
        return path

    add_build(name, expect, build, marks=marks, **kwargs)


def add_build(
    name: str, expect: str, build: Callable[[Path], Path], *, marks: Iterable[str] = (), **kw: Any
) -> None:
    """Register a case that writes its archive itself (streamed bombs)."""
    if any(c.name == name for c in CASES):
        raise ValueError(f"duplicate case name {name}")
    CASES.append(Case(name, build, expect, kw, frozenset(marks)))


def by_name(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


# --- writing tarballs ------------------------------------------------------------------------


def _octal(value: int, width: int) -> bytes:
    if value >= 8 ** (width - 1):
        return b"\x80" + value.to_bytes(width - 1, "big")  # GNU base-256
    return f"{value:0{width - 1}o}".encode() + b"\0"


def header(
    name: bytes,
    *,
    size: int = 0,
    kind: bytes = tarfile.REGTYPE,
    linkname: bytes = b"",
    magic: bytes = b"ustar\x0000",
    fields: Mapping[int, bytes] | None = None,
) -> bytes:
    """One ustar header block, written byte by byte (any name bytes, any size)."""
    buf = bytearray(BLOCK)
    buf[0 : len(name[:100])] = name[:100]
    buf[100:108] = _octal(0o644, 8)
    buf[108:116] = _octal(0, 8)
    buf[116:124] = _octal(0, 8)
    buf[124:136] = _octal(size, 12)
    buf[136:148] = _octal(0, 12)
    buf[156:157] = kind
    buf[157 : 157 + len(linkname[:100])] = linkname[:100]
    buf[257:265] = magic
    for offset, value in (fields or {}).items():
        buf[offset : offset + len(value)] = value
    buf[148:156] = b" " * 8
    buf[148:156] = f"{sum(buf):06o}".encode() + b"\0 "
    return bytes(buf)


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def member(
    name: bytes, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, linkname: bytes = b""
) -> bytes:
    return header(name, size=len(data), kind=kind, linkname=linkname) + padded(data)


def pax_records(records: Sequence[tuple[bytes, bytes]]) -> bytes:
    out = b""
    for key, value in records:
        body = b" " + key + b"=" + value + b"\n"
        length = len(body) + 1
        while len(str(length)) + len(body) != length:
            length = len(str(length)) + len(body)
        out += str(length).encode() + body
    return out


def pax(records: Sequence[tuple[bytes, bytes]], kind: bytes = tarfile.XHDTYPE) -> bytes:
    return member(b"PaxHeaders/entry", pax_records(records), kind=kind)


def gnu_long(name: bytes, kind: bytes = tarfile.GNUTYPE_LONGNAME) -> bytes:
    return member(b"././@LongLink", name + b"\0", kind=kind)


# --- a valid OCI image to spoil ----------------------------------------------------------------

HOST: Final = Platform.host()
NAME: Final = "example.com/hostile/app:1"
ANNOTATION_IMAGE_NAME: Final = "io.containerd.image.name"
ANNOTATION_REF_NAME: Final = "org.opencontainers.image.ref.name"
CREATED: Final = "2024-02-02T00:00:00Z"
LAYOUT: Final = b'{"imageLayoutVersion":"1.0.0"}'
LAYER_TAR: Final = layer_tar({"hostile/hello.txt": b"hello from the hostile corpus\n"})
LAYER: Final = gzip.compress(LAYER_TAR, mtime=0)
OTHER_LAYER: Final = gzip.compress(layer_tar({"hostile/other.txt": b"other\n"}), mtime=0)
SCHEMA1: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"
ZERO_HEX: Final = "0" * 64


def config_doc(diff_ids: Sequence[str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "created": CREATED,
        "architecture": HOST.architecture,
        "os": HOST.os,
    }
    if HOST.variant:
        doc["variant"] = HOST.variant
    doc["config"] = {"Cmd": ["/bin/sh"]}
    doc["rootfs"] = {
        "type": "layers",
        "diff_ids": list(diff_ids) if diff_ids is not None else [digest_of(LAYER_TAR)],
    }
    return doc


CONFIG: Final = dumps(config_doc())


def desc(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def manifest_doc(config: bytes = CONFIG, layers: Sequence[bytes] = (LAYER,)) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, config),
        "layers": [desc(OCI_LAYER_GZIP, layer) for layer in layers],
    }


MANIFEST: Final = dumps(manifest_doc())


def index_doc(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)}


def entry(
    document: bytes = MANIFEST, media_type: str = OCI_MANIFEST, name: str | None = NAME
) -> dict[str, Any]:
    """An index.json entry for *document*, named with containerd's annotation."""
    out = desc(media_type, document)
    if name is not None:
        out["annotations"] = {ANNOTATION_IMAGE_NAME: name}
    return out


def blob(data: bytes) -> Entry:
    return (f"blobs/sha256/{hex_of(data)}", data)


def as_bytes(doc: bytes | Any) -> bytes:
    return doc if isinstance(doc, bytes) else dumps(doc)


def oci(
    *,
    manifest: bytes | dict[str, Any] = MANIFEST,
    index: bytes | dict[str, Any] | None = None,
    blobs: Sequence[bytes] = (CONFIG, LAYER),
    layout: bytes | None = LAYOUT,
    extra: Sequence[Entry] = (),
    index_last: bool = False,
) -> list[Entry]:
    """The members of an OCI layout holding *manifest* (and *blobs*), named :data:`NAME`."""
    manifest_bytes = as_bytes(manifest)
    index_bytes = as_bytes(index if index is not None else index_doc(entry(manifest_bytes)))
    head: list[Entry] = [] if layout is None else [("oci-layout", layout)]
    head.append(("index.json", index_bytes))
    body = [blob(b) for b in (*blobs, manifest_bytes)]
    members = body + head if index_last else head + body
    return [*members, *extra]


def oci_tar(**kw: Any) -> bytes:
    return tar_bytes(oci(**kw))


def with_manifest(doc: bytes | dict[str, Any], **kw: Any) -> Callable[[], bytes]:
    """An archive whose only image is the (hostile) manifest *doc*, referenced by its digest."""
    return functools.partial(oci_tar, manifest=doc, **kw)


def with_index(doc: bytes | dict[str, Any], **kw: Any) -> Callable[[], bytes]:
    return functools.partial(oci_tar, index=doc, **kw)


def nested(index: bytes | dict[str, Any], **kw: Any) -> Callable[[], bytes]:
    """index.json → the (hostile) index *index* → the valid manifest."""
    index_bytes = as_bytes(index)
    return functools.partial(
        oci_tar,
        index=index_doc(entry(index_bytes, OCI_INDEX)),
        blobs=(CONFIG, LAYER, index_bytes),
        **kw,
    )


def edited(doc: dict[str, Any], edit: Callable[..., object]) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(doc))
    edit(copy)
    return copy


def spliced(doc: dict[str, Any], key: str, raw: str) -> bytes:
    """*doc* as JSON with ``"key":<raw>`` inserted first (raw JSON text, any bytes)."""
    return b"{" + json.dumps(key).encode() + b":" + raw.encode() + b"," + dumps(doc)[1:]


def replaced(data: bytes, old: str, new: str) -> bytes:
    assert old.encode() in data, old
    return data.replace(old.encode(), new.encode(), 1)


VALID_OCI: Final = oci_tar()
VALID_OCI_INDEX_LAST: Final = oci_tar(index_last=True)

# --- member names ------------------------------------------------------------------------------

NAME_CASES: list[tuple[str, str, list[Entry]]] = [
    ("name-absolute", "absolute", oci(extra=[("/etc/passwd", b"root")])),
    (
        "name-absolute-blob",
        "absolute",
        [
            (f"/blobs/sha256/{hex_of(LAYER)}", LAYER) if n == blob(LAYER)[0] else (n, c)
            for n, c in oci()
        ],
    ),
    ("name-slashes-only", "absolute|empty name", oci(extra=[("//", b"x")])),
    ("name-dotdot", r"'\.\.'", oci(extra=[("../escape", b"x")])),
    ("name-dotdot-inner", r"'\.\.'", oci(extra=[("a/../../x", b"x")])),
    ("name-dotdot-at-end", r"'\.\.'", oci(extra=[("blobs/sha256/..", b"x")])),
    ("name-dotdot-into-index", r"'\.\.'", oci(extra=[("blobs/../index.json", b"{}")])),
    ("name-backslash", "backslash", oci(extra=[("..\\..\\escape", b"x")])),
    ("name-backslash-blob", "backslash", oci(extra=[("blobs\\sha256\\" + ZERO_HEX, b"x")])),
    ("name-dot-is-empty", "empty name", oci(extra=[(".", b"x")])),
    ("name-dot-slash-dot", "empty name", oci(extra=[("./.", b"x")])),
    ("dup-dot-slash-index", "twice", oci(extra=[("./index.json", dumps(index_doc()))])),
    ("dup-index", "twice", oci(extra=[("index.json", dumps(index_doc()))])),
    ("dup-oci-layout", "twice", oci(extra=[("oci-layout", LAYOUT)])),
    ("dup-blob-same-bytes", "twice", oci(extra=[blob(LAYER)])),
    (
        "dup-blob-other-bytes",
        "twice|digest",
        oci(extra=[(blob(LAYER)[0], OTHER_LAYER)]),
    ),
    ("dup-blob-double-slash", "twice", oci(extra=[(f"blobs//sha256/{hex_of(LAYER)}", LAYER)])),
    ("dup-blob-dot-segment", "twice", oci(extra=[(f"blobs/./sha256/{hex_of(LAYER)}", LAYER)])),
    ("dup-index-trailing-slash", "twice", oci(extra=[("index.json/", dumps(index_doc()))])),
    ("dup-dir-and-file", "twice", [("index.json", DIR), *oci()]),
    ("name-overlong-pax", "longer than", oci(extra=[("a/" * 1200 + "x", b"x")])),
]
for _name, _expect, _entries in NAME_CASES:
    add(_name, _expect, functools.partial(tar_bytes, _entries))

_BODY: Final = tar_body(oci())

add("name-nul-in-pax-path", "NUL", lambda: _BODY + pax([(b"path", b"a\0b")]) + member(b"x") + END)
add(
    "name-nul-in-pax-path-of-index",
    "NUL",
    lambda: tar_body(oci()[1:]) + pax([(b"path", b"oci-layout\0x")]) + member(b"x", LAYOUT) + END,
)
add("name-non-utf8-ustar", "UTF-8", lambda: _BODY + member(b"blobs/\xff\xfe") + END)
add("name-non-utf8-latin1-index", "UTF-8", lambda: _BODY + member(b"ind\xe9x.json") + END)
add(
    "name-non-utf8-pax", "UTF-8", lambda: _BODY + pax([(b"path", b"\xc3\x28")]) + member(b"x") + END
)
add(
    "name-non-utf8-pax-binary",
    "UTF-8",
    lambda: _BODY + pax([(b"hdrcharset", b"BINARY"), (b"path", b"\xff")]) + member(b"x") + END,
)
add(
    "name-non-utf8-gnu-long",
    "UTF-8",
    lambda: _BODY + gnu_long(b"x" * 120 + b"\xff") + member(b"x") + END,
)
add("name-overlong-gnu", "longer than", lambda: _BODY + gnu_long(b"n" * 5000) + member(b"x") + END)
add("name-empty", "empty name", lambda: _BODY + member(b"", b"x") + END)

# --- links and special files -------------------------------------------------------------------

_LAYER_NAME: Final = blob(LAYER)[0]


def _swap(entries: list[Entry], name: str, content: Content, extra: Sequence[Entry] = ()) -> bytes:
    return tar_bytes([(n, content if n == name else c) for n, c in entries] + list(extra))


add(
    "hardlink",
    "hard link",
    lambda: tar_bytes(oci(extra=[("evil", Special(tarfile.LNKTYPE, "oci-layout"))])),
)
add(
    "hardlink-outside",
    "hard link",
    lambda: tar_bytes(oci(extra=[("evil", Special(tarfile.LNKTYPE, "/etc/passwd"))])),
)
add(
    "hardlink-as-layer-blob",
    "hard link",
    lambda: _swap(
        oci(), _LAYER_NAME, Special(tarfile.LNKTYPE, "layer.bin"), [("layer.bin", LAYER)]
    ),
)
add(
    "hardlink-first-then-file",
    "hard link",
    lambda: tar_bytes([("layer.bin", Special(tarfile.LNKTYPE, _LAYER_NAME)), *oci()]),
)
add(
    "symlink-as-layer-blob",
    "missing|link",
    lambda: _swap(oci(), _LAYER_NAME, Link("../../layer.bin"), [("layer.bin", LAYER)]),
)
add(
    "symlink-as-index-json",
    "index.json|link",
    lambda: _swap(oci(), "index.json", Link("real-index.json"), [("real-index.json", b"{}")]),
)
add(
    "symlink-absolute",
    "symbolic link",
    lambda: tar_bytes(oci(extra=[("evil", Link("/etc/passwd"))])),
)
add(
    "symlink-escaping",
    "leaves the archive",
    lambda: tar_bytes(oci(extra=[("blobs/evil", Link("../../../etc/passwd"))])),
)
add(
    "symlink-escaping-deep",
    "leaves the archive",
    lambda: tar_bytes(oci(extra=[("a/b/evil", Link("../x/../../../etc/shadow"))])),
)
add(
    "symlink-to-nothing",
    "not a regular file",
    lambda: tar_bytes(oci(extra=[("evil", Link("no-such-member"))])),
)
for _kind, _type in [
    ("chardev", tarfile.CHRTYPE),
    ("blockdev", tarfile.BLKTYPE),
    ("fifo", tarfile.FIFOTYPE),
    ("unknown-type", b"Z"),
]:
    add(
        f"{_kind}-member",
        "device|FIFO|type|not allowed",
        functools.partial(tar_bytes, oci(extra=[("evil", Special(_type))])),
    )
    add(
        f"{_kind}-as-layer-blob",
        "device|FIFO|type|not allowed",
        functools.partial(_swap, oci(), _LAYER_NAME, Special(_type)),
    )


@functools.cache
def zeros_hex(size: int) -> str:
    hasher = hashlib.sha256()
    chunk = bytes(1 << 20)
    for start in range(0, size, len(chunk)):
        hasher.update(chunk[: min(len(chunk), size - start)])
    return hasher.hexdigest()


def _sparse_old_gnu(realsize: int) -> bytes:
    """An old-GNU sparse member ('S'): 512 stored bytes that a reader expands to *realsize*."""
    data = b"\0" * BLOCK
    fields = {
        386: _octal(0, 12),  # first (offset, numbytes) pair of the sparse map
        398: _octal(BLOCK, 12),
        482: b"\0",  # no extended sparse headers
        483: _octal(realsize, 12),  # the size the member pretends to have
    }
    name = f"blobs/sha256/{zeros_hex(realsize)}".encode()
    hdr = header(
        name, size=len(data), kind=tarfile.GNUTYPE_SPARSE, magic=b"ustar  \0", fields=fields
    )
    return hdr + data


def _sparse_pax(realsize: int) -> bytes:
    """A PAX 0.1 sparse member: a regular-file header whose extended header expands it."""
    name = f"blobs/sha256/{zeros_hex(realsize)}".encode()
    records = [
        (b"GNU.sparse.size", str(realsize).encode()),
        (b"GNU.sparse.numblocks", b"1"),
        (b"GNU.sparse.map", f"0,{BLOCK}".encode()),
    ]
    return pax(records) + member(name, b"\0" * BLOCK)


_SPARSE_SIZE: Final = 64 << 20
SPARSE: Final = r"sparse|type|not allowed"


def _sparse_image(sparse_member: bytes) -> bytes:
    """A whole valid image whose second layer is a sparse member: if the importer expands it, the
    import succeeds, having written 64 MiB from 1 KiB of archive (1 TiB works the same way)."""
    sparse: dict[str, Any] = {
        "mediaType": OCI_LAYER,
        "digest": f"sha256:{zeros_hex(_SPARSE_SIZE)}",
        "size": _SPARSE_SIZE,
    }
    doc = manifest_doc()
    doc["layers"].append(sparse)
    cfg = dumps(config_doc([digest_of(LAYER_TAR), sparse["digest"]]))
    doc["config"] = desc(OCI_CONFIG, cfg)
    return tar_body(oci(manifest=doc, blobs=(cfg, LAYER))) + sparse_member + END


def _sparse_pax_10(entries: int, lines: int) -> bytes:
    """A PAX 1.0 sparse member: its map, in its data, claims *entries* and holds *lines*."""
    name = f"blobs/sha256/{zeros_hex(_SPARSE_SIZE)}".encode()
    records = [
        (b"GNU.sparse.major", b"1"),
        (b"GNU.sparse.minor", b"0"),
        (b"GNU.sparse.name", name),
        (b"GNU.sparse.realsize", str(_SPARSE_SIZE).encode()),
    ]
    return pax(records) + member(name, b"%d\n" % entries + b"0\n" * lines)


add("sparse-old-gnu-expands", SPARSE, lambda: _sparse_image(_sparse_old_gnu(_SPARSE_SIZE)))
add("sparse-pax-expands", SPARSE, lambda: _sparse_image(_sparse_pax(_SPARSE_SIZE)))
add("sparse-pax-1.0-expands", SPARSE, lambda: _sparse_image(_sparse_pax_10(1, 2)))
add("sparse-pax-1.0-map-cut-short", SPARSE, lambda: _sparse_image(_sparse_pax_10(10**9, 50_000)))

# --- digests and sizes -------------------------------------------------------------------------

DIGEST_ERROR: Final = r"unsupported digest algorithm|invalid digest|digest must be"
BAD_DIGESTS: Final[list[tuple[str, object]]] = [
    ("md5", "md5:" + hashlib.md5(LAYER).hexdigest()),
    ("sha1", "sha1:" + hashlib.sha1(LAYER).hexdigest()),
    ("unknown-alg", "blake3:" + hex_of(LAYER)),
    ("short", "sha256:" + hex_of(LAYER)[:63]),
    ("long", "sha256:" + hex_of(LAYER) + "0"),
    ("upper", "sha256:" + hex_of(LAYER).upper()),
    ("newline", "sha256:" + hex_of(LAYER) + "\n"),
    ("traversal", "sha256:../../../../etc/passwd"),
    ("no-algorithm", hex_of(LAYER)),
    ("empty", ""),
    ("int", 12345),
    ("sha512-short", "sha512:" + hex_of(LAYER)),
]


def _layer_digest(value: object) -> dict[str, Any]:
    return edited(manifest_doc(), lambda d: d["layers"][0].__setitem__("digest", value))


def _entry_digest(value: object) -> dict[str, Any]:
    return edited(index_doc(entry()), lambda d: d["manifests"][0].__setitem__("digest", value))


for _label, _digest in BAD_DIGESTS:
    add(f"digest-{_label}-in-index-json", DIGEST_ERROR, with_index(_entry_digest(_digest)))
    add(f"digest-{_label}-in-layers", DIGEST_ERROR, with_manifest(_layer_digest(_digest)))
add(
    "digest-sha1-of-config",
    DIGEST_ERROR,
    with_manifest(
        edited(
            manifest_doc(),
            lambda d: d["config"].__setitem__("digest", "sha1:" + hashlib.sha1(CONFIG).hexdigest()),
        )
    ),
)
for _label, _blob_name in [
    ("md5", "blobs/md5/" + hashlib.md5(b"x").hexdigest()),
    ("sha1", "blobs/sha1/" + hashlib.sha1(b"x").hexdigest()),
    ("unknown-alg", "blobs/blake3/" + hex_of(b"x")),
    ("upper", "blobs/sha256/" + hex_of(b"x").upper()),
    ("short", "blobs/sha256/" + hex_of(b"x")[:40]),
    ("non-hex", "blobs/sha256/" + "g" * 64),
    ("empty-alg", "blobs/:/" + hex_of(b"x")),
]:
    add(
        f"blob-name-{_label}",
        DIGEST_ERROR,
        functools.partial(tar_bytes, oci(extra=[(_blob_name, b"x")])),
    )

CONTENT_ERROR: Final = r"content has digest"
add("blob-bytes-mismatch", CONTENT_ERROR, lambda: _swap(oci(), _LAYER_NAME, OTHER_LAYER))
add(
    "blob-bytes-mismatch-unreferenced",
    CONTENT_ERROR,
    lambda: tar_bytes(oci(extra=[(blob(b"one")[0], b"two")])),
)
add(
    "blob-bytes-mismatch-sha512",
    CONTENT_ERROR,
    lambda: tar_bytes(oci(extra=[("blobs/sha512/" + hashlib.sha512(b"one").hexdigest(), b"two")])),
)
add(
    "blob-bytes-mismatch-config",
    CONTENT_ERROR,
    lambda: _swap(oci(), blob(CONFIG)[0], CONFIG.replace(b"/bin/sh", b"/bin/xx")),
)


def _bump(descriptor: dict[str, Any], delta: int) -> None:
    descriptor["size"] += delta


SIZE_MISMATCH: Final = r"bytes, its descriptor says"
for _delta in (1, -1, 1000):
    add(
        f"size-layer-off-by-{_delta}",
        SIZE_MISMATCH,
        with_manifest(edited(manifest_doc(), lambda d, n=_delta: _bump(d["layers"][0], n))),
    )
    add(
        f"size-config-off-by-{_delta}",
        SIZE_MISMATCH,
        with_manifest(edited(manifest_doc(), lambda d, n=_delta: _bump(d["config"], n))),
    )
    add(
        f"size-manifest-off-by-{_delta}",
        SIZE_MISMATCH,
        with_index(edited(index_doc(entry()), lambda d, n=_delta: _bump(d["manifests"][0], n))),
    )


MISSING: Final = r"is missing"
add("missing-layer", MISSING, with_manifest(manifest_doc(layers=(LAYER, OTHER_LAYER))))
add("missing-config", MISSING, with_manifest(MANIFEST, blobs=(LAYER,)))
add(
    "missing-manifest",
    r"missing",
    with_index(index_doc(entry(dumps(manifest_doc(layers=()))))),
)

SIZE_ERROR: Final = r"size .*must be an integer|size .*out of range|invalid JSON"
BAD_SIZES: Final[list[tuple[str, str]]] = [
    ("negative", "-1"),
    ("negative-zero-float", "-0.0"),
    ("float", "1.5"),
    ("float-equal", "{n}.0"),
    ("exponent", "{n}e0"),
    ("string", '"{n}"'),
    ("true", "true"),
    ("false", "false"),
    ("null", "null"),
    ("list", "[{n}]"),
    ("object", '{{"n":{n}}}'),
    ("over-int64", str(2**63 + 1)),
    ("over-uint64", str(2**64)),
    ("over-1tib", str(2**40 + 1)),
    ("infinite-literal", "1e400"),
    ("5000-digits", "9" * 5000),
]


def _raw_size_in_config_descriptor(raw: str) -> bytes:
    text = dumps(manifest_doc()).decode()
    return replaced(text.encode(), f'"size":{len(CONFIG)}', f'"size":{raw.format(n=len(CONFIG))}')


def _raw_size_in_index_json(raw: str) -> bytes:
    text = dumps(index_doc(entry())).decode()
    return replaced(
        text.encode(), f'"size":{len(MANIFEST)}', f'"size":{raw.format(n=len(MANIFEST))}'
    )


for _label, _raw in BAD_SIZES:
    add(
        f"size-{_label}-in-manifest",
        SIZE_ERROR,
        with_manifest(_raw_size_in_config_descriptor(_raw)),
    )
    add(f"size-{_label}-in-index-json", SIZE_ERROR, with_index(_raw_size_in_index_json(_raw)))
add(
    "size-missing",
    SIZE_ERROR,
    with_manifest(edited(manifest_doc(), lambda d: d["config"].pop("size"))),
)

# --- JSON --------------------------------------------------------------------------------------

INVALID_JSON: Final = r"invalid JSON"
INDEX: Final = dumps(index_doc(entry()))
JSON_TEXTS: Final[list[tuple[str, str, bytes]]] = [
    ("invalid", INVALID_JSON, b"{this is not json"),
    ("truncated", INVALID_JSON, INDEX[: len(INDEX) // 2]),
    ("empty", INVALID_JSON, b""),
    ("not-utf8", INVALID_JSON, INDEX[:-1] + b',"x":"\xff\xfe"}'),
    ("utf8-bom", INVALID_JSON, b"\xef\xbb\xbf" + INDEX),
    ("utf16", INVALID_JSON, INDEX.decode().encode("utf-16")),
    ("trailing-garbage", INVALID_JSON, INDEX + b"{}"),
    ("comment", INVALID_JSON, b"/* hi */" + INDEX),
    ("single-quotes", INVALID_JSON, INDEX.replace(b'"', b"'")),
    (
        "nested-10000",
        INVALID_JSON + "|nested",
        spliced(index_doc(entry()), "x", "[" * 10000 + "]" * 10000),
    ),
    ("nested-100", r"nested deeper", spliced(index_doc(entry()), "x", "[" * 100 + "]" * 100)),
    (
        "nested-objects-100",
        r"nested deeper",
        spliced(index_doc(entry()), "x", '{"a":' * 100 + "1" + "}" * 100),
    ),
    ("duplicate-key", r"duplicate key", spliced(index_doc(entry()), "manifests", "[]")),
    (
        "duplicate-schema-version",
        r"duplicate key",
        spliced(index_doc(entry()), "schemaVersion", "1"),
    ),
    ("case-variant-manifests", r"case", spliced(index_doc(entry()), "Manifests", "[]")),
    ("case-variant-only", r"case", dumps({"schemaVersion": 2, "Manifests": [entry()]})),
    (
        "case-variant-media-type",
        r"case",
        spliced(index_doc(entry()), "MediaType", json.dumps(OCI_INDEX)),
    ),
    (
        "case-variant-lower",
        r"case",
        spliced(index_doc(entry()), "mediatype", json.dumps(OCI_INDEX)),
    ),
    ("case-variant-long-s", r"case", spliced(index_doc(entry()), "\u017fchemaVersion", "2")),
    ("case-variant-in-descriptor", r"case", replaced(INDEX, '"digest":', '"Digest":"x","digest":')),
    ("nan", r"NaN", replaced(INDEX, f'"size":{len(MANIFEST)}', '"size":NaN')),
    ("infinity", r"Infinity", replaced(INDEX, f'"size":{len(MANIFEST)}', '"size":Infinity')),
    ("minus-infinity", r"Infinity", replaced(INDEX, f'"size":{len(MANIFEST)}', '"size":-Infinity')),
    ("top-level-array", r"must be a JSON object", dumps([index_doc(entry())])),
    ("top-level-string", r"must be a JSON object", b'"index"'),
    ("top-level-null", r"must be a JSON object", b"null"),
    ("top-level-number", r"must be a JSON object", b"2"),
]
for _label, _expect, _text in JSON_TEXTS:
    add(f"index-json-{_label}", _expect, with_index(_text))

MANIFEST_TEXTS: Final[list[tuple[str, str, bytes]]] = [
    ("invalid", INVALID_JSON, b"{this is not json"),
    ("truncated", INVALID_JSON, MANIFEST[: len(MANIFEST) // 2]),
    ("not-utf8", INVALID_JSON, MANIFEST[:-1] + b',"x":"\xc3\x28"}'),
    (
        "nested-10000",
        INVALID_JSON + "|nested",
        spliced(manifest_doc(), "x", "[" * 10000 + "]" * 10000),
    ),
    ("nested-100", r"nested deeper", spliced(manifest_doc(), "x", "[" * 100 + "]" * 100)),
    ("duplicate-layers", r"duplicate key", spliced(manifest_doc(), "layers", "[]")),
    (
        "duplicate-config",
        r"duplicate key",
        spliced(manifest_doc(), "config", json.dumps(desc(OCI_CONFIG, b"{}"))),
    ),
    (
        "duplicate-annotation",
        r"duplicate key",
        replaced(MANIFEST, '"schemaVersion"', '"annotations":{"a":"1","a":"2"},"schemaVersion"'),
    ),
    (
        "case-variant-media-type",
        r"case",
        spliced(manifest_doc(), "MediaType", json.dumps(OCI_INDEX)),
    ),
    ("case-variant-layers", r"case", spliced(manifest_doc(), "Layers", "[]")),
    (
        "case-variant-config",
        r"case",
        spliced(manifest_doc(), "Config", json.dumps(desc(OCI_CONFIG, CONFIG))),
    ),
    ("case-variant-size-long-s", r"case", replaced(MANIFEST, '"size":', '"\u017fize":1,"size":')),
    ("nan-size", r"NaN", replaced(MANIFEST, f'"size":{len(CONFIG)}', '"size":NaN')),
    ("top-level-array", r"must be a JSON object", dumps([manifest_doc()])),
    ("top-level-null", r"must be a JSON object", b"null"),
]
for _label, _expect, _text in MANIFEST_TEXTS:
    add(f"manifest-{_label}", _expect, with_manifest(_text))

CONFIG_TEXTS: Final[list[tuple[str, str, bytes]]] = [
    ("invalid", INVALID_JSON, b"{this is not json"),
    ("not-utf8", INVALID_JSON, CONFIG[:-1] + b',"x":"\xff"}'),
    (
        "nested-10000",
        INVALID_JSON + "|nested",
        spliced(config_doc(), "x", "[" * 10000 + "]" * 10000),
    ),
    ("nested-100", r"nested deeper", spliced(config_doc(), "x", "[" * 100 + "]" * 100)),
    ("duplicate-key", r"duplicate key", spliced(config_doc(), "os", '"windows"')),
    ("nan", r"NaN", spliced(config_doc(), "x", "NaN")),
    ("top-level-array", r"must be a JSON object", dumps([config_doc()])),
    ("top-level-string", r"must be a JSON object", b'"config"'),
]
for _label, _expect, _text in CONFIG_TEXTS:
    add(
        f"config-{_label}",
        _expect,
        with_manifest(manifest_doc(config=_text), blobs=(_text, LAYER)),
    )

LARGE: Final = r"exceeds"
_BIG_PAD: Final = "x" * (4 * 1024 * 1024 + 1)
add(
    "index-json-over-default-limit",
    LARGE,
    with_index(edited(index_doc(entry()), lambda d: d.__setitem__("annotations", {"p": _BIG_PAD}))),
)
_BIG_MANIFEST: Final = edited(
    manifest_doc(), lambda d: d.__setitem__("annotations", {"p": _BIG_PAD})
)
add("manifest-over-default-limit", LARGE, with_manifest(_BIG_MANIFEST))
_BIG_CONFIG: Final = dumps(edited(config_doc(), lambda d: d.__setitem__("pad", _BIG_PAD)))
add(
    "config-over-default-limit",
    LARGE,
    with_manifest(manifest_doc(config=_BIG_CONFIG), blobs=(_BIG_CONFIG, LAYER)),
)
_SMALL_LIMIT: Final = Limits(document_bytes=2048)
_PAD: Final = "x" * 3000
add(
    "index-json-over-lowered-limit",
    LARGE,
    with_index(edited(index_doc(entry()), lambda d: d.__setitem__("annotations", {"p": _PAD}))),
    limits=_SMALL_LIMIT,
)
add(
    "manifest-over-lowered-limit",
    LARGE,
    with_manifest(edited(manifest_doc(), lambda d: d.__setitem__("annotations", {"p": _PAD}))),
    limits=_SMALL_LIMIT,
)
_PADDED_CONFIG: Final = dumps(edited(config_doc(), lambda d: d.__setitem__("pad", _PAD)))
add(
    "config-over-lowered-limit",
    LARGE,
    with_manifest(manifest_doc(config=_PADDED_CONFIG), blobs=(_PADDED_CONFIG, LAYER)),
    limits=_SMALL_LIMIT,
)

AMBIGUOUS: Final = r"ambiguous"
add(
    "ambiguous-manifest-with-manifests",
    AMBIGUOUS,
    with_manifest(edited(manifest_doc(), lambda d: d.__setitem__("manifests", []))),
)
add(
    "ambiguous-manifest-with-manifests-listing-itself",
    AMBIGUOUS,
    with_manifest(edited(manifest_doc(), lambda d: d.__setitem__("manifests", [entry(name=None)]))),
)
add(
    "ambiguous-index-json-with-layers",
    AMBIGUOUS,
    with_index(edited(index_doc(entry()), lambda d: d.__setitem__("layers", []))),
)
add(
    "ambiguous-index-json-with-config",
    AMBIGUOUS,
    with_index(
        edited(index_doc(entry()), lambda d: d.__setitem__("config", desc(OCI_CONFIG, CONFIG)))
    ),
)
add(
    "ambiguous-nested-index-with-layers",
    AMBIGUOUS,
    nested(
        edited(
            index_doc(entry(name=None)),
            lambda d: d.__setitem__("layers", [desc(OCI_LAYER_GZIP, LAYER)]),
        )
    ),
)
add(
    "ambiguous-nested-index-with-config",
    AMBIGUOUS,
    nested(
        edited(
            index_doc(entry(name=None)), lambda d: d.__setitem__("config", desc(OCI_CONFIG, CONFIG))
        )
    ),
)
add(
    "ambiguous-manifest-read-as-index",
    AMBIGUOUS + "|mediaType",
    with_index(index_doc(entry(MANIFEST, OCI_INDEX))),
)
add(
    "ambiguous-untyped-manifest-read-as-index",
    AMBIGUOUS,
    with_index(
        index_doc(entry(dumps(edited(manifest_doc(), lambda d: d.pop("mediaType"))), OCI_INDEX)),
        blobs=(CONFIG, LAYER, dumps(edited(manifest_doc(), lambda d: d.pop("mediaType")))),
    ),
)

SCHEMA: Final = r"schemaVersion must be 2"
for _label, _value in [
    ("1", 1),
    ("3", 3),
    ("string", "2"),
    ("float", 2.0),
    ("true", True),
    ("null", None),
]:
    add(
        f"schema-version-{_label}-in-manifest",
        SCHEMA,
        with_manifest(
            edited(manifest_doc(), lambda d, v=_value: d.__setitem__("schemaVersion", v))
        ),
    )
    add(
        f"schema-version-{_label}-in-index-json",
        SCHEMA,
        with_index(
            edited(index_doc(entry()), lambda d, v=_value: d.__setitem__("schemaVersion", v))
        ),
    )
add(
    "schema-version-missing-in-manifest",
    SCHEMA,
    with_manifest(edited(manifest_doc(), lambda d: d.pop("schemaVersion"))),
)
add(
    "schema-version-missing-in-index-json",
    SCHEMA,
    with_index(edited(index_doc(entry()), lambda d: d.pop("schemaVersion"))),
)

MEDIA_TYPE: Final = r"mediaType"
add(
    "media-type-manifest-says-index",
    MEDIA_TYPE,
    with_manifest(edited(manifest_doc(), lambda d: d.__setitem__("mediaType", OCI_INDEX))),
)
add(
    "media-type-manifest-says-docker",
    MEDIA_TYPE,
    with_manifest(edited(manifest_doc(), lambda d: d.__setitem__("mediaType", DOCKER_MANIFEST))),
)
add(
    "media-type-manifest-says-config",
    MEDIA_TYPE,
    with_manifest(edited(manifest_doc(), lambda d: d.__setitem__("mediaType", OCI_CONFIG))),
)
add(
    "media-type-not-a-string",
    MEDIA_TYPE,
    with_manifest(edited(manifest_doc(), lambda d: d.__setitem__("mediaType", 7))),
)
add(
    "media-type-index-json-says-manifest",
    MEDIA_TYPE,
    with_index(edited(index_doc(entry()), lambda d: d.__setitem__("mediaType", OCI_MANIFEST))),
)
add(
    "media-type-nested-index-says-manifest",
    MEDIA_TYPE + "|ambiguous",
    nested(edited(index_doc(entry(name=None)), lambda d: d.__setitem__("mediaType", OCI_MANIFEST))),
)
add(
    "media-type-descriptor-missing",
    MEDIA_TYPE,
    with_manifest(edited(manifest_doc(), lambda d: d["layers"][0].pop("mediaType"))),
)
add(
    "media-type-descriptor-newline",
    MEDIA_TYPE,
    with_manifest(
        edited(
            manifest_doc(), lambda d: d["layers"][0].__setitem__("mediaType", OCI_LAYER_GZIP + "\n")
        )
    ),
)
add(
    "media-type-descriptor-traversal",
    MEDIA_TYPE,
    with_manifest(
        edited(
            manifest_doc(), lambda d: d["layers"][0].__setitem__("mediaType", "../../etc/passwd")
        )
    ),
)
add(
    "media-type-entry-is-a-config",
    r"no image|not an image",
    with_index(index_doc(entry(CONFIG, OCI_CONFIG))),
)

SCHEMA1_DOC: Final = dumps(
    {
        "schemaVersion": 1,
        "name": "hostile/app",
        "tag": "1",
        "architecture": HOST.architecture,
        "fsLayers": [{"blobSum": digest_of(LAYER)}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": [],
    }
)
add(
    "schema1-descriptor",
    r"(?i)schema ?1",
    with_index(index_doc(entry(SCHEMA1_DOC, SCHEMA1)), blobs=(LAYER, SCHEMA1_DOC)),
)
add(
    "schema1-document-as-oci-manifest",
    SCHEMA + r"|(?i:schema ?1)",
    with_index(index_doc(entry(SCHEMA1_DOC)), blobs=(LAYER, SCHEMA1_DOC)),
)
_SCHEMA1_TYPED: Final = dumps(
    {**json.loads(SCHEMA1_DOC), "mediaType": "application/vnd.docker.distribution.manifest.v1+json"}
)
add(
    "schema1-document-as-docker-manifest",
    SCHEMA + r"|(?i:schema ?1)",
    with_index(index_doc(entry(_SCHEMA1_TYPED, DOCKER_MANIFEST)), blobs=(LAYER, _SCHEMA1_TYPED)),
)

STRUCTURE: Final = r"must be|must map|invalid|descriptor"
for _label, _edit in [
    ("manifests-not-a-list", lambda d: d.__setitem__("manifests", {})),
    ("entry-not-an-object", lambda d: d["manifests"].__setitem__(0, "sha256:" + ZERO_HEX)),
    ("annotations-not-a-map", lambda d: d["manifests"][0].__setitem__("annotations", ["a"])),
    (
        "annotation-not-a-string",
        lambda d: d["manifests"][0].__setitem__("annotations", {ANNOTATION_IMAGE_NAME: 1}),
    ),
    ("platform-not-an-object", lambda d: d["manifests"][0].__setitem__("platform", "linux/amd64")),
    (
        "platform-os-not-a-string",
        lambda d: d["manifests"][0].__setitem__("platform", {"os": 5, "architecture": "amd64"}),
    ),
    ("urls-not-a-list", lambda d: d["manifests"][0].__setitem__("urls", "https://example.com/x")),
    (
        "artifact-type-invalid",
        lambda d: d["manifests"][0].__setitem__("artifactType", "not a type"),
    ),
]:
    add(
        f"index-json-{_label}",
        STRUCTURE + "|platform",
        with_index(edited(index_doc(entry()), _edit)),
    )
for _label, _edit in [
    ("layers-not-a-list", lambda d: d.__setitem__("layers", {"0": d["layers"][0]})),
    ("config-missing", lambda d: d.pop("config")),
    ("config-null", lambda d: d.__setitem__("config", None)),
    ("config-a-string", lambda d: d.__setitem__("config", digest_of(CONFIG))),
    ("layer-a-string", lambda d: d["layers"].__setitem__(0, digest_of(LAYER))),
    ("annotations-not-a-map", lambda d: d.__setitem__("annotations", "x")),
]:
    add(f"manifest-{_label}", STRUCTURE, with_manifest(edited(manifest_doc(), _edit)))

# The embedded "data" of a descriptor must decode to the blob it describes (B.2.2): a reader that
# uses "data" instead of the blob sees other content.
add(
    "descriptor-data-disagrees-with-blob",
    r"data",
    with_manifest(
        edited(
            manifest_doc(),
            lambda d: d["layers"][0].__setitem__("data", base64.b64encode(OTHER_LAYER).decode()),
        )
    ),
)
add(
    "descriptor-data-not-base64",
    r"data",
    with_manifest(edited(manifest_doc(), lambda d: d["layers"][0].__setitem__("data", "!!!"))),
)

# --- graphs ------------------------------------------------------------------------------------


def _deep_indexes(depth: int) -> bytes:
    docs: list[bytes] = []
    child = entry(name=None)
    for _ in range(depth):
        doc = dumps(index_doc(child))
        docs.append(doc)
        child = entry(doc, OCI_INDEX, name=None)
    return oci_tar(
        index=index_doc({**child, "annotations": {ANNOTATION_IMAGE_NAME: NAME}}),
        blobs=(CONFIG, LAYER, *docs),
    )


def _amplifying_dag(depth: int, width: int) -> bytes:
    """Each index lists the index below it *width* times: few distinct blobs, but a tree of
    width**depth nodes for anything that walks the graph without remembering what it saw."""
    docs: list[bytes] = []
    child = entry(name=None)
    for _ in range(depth):
        doc = dumps(index_doc(*[child] * width))
        docs.append(doc)
        child = entry(doc, OCI_INDEX, name=None)
    top = {**child, "annotations": {ANNOTATION_IMAGE_NAME: NAME}}
    return oci_tar(index=index_doc(top), blobs=(CONFIG, LAYER, *docs))


_FANOUT: Final = 20_000
add("index-nesting-20", r"nested deeper", functools.partial(_deep_indexes, 20))
add("index-nesting-9", r"nested deeper", functools.partial(_deep_indexes, 9))
add(
    "index-json-fanout-20000",
    r"over 10000|too many",
    with_index(index_doc(entry(), *[entry(name=None)] * (_FANOUT - 1))),
)
add(
    "nested-index-fanout-20000",
    r"over 10000|too many",
    nested(index_doc(*[entry(name=None)] * _FANOUT)),
)
add(
    "manifest-layers-20000",
    r"over 10000|too many",
    with_manifest(edited(manifest_doc(), lambda d: d.__setitem__("layers", d["layers"] * _FANOUT))),
)

# --- layout ------------------------------------------------------------------------------------

LAYOUT_ERROR: Final = r"oci-layout|layout version"
add("no-oci-layout", r"no oci-layout", with_index(index_doc(entry()), layout=None))
for _label, _layout in [
    ("version-2", b'{"imageLayoutVersion":"2.0.0"}'),
    ("version-int", b'{"imageLayoutVersion":1}'),
    ("version-trailing-space", b'{"imageLayoutVersion":"1.0.0 "}'),
    ("version-missing", b"{}"),
    ("invalid-json", b"{imageLayoutVersion"),
    ("array", b'["1.0.0"]'),
    ("duplicate-key", b'{"imageLayoutVersion":"1.0.0","imageLayoutVersion":"2.0.0"}'),
    ("case-variant", b'{"ImageLayoutVersion":"2.0.0","imageLayoutVersion":"1.0.0"}'),
    ("over-limit", b'{"imageLayoutVersion":"1.0.0","x":"' + b"x" * (5 << 20) + b'"}'),
]:
    add(f"oci-layout-{_label}", LAYOUT_ERROR, functools.partial(oci_tar, layout=_layout))
add(
    "no-index-json",
    r"missing index.json",
    lambda: tar_bytes([m for m in oci() if m[0] != "index.json"]),
)
add("empty-index", r"lists no images", with_index(index_doc()))
add("index-without-manifests", r"lists no images", with_index({"schemaVersion": 2}))
add("only-blobs", r"no oci-layout", lambda: tar_bytes(oci()[2:]))

# --- truncated and garbled archives -----------------------------------------------------------

TRUNCATED: Final = r"truncated|not a valid tar|unexpected end|missing|corrupt"


def _cut_offsets(data: bytes, count: int = 30) -> list[int]:
    """Offsets inside headers, at data starts, inside data, and at the last data byte of every
    member, then evenly spread ones, up to *count* (all before the end of the last data)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
    end = members[-1].offset_data + members[-1].size
    offsets: set[int] = set()
    for m in members:
        offsets |= {m.offset, m.offset + 100, m.offset_data, m.offset_data + m.size // 2}
        offsets.add(m.offset_data + max(m.size - 1, 0))
    offsets.discard(0)
    step = max(end // count, 1)
    spread = iter(range(step // 2, end, step))
    while len(offsets) < count:
        offsets.add(next(spread))
    return sorted(o for o in offsets if 0 < o < end)[:count]


def _cut(data: bytes, offset: int) -> bytes:
    return data[:offset]


def _cut_kind(data: bytes, offset: int) -> str:
    """Where *offset* falls: a member ``boundary``, inside a ``header`` block, or in ``data``."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for m in archive.getmembers():
            if offset == m.offset:
                return "boundary"
            if m.offset < offset < m.offset_data:
                return "header"
    return "data"


#: A cut exactly between two members leaves a tar that only lacks its end-of-archive blocks
#: (Go and GNU tar read that as the end too): refusing it for the members it lost is right.
TRUNCATED_AT_BOUNDARY: Final = TRUNCATED + r"|no oci-layout|missing index.json"
#: A cut inside a header block must be called a truncation, as Go's "unexpected EOF" does.
TRUNCATED_IN_HEADER: Final = r"truncated|not a valid tar|unexpected end"

for _offset in _cut_offsets(VALID_OCI_INDEX_LAST):
    _where = _cut_kind(VALID_OCI_INDEX_LAST, _offset)
    add(
        f"truncated-at-{_offset}-{_where}",
        {"boundary": TRUNCATED_AT_BOUNDARY, "header": TRUNCATED_IN_HEADER}.get(_where, TRUNCATED),
        functools.partial(_cut, VALID_OCI_INDEX_LAST, _offset),
    )
_DOCKER_VALID: Final = tar_bytes(
    classic_save([demo_image(["example.com/hostile/docker:1"], seed="t")])
)
for _fraction in (0.3, 0.6, 0.95):
    _at = int(len(_DOCKER_VALID.rstrip(b"\0")) * _fraction)
    add(
        f"truncated-docker-at-{_at}",
        TRUNCATED,
        functools.partial(_cut, _DOCKER_VALID, _at),
        marks={"pipe"},
    )
for _fraction in (0.5, 0.99):
    _at = int(len(VALID_OCI_INDEX_LAST.rstrip(b"\0")) * _fraction)
    add(
        f"truncated-oci-from-pipe-at-{_at}",
        TRUNCATED,
        functools.partial(_cut, VALID_OCI_INDEX_LAST, _at),
        marks={"pipe"},
    )

# A partial header where the next member starts: Go's archive/tar (so containerd) says
# "unexpected EOF"; an importer that stops there silently reads a different archive.
add(
    "truncated-inside-trailing-header",
    TRUNCATED,
    lambda: tar_body(oci()) + member(b"repositories", b"{}")[:200],
    marks={"pipe"},
)
# A corrupt header block after the last member, hiding a member behind it: tools that skip
# bad headers (tar -i) or refuse them (Go) do not read what a reader that stops there reads.
add(
    "garbage-header-hides-members",
    r"not a valid tar|invalid header|checksum|corrupt",
    lambda: _BODY + b"\x01" * BLOCK + member(b"index.json", dumps(index_doc())) + END,
    marks={"pipe"},
)
add("empty-file", r"not a valid tar|empty", lambda: b"", marks={"pipe"})
add("one-byte", r"not a valid tar|empty|truncated", lambda: b"\0", marks={"pipe"})
add("garbage", r"not a valid tar", lambda: hashlib.sha512(b"garbage").digest() * 64, marks={"pipe"})
add("text-file", r"not a valid tar", lambda: b"this is not a tar archive\n" * 100)
add("ff-block", r"not a valid tar", lambda: b"\xff" * 2048)
add("zip-file", r"not a valid tar", lambda: b"PK\x03\x04" + b"\0" * 2044)
add("zeros-only", r"no oci-layout|no image", lambda: b"\0" * 10240)
add("header-bad-checksum", r"not a valid tar", lambda: b"\x01" + VALID_OCI[1:])
add(
    "size-field-not-octal",
    r"not a valid tar|invalid",
    lambda: header(b"x", fields={124: b"zzzzzzzzzzz\0"}) + END,
)

COMPRESSORS: Final[dict[str, Callable[[bytes], bytes]]] = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "xz": lambda data: lzma.compress(data),
    "bzip2": lambda data: bz2.compress(data),
}
#: zstd frames carry no checksum by default: corrupt data may only show as a corrupt document.
COMPRESSED_ERROR: Final = (
    r"corrupt|truncated|not a valid tar|digest|missing|unexpected end|invalid JSON"
)


def _corrupt(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1 :]


for _kind, _compress in COMPRESSORS.items():
    _packed = _compress(VALID_OCI_INDEX_LAST)
    for _fraction in (0.1, 0.5, 0.9):
        add(
            f"{_kind}-truncated-at-{int(_fraction * 100)}pct",
            COMPRESSED_ERROR,
            functools.partial(_cut, _packed, int(len(_packed) * _fraction)),
            suffix=".tar.x",
            marks={"pipe"},
        )
    for _fraction in (0.3, 0.6):
        add(
            f"{_kind}-corrupt-at-{int(_fraction * 100)}pct",
            COMPRESSED_ERROR,
            functools.partial(_corrupt, _packed, int(len(_packed) * _fraction)),
            suffix=".tar.x",
            marks={"pipe"},
        )
    add(
        f"{_kind}-magic-only",
        COMPRESSED_ERROR,
        functools.partial(_cut, _packed, 6),
        suffix=".tar.x",
    )
    add(
        f"{_kind}-of-garbage",
        COMPRESSED_ERROR,
        functools.partial(_compress, hashlib.sha512(b"x").digest() * 40),
        suffix=".tar.x",
    )
    add(
        f"{_kind}-then-garbage",
        COMPRESSED_ERROR + "|trailing",
        functools.partial(lambda c: c(b"\0" * 100) + b"\x01" * 5000, _compress),
        suffix=".tar.x",
    )

# --- decompression bombs and absurd headers ---------------------------------------------------

BOMB: Final = r"decompression bomb|expands (more|beyond)"
BOMB_MEMBER: Final = 1 << 30  # 1 GiB of zeros in one member, never materialised
_BOMB_HEADER: Final = header(b"bomb", size=BOMB_MEMBER)


def zstd_zeros(out: BinaryIO, prefix: bytes, zeros: int) -> None:
    """One zstd frame: *prefix* as a raw block, then *zeros* zero bytes as RLE blocks of 128 KiB
    (4 bytes each), written straight to *out*."""
    block_max = 1 << 17

    def block_header(last: bool, kind: int, size: int) -> bytes:
        return (int(last) | kind << 1 | size << 3).to_bytes(3, "little")

    out.write(b"\x28\xb5\x2f\xfd" + b"\x00" + bytes([(17 - 10) << 3]))  # 128 KiB window
    for start in range(0, len(prefix), block_max):
        chunk = prefix[start : start + block_max]
        out.write(block_header(False, 0, len(chunk)) + chunk)
    full, rest = divmod(zeros, block_max)
    rle = block_header(False, 1, block_max) + b"\0"
    for _ in range(full - (0 if rest else 1)):
        out.write(rle)
    out.write(block_header(True, 1, rest or block_max) + b"\0")


def _zstd_bomb(directory: Path) -> Path:
    path = directory / "bomb.tar.zst"
    with path.open("wb") as out:
        zstd_zeros(out, _BOMB_HEADER, BOMB_MEMBER + 2 * BLOCK)
    return path


def _repeated_bomb(kind: str, compress: Callable[[bytes], bytes], directory: Path) -> Path:
    """The tar header as one stream, then the same compressed stream of zeros again and again
    (gzip, xz and bzip2 readers all take concatenated streams)."""
    chunk = 8 << 20
    zeros = compress(bytes(chunk))
    path = directory / f"bomb.tar.{kind}"
    with path.open("wb") as out:
        out.write(compress(_BOMB_HEADER))
        for _ in range((BOMB_MEMBER + 2 * BLOCK) // chunk + 1):
            out.write(zeros)
    return path


_TINY_UNCOMPRESSED: Final = Limits(uncompressed_bytes=4 << 20)
add_build("zstd-bomb-ratio", BOMB, _zstd_bomb)
add_build("zstd-bomb-uncompressed-limit", BOMB, _zstd_bomb, limits=_TINY_UNCOMPRESSED)
add_build("zstd-bomb-lowered-ratio", BOMB, _zstd_bomb, limits=Limits(expansion_ratio=1.0))
for _kind, _compress in [
    ("gzip", lambda d: gzip.compress(d, compresslevel=9, mtime=0)),
    ("xz", lzma.compress),
    ("bzip2", bz2.compress),
]:
    _build = functools.partial(_repeated_bomb, _kind, _compress)
    add_build(f"{_kind}-bomb-ratio", BOMB, _build)
    add_build(f"{_kind}-bomb-uncompressed-limit", BOMB, _build, limits=_TINY_UNCOMPRESSED)


def _zstd_window_frame() -> bytes:
    """A zstd frame of a tar header and zeros that declares a 2 GiB window."""
    buf = io.BytesIO()
    zstd_zeros(buf, header(b"x", size=BLOCK), 3 * BLOCK)
    data = bytearray(buf.getvalue())
    data[5] = (31 - 10) << 3  # window descriptor: 2 GiB
    return bytes(data)


add("zstd-huge-window", r"window|memory|corrupt zstd", _zstd_window_frame, suffix=".tar.zst")


def _gzip_bad_block_inside_member() -> bytes:
    """A gzip stream of the valid members and 3 MiB of a 4 MiB member, then a second gzip member
    whose first deflate block has the reserved type 3: the decoder fails while that member's data
    is being read (more than tarfile's 1 MiB read-ahead past its header)."""
    first = _BODY + header(b"extra.bin", size=4 << 20) + bytes(3 << 20)
    bad_member = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\x07" + bytes(64)
    return gzip.compress(first, mtime=0) + bad_member


def _zstd_cut_after_block() -> bytes:
    """A zstd frame cut right after a flushed block that ends at a member boundary: the frame has
    no last block, so the stream is truncated, but the tar read so far looks whole."""
    compressor = zstandard.ZstdCompressor().compressobj()
    return compressor.compress(_BODY) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


def _xz_corrupt_inside_member() -> bytes:
    packed = lzma.compress(_BODY + header(b"extra.bin", size=4 << 20) + bytes(4 << 20) + END)
    return _corrupt(packed, len(packed) - 100)


add(
    "gzip-invalid-block-inside-member",
    COMPRESSED_ERROR,
    _gzip_bad_block_inside_member,
    suffix=".tar.gz",
    marks={"pipe"},
)
add("zstd-truncated-after-flushed-block", COMPRESSED_ERROR, _zstd_cut_after_block, marks={"pipe"})
add("xz-corrupt-inside-member", COMPRESSED_ERROR, _xz_corrupt_inside_member, marks={"pipe"})
add(
    "oci-blob-only-under-another-name",
    MISSING,
    lambda: tar_bytes([(n, c) for n, c in oci() if n != _LAYER_NAME] + [("layer.bin", LAYER)]),
)

HEADER_LIMIT: Final = r"extended header of \d+ bytes exceeds"
_TWO_MIB: Final = 2 << 20
for _label, _header_type in [
    ("pax", tarfile.XHDTYPE),
    ("pax-global", tarfile.XGLTYPE),
    ("pax-solaris", tarfile.SOLARIS_XHDTYPE),
    ("gnu-long-name", tarfile.GNUTYPE_LONGNAME),
    ("gnu-long-link", tarfile.GNUTYPE_LONGLINK),
]:
    add(
        f"{_label}-header-2mib",
        HEADER_LIMIT,
        functools.partial(
            lambda k: _BODY + member(b"big", b"9" * _TWO_MIB, kind=k) + member(b"x") + END,
            _header_type,
        ),
    )
add(
    "pax-header-2mib-claimed-not-present",
    HEADER_LIMIT,
    lambda: _BODY + header(b"big", size=_TWO_MIB, kind=tarfile.XHDTYPE) + END,
)
add(
    "pax-header-1tib-claimed",
    HEADER_LIMIT,
    lambda: _BODY + header(b"big", size=1 << 40, kind=tarfile.XHDTYPE) + END,
)
add(
    "pax-header-2mib-in-gzip",
    HEADER_LIMIT,
    lambda: gzip.compress(
        _BODY + member(b"big", b"9" * _TWO_MIB, kind=tarfile.XHDTYPE) + END, mtime=0
    ),
    suffix=".tar.gz",
)
# Python's tarfile < 3.11.10 (CVE-2024-6232) searches a PAX header with a backtracking regular
# expression: a header of digits takes time quadratic in its size, in C, holding the GIL.
add(
    "pax-header-redos",
    r"extended header|not a valid tar|invalid",
    lambda: _BODY + member(b"pax", b"1" * ((1 << 20) - BLOCK), kind=tarfile.XHDTYPE) + END,
    marks={"isolated"},
)
# CVE-2025-8194: a negative size in a PAX header moves tarfile's offset backwards.
# -1536 moves the offset back onto the PAX header itself: a reader that follows it loops.
for _size in ("-512", "-1", "-1536"):
    add(
        f"pax-negative-size{_size}",
        r"not a valid tar|invalid|negative|size|truncated|twice",
        functools.partial(
            lambda s: _BODY + pax([(b"size", s.encode())]) + member(b"x", b"y" * BLOCK) + END,
            _size,
        ),
        marks={"isolated"},
    )
# A PAX record of length 0 makes tarfile raise InvalidHeaderError, which it reads as the end of
# the archive when it is not the first member: the members after it vanish silently.
add(
    "pax-record-length-zero-hides-members",
    r"not a valid tar|invalid header|invalid",
    lambda: _BODY + member(b"PaxHeaders/x", b"0 x=y\n", kind=tarfile.XHDTYPE) + member(b"x") + END,
    marks={"pipe"},
)
add(
    "pax-size-beyond-archive",
    TRUNCATED,
    lambda: _BODY + pax([(b"size", str(1 << 40).encode())]) + member(b"x", b"y") + END,
)

# --- names -------------------------------------------------------------------------------------

BAD_NAMES: Final[list[tuple[str, str]]] = [
    ("upper-case", "UPPER/case:tag"),
    ("two-colons", "a:b:c"),
    ("short-digest", "name@sha256:short"),
    ("empty", ""),
    ("spaces", "not a name"),
    ("traversal", "../../etc/passwd"),
    ("newline", "example.com/x:1\nexample.com/y:2"),
    ("overlong", "a" * 300 + ":1"),
    ("terminal-escape", "example.com/x:1\x1b]0;owned\x07"),
    ("bidi-override", "example.com/x\u202e:1"),
]
REFERENCE: Final = r"invalid reference|RepoTags|name"
# A name whose digest is not the image's: `image ls` would show a digest the content lacks.
SPOOFED: Final = f"example.com/hostile/app@sha256:{ZERO_HEX}"
SPOOF: Final = r"digest"
for _label, _name in [*BAD_NAMES, ("digest-of-other-content", SPOOFED)]:
    _expect = SPOOF if _name == SPOOFED else REFERENCE
    add(f"tag-option-{_label}", _expect, lambda: VALID_OCI, tags=[_name])
    add(f"index-name-option-{_label}", _expect, lambda: VALID_OCI, index_name=_name)
    if not _name:
        continue  # an empty name annotation is no name at all
    add(
        f"containerd-name-{_label}",
        _expect,
        with_index(index_doc({**entry(), "annotations": {ANNOTATION_IMAGE_NAME: _name}})),
    )
    add(
        f"ref-name-{_label}",
        _expect,
        with_index(index_doc({**entry(), "annotations": {ANNOTATION_REF_NAME: _name}})),
    )
add(
    "one-name-two-images",
    r"two different images",
    with_index(
        index_doc(entry(), entry(dumps(manifest_doc(layers=(OTHER_LAYER,))))),
        blobs=(CONFIG, LAYER, OTHER_LAYER, dumps(manifest_doc(layers=(OTHER_LAYER,)))),
    ),
)
add(
    "tag-option-two-images",
    r"two|one image",
    with_index(
        index_doc(
            entry(name="example.com/a:1"),
            entry(dumps(manifest_doc(layers=())), name="example.com/b:1"),
        ),
        blobs=(CONFIG, LAYER, dumps(manifest_doc(layers=()))),
    ),
    tags=["example.com/c:1"],
)
add("base-name-invalid", r"invalid reference|repository", lambda: VALID_OCI, base_name="UPPER")
add("base-name-with-tag", r"invalid reference|repository|tag", lambda: VALID_OCI, base_name="x:1")
add("index-name-invalid", REFERENCE, lambda: VALID_OCI, index_name="Bad Name")

# --- docker archives ---------------------------------------------------------------------------

DOCKER_NAME: Final = "example.com/hostile/docker:1"
DOCKER: Final = demo_image([DOCKER_NAME], seed="hostile")
NOT_A_FILE: Final = r"not a file|'\.\.'|absolute|NUL|backslash|empty"


def docker(
    image: DockerImage = DOCKER,
    edit: Callable[[list[Any]], object] | None = None,
    *,
    manifest_json: bytes | None = None,
    config: bytes | None = None,
    extra: Sequence[Entry] = (),
    repositories: bytes | None = None,
) -> bytes:
    """A classic ``docker save`` archive, with its manifest.json or config replaced or edited."""
    entries: list[Entry] = []
    config_name = f"{hex_of(image.config)}.json"
    for name, content in classic_save([image], repositories):
        if name == "manifest.json" and edit is not None:
            assert isinstance(content, bytes)
            items = json.loads(content)
            edit(items)
            content = json.dumps(items).encode()
        if name == "manifest.json" and manifest_json is not None:
            content = manifest_json
        if name == config_name and config is not None:
            content = config
        entries.append((name, content))
    return tar_bytes([*entries, *extra])


def _set(key: str, value: object) -> Callable[[list[Any]], object]:
    return lambda items: items[0].__setitem__(key, value)


def _set_layer(value: object) -> Callable[[list[Any]], object]:
    return lambda items: items[0]["Layers"].__setitem__(0, value)


for _label, _path in [
    ("dotdot", "../x.json"),
    ("dotdot-inner", "a/../../x.json"),
    ("absolute", "/etc/passwd"),
    ("directory", "somedir"),
    ("directory-slash", "somedir/"),
    ("missing", "no-such-file.json"),
    ("empty", ""),
    ("dot", "."),
    ("nul", "x\0.json"),
    ("backslash", "..\\x.json"),
    ("manifest-json-itself", "manifest.json"),
    ("repositories", "repositories"),
]:
    _dirs = [("somedir/", DIR)]
    add(
        f"docker-config-path-{_label}",
        NOT_A_FILE,
        functools.partial(docker, edit=_set("Config", _path), extra=_dirs),
    )
    add(
        f"docker-layer-path-{_label}",
        NOT_A_FILE,
        functools.partial(docker, edit=_set_layer(_path), extra=_dirs),
    )

DOCKER_STRUCTURE: Final = r"must be|lists no images|JSON"
for _label, _text in [
    ("object", b'{"Config":"x","Layers":[]}'),
    ("string", b'"manifest"'),
    ("null", b"null"),
    ("number", b"1"),
    ("empty-list", b"[]"),
    ("list-of-strings", b'["x"]'),
    ("config-not-a-string", b'[{"Config":1,"Layers":[]}]'),
    ("config-missing", b'[{"Layers":[]}]'),
    ("layers-not-a-list", b'[{"Config":"x","Layers":"y"}]'),
    ("layers-of-numbers", b'[{"Config":"x","Layers":[1]}]'),
    ("invalid-json", b"[{"),
    ("duplicate-key", b'[{"Config":"a","Config":"b","Layers":[]}]'),
    ("nan", b"[NaN]"),
    ("nested-10000", b"[" * 10000 + b"]" * 10000),
    ("nested-100", b"[" * 100 + b"]" * 100),
]:
    add(
        f"docker-manifest-json-{_label}",
        DOCKER_STRUCTURE + r"|duplicate|NaN|nested|not a file",
        functools.partial(docker, manifest_json=_text),
    )
add(
    "docker-manifest-json-over-limit",
    LARGE,
    lambda: docker(manifest_json=b"[" + b" " * (5 << 20) + b"]"),
)
add(
    "docker-manifest-json-over-lowered-limit",
    LARGE,
    lambda: docker(edit=_set("Comment", "x" * 3000)),
    limits=_SMALL_LIMIT,
)
add(
    "docker-diff-ids-fewer",
    r"diff_ids",
    lambda: docker(
        DockerImage(DOCKER.layers, DOCKER.repo_tags, diff_ids_override=DOCKER.diff_ids[:1])
    ),
)
add(
    "docker-diff-ids-more",
    r"diff_ids",
    lambda: docker(
        DockerImage(
            DOCKER.layers, DOCKER.repo_tags, diff_ids_override=[*DOCKER.diff_ids, digest_of(b"x")]
        )
    ),
)
add(
    "docker-layer-not-matching-diff-id",
    r"diff_id",
    lambda: docker(
        DockerImage(
            DOCKER.layers,
            DOCKER.repo_tags,
            diff_ids_override=[DOCKER.diff_ids[1], DOCKER.diff_ids[0]],
        )
    ),
)
for _label, _cfg in [
    ("no-rootfs", b'{"architecture":"amd64","os":"linux"}'),
    ("diff-ids-not-a-list", b'{"rootfs":{"type":"layers","diff_ids":"x"}}'),
    ("array", b"[]"),
    ("invalid-json", b"{"),
    ("not-utf8", b'{"x":"\xff"}'),
    ("nan", b'{"created":NaN}'),
    ("duplicate-key", b'{"rootfs":{},"rootfs":{}}'),
    ("nested-100", b'{"x":' + b"[" * 100 + b"]" * 100 + b"}"),
]:
    add(
        f"docker-config-{_label}",
        r"diff_ids|invalid JSON|NaN|duplicate|nested|must be",
        functools.partial(docker, config=_cfg),
    )
add(
    "docker-config-over-lowered-limit",
    LARGE,
    lambda: docker(config=json.dumps({**json.loads(DOCKER.config), "pad": "x" * 3000}).encode()),
    limits=_SMALL_LIMIT,
)
for _label, _name in [*BAD_NAMES, ("digest-of-other-content", SPOOFED)]:
    add(
        f"docker-repo-tags-{_label}",
        SPOOF if _name == SPOOFED else REFERENCE,
        functools.partial(docker, edit=_set("RepoTags", [_name])),
    )
add("docker-repo-tags-a-string", r"RepoTags", lambda: docker(edit=_set("RepoTags", DOCKER_NAME)))
add("docker-repo-tags-of-numbers", r"RepoTags", lambda: docker(edit=_set("RepoTags", [1])))
for _label, _repos in [
    ("array", b"[]"),
    ("tags-not-a-map", b'{"example.com/x":"1"}'),
    ("invalid-name", b'{"UPPER/x":{"1":"abc"}}'),
    ("invalid-tag", b'{"example.com/x":{"a:b":"abc"}}'),
    ("invalid-json", b"{"),
]:
    add(
        f"docker-repositories-{_label}",
        r"repositories",
        functools.partial(docker, DockerImage(DOCKER.layers, None), repositories=_repos),
    )
add(
    "docker-two-images-one-name",
    r"two different images",
    lambda: tar_bytes(classic_save([DOCKER, demo_image([DOCKER_NAME], seed="other")])),
)
add(
    "docker-xz-layer",
    r"xz",
    lambda: tar_bytes(crane_save(DOCKER, lzma.compress, ".tar.xz")),
)
add("docker-index-name", r"index-name|OCI layout", lambda: docker(), index_name="example.com/i:1")


def _skopeo(links: Mapping[str, Content], extra: Sequence[Entry] = ()) -> bytes:
    """skopeo's archive shape, with the layer links replaced by *links* (by position)."""
    entries: list[Entry] = []
    replacements = iter(links.values()) if links else iter(())
    for name, content in skopeo_save(DOCKER):
        if isinstance(content, Link):
            content = next(replacements, content)
        entries.append((name, content))
    return tar_bytes([*entries, *extra])


_FIRST_LINK: Final = next(n for n, c in skopeo_save(DOCKER) if isinstance(c, Link))
_FIRST_LAYER: Final = f"{hex_of(DOCKER.layers[0])}.tar"
LINK_ERROR: Final = r"symbolic link|leaves the archive|not a regular file|backslash|NUL|longer"
_LINK_CASES: Final[list[tuple[str, Content, list[Entry]]]] = [
    ("absolute", Link("/etc/passwd"), []),
    ("absolute-inside", Link(f"/{_FIRST_LAYER}"), []),
    ("escaping", Link("../../../etc/passwd"), []),
    ("chain", Link("../hop"), [("hop", Link(_FIRST_LAYER))]),
    ("loop", Link("../hop"), [("hop", Link(_FIRST_LINK))]),
    ("self", Link("layer.tar"), []),
    ("to-directory", Link("../somedir"), [("somedir/", DIR)]),
    ("to-missing", Link("../missing.tar"), []),
    ("backslash", Link("..\\" + _FIRST_LAYER), []),
    ("hardlink", Special(tarfile.LNKTYPE, _FIRST_LAYER), []),
    ("chardev", Special(tarfile.CHRTYPE), []),
]
for _label, _target, _extra in _LINK_CASES:
    add(
        f"docker-layer-link-{_label}",
        LINK_ERROR + "|hard link|device|not allowed",
        functools.partial(_skopeo, {"first": _target}, _extra),
    )
add(
    "docker-layer-link-nul",
    LINK_ERROR,
    lambda: (
        tar_body(skopeo_save(DOCKER)[:-2])
        + pax([(b"linkpath", b"../" + _FIRST_LAYER.encode() + b"\0x")])
        + header(b"dup/layer.tar", kind=tarfile.SYMTYPE, linkname=b"placeholder")
        + tar_body(skopeo_save(DOCKER)[-2:])
        + END
    ),
)
add(
    "docker-layer-through-linked-directory",
    NOT_A_FILE + "|symbolic link",
    lambda: docker(
        edit=_set_layer("linkdir/layer.tar"),
        extra=[
            ("realdir/", DIR),
            ("realdir/layer.tar", DOCKER.layers[0]),
            ("linkdir", Link("realdir")),
        ],
    ),
)


# --- controls: the unspoiled archives the cases start from -----------------------------------


def _zstd_rle_valid() -> bytes:
    """The valid archive through :func:`zstd_zeros` (proves the bombs' frames are well formed)."""
    out = io.BytesIO()
    zstd_zeros(out, tar_body(oci()), 20 * BLOCK)
    return out.getvalue()


def _concatenated_gzip() -> bytes:
    return gzip.compress(tar_body(oci()), mtime=0) + gzip.compress(END, mtime=0)


#: Valid archives built with the same helpers as the cases: each must import, so that every case
#: is refused for its own defect and not for one it shares with its base.
CONTROLS: Final[dict[str, Callable[[], bytes]]] = {
    "oci": lambda: VALID_OCI,
    "oci-index-last": lambda: VALID_OCI_INDEX_LAST,
    "oci-nested-index": nested(index_doc(entry(name=None))),
    "oci-indexes-nested-8": functools.partial(_deep_indexes, 8),
    "oci-fanout-10000": with_index(index_doc(entry(), *[entry(name=None)] * 9_999)),
    "oci-raw-members-appended": lambda: _BODY + member(b"extra", b"x") + END,
    "oci-small-pax-header": lambda: _BODY + pax([(b"comment", b"hi")]) + member(b"x") + END,
    "oci-sha512-blob": lambda: tar_bytes(
        oci(extra=[("blobs/sha512/" + hashlib.sha512(b"x").hexdigest(), b"x")])
    ),
    "oci-dot-slash-names": lambda: tar_bytes([(f"./{n}", c) for n, c in oci()]),
    "docker-classic": docker,
    "docker-names-from-repositories": functools.partial(docker, DockerImage(DOCKER.layers, None)),
    "docker-skopeo-links": functools.partial(_skopeo, {}),
    "docker-crane-gzip": lambda: tar_bytes(
        crane_save(DOCKER, lambda d: gzip.compress(d, mtime=0), ".tar.gz")
    ),
    "zstd-rle-frames": _zstd_rle_valid,
    "gzip-concatenated": _concatenated_gzip,
    **{
        f"compressed-{kind}": functools.partial(c, VALID_OCI_INDEX_LAST)
        for kind, c in COMPRESSORS.items()
    },
}


def gzip_layer_with_wrong_diff_ids() -> bytes:
    """A crane-style docker archive whose gzip layers do not match the config's diff_ids."""
    return tar_bytes(
        crane_save(
            DockerImage(
                DOCKER.layers,
                DOCKER.repo_tags,
                diff_ids_override=[digest_of(b"a"), digest_of(b"b")],
            ),
            lambda d: gzip.compress(d, mtime=0),
            ".tar.gz",
        )
    )


def amplifying_dag() -> bytes:
    """Six nested indexes, each listing the next one 100 times: 100**6 paths, 24 KB."""
    return _amplifying_dag(6, 100)
