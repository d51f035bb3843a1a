"""OCI platforms, and deciding which manifests of a multi-platform index to keep.

The same machine goes by many names (``x86_64``, ``amd64``; ``aarch64``, ``arm64/v8``), and
image indexes written by different tools spell them differently. Every :class:`Platform` is
therefore normalised the way containerd's ``platforms.Normalize`` does it, so equality means
"the same machine" and a user's ``--platform`` can be compared with what an index declares.

Matching is strict: ``linux/amd64`` does not select a ``linux/386`` manifest even though the
CPU could run it. An export or import that silently substitutes a different architecture
produces an image that behaves differently elsewhere, which is worse than a clear error.
"""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ..errors import InvalidPlatformError

#: Operating systems a lone word such as ``linux`` is recognised as (Go's GOOS values).
#: What the library's verbs take as *platforms*: these platforms (``["linux/arm64"]``), none
#: (the verb's default: this host's, or what the store holds), or ``"all"``: every platform.
PlatformChoice = Sequence["str | Platform"] | Literal["all"]
#: ``platforms=ALL_PLATFORMS``: every platform of a multi-platform image.
ALL_PLATFORMS: Final = "all"

KNOWN_OS: Final = frozenset(
    {
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "nacl",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "wasip1",
        "windows",
        "zos",
    }
)

#: Architectures a lone word such as ``arm64`` is recognised as (Go's GOARCH values).
KNOWN_ARCHITECTURES: Final = frozenset(
    {
        "386",
        "amd64",
        "amd64p32",
        "arm",
        "armbe",
        "arm64",
        "arm64be",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "mips64p32",
        "mips64p32le",
        "ppc",
        "ppc64",
        "ppc64le",
        "riscv",
        "riscv64",
        "s390",
        "s390x",
        "sparc",
        "sparc64",
        "wasm",
    }
)

#: What :meth:`PlatformMatcher.rank` returns for a platform the matcher does not select.
NO_MATCH_RANK: Final = sys.maxsize

_COMPONENT: Final = re.compile(r"[A-Za-z0-9_.-]+")
_X86_32: Final = frozenset({"i386", "i486", "i586", "i686"})
_ARM_32_MACHINE: Final = re.compile(r"armv([5-8])[a-z]*")


def _show(value: str) -> str:
    if len(value) > 100:
        return repr(value[:100]) + "..."
    return repr(value)


def _normalize_os(os_name: str) -> str:
    os_name = os_name.lower()
    return "darwin" if os_name == "macos" else os_name


def _normalize_arch(architecture: str, variant: str) -> tuple[str, str]:
    """containerd's ``normalizeArch``, plus the other 32-bit x86 spellings."""
    architecture, variant = architecture.lower(), variant.lower()
    if architecture in _X86_32:
        return "386", ""
    if architecture in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if architecture in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if architecture == "armhf":
        return "arm", "v7"
    if architecture == "armel":
        return "arm", "v6"
    if architecture == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
        return "arm", variant
    return architecture, variant


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _host_platform(sys_platform: str, machine: str) -> Platform:
    """The platform of a host that reports *sys_platform* and *machine*."""
    if sys_platform.startswith("linux"):
        os_name = "linux"
    elif sys_platform in ("win32", "cygwin", "msys"):
        os_name = "windows"
    elif sys_platform.startswith("sunos"):
        os_name = "solaris"
    else:
        # darwin, aix, and the BSDs, which carry their release (freebsd14).
        os_name = sys_platform.rstrip("0123456789")
    machine = machine.lower()
    arm = _ARM_32_MACHINE.fullmatch(machine)
    if arm is not None:
        return Platform(os_name, "arm", "v" + arm.group(1))
    aliases = {"x64": "amd64", "x86": "386", "loongarch64": "loong64"}
    if not machine:
        raise InvalidPlatformError("cannot determine the host architecture")
    return Platform(os_name, aliases.get(machine, machine))


