"""The checksum list of a split archive: what it says, and what it may not name."""

from __future__ import annotations

import pytest

from cargohold.errors import InvalidArchiveError
from cargohold.storage.volumes import VolumeList, parse_volume_list, volume_name

A, B = "a" * 64, "b" * 64


def listing(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def test_names_have_three_digits_or_as_many_as_needed() -> None:
    assert volume_name("app.tar", 7, 9) == "app.tar.007"
    assert volume_name("app.tar", 7, 1000) == "app.tar.0007"
    assert volume_name("app.tar", 12345, 12345) == "app.tar.12345"


def test_a_list_renders_and_reads_back() -> None:
    listed = VolumeList("app.tar", 1500, 1024, (A, B))
    assert parse_volume_list(listed.render(), "app.tar", "app.tar.sha256") == listed
    assert [listed.size(1), listed.size(2)] == [1024, 476]
    assert listed.start(2) == 1024


def test_binary_mode_lines_and_crlf_are_read() -> None:
    data = listing(
        "# total-size 1500",
        "# volume-size 1024",
        "# volumes 2",
        f"{A} *app.tar.001",
        f"{B}  app.tar.002",
    ).replace(b"\n", b"\r\n")
    assert parse_volume_list(data, "app.tar", "l").digests == (A, B)


@pytest.mark.parametrize(
    "lines",
    [
        ("# total-size 1500", "# volume-size 1024", f"{A}  app.tar.001", f"{B}  app.tar.002"),
        ("# total-size 1500", "# volume-size 1024", "# volumes 2", f"{A}  app.tar.001"),
        (
            "# total-size 9999",
            "# volume-size 1024",
            "# volumes 2",
            f"{A}  app.tar.001",
            f"{B}  app.tar.002",
        ),
        (
            "# total-size 1500",
            "# volume-size 100",
            "# volumes 2",
            f"{A}  app.tar.001",
            f"{B}  app.tar.002",
        ),
        (
            "# total-size 1500",
            "# total-size 1500",
            "# volume-size 1024",
            "# volumes 2",
            f"{A}  app.tar.001",
            f"{B}  app.tar.002",
        ),
        (
            "# total-size 1500",
            "# volume-size 1024",
            "# volumes 2",
            f"{A}  app.tar.001",
            f"{B}  other.002",
        ),
        (
            "# total-size 1500",
            "# volume-size 1024",
            "# volumes 2",
            f"{A}  app.tar.001",
            f"{B}  app.tar.2",
        ),
        (
            "# total-size 1500",
            "# volume-size 1024",
            "# volumes 2",
            f"{A}  app.tar.001",
            f"{B[:63]}  app.tar.002",
        ),
        (
            "# total-size 1500",
            "# volume-size 1024",
            "# volumes 2",
            f"{A}  app.tar.001",
            f"{B} app.tar.002",
        ),
    ],
)
def test_a_list_that_does_not_add_up_is_refused(lines: tuple[str, ...]) -> None:
    with pytest.raises(InvalidArchiveError, match=r"^app.tar.sha256: "):
        parse_volume_list(listing(*lines), "app.tar", "app.tar.sha256")


def test_not_text_is_refused() -> None:
    with pytest.raises(InvalidArchiveError, match="not UTF-8"):
        parse_volume_list(b"\xff\xfe", "app.tar", "app.tar.sha256")
