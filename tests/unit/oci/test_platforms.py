"""Platforms must normalise as containerd does, and matching must never substitute an arch."""

from __future__ import annotations

import platform
import sys

import pytest

from cargohold.errors import CargoholdError, InvalidPlatformError
from cargohold.oci.platforms import NO_MATCH_RANK, Platform, PlatformMatcher, _host_platform

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
ARM_V7 = Platform("linux", "arm", "v7")
ARM_V6 = Platform("linux", "arm", "v6")
I386 = Platform("linux", "386")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("linux/amd64", ("linux", "amd64", "")),
        ("linux/x86_64", ("linux", "amd64", "")),
        ("linux/x86-64", ("linux", "amd64", "")),
        ("linux/amd64/v1", ("linux", "amd64", "")),
        ("linux/amd64/v3", ("linux", "amd64", "v3")),
        ("Linux/AMD64", ("linux", "amd64", "")),
        ("linux/arm64", ("linux", "arm64", "")),
        ("linux/arm64/v8", ("linux", "arm64", "")),
        ("linux/arm64/8", ("linux", "arm64", "")),
        ("linux/aarch64", ("linux", "arm64", "")),
        ("linux/arm64/v9.0", ("linux", "arm64", "v9")),
        ("linux/arm", ("linux", "arm", "v7")),
        ("linux/arm/v7", ("linux", "arm", "v7")),
        ("linux/arm/7", ("linux", "arm", "v7")),
        ("linux/arm/v6", ("linux", "arm", "v6")),
        ("linux/arm/6", ("linux", "arm", "v6")),
        ("linux/arm/5", ("linux", "arm", "v5")),
        ("linux/armhf", ("linux", "arm", "v7")),
        ("linux/armel", ("linux", "arm", "v6")),
        ("linux/i386", ("linux", "386", "")),
        ("linux/i486", ("linux", "386", "")),
        ("linux/i586", ("linux", "386", "")),
        ("linux/i686", ("linux", "386", "")),
        ("linux/386", ("linux", "386", "")),
        ("windows/amd64", ("windows", "amd64", "")),
        ("macos/arm64", ("darwin", "arm64", "")),
        ("linux/ppc64le", ("linux", "ppc64le", "")),
        ("linux/riscv64", ("linux", "riscv64", "")),
        ("amd64", ("linux", "amd64", "")),
        ("arm64", ("linux", "arm64", "")),
        ("aarch64", ("linux", "arm64", "")),
        ("arm", ("linux", "arm", "v7")),
        ("armel", ("linux", "arm", "v6")),
        ("s390x", ("linux", "s390x", "")),
    ],
)
def test_parse(value: str, expected: tuple[str, str, str]) -> None:
    p = Platform.parse(value)
    assert (p.os, p.architecture, p.variant) == expected
    assert (p.os_version, p.os_features) == ("", ())


@pytest.mark.parametrize("os_name", ["linux", "windows", "darwin", "macos", "freebsd"])
def test_parse_lone_os_means_host_architecture(os_name: str) -> None:
    host = Platform.host()
    p = Platform.parse(os_name)
    assert p.os == ("darwin" if os_name == "macos" else os_name)
    assert (p.architecture, p.variant) == (host.architecture, host.variant)


def test_parse_lone_word_on_a_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Platform, "host", classmethod(lambda cls: Platform("darwin", "arm", "v6")))
    # A lone architecture means Linux whatever the host runs; a lone OS takes the host's CPU.
    assert Platform.parse("amd64") == AMD64
    assert Platform.parse("linux") == ARM_V6
    assert Platform.parse("windows") == Platform("windows", "arm", "v6")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty component"),
        ("/amd64", "empty component"),
        ("linux/", "empty component"),
        ("linux//v7", "empty component"),
        ("linux/arm/v7/extra", "expected os/architecture"),
        ("a/b/c/d/e", "expected os/architecture"),
        ("linux/amd 64", "may only contain"),
        ("linux/*", "may only contain"),
        ("linux(10.0)/amd64", "may only contain"),
        ("linux/amd64\n", "may only contain"),
        ("linux/ämd64", "may only contain"),
        ("vax", "unknown operating system or architecture"),
        ("v7", "unknown operating system or architecture"),
    ],
)
def test_parse_invalid(value: str, message: str) -> None:
    with pytest.raises(InvalidPlatformError, match="invalid platform") as info:
        Platform.parse(value)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, CargoholdError)
    assert isinstance(info.value, ValueError)


