"""Hypothesis mutates valid archives; an import must succeed soundly or fail cleanly.

Three seeds (a small OCI layout, a classic ``docker save`` archive, and the OCI layout gzipped)
are spoiled at three levels: bytes (flips, cuts, insertions, deletions, repeats), tar members
(dropped, duplicated, swapped, renamed to hostile names, turned into links or directories, their
data replaced) and JSON documents (values replaced by other JSON, keys dropped or added, raw
text spliced in), where the OCI blobs are renamed to their new digests and every descriptor that
pointed at them is updated, so the archive gets past the digest checks into the JSON and graph
logic. The property: the import either succeeds, and then ``check(verify=True)`` finds every
image sound, or raises a :class:`CargoholdError` whose message is one line and leaves the store
exactly as it was. Never another exception, never a hang.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cargohold import CargoholdError, Store
from cargohold.cli.jsonout import check_json
from clisupport import seed
from dockerimages import HOST, classic_save, demo_image
from imagefactory import ArchiveBuilder
from snapshots import snapshot
from streams import DIR, Content, Entry, Link, Special, tar_bytes
from timelimits import time_limit

# -- seeds ------------------------------------------------------------------------------------


def _oci_seed() -> list[Entry]:
    builder = ArchiveBuilder()
    builder.add(builder.image(str(HOST), files={"fuzz/a": b"a" * 40, "fuzz/b": b"b"}), name="fz:1")
    return list(builder.members())


OCI: Final = _oci_seed()
DOCKER: Final = list(classic_save([demo_image(["example.com/fuzz/docker:1"], seed="fuzz")]))
SEEDS: Final = {"oci": OCI, "docker": DOCKER}
#: How a seed is turned into the archive file: as it is, or gzipped after the mutation.
PACKINGS: Final = ("tar", "gzip")

#: Seconds before an import counts as hung (a real one takes milliseconds).
TIME_LIMIT: Final = 30.0
FUZZ: Final = settings(
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=False,
)


def pack(entries: list[Entry], packing: str) -> bytes:
    data = tar_bytes(entries)
    return gzip.compress(data, mtime=0) if packing == "gzip" else data


# -- the property -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one image, copied for every example."""
    directory = tmp_path_factory.mktemp("fuzz-seed")
    seed(directory / "store", directory, "example.com/seed/app:1")
    return directory / "store"


def import_soundly_or_cleanly(seeded: Path, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "store")
        shutil.copytree(seeded, root)
        path = Path(tmp, "archive.tar")
        path.write_bytes(data)
        with Store(root) as store:
            before = snapshot(store)
            try:
                with time_limit(TIME_LIMIT):
                    store.import_archive(path)
            except CargoholdError as exc:
                message = str(exc)
                assert message.strip() and "\n" not in message and "\r" not in message, message
                assert snapshot(store) == before, f"failed import changed the store: {message}"
                return
            after = snapshot(store)
            assert after.ingest == () and after.leases == () and after.lock_files == ()
            problems = [c for c in store.check(verify=True) if not c.ok]
            assert not problems, [check_json(c) for c in problems]


# -- byte mutations ---------------------------------------------------------------------------

positions = st.integers(min_value=0, max_value=1 << 20)
byte_ops = st.one_of(
    st.tuples(st.just("flip"), positions, st.integers(1, 255)),
    st.tuples(st.just("truncate"), positions),
    st.tuples(st.just("insert"), positions, st.binary(min_size=1, max_size=600)),
    st.tuples(st.just("delete"), positions, st.integers(1, 2048)),
    st.tuples(st.just("overwrite"), positions, st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("repeat"), positions, st.integers(1, 1536)),
    st.tuples(st.just("zero-block"), positions),
)


