"""Docker image references: parsing, normalisation and the short "familiar" form.

Users type ``alpine`` and expect the same image docker and containerd would find, so names are
normalised exactly as ``reference.ParseNormalizedNamed`` and containerd's ``ParseDockerRef`` do:
a missing domain means Docker Hub, an official image lives under ``library/``, a missing tag
means ``latest``, and a digest wins over a tag because it is the only part that cannot move.
The store keys images by the normalised form, so ``alpine`` and
``docker.io/library/alpine:latest`` can never become two different entries.

Two places are stricter than docker: an upper-case first component such as ``Foo/bar`` is
refused instead of being read as a registry host (it is far more often a typo than a registry),
and :meth:`Reference.familiar` keeps ``docker.io/`` when dropping it would turn the first path
component into a domain, so the short form always parses back to the same reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ..errors import InvalidDigestError, InvalidReferenceError
from .digests import Digest

#: Where a name without a domain lives.
DEFAULT_DOMAIN: Final = "docker.io"
#: The historic name of Docker Hub, rewritten to :data:`DEFAULT_DOMAIN`.
LEGACY_DEFAULT_DOMAIN: Final = "index.docker.io"
#: The namespace of Docker Hub's official images (``alpine`` is ``library/alpine``).
OFFICIAL_REPO_PREFIX: Final = "library/"
#: The tag a reference gets when it names neither a tag nor a digest.
DEFAULT_TAG: Final = "latest"
#: Longest repository name (domain and path) the distribution grammar allows.
NAME_MAX_LENGTH: Final = 255
#: Longest input even looked at: a valid reference is well below this (255 + 1 + 128 + 1 +
#: a sha512 digest), and the bound keeps regular expression work small on hostile input.
_INPUT_MAX_LENGTH: Final = 1024

_DOMAIN_COMPONENT: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME: Final = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6_ADDRESS: Final = r"\[[a-fA-F0-9:]+\]"
_DOMAIN: Final = re.compile(rf"(?:{_DOMAIN_NAME}|{_IPV6_ADDRESS})(?::[0-9]+)?")
_PATH_COMPONENT: Final = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")
# Go's \w is ASCII-only; Python's is not, so the class is spelled out.
_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_TAG_MAX_LENGTH: Final = 128
_IMAGE_ID: Final = re.compile(r"[a-f0-9]{64}")


def _show(value: str) -> str:
    """*value* quoted for an error message: one line, and not a screenful."""
    if len(value) > 100:
        return repr(value[:100]) + "..."
    return repr(value)


def _error(value: str, reason: str) -> InvalidReferenceError:
    return InvalidReferenceError(f"invalid reference {_show(value)}: {reason}")


def _domain_problem(domain: str) -> str | None:
    if not _DOMAIN.fullmatch(domain):
        return f"invalid domain {_show(domain)}"
    return None


def _path_problem(path: str) -> str | None:
    if not path:
        return "missing repository name"
    if any("A" <= char <= "Z" for char in path):
        return f"repository name {_show(path)} must be lowercase"
    for component in path.split("/"):
        if not component:
            return "empty path component (a '/' at the start or end, or '//')"
        if not _PATH_COMPONENT.fullmatch(component):
            return (
                f"invalid path component {_show(component)}: use lower-case letters and digits, "
                "separated by '.', '_', '__' or '-'"
            )
    return None


def _tag_problem(tag: str) -> str | None:
    if not tag:
        return "missing tag after ':'"
    if len(tag) > _TAG_MAX_LENGTH:
        return f"tag is longer than {_TAG_MAX_LENGTH} characters"
    if not _TAG.fullmatch(tag):
        return (
            f"invalid tag {_show(tag)}: use letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'"
        )
    return None


def _length_problem(domain: str, path: str) -> str | None:
    if len(domain) + 1 + len(path) > NAME_MAX_LENGTH:
        return f"repository name is longer than {NAME_MAX_LENGTH} characters"
    return None


def _split_tag(name: str) -> tuple[str, str | None]:
    """Split ``name[:tag]``; a ':' before the last '/' belongs to a registry port."""
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[:colon], name[colon + 1 :]
    return name, None


def _split_domain(value: str, name: str) -> tuple[str, str]:
    """Split and normalise a name without tag or digest into ``(domain, path)``."""
    if not name:
        raise _error(value, "missing repository name")
    first, slash, rest = name.partition("/")
    if slash and (first == "localhost" or "." in first or ":" in first):
        domain, path = first, rest
        problem = _domain_problem(domain)
        if problem is not None:
            raise _error(value, problem)
    else:
        domain, path = DEFAULT_DOMAIN, name
    problem = _path_problem(path)
    if problem is not None:
        raise _error(value, problem)
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    problem = _length_problem(domain, path)
    if problem is not None:
        raise _error(value, problem)
    return domain, path


def _check_input(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidReferenceError(f"reference must be a string, not {type(value).__name__}")
    if not value:
        raise _error(value, "empty")
    if len(value) > _INPUT_MAX_LENGTH:
        raise _error(value, f"longer than {_INPUT_MAX_LENGTH} characters")
    if _IMAGE_ID.fullmatch(value):
        raise _error(value, "cannot be a name: it looks like an image ID")
    return value


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised image reference: where an image lives and which version of it is meant.

    Every instance is valid, so code holding a ``Reference`` never re-checks it; build one with
    :meth:`parse` to get docker's normalisation. At most one of ``tag`` and ``digest`` is set,
    because a reference with both is ambiguous when they disagree.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    def __post_init__(self) -> None:
        shown = f"{self.domain}/{self.path}"
        for problem in (
            _domain_problem(self.domain),
            _path_problem(self.path),
            _length_problem(self.domain, self.path),
            None if self.tag is None else _tag_problem(self.tag),
        ):
            if problem is not None:
                raise _error(shown, problem)
        if self.digest is not None and not isinstance(self.digest, Digest):
            raise TypeError(f"digest must be a Digest, not {type(self.digest).__name__}")
        if self.tag is not None and self.digest is not None:
            raise _error(shown, "has both a tag and a digest; keep only one")

    @classmethod
    def parse(cls, value: str) -> Reference:
        """Parse and normalise *value* as ``docker pull`` would name the image."""
        value = _check_input(value)
        rest, at, digest_text = value.partition("@")
        digest: Digest | None = None
        if at:
            try:
                digest = Digest.parse(digest_text)
            except InvalidDigestError as exc:
                raise _error(value, str(exc)) from exc
        name, tag = _split_tag(rest)
        if tag is not None:
            problem = _tag_problem(tag)
            if problem is not None:
                raise _error(value, problem)
        domain, path = _split_domain(value, name)
        if digest is not None:
            return cls(domain, path, None, digest)
        return cls(domain, path, DEFAULT_TAG if tag is None else tag, None)

    @property
    def repository(self) -> str:
        """The full repository name, ``docker.io/library/alpine``."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def _familiar_name(self) -> str:
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        path = self.path
        if path.startswith(OFFICIAL_REPO_PREFIX):
            remainder = path.removeprefix(OFFICIAL_REPO_PREFIX)
            if "/" not in remainder:
                path = remainder
        first, slash, _ = path.partition("/")
        if slash and (first == "localhost" or "." in first):
            # Without the domain the first component would be read as a registry host.
            return self.repository
        return path

    def familiar(self) -> str:
        """The short form docker prints (``alpine:3.19``); it parses back to this reference."""
        text = self._familiar_name()
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        if _IMAGE_ID.fullmatch(text):
            return str(self)
        return text

    def oci_ref_name(self) -> str:
        """The value for ``org.opencontainers.image.ref.name`` in an exported OCI layout."""
        if self.tag is not None:
            return self.tag
        return str(self)

    def with_tag(self, tag: str) -> Reference:
        """The same repository at *tag*; any digest is dropped."""
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: Digest) -> Reference:
        """The same repository pinned to *digest*; any tag is dropped."""
        return Reference(self.domain, self.path, None, digest)


def is_tag(value: str) -> bool:
    """Whether *value* is a bare tag (``3.19``) rather than a name, so it can be told apart."""
    return isinstance(value, str) and _TAG.fullmatch(value) is not None


def parse_repository(value: str) -> str:
    """Normalise a repository name that must carry neither tag nor digest."""
    value = _check_input(value)
    if "@" in value:
        raise _error(value, "a repository name cannot have a digest")
    name, tag = _split_tag(value)
    if tag is not None:
        raise _error(value, "a repository name cannot have a tag")
    domain, path = _split_domain(value, name)
    return f"{domain}/{path}"


def check_name_digest(name: str, digest: Digest) -> None:
    """A name of the form ``repo@<digest>`` may only name the content with that digest."""
    claimed = Reference.parse(name).digest
    if claimed is not None and claimed != digest:
        raise InvalidReferenceError(
            f"the name {name} claims digest {claimed}, but the image is {digest}"
        )