def test_constructor_normalises() -> None:
    assert Platform("Linux", "aarch64", "v8") == ARM64
    assert Platform("linux", "armhf") == ARM_V7
    assert Platform("linux", "arm") == ARM_V7
    assert Platform("linux", "x86_64", "v1") == AMD64
    assert Platform("linux", "amd64", os_features=["a"]).os_features == ("a",)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"os": "", "architecture": "amd64"}, "invalid platform os"),
        ({"os": "linux", "architecture": "x/y"}, "invalid platform architecture"),
        ({"os": "linux", "architecture": "arm", "variant": "v 7"}, "invalid platform variant"),
        ({"os": "windows", "architecture": "amd64", "os_version": "10 0"}, "os.version"),
        ({"os": 1, "architecture": "amd64"}, "must be a string"),
    ],
)
def test_constructor_validates(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidPlatformError, match=message):
        Platform(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (AMD64, "linux/amd64"),
        (ARM64, "linux/arm64"),
        (ARM_V7, "linux/arm/v7"),
        (Platform("windows", "amd64", os_version="10.0.17763.5206"), "windows/amd64"),
    ],
)
def test_str(p: Platform, text: str) -> None:
    assert str(p) == text
    assert Platform.parse(text).sort_key() == p.sort_key()


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"architecture": "amd64", "os": "linux"}, AMD64),
        ({"architecture": "arm64", "os": "linux", "variant": "v8"}, ARM64),
        ({"architecture": "arm", "os": "linux"}, ARM_V7),
        ({"architecture": "arm", "os": "linux", "variant": "v6"}, ARM_V6),
        ({"architecture": "x86_64", "os": "Linux", "variant": None}, AMD64),
        (
            {
                "architecture": "amd64",
                "os": "windows",
                "os.version": "10.0.17763.5206",
                "os.features": ["win32k"],
            },
            Platform("windows", "amd64", "", "10.0.17763.5206", ("win32k",)),
        ),
        ({"architecture": "amd64", "os": "linux", "os.features": None}, AMD64),
        ({"architecture": "amd64", "os": "linux", "extension": 1}, AMD64),
    ],
)
def test_from_json(obj: object, expected: Platform) -> None:
    assert Platform.from_json(obj) == expected


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (None, "must be a JSON object, not null"),
        ("linux/amd64", "must be a JSON object, not string"),
        (["linux"], "must be a JSON object, not array"),
        ({"os": "linux"}, "no 'architecture'"),
        ({"architecture": "amd64"}, "no 'os'"),
        ({"architecture": 64, "os": "linux"}, "'architecture' must be a string, not number"),
        ({"architecture": "amd64", "os": None}, "'os' must be a string, not null"),
        ({"architecture": "amd64", "os": ""}, "'os' is empty"),
        ({"architecture": "arm", "os": "linux", "variant": 7}, "'variant' must be a string"),
        ({"architecture": "amd64", "os": "linux", "os.version": True}, "not boolean"),
        ({"architecture": "amd64", "os": "linux", "os.features": "x"}, "array of strings"),
        ({"architecture": "amd64", "os": "linux", "os.features": [1]}, "has a number"),
        ({"architecture": "amd/64", "os": "linux"}, "invalid platform architecture"),
    ],
)
def test_from_json_refuses(obj: object, message: str) -> None:
    with pytest.raises(InvalidPlatformError, match="platform") as info:
        Platform.from_json(obj)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (AMD64, {"architecture": "amd64", "os": "linux"}),
        (ARM64, {"architecture": "arm64", "os": "linux"}),
        (ARM_V7, {"architecture": "arm", "os": "linux", "variant": "v7"}),
        (
            Platform("windows", "amd64", "", "10.0.17763.5206", ("win32k",)),
            {
                "architecture": "amd64",
                "os": "windows",
                "os.version": "10.0.17763.5206",
                "os.features": ["win32k"],
            },
        ),
    ],
)
def test_to_json_round_trips(p: Platform, expected: dict[str, object]) -> None:
    assert p.to_json() == expected
    assert Platform.from_json(p.to_json()) == p


def test_sort_key_orders_by_os_architecture_variant() -> None:
    unsorted = [Platform("windows", "amd64"), ARM_V7, ARM64, AMD64, ARM_V6, I386]
    assert [str(p) for p in sorted(unsorted, key=Platform.sort_key)] == [
        "linux/386",
        "linux/amd64",
        "linux/arm/v6",
        "linux/arm/v7",
        "linux/arm64",
        "windows/amd64",
    ]


@pytest.mark.parametrize(
    ("sys_platform", "machine", "expected"),
    [
        ("linux", "x86_64", "linux/amd64"),
        ("linux", "aarch64", "linux/arm64"),
        ("linux", "armv7l", "linux/arm/v7"),
        ("linux", "armv6l", "linux/arm/v6"),
        ("linux", "armv5tel", "linux/arm/v5"),
        ("linux", "armv8l", "linux/arm/v8"),
        ("linux", "i686", "linux/386"),
        ("linux", "ppc64le", "linux/ppc64le"),
        ("linux", "s390x", "linux/s390x"),
        ("linux", "loongarch64", "linux/loong64"),
        ("darwin", "arm64", "darwin/arm64"),
        ("darwin", "x86_64", "darwin/amd64"),
        ("win32", "AMD64", "windows/amd64"),
        ("win32", "ARM64", "windows/arm64"),
        ("win32", "x86", "windows/386"),
        ("freebsd14", "amd64", "freebsd/amd64"),
        ("sunos5", "i86pc", "solaris/i86pc"),
    ],
)
def test_host_detection(sys_platform: str, machine: str, expected: str) -> None:
    assert str(_host_platform(sys_platform, machine)) == expected