def mutate_bytes(data: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    buf = bytearray(data)
    for op, position, *args in ops:
        if not buf:
            break
        at = position % len(buf)
        if op == "flip":
            buf[at] ^= args[0]
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = args[0]
        elif op == "delete":
            del buf[at : at + args[0]]
        elif op == "overwrite":
            buf[at : at + len(args[0])] = args[0]
        elif op == "repeat":
            buf[at:at] = buf[at : at + args[0]]
        else:  # a block of zeros where a header may start: an early end of archive
            start = at - at % 512
            buf[start : start + 512] = bytes(512)
    return bytes(buf)


@settings(FUZZ, max_examples=600)
@given(
    seed_name=st.sampled_from(sorted(SEEDS)),
    packing=st.sampled_from(PACKINGS),
    inside=st.booleans(),
    ops=st.lists(byte_ops, min_size=1, max_size=4),
)
def test_byte_mutations(
    seeded: Path, seed_name: str, packing: str, inside: bool, ops: list[tuple[Any, ...]]
) -> None:
    """Bytes spoiled in the file as it is, or (*inside*) in the tar before it is gzipped."""
    if packing == "gzip" and inside:
        data = gzip.compress(mutate_bytes(tar_bytes(SEEDS[seed_name]), ops), mtime=0)
    else:
        data = mutate_bytes(pack(SEEDS[seed_name], packing), ops)
    import_soundly_or_cleanly(seeded, data)


# -- member mutations -------------------------------------------------------------------------

HOSTILE_NAMES: Final = [
    "",
    ".",
    "./",
    "..",
    "../x",
    "/abs",
    "a\\b",
    "index.json",
    "./index.json",
    "oci-layout",
    "manifest.json",
    "repositories",
    "blobs/sha256/" + "0" * 64,
    "blobs/sha256/" + "A" * 64,
    "blobs/md5/" + "0" * 32,
    "x/" * 30 + "y",
]
indexes = st.integers(min_value=0, max_value=1000)
member_ops = st.one_of(
    st.tuples(st.just("drop"), indexes),
    st.tuples(st.just("duplicate"), indexes),
    st.tuples(st.just("swap"), indexes, indexes),
    st.tuples(st.just("rename"), indexes, st.sampled_from(HOSTILE_NAMES)),
    st.tuples(st.just("rename-to-member"), indexes, indexes),
    st.tuples(st.just("symlink"), indexes, indexes, st.sampled_from(["", "../", "/", "./a/../"])),
    st.tuples(st.just("hardlink"), indexes, indexes),
    st.tuples(st.just("directory"), indexes),
    st.tuples(st.just("device"), indexes, st.sampled_from([b"3", b"4", b"6"])),
    st.tuples(st.just("data"), indexes, st.binary(max_size=300)),
    st.tuples(st.just("data-of"), indexes, indexes),
)


def mutate_members(entries: list[Entry], ops: list[tuple[Any, ...]]) -> list[Entry]:
    members = list(entries)
    for op, first, *args in ops:
        if not members:
            break
        i = first % len(members)
        name, content = members[i]
        other = members[args[0] % len(members)] if args and isinstance(args[0], int) else None
        replacement: Content | None = None
        if op == "drop":
            del members[i]
            continue
        if op == "duplicate":
            members.insert(i, members[i])
            continue
        if op == "swap":
            assert other is not None
            j = members.index(other)
            members[i], members[j] = members[j], members[i]
            continue
        if op == "rename":
            members[i] = (args[0], content)
            continue
        if op == "rename-to-member":
            assert other is not None
            members[i] = (other[0], content)
            continue
        if op == "symlink":
            assert other is not None
            replacement = Link(args[1] + other[0])
        elif op == "hardlink":
            assert other is not None
            replacement = Special(tarfile.LNKTYPE, other[0])
        elif op == "directory":
            replacement = DIR
        elif op == "device":
            replacement = Special(args[0])
        elif op == "data":
            replacement = args[0]
        else:  # the data of another member
            assert other is not None
            replacement = other[1] if isinstance(other[1], bytes) else b""
        members[i] = (name, replacement)
    return members


@settings(FUZZ, max_examples=500)
@given(
    seed_name=st.sampled_from(sorted(SEEDS)),
    packing=st.sampled_from(PACKINGS),
    ops=st.lists(member_ops, min_size=1, max_size=3),
)
def test_member_mutations(
    seeded: Path, seed_name: str, packing: str, ops: list[tuple[Any, ...]]
) -> None:
    members = mutate_members(SEEDS[seed_name], ops)
    try:
        data = pack(members, packing)
    except (ValueError, tarfile.TarError):
        assume(False)  # tarfile cannot write it; the raw-header cases of the corpus can
        raise
    import_soundly_or_cleanly(seeded, data)


# -- JSON mutations, re-hashed ----------------------------------------------------------------

KNOWN_KEYS: Final = [
    "schemaVersion",
    "mediaType",
    "manifests",
    "config",
    "layers",
    "digest",
    "size",
    "annotations",
    "platform",
    "architecture",
    "os",
    "variant",
    "urls",
    "data",
    "rootfs",
    "diff_ids",
    "Config",
    "Layers",
    "RepoTags",
    "MediaType",
    "imageLayoutVersion",
    "io.containerd.image.name",
    "org.opencontainers.image.ref.name",
]


def _interesting_strings() -> list[str]:
    texts = [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "1.0.0",
        "linux",
        HOST.architecture,
        "../x",
        "/etc/passwd",
        "UPPER:tag",
        "example.com/fuzz/other:2",
        "sha256:" + "0" * 64,
        "md5:" + "0" * 32,
    ]
    for name, content in OCI:
        if name.startswith("blobs/") and isinstance(content, bytes):
            texts.append("sha256:" + hashlib.sha256(content).hexdigest())
    return texts


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=16),
    st.sampled_from(_interesting_strings()),
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=12,
)
SPLICES: Final = [
    '"mediaType":"application/vnd.oci.image.index.v1+json",',
    '"MediaType":"x",',
    '"schemaVersion":2,',
    '"manifests":[],',
    '"layers":[],',
    '"x":NaN,',
    '"x":1e999,',
    '"Config":"x",',
]
json_ops = st.one_of(
    st.tuples(st.just("replace"), indexes, json_values),
    st.tuples(st.just("delete"), indexes),
    st.tuples(st.just("add"), indexes, keys, json_values),
    st.tuples(st.just("splice"), st.sampled_from(SPLICES)),
)


