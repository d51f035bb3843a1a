"""The tags that name referrers: the tag schema's and cosign's, and nothing else."""

from __future__ import annotations

import pytest

from cargohold.oci.digests import Digest
from cargohold.oci.referrers import attachment_tag, parse_referrer_tag, tag_schema_tag

DIGEST = Digest.parse("sha256:" + "ab" * 32)


def test_tags_round_trip() -> None:
    assert parse_referrer_tag(tag_schema_tag(DIGEST)) == (DIGEST, "")
    for kind in ("sig", "att", "sbom"):
        assert parse_referrer_tag(attachment_tag(DIGEST, kind)) == (DIGEST, kind)


@pytest.mark.parametrize(
    "tag",
    [
        "latest",
        "sha256-" + "ab" * 31,  # too short for sha256
        "sha256-" + "AB" * 32,  # not lower-case hex
        "sha256-" + "ab" * 32 + ".exe",
        "md5-" + "ab" * 16,
        "sha512-" + "ab" * 32,  # a sha512 digest has 128 hex digits
    ],
)
def test_other_tags_are_no_referrer_tags(tag: str) -> None:
    assert parse_referrer_tag(tag) is None


def test_an_unknown_kind_has_no_tag() -> None:
    with pytest.raises(ValueError):
        attachment_tag(DIGEST, "exe")