def test_host_detection_without_machine() -> None:
    with pytest.raises(InvalidPlatformError, match="host architecture"):
        _host_platform("linux", "")


def test_host_uses_this_machine() -> None:
    assert Platform.host() == _host_platform(sys.platform, platform.machine())


def test_host_follows_the_reported_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "armv7l")
    assert Platform.host().architecture == "arm"
    assert Platform.host().variant == "v7"


# -- matching --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "candidate", "expected"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/x86_64", True),
        ("linux/amd64", "linux/386", False),
        ("linux/386", "linux/amd64", False),
        ("linux/amd64", "linux/amd64/v3", False),
        ("linux/amd64", "windows/amd64", False),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/arm64", "linux/arm/v7", False),
        ("linux/arm/v7", "linux/arm/v7", True),
        ("linux/arm/v7", "linux/arm", True),
        ("linux/arm/v7", "linux/arm/v6", False),
        ("linux/arm/v6", "linux/arm/v7", False),
    ],
)
def test_only_is_strict(wanted: str, candidate: str, expected: bool) -> None:
    matcher = PlatformMatcher.only([Platform.parse(wanted)])
    assert matcher.matches(Platform.parse(candidate)) is expected


@pytest.mark.parametrize(
    ("wanted_version", "candidate_version", "expected"),
    [
        ("", "10.0.17763.5206", True),
        ("10.0.17763", "", True),
        ("10.0.17763", "10.0.17763.5206", True),
        ("10.0.17763.1", "10.0.17763.5206", True),
        ("10.0.17763", "10.0.20348.2113", False),
    ],
)
def test_windows_os_version(wanted_version: str, candidate_version: str, expected: bool) -> None:
    wanted = Platform("windows", "amd64", os_version=wanted_version)
    candidate = Platform("windows", "amd64", os_version=candidate_version)
    assert PlatformMatcher.only([wanted]).matches(candidate) is expected


def test_os_version_ignored_outside_windows() -> None:
    wanted = Platform("linux", "amd64", os_version="1")
    assert PlatformMatcher.only([wanted]).matches(Platform("linux", "amd64", os_version="2"))


def test_missing_platform_always_passes() -> None:
    assert PlatformMatcher.only([AMD64]).matches(None)
    assert PlatformMatcher.host().matches(None)
    assert PlatformMatcher.all().matches(None)


@pytest.mark.parametrize("p", [AMD64, I386, ARM_V6, Platform("windows", "arm64"), None])
def test_all_matches_everything(p: Platform | None) -> None:
    assert PlatformMatcher.all().matches(p)


def test_host_matcher_selects_the_host_platform_only() -> None:
    host = Platform.host()
    matcher = PlatformMatcher.host()
    assert matcher.platforms == (host,)
    assert matcher.matches(host)
    other = ARM_V6 if host != ARM_V6 else AMD64
    assert not matcher.matches(other)


def test_rank_follows_the_given_order() -> None:
    matcher = PlatformMatcher.only([ARM64, AMD64])
    assert matcher.rank(ARM64) == 0
    assert matcher.rank(Platform("linux", "aarch64")) == 0
    assert matcher.rank(AMD64) == 1
    assert matcher.rank(None) == 2
    assert matcher.rank(I386) == NO_MATCH_RANK
    candidates = [I386, AMD64, ARM64]
    chosen = min((p for p in candidates if matcher.matches(p)), key=matcher.rank)
    assert chosen == ARM64


def test_rank_for_all_prefers_the_host() -> None:
    host = Platform.host()
    other = ARM_V6 if host != ARM_V6 else AMD64
    matcher = PlatformMatcher.all()
    assert matcher.rank(host) == 0
    assert matcher.rank(other) == 1
    assert matcher.rank(None) == 1


def test_matcher_properties_and_text() -> None:
    assert PlatformMatcher.all().is_all
    assert PlatformMatcher.all().platforms == ()
    assert str(PlatformMatcher.all()) == "all platforms"
    one = PlatformMatcher.only([AMD64])
    assert not one.is_all
    assert str(one) == "linux/amd64"
    two = PlatformMatcher.only([AMD64, ARM64, Platform("linux", "x86_64")])
    assert two.platforms == (AMD64, ARM64)
    assert str(two) == "linux/amd64, linux/arm64"
    assert repr(two) == "PlatformMatcher.only(['linux/amd64', 'linux/arm64'])"
    assert repr(PlatformMatcher.all()) == "PlatformMatcher.all()"


def test_matcher_equality() -> None:
    assert PlatformMatcher.only([AMD64]) == PlatformMatcher.only([Platform.parse("x86_64")])
    assert PlatformMatcher.only([AMD64]) != PlatformMatcher.only([ARM64])
    assert PlatformMatcher.all() == PlatformMatcher.all()
    assert PlatformMatcher.all() != PlatformMatcher.only([AMD64])
    assert len({PlatformMatcher.all(), PlatformMatcher.all()}) == 1


def test_only_needs_a_platform() -> None:
    with pytest.raises(InvalidPlatformError, match="no platform"):
        PlatformMatcher.only([])
