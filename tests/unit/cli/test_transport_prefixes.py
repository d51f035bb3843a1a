"""Splitting skopeo-style archive arguments: transport, path, optional reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargohold.cli.transports import Location, parse_location
from cargohold.errors import CargoholdError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-", Location("-")),
        ("plain.tar", Location("plain.tar")),
        ("http:whatever", Location("http:whatever")),
        ("oci-archive:a.tar", Location("a.tar", "oci-archive")),
        ("docker-archive:a.tar:app:1", Location("a.tar", "docker-archive", "app:1")),
        ("oci:dir:example.com/a/b:v1", Location("dir", "oci", "example.com/a/b:v1")),
    ],
)
def test_splits_like_skopeo(value: str, expected: Location) -> None:
    assert parse_location(value) == expected


def test_an_existing_path_with_a_colon_is_kept_whole(tmp_path: Path) -> None:
    odd = tmp_path / "backup:2024.tar"
    odd.write_bytes(b"")
    assert parse_location(f"oci-archive:{odd}") == Location(str(odd), "oci-archive")
    named = tmp_path / "oci:x"
    named.write_bytes(b"")
    assert parse_location(str(named)) == Location(str(named))


@pytest.mark.parametrize("value", ["oci-archive:", "oci:dir:"])
def test_an_empty_path_or_reference_is_an_error(value: str) -> None:
    with pytest.raises(CargoholdError, match="oci"):
        parse_location(value)