def _paths(value: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*here, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*here, i))


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def edit_json(doc: Any, op: tuple[Any, ...]) -> Any:
    """*doc* with one structural edit (the root may be replaced)."""
    kind = op[0]
    paths = list(_paths(doc))
    path = paths[op[1] % len(paths)]
    if kind == "replace":
        if not path:
            return op[2]
        _get(doc, path[:-1])[path[-1]] = op[2]
    elif kind == "delete" and path:
        del _get(doc, path[:-1])[path[-1]]
    elif kind == "add":
        target = _get(doc, path)
        if isinstance(target, dict):
            target[op[2]] = op[3]
        elif isinstance(target, list):
            target.append(op[3])
    return doc


def _json_members(members: list[Entry]) -> list[int]:
    found = []
    for i, (_, content) in enumerate(members):
        if isinstance(content, bytes) and content[:1] in (b"{", b"["):
            try:
                json.loads(content)
            except ValueError:
                continue
            found.append(i)
    return found


def _blob_name(data: bytes) -> str:
    return "blobs/sha256/" + hashlib.sha256(data).hexdigest()


def rehash(members: list[Entry], changed: dict[str, bytes]) -> list[Entry]:
    """Rename changed OCI blobs to their new digests and point every descriptor at them, again
    and again until no document changes (a new manifest changes the index that lists it)."""
    members = list(members)
    for _ in range(6):
        moves: dict[str, tuple[str, int]] = {}
        for i, (name, content) in enumerate(members):
            if name in changed and isinstance(content, bytes):
                new = changed.pop(name)
                if name.startswith("blobs/sha256/") and _blob_name(content) != _blob_name(new):
                    old_digest = "sha256:" + name.rsplit("/", 1)[1]
                    moves[old_digest] = ("sha256:" + hashlib.sha256(new).hexdigest(), len(new))
                    name = _blob_name(new)
                members[i] = (name, new)
        if not moves:
            break
        for i in _json_members(members):
            name, content = members[i]
            assert isinstance(content, bytes)
            doc = json.loads(content)
            if _repoint(doc, moves):
                changed[name] = json.dumps(doc, separators=(",", ":")).encode()
    return members


def _repoint(value: Any, moves: dict[str, tuple[str, int]]) -> bool:
    touched = False
    if isinstance(value, dict):
        digest = value.get("digest")
        if isinstance(digest, str) and digest in moves:
            value["digest"], value["size"] = moves[digest]
            touched = True
        for child in value.values():
            touched |= _repoint(child, moves)
    elif isinstance(value, list):
        for child in value:
            touched |= _repoint(child, moves)
    return touched


@settings(FUZZ, max_examples=700)
@given(
    seed_name=st.sampled_from(sorted(SEEDS)),
    which=indexes,
    ops=st.lists(json_ops, min_size=1, max_size=3),
)
def test_json_mutations(
    seeded: Path, seed_name: str, which: int, ops: list[tuple[Any, ...]]
) -> None:
    members = list(SEEDS[seed_name])
    candidates = _json_members(members)
    name, content = members[candidates[which % len(candidates)]]
    assert isinstance(content, bytes)
    doc = json.loads(content)
    splices = [op[1] for op in ops if op[0] == "splice"]
    for op in ops:
        if op[0] != "splice":
            doc = edit_json(doc, op)
    text = json.dumps(doc, separators=(",", ":"))
    for raw in splices:
        if text.startswith("{") and text != "{}":
            text = "{" + raw + text[1:]
    data = text.encode()
    assume(data != content)
    import_soundly_or_cleanly(seeded, tar_bytes(rehash(members, {name: data})))
