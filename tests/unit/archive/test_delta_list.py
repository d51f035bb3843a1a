"""The list a delta archive keeps of what it left out, and the checks an import makes of it."""

from __future__ import annotations

import json

import pytest

from cargohold.archive.delta import (
    DELTA_MEDIA_TYPE,
    check_archive_omits,
    check_plan,
    encode_delta,
    incomplete,
    missing_blobs,
    parse_delta,
)
from cargohold.errors import IncompleteDeltaError, InvalidArchiveError
from cargohold.oci.digests import Digest
from cargohold.oci.mediatypes import Descriptor

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest(i: int) -> Digest:
    return Digest.of_bytes(str(i).encode())


def test_round_trip_sorted_by_digest() -> None:
    omitted = {digest(i): i * 10 for i in range(5)}
    data = encode_delta(omitted)
    document = json.loads(data)
    assert document["mediaType"] == DELTA_MEDIA_TYPE
    assert [e["digest"] for e in document["omitted"]] == sorted(str(d) for d in omitted)
    assert parse_delta(data, 1 << 20) == omitted


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"mediaType": "x", "omitted": []}, "not a delta list"),
        ({"mediaType": DELTA_MEDIA_TYPE}, "omitted must be a list"),
        ({"mediaType": DELTA_MEDIA_TYPE, "omitted": [1]}, r"omitted\[0\] is not an object"),
        ({"mediaType": DELTA_MEDIA_TYPE, "omitted": [{"digest": "x", "size": 1}]}, "invalid"),
        (
            {"mediaType": DELTA_MEDIA_TYPE, "omitted": [{"digest": str(digest(1)), "size": -1}]},
            "size must be",
        ),
        (
            {
                "mediaType": DELTA_MEDIA_TYPE,
                "omitted": [{"digest": str(digest(1)), "size": 1}] * 2,
            },
            "listed twice",
        ),
    ],
)
def test_malformed_lists_are_refused(document: object, message: str) -> None:
    with pytest.raises(InvalidArchiveError, match=message):
        parse_delta(json.dumps(document).encode(), 1 << 20)


def test_missing_blobs_and_the_refusal_line() -> None:
    omitted = {digest(i): 100 for i in range(6)}
    held = {digest(0): 100}
    missing = missing_blobs(omitted, held.get, lambda _d, _s: True)
    assert [d for d, _ in missing] == sorted(d for d in omitted if d not in held)
    error = incomplete(missing, "site")
    assert isinstance(error, IncompleteDeltaError)
    message = str(error)
    assert message.startswith("delta archive: namespace site lacks 5 omitted blobs (500 bytes): ")
    assert message.endswith(" and 2 more")
    assert "\n" not in message
    assert str(missing[0][0]) in message


def test_a_listed_size_other_than_the_held_blobs_is_refused() -> None:
    with pytest.raises(InvalidArchiveError, match="with 101 bytes; the blob has 100"):
        missing_blobs({digest(1): 101}, {digest(1): 100}.get, lambda _d, _s: True)


def test_held_but_not_reusable_is_missing() -> None:
    missing = missing_blobs({digest(1): 100}, {digest(1): 100}.get, lambda _d, _s: False)
    assert missing == [(digest(1), 100)]


def test_an_omitted_blob_the_archive_contains_is_refused() -> None:
    name = f"blobs/sha256/{digest(1).hex}"
    with pytest.raises(InvalidArchiveError, match="as omitted, but the archive contains it"):
        check_archive_omits({digest(1): 1}, ["index.json", name])
    check_archive_omits({digest(2): 1}, ["index.json", name])


def test_plan_needs_every_absent_blob_listed_with_its_size() -> None:
    needed = {
        digest(1): Descriptor(LAYER, digest(1), 10),
        digest(2): Descriptor(LAYER, digest(2), 20),
    }
    check_plan({digest(2): 20}, {digest(1)}, needed)
    with pytest.raises(InvalidArchiveError, match="neither in the archive nor in its list"):
        check_plan({}, {digest(1)}, needed)
    with pytest.raises(InvalidArchiveError, match="with 21 bytes; its descriptor says 20"):
        check_plan({digest(2): 21}, {digest(1)}, needed)
