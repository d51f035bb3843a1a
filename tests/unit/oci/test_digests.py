"""Digests name files on disk, so only well-formed digests we can verify may be parsed."""

from __future__ import annotations

import hashlib

import pytest

from cargohold.errors import CargoholdError, InvalidDigestError
from cargohold.oci.digests import Digest

SHA256_HEX = hashlib.sha256(b"cargohold").hexdigest()
SHA512_HEX = hashlib.sha512(b"cargohold").hexdigest()


def test_parse_sha256() -> None:
    digest = Digest.parse(f"sha256:{SHA256_HEX}")
    assert digest.algorithm == "sha256"
    assert digest.hex == SHA256_HEX


def test_parse_sha512() -> None:
    digest = Digest.parse(f"sha512:{SHA512_HEX}")
    assert digest.algorithm == "sha512"
    assert digest.hex == SHA512_HEX


def test_str_round_trips() -> None:
    for text in (f"sha256:{SHA256_HEX}", f"sha512:{SHA512_HEX}"):
        assert str(Digest.parse(text)) == text
        assert Digest.parse(str(Digest.parse(text))) == Digest.parse(text)


def test_short_is_the_first_twelve_hex_digits() -> None:
    assert Digest.parse(f"sha256:{SHA256_HEX}").short == SHA256_HEX[:12]
    assert Digest.parse(f"sha512:{SHA512_HEX}").short == SHA512_HEX[:12]


def test_of_bytes_matches_hashlib() -> None:
    assert Digest.of_bytes(b"cargohold") == Digest("sha256", SHA256_HEX)
    assert Digest.of_bytes(b"cargohold", "sha512") == Digest("sha512", SHA512_HEX)


def test_equal_digests_compare_equal_and_hash_alike() -> None:
    a = Digest.parse(f"sha256:{SHA256_HEX}")
    b = Digest.parse(f"sha256:{SHA256_HEX}")
    assert a == b
    assert len({a, b}) == 1


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(f"sha256:{SHA256_HEX.upper()}", id="upper-case-hex"),
        pytest.param(f"sha256:{SHA256_HEX[:-1]}A", id="one-upper-case-digit"),
        pytest.param(f"sha512:{SHA512_HEX.upper()}", id="upper-case-sha512"),
        pytest.param(f"SHA256:{SHA256_HEX}", id="upper-case-algorithm"),
    ],
)
def test_rejects_upper_case(value: str) -> None:
    with pytest.raises(InvalidDigestError):
        Digest.parse(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(f"sha256:{SHA256_HEX[:-1]}", id="sha256-63"),
        pytest.param(f"sha256:{SHA256_HEX}0", id="sha256-65"),
        pytest.param("sha256:abc", id="sha256-short"),
        pytest.param(f"sha256:{SHA512_HEX}", id="sha256-with-sha512-length"),
        pytest.param(f"sha512:{SHA256_HEX}", id="sha512-with-sha256-length"),
        pytest.param(f"sha512:{SHA512_HEX[:-1]}", id="sha512-127"),
    ],
)
def test_rejects_wrong_length(value: str) -> None:
    with pytest.raises(InvalidDigestError, match="hex digits"):
        Digest.parse(value)


@pytest.mark.parametrize(
    "value",
    [
        "md5:" + "a" * 32,
        "sha1:" + "a" * 40,
        "sha384:" + "a" * 96,
        "blake3:" + "a" * 64,
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
    ],
)
def test_rejects_unknown_algorithms(value: str) -> None:
    with pytest.raises(InvalidDigestError, match="unsupported digest algorithm"):
        Digest.parse(value)


@pytest.mark.parametrize(
    "value",
    [None, 42, 1.5, b"sha256:" + SHA256_HEX.encode(), ["sha256", SHA256_HEX], {"sha256": 1}],
)
def test_rejects_non_strings(value: object) -> None:
    with pytest.raises(InvalidDigestError, match="must be a string"):
        Digest.parse(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param(SHA256_HEX, id="no-algorithm"),
        pytest.param(f":{SHA256_HEX}", id="empty-algorithm"),
        pytest.param("sha256:", id="empty-encoded"),
        pytest.param("sha256", id="no-colon"),
        pytest.param(f"sha256::{SHA256_HEX}", id="double-colon"),
        pytest.param(f"sha256:{SHA256_HEX}:", id="trailing-colon"),
        pytest.param(f" sha256:{SHA256_HEX}", id="leading-space"),
        pytest.param(f"sha256:{SHA256_HEX} ", id="trailing-space"),
        pytest.param(f"sha256 :{SHA256_HEX}", id="space-before-colon"),
        pytest.param(f"sha256:{SHA256_HEX}\n", id="trailing-newline"),
        pytest.param(f"sha256:{SHA256_HEX[:-1]}\n", id="newline-in-place-of-a-digit"),
        pytest.param(f"sha256:{SHA256_HEX[:-1]}/", id="slash"),
        pytest.param(f"sha256:../{SHA256_HEX[3:]}", id="path-traversal"),
        pytest.param(f"sha256:{SHA256_HEX[:-1]}\x00", id="nul"),
        pytest.param(f"sha256:{SHA256_HEX[:-1]}é", id="non-ascii"),
        pytest.param(f"-sha256:{SHA256_HEX}", id="algorithm-starts-with-separator"),
        pytest.param(f"sha256-:{SHA256_HEX}", id="algorithm-ends-with-separator"),
        pytest.param(f"sha256:{SHA256_HEX[:-1]}+", id="plus-in-encoded"),
        pytest.param("sha256:" + "a" * 300, id="overlong"),
    ],
)
def test_rejects_grammar_violations(value: str) -> None:
    with pytest.raises(InvalidDigestError):
        Digest.parse(value)


def test_errors_are_cargohold_and_value_errors() -> None:
    with pytest.raises(CargoholdError):
        Digest.parse("sha256:nope")
    with pytest.raises(ValueError):
        Digest.parse("sha256:nope")


def test_error_message_does_not_echo_huge_input() -> None:
    with pytest.raises(InvalidDigestError) as info:
        Digest.parse("sha256:" + "a" * 100_000)
    assert len(str(info.value)) < 200