@dataclass(frozen=True, slots=True)
class Platform:
    """The operating system and CPU an image is built for, always in normalised form.

    The constructor normalises too (``Platform("linux", "aarch64")`` is ``linux/arm64``), so two
    platforms compare equal exactly when they name the same machine, whoever wrote them.
    """

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("os", "architecture", "variant", "os_version"):
            if not isinstance(getattr(self, name), str):
                raise InvalidPlatformError(
                    f"platform {name} must be a string, not {type(getattr(self, name)).__name__}"
                )
        for name, value in (("os", self.os), ("architecture", self.architecture)):
            if not _COMPONENT.fullmatch(value):
                raise InvalidPlatformError(
                    f"invalid platform {name} {_show(value)}: use letters, digits, '_', '.' and '-'"
                )
        if self.variant and not _COMPONENT.fullmatch(self.variant):
            raise InvalidPlatformError(
                f"invalid platform variant {_show(self.variant)}: "
                "use letters, digits, '_', '.' and '-'"
            )
        if not self.os_version.isprintable() or any(c.isspace() for c in self.os_version):
            raise InvalidPlatformError(f"invalid platform os.version {_show(self.os_version)}")
        features = tuple(self.os_features)
        if not all(isinstance(feature, str) for feature in features):
            raise InvalidPlatformError("platform os.features must be strings")
        architecture, variant = _normalize_arch(self.architecture, self.variant)
        object.__setattr__(self, "os", _normalize_os(self.os))
        object.__setattr__(self, "architecture", architecture)
        object.__setattr__(self, "variant", variant)
        object.__setattr__(self, "os_features", features)

    @classmethod
    def parse(cls, value: str) -> Platform:
        """Parse ``os/arch[/variant]``, or a lone OS or architecture, as ``--platform`` does."""
        if not isinstance(value, str):
            raise InvalidPlatformError(f"platform must be a string, not {type(value).__name__}")
        parts = value.split("/", 3)
        if len(parts) > 3:
            raise InvalidPlatformError(
                f"invalid platform {_show(value)}: expected os/architecture[/variant]"
            )
        for part in parts:
            if not part:
                raise InvalidPlatformError(
                    f"invalid platform {_show(value)}: empty component; "
                    "expected os/architecture[/variant]"
                )
            if not _COMPONENT.fullmatch(part):
                raise InvalidPlatformError(
                    f"invalid platform {_show(value)}: {_show(part)} may only contain "
                    "letters, digits, '_', '.' and '-'"
                )
        if len(parts) == 1:
            return cls._parse_single(value)
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        return cls(parts[0], parts[1], parts[2])

    @classmethod
    def _parse_single(cls, value: str) -> Platform:
        os_name = _normalize_os(value)
        if os_name in KNOWN_OS:
            host = cls.host()
            return cls(os_name, host.architecture, host.variant)
        architecture, variant = _normalize_arch(value, "")
        if architecture in KNOWN_ARCHITECTURES:
            # Images are built for Linux far more than anything else, whatever the host runs.
            return cls("linux", architecture, variant)
        raise InvalidPlatformError(
            f"invalid platform {_show(value)}: unknown operating system or architecture"
        )

    @classmethod
    def from_json(cls, obj: object) -> Platform:
        """Read the ``platform`` object of an OCI descriptor."""
        if not isinstance(obj, dict):
            raise InvalidPlatformError(f"platform must be a JSON object, not {_json_type(obj)}")

        def required(key: str) -> str:
            if key not in obj:
                raise InvalidPlatformError(f"platform has no {key!r}")
            value = obj[key]
            if not isinstance(value, str):
                raise InvalidPlatformError(
                    f"platform {key!r} must be a string, not {_json_type(value)}"
                )
            if not value:
                raise InvalidPlatformError(f"platform {key!r} is empty")
            return value

        def optional(key: str) -> str:
            value = obj.get(key)
            if value is None:
                return ""
            if not isinstance(value, str):
                raise InvalidPlatformError(
                    f"platform {key!r} must be a string, not {_json_type(value)}"
                )
            return value

        os_name = required("os")
        architecture = required("architecture")
        variant = optional("variant")
        os_version = optional("os.version")
        features = obj.get("os.features")
        if features is None:
            features = []
        if not isinstance(features, list):
            raise InvalidPlatformError(
                f"platform 'os.features' must be an array of strings, not {_json_type(features)}"
            )
        for feature in features:
            if not isinstance(feature, str):
                raise InvalidPlatformError(
                    "platform 'os.features' must be an array of strings, "
                    f"but has a {_json_type(feature)}"
                )
        return cls(os_name, architecture, variant, os_version, tuple(features))

    def to_json(self) -> dict[str, object]:
        """The OCI ``platform`` object, without empty optional fields."""
        out: dict[str, object] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def host(cls) -> Platform:
        """The platform of the machine we run on."""
        return _host_platform(sys.platform, platform.machine())

    def sort_key(self) -> tuple[str, str, str]:
        return (self.os, self.architecture, self.variant)

    def __str__(self) -> str:
        if self.variant:
            return f"{self.os}/{self.architecture}/{self.variant}"
        return f"{self.os}/{self.architecture}"


