"""Untrusted documents must be read strictly, and must mean one thing to every tool reading them.

Readers can disagree about which of two duplicate keys wins, and Go's encoding/json matches keys
case-insensitively (with Unicode simple folding) where Python matches them exactly. Every
document that two tools could read differently has to be refused, as must the documents of
CVE-2021-41190 that are both an index and a manifest.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cargohold.errors import CargoholdError, InvalidArchiveError, InvalidDocumentError
from cargohold.oci.digests import Digest
from cargohold.oci.mediatypes import (
    DEFAULT_JSON_LIMIT,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    MAX_BLOB_SIZE,
    MAX_JSON_DEPTH,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    config_created,
    load_json,
    parse_config,
    parse_index,
    parse_manifest,
)
from cargohold.oci.platforms import Platform

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_C = "sha256:" + "c" * 64


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def descriptor(media_type: str, digest: str = DIGEST_A, size: Any = 10, **extra: Any) -> Any:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def manifest_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, DIGEST_A, 100),
        "layers": [descriptor(OCI_LAYER_GZIP, DIGEST_B, 200)],
    }
    doc.update(changes)
    return doc


def index_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            descriptor(
                OCI_MANIFEST, DIGEST_C, 300, platform={"os": "linux", "architecture": "amd64"}
            )
        ],
    }
    doc.update(changes)
    return doc


def without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


# -- load_json ------------------------------------------------------------------------------


def test_load_json_reads_a_plain_document() -> None:
    assert load_json(b'{"a":[1,"x",null,true,{"b":2.5}]}', "doc") == {
        "a": [1, "x", None, True, {"b": 2.5}]
    }


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"a":1,"a":2}', id="top-level"),
        pytest.param(b'{"a":1,"a":1}', id="same-value"),
        pytest.param(b'{"x":{"size":1,"size":2}}', id="nested"),
        pytest.param(b'[{"mediaType":"a/b","mediaType":"c/d"}]', id="in-array"),
        pytest.param(b'{"a":1,"\\u0061":2}', id="escaped-duplicate"),
    ],
)
def test_load_json_rejects_duplicate_keys(data: bytes) -> None:
    with pytest.raises(InvalidDocumentError, match="duplicate key"):
        load_json(data, "doc")


def test_load_json_rejects_duplicate_keys_even_when_lenient() -> None:
    with pytest.raises(InvalidDocumentError, match="duplicate key"):
        load_json(b'{"created":"a","created":"b"}', "config", strict_keys=False)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"mediaType":"a/b","MediaType":"c/d"}', id="MediaType-beside"),
        pytest.param(b'{"MediaType":"c/d","mediaType":"a/b"}', id="MediaType-before"),
        pytest.param(b'{"MediaType":"a/b"}', id="MediaType-instead"),
        pytest.param(b'{"MEDIATYPE":"a/b"}', id="upper-case"),
        pytest.param(b'{"schemaversion":2}', id="schemaversion"),
        pytest.param(b'{"Manifests":[]}', id="Manifests"),
        pytest.param(b'{"x":{"Digest":"sha256:00"}}', id="nested-Digest"),
        pytest.param(b'{"layers":[],"Layers":[]}', id="Layers-beside"),
        # Go folds U+017F LATIN SMALL LETTER LONG S to "s" and U+212A KELVIN SIGN to "k".
        pytest.param('{"\u017fize":1}'.encode(), id="long-s-size"),
        pytest.param('{"layer\u017f":[]}'.encode(), id="long-s-layers"),
    ],
)
def test_load_json_rejects_case_variants_of_known_keys(data: bytes) -> None:
    with pytest.raises(InvalidDocumentError, match="case"):
        load_json(data, "doc")


def test_load_json_rejects_keys_that_differ_only_in_case() -> None:
    with pytest.raises(InvalidDocumentError, match="differ only in case"):
        load_json(b'{"foo":1,"FOO":2}', "doc")


def test_load_json_accepts_docker_manifest_json_keys() -> None:
    data = b'[{"Config":"blobs/sha256/00","RepoTags":null,"Layers":[]}]'
    assert load_json(data, "manifest.json") == [
        {"Config": "blobs/sha256/00", "RepoTags": None, "Layers": []}
    ]


def test_lenient_load_json_accepts_docker_config_keys() -> None:
    data = b'{"Config":{"Cmd":["sh"]},"config":{"Cmd":["sh"]},"MediaType":"x"}'
    assert load_json(data, "config", strict_keys=False)["MediaType"] == "x"


@pytest.mark.parametrize(
    "data",
    [b'{"size":NaN}', b'{"size":Infinity}', b'{"size":-Infinity}', b"[NaN]", b"NaN"],
)
def test_load_json_rejects_non_finite_numbers(data: bytes) -> None:
    with pytest.raises(InvalidDocumentError, match="not valid JSON"):
        load_json(data, "doc")


def test_load_json_rejects_extremely_deep_nesting_without_recursion_error() -> None:
    depth = 100_000
    data = b"[" * depth + b"]" * depth
    try:
        load_json(data, "doc")
    except RecursionError:  # pragma: no cover - the failure this test exists to catch
        pytest.fail("load_json let a RecursionError escape")
    except InvalidDocumentError:
        pass
    else:
        pytest.fail("load_json accepted 100000 levels of nesting")


def test_load_json_rejects_extremely_deep_objects_without_recursion_error() -> None:
    depth = 100_000
    data = b'{"a":' * depth + b"1" + b"}" * depth
    with pytest.raises(InvalidDocumentError):
        load_json(data, "doc")


def test_load_json_nesting_limit_is_exact() -> None:
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert load_json(at_limit, "doc") is not None
    over = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(InvalidDocumentError, match="nested deeper"):
        load_json(over, "doc")


def test_load_json_counts_depth_through_mixed_containers() -> None:
    half = MAX_JSON_DEPTH // 2 + 1
    data = b'{"a":[' * half + b"1" + b"]}" * half
    with pytest.raises(InvalidDocumentError, match="nested deeper"):
        load_json(data, "doc")


def test_load_json_rejects_over_size_documents() -> None:
    data = b'{"a":"' + b"x" * 100 + b'"}'
    assert load_json(data, "doc", limit=len(data)) == {"a": "x" * 100}
    with pytest.raises(InvalidDocumentError, match="exceeds"):
        load_json(data, "doc", limit=len(data) - 1)


def test_load_json_default_limit() -> None:
    data = b'"' + b"x" * DEFAULT_JSON_LIMIT + b'"'
    with pytest.raises(InvalidDocumentError, match="exceeds"):
        load_json(data, "doc")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"a":"\xff"}', id="invalid-byte"),
        pytest.param(b'{"a":"\xc3"}', id="truncated-sequence"),
        pytest.param(b'{"a":"\xed\xa0\x80"}', id="encoded-surrogate"),
        pytest.param(b'{"a":"\xc0\xaf"}', id="overlong"),
    ],
)
def test_load_json_rejects_invalid_utf8(data: bytes) -> None:
    with pytest.raises(InvalidDocumentError, match="invalid JSON"):
        load_json(data, "doc")


@pytest.mark.parametrize("data", [b"", b"{", b'{"a":1,}', b"{'a':1}", b'{"a":1} x'])
def test_load_json_rejects_malformed_json(data: bytes) -> None:
    with pytest.raises(InvalidDocumentError):
        load_json(data, "doc")


def test_load_json_errors_name_the_document() -> None:
    with pytest.raises(InvalidDocumentError, match=r"^manifest sha256:abc: "):
        load_json(b'{"a":1,"a":2}', "manifest sha256:abc")


def test_document_errors_are_archive_errors() -> None:
    with pytest.raises(InvalidArchiveError):
        load_json(b"{", "doc")
    with pytest.raises(CargoholdError):
        load_json(b"{", "doc")


# -- parse_manifest / parse_index -----------------------------------------------------------


def test_parse_manifest() -> None:
    manifest = parse_manifest(encode(manifest_doc()), "m", OCI_MANIFEST)
    assert manifest.media_type == OCI_MANIFEST
    assert manifest.config.digest == Digest.parse(DIGEST_A)
    assert manifest.config.size == 100
    assert [layer.digest for layer in manifest.layers] == [Digest.parse(DIGEST_B)]
    assert [d.digest for d in manifest.blobs] == [Digest.parse(DIGEST_A), Digest.parse(DIGEST_B)]


def test_parse_manifest_accepts_empty_layers() -> None:
    manifest = parse_manifest(encode(manifest_doc(layers=[])), "m", OCI_MANIFEST)
    assert manifest.layers == ()
    assert manifest.config.digest == Digest.parse(DIGEST_A)


def test_parse_manifest_takes_its_type_from_the_descriptor_when_it_has_none() -> None:
    doc = without(manifest_doc(), "mediaType")
    assert parse_manifest(encode(doc), "m", DOCKER_MANIFEST).media_type == DOCKER_MANIFEST
    assert parse_manifest(encode(doc), "m").media_type == OCI_MANIFEST


def test_parse_index() -> None:
    index = parse_index(encode(index_doc()), "i", OCI_INDEX)
    assert index.media_type == OCI_INDEX
    assert len(index.manifests) == 1
    assert index.manifests[0].digest == Digest.parse(DIGEST_C)
    assert index.manifests[0].platform == Platform("linux", "amd64")


def test_parse_index_accepts_a_docker_manifest_list() -> None:
    doc = index_doc(mediaType=DOCKER_MANIFEST_LIST)
    assert parse_index(encode(doc), "i", DOCKER_MANIFEST_LIST).media_type == DOCKER_MANIFEST_LIST


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"layers": []}, id="layers"),
        pytest.param({"layers": [descriptor(OCI_LAYER_GZIP, DIGEST_B, 1)]}, id="layers-full"),
        pytest.param({"config": descriptor(OCI_CONFIG, DIGEST_A, 1)}, id="config"),
        pytest.param({"Layers": []}, id="Layers"),
        pytest.param({"Config": descriptor(OCI_CONFIG, DIGEST_A, 1)}, id="Config"),
    ],
)
@pytest.mark.parametrize("with_media_type", [True, False])
def test_parse_index_rejects_ambiguous_documents(
    extra: dict[str, Any], with_media_type: bool
) -> None:
    doc = index_doc(**extra)
    if not with_media_type:
        doc = without(doc, "mediaType")
    with pytest.raises(InvalidDocumentError):
        parse_index(encode(doc), "i", OCI_INDEX)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"manifests": []}, id="manifests-empty"),
        pytest.param({"manifests": [descriptor(OCI_MANIFEST, DIGEST_C, 1)]}, id="manifests"),
        pytest.param({"Manifests": []}, id="Manifests"),
    ],
)
@pytest.mark.parametrize("with_media_type", [True, False])
def test_parse_manifest_rejects_ambiguous_documents(
    extra: dict[str, Any], with_media_type: bool
) -> None:
    doc = manifest_doc(**extra)
    if not with_media_type:
        doc = without(doc, "mediaType")
    with pytest.raises(InvalidDocumentError):
        parse_manifest(encode(doc), "m", OCI_MANIFEST)


def test_ambiguous_error_says_so() -> None:
    with pytest.raises(InvalidDocumentError, match="ambiguous"):
        parse_manifest(encode(manifest_doc(manifests=[])), "m", OCI_MANIFEST)
    with pytest.raises(InvalidDocumentError, match="ambiguous"):
        parse_index(encode(index_doc(layers=[])), "i", OCI_INDEX)


def test_manifest_with_case_variant_layers_is_refused() -> None:
    # Go would read "Layers" as the layer list; a reader that ignores it would see none.
    doc = without(manifest_doc(), "layers")
    doc["Layers"] = [descriptor(OCI_LAYER_GZIP, DIGEST_B, 200)]
    with pytest.raises(InvalidDocumentError):
        parse_manifest(encode(doc), "m", OCI_MANIFEST)


def test_manifest_media_type_must_agree_with_its_descriptor() -> None:
    with pytest.raises(InvalidDocumentError, match="disagrees"):
        parse_manifest(encode(manifest_doc()), "m", DOCKER_MANIFEST)
    with pytest.raises(InvalidDocumentError, match="disagrees"):
        parse_manifest(encode(manifest_doc(mediaType=DOCKER_MANIFEST)), "m", OCI_MANIFEST)


def test_index_media_type_must_agree_with_its_descriptor() -> None:
    with pytest.raises(InvalidDocumentError, match="disagrees"):
        parse_index(encode(index_doc()), "i", DOCKER_MANIFEST_LIST)


def test_document_type_must_fit_the_parser() -> None:
    # An index document handed to the manifest parser, and the other way round.
    with pytest.raises(InvalidDocumentError):
        parse_manifest(encode(manifest_doc(mediaType=OCI_INDEX)), "m")
    with pytest.raises(InvalidDocumentError):
        parse_index(encode(index_doc(mediaType=OCI_MANIFEST)), "i")
    with pytest.raises(InvalidDocumentError):
        parse_manifest(encode(without(manifest_doc(), "mediaType")), "m", OCI_INDEX)
    with pytest.raises(InvalidDocumentError):
        parse_index(encode(without(index_doc(), "mediaType")), "i", OCI_MANIFEST)


@pytest.mark.parametrize(
    "version",
    [1, 3, 0, -2, "2", 2.0, True, None, [2], {"v": 2}],
    ids=lambda v: repr(v),
)
def test_schema_version_must_be_the_integer_2(version: Any) -> None:
    with pytest.raises(InvalidDocumentError, match="schemaVersion"):
        parse_manifest(encode(manifest_doc(schemaVersion=version)), "m", OCI_MANIFEST)
    with pytest.raises(InvalidDocumentError, match="schemaVersion"):
        parse_index(encode(index_doc(schemaVersion=version)), "i", OCI_INDEX)


def test_schema_version_must_be_present() -> None:
    with pytest.raises(InvalidDocumentError, match="schemaVersion"):
        parse_manifest(encode(without(manifest_doc(), "schemaVersion")), "m", OCI_MANIFEST)


def test_schema_version_true_is_refused_even_in_raw_json() -> None:
    data = encode(manifest_doc()).replace(b'"schemaVersion": 2', b'"schemaVersion": true')
    assert b"true" in data
    with pytest.raises(InvalidDocumentError, match="schemaVersion"):
        parse_manifest(data, "m", OCI_MANIFEST)


@pytest.mark.parametrize("schema1", DOCKER_SCHEMA1)
def test_schema1_is_refused(schema1: str) -> None:
    doc = {
        "schemaVersion": 1,
        "mediaType": schema1,
        "name": "library/alpine",
        "tag": "latest",
        "fsLayers": [{"blobSum": DIGEST_A}],
    }
    with pytest.raises(InvalidDocumentError):
        parse_manifest(encode(doc), "m", schema1)
    doc2 = manifest_doc(mediaType=schema1)
    with pytest.raises(InvalidDocumentError, match="schema 1"):
        parse_manifest(encode(doc2), "m")
    with pytest.raises(InvalidDocumentError, match="schema 1"):
        parse_manifest(encode(without(manifest_doc(), "mediaType")), "m", schema1)


@pytest.mark.parametrize(
    "size",
    [-1, -(1 << 62), 1.0, 1.5, 1e3, True, False, MAX_BLOB_SIZE + 1, 10**30, "10", None],
    ids=lambda v: repr(v),
)
def test_descriptor_sizes_must_be_sane_integers(size: Any) -> None:
    layer = descriptor(OCI_LAYER_GZIP, DIGEST_B, size)
    with pytest.raises(InvalidDocumentError, match="size"):
        parse_manifest(encode(manifest_doc(layers=[layer])), "m", OCI_MANIFEST)
    config = descriptor(OCI_CONFIG, DIGEST_A, size)
    with pytest.raises(InvalidDocumentError, match="size"):
        parse_manifest(encode(manifest_doc(config=config)), "m", OCI_MANIFEST)
    child = descriptor(OCI_MANIFEST, DIGEST_C, size)
    with pytest.raises(InvalidDocumentError, match="size"):
        parse_index(encode(index_doc(manifests=[child])), "i", OCI_INDEX)


def test_descriptor_size_bounds_are_inclusive() -> None:
    for size in (0, MAX_BLOB_SIZE):
        layer = descriptor(OCI_LAYER_GZIP, DIGEST_B, size)
        manifest = parse_manifest(encode(manifest_doc(layers=[layer])), "m", OCI_MANIFEST)
        assert manifest.layers[0].size == size


def test_descriptor_size_as_raw_float_literal_is_refused() -> None:
    data = encode(manifest_doc()).replace(b'"size": 200', b'"size": 200.0')
    assert b"200.0" in data
    with pytest.raises(InvalidDocumentError, match="size"):
        parse_manifest(data, "m", OCI_MANIFEST)


@pytest.mark.parametrize(
    "desc",
    [
        pytest.param("sha256:" + "a" * 64, id="not-an-object"),
        pytest.param({"digest": DIGEST_A, "size": 1}, id="no-media-type"),
        pytest.param(descriptor("not a media type"), id="bad-media-type"),
        pytest.param(descriptor(OCI_LAYER_GZIP + "\n"), id="media-type-trailing-newline"),
        pytest.param(descriptor(OCI_LAYER_GZIP, digest="sha256:abc"), id="bad-digest"),
        pytest.param(descriptor(OCI_LAYER_GZIP, digest="md5:" + "a" * 32), id="md5"),
        pytest.param(descriptor(OCI_LAYER_GZIP, annotations={"a": 1}), id="annotation-value"),
        pytest.param(descriptor(OCI_LAYER_GZIP, annotations=["a"]), id="annotations-list"),
        pytest.param(descriptor(OCI_LAYER_GZIP, urls="http://x"), id="urls-string"),
        pytest.param(descriptor(OCI_LAYER_GZIP, platform={"os": "linux"}), id="platform"),
    ],
)
def test_invalid_descriptors_are_refused(desc: Any) -> None:
    with pytest.raises(InvalidDocumentError):
        parse_manifest(encode(manifest_doc(layers=[desc])), "m", OCI_MANIFEST)


def test_descriptor_round_trips_through_json() -> None:
    obj = descriptor(
        OCI_MANIFEST,
        DIGEST_C,
        42,
        annotations={"b": "2", "a": "1"},
        platform={"os": "linux", "architecture": "arm64"},
    )
    desc = Descriptor.from_json(obj, "d")
    again = Descriptor.from_json(desc.to_json(), "d")
    assert again == desc
    assert list(desc.to_json()) == ["mediaType", "digest", "size", "annotations", "platform"]


@pytest.mark.parametrize(
    ("parse", "doc", "key"),
    [
        (parse_manifest, manifest_doc(layers={"a": 1}), "layers"),
        (parse_index, index_doc(manifests={"a": 1}), "manifests"),
    ],
)
def test_lists_must_be_lists(parse: Any, doc: dict[str, Any], key: str) -> None:
    with pytest.raises(InvalidDocumentError, match=key):
        parse(encode(doc), "d")


@pytest.mark.parametrize("data", [b"[]", b"2", b'"x"', b"null"])
def test_documents_must_be_objects(data: bytes) -> None:
    with pytest.raises(InvalidDocumentError):
        parse_manifest(data, "m")
    with pytest.raises(InvalidDocumentError):
        parse_index(data, "i")


def test_config_created_reads_docker_style_configs() -> None:
    data = b'{"created":"2024-05-01T00:00:00Z","Config":{},"config":{"Cmd":["sh"]}}'
    assert config_created(parse_config(data, "c")) == "2024-05-01T00:00:00Z"
    assert config_created(parse_config(b'{"created":5}', "c")) is None