def _windows_build(os_version: str) -> str:
    """``10.0.17763`` of ``10.0.17763.5206``: the revision does not change compatibility."""
    return ".".join(os_version.split(".")[:3])


def _same_platform(wanted: Platform, candidate: Platform) -> bool:
    if (wanted.os, wanted.architecture, wanted.variant) != (
        candidate.os,
        candidate.architecture,
        candidate.variant,
    ):
        return False
    if wanted.os == "windows" and wanted.os_version and candidate.os_version:
        return _windows_build(wanted.os_version) == _windows_build(candidate.os_version)
    return True


class PlatformMatcher:
    """Which manifests of an image index to select, and which of those to prefer.

    A descriptor without a platform always passes, as in containerd: such entries are usually
    single-platform images or artefacts whose platform nobody recorded, and dropping them would
    lose content. Build one with :meth:`host`, :meth:`only` or :meth:`all`.
    """

    __slots__ = ("_all", "_host", "_platforms")

    def __init__(self, platforms: Iterable[Platform], *, all_platforms: bool = False) -> None:
        unique: list[Platform] = []
        for candidate in platforms:
            if not isinstance(candidate, Platform):
                raise TypeError(f"expected a Platform, not {type(candidate).__name__}")
            if candidate not in unique:
                unique.append(candidate)
        if all_platforms and unique:
            raise ValueError("a matcher for all platforms takes no platform list")
        if not all_platforms and not unique:
            raise InvalidPlatformError("no platform given")
        self._all = all_platforms
        self._platforms = tuple(unique)
        self._host: Platform | None = None
        if all_platforms:
            try:
                self._host = Platform.host()
            except InvalidPlatformError:
                self._host = None

    @classmethod
    def host(cls) -> PlatformMatcher:
        """Select the platform of this machine only."""
        return cls([Platform.host()])

    @classmethod
    def only(cls, platforms: Sequence[Platform]) -> PlatformMatcher:
        """Select exactly *platforms*, preferring them in the given order."""
        return cls(platforms)

    @classmethod
    def all(cls) -> PlatformMatcher:
        """Select every manifest, preferring the host's platform."""
        return cls((), all_platforms=True)

    @property
    def is_all(self) -> bool:
        return self._all

    @property
    def platforms(self) -> tuple[Platform, ...]:
        """The wanted platforms in order of preference; empty for :meth:`all`."""
        return self._platforms

    def matches(self, p: Platform | None) -> bool:
        """Whether a manifest with platform *p* (``None``: none recorded) is selected."""
        if self._all or p is None:
            return True
        return any(_same_platform(wanted, p) for wanted in self._platforms)

    def rank(self, p: Platform | None) -> int:
        """Lower is preferred: the position of *p* among the wanted platforms.

        A descriptor without a platform ranks after every explicit match; a platform that is not
        selected ranks :data:`NO_MATCH_RANK`. For :meth:`all` the host's platform ranks 0 and
        everything else 1.
        """
        if self._all:
            if p is not None and self._host is not None and _same_platform(self._host, p):
                return 0
            return 1
        if p is None:
            return len(self._platforms)
        for index, wanted in enumerate(self._platforms):
            if _same_platform(wanted, p):
                return index
        return NO_MATCH_RANK

    def __str__(self) -> str:
        if self._all:
            return "all platforms"
        return ", ".join(str(p) for p in self._platforms)

    def __repr__(self) -> str:
        if self._all:
            return "PlatformMatcher.all()"
        return f"PlatformMatcher.only([{', '.join(repr(str(p)) for p in self._platforms)}])"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PlatformMatcher):
            return NotImplemented
        return (self._all, self._platforms) == (other._all, other._platforms)

    def __hash__(self) -> int:
        return hash((self._all, self._platforms))
