"""The lists ``sync`` brings the store in line with: a plain text list of references, or a
skopeo-sync YAML file, read as untrusted input (bounded in size, every reference and pattern
checked, the error naming the file and the line or repository).

A text list has one reference a line, ``#`` comments and blank lines, and after a reference
optionally ``--platform OS/ARCH[,…]`` or ``--all-platforms`` for that image alone. A YAML file
is skopeo's (``skopeo sync --src yaml``)::

    registry.example.com:
      images:
        team/app: ["1.0", "sha256:…"]    # these tags and digests
        team/base: []                     # every tag
      images-by-tag-regex:
        team/tools: ^v1\\.                # the tags this RE2 pattern finds
      tls-verify: false
      cert-dir: /etc/containers/certs.d/registry.example.com
      credentials: {username: u, password: p}
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information
import yaml

from ..errors import CargoholdError, InvalidPlatformError, InvalidReferenceError, SyncListError
from ..oci.digests import Digest
from ..oci.platforms import Platform
from ..oci.references import DEFAULT_DOMAIN, Reference, is_tag
from ..registry.credentials import Credentials

__all__ = ["RegistrySettings", "SyncList", "SyncListError", "SyncSource", "TagPattern", "read"]

#: Most of a list file read: a list of a hundred thousand images is far smaller.
LIST_LIMIT: Final = 8 << 20
#: Most repositories and tags one YAML file may name (an alias bomb is refused before this).
_MAX_ENTRIES: Final = 100_000
_REGISTRY_KEYS: Final = frozenset(
    {"images", "images-by-tag-regex", "images-by-semver", "tls-verify", "cert-dir", "credentials"}
)


class TagPattern:
    """The tags of a repository a YAML entry selects: all of them, or those an RE2 pattern
    finds (skopeo matches with Go's regexp, which RE2 is: linear time whatever the pattern)."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str | None) -> None:
        self.pattern = pattern
        self._compiled: Any = None
        if pattern is not None:
            options = re2.Options()
            options.log_errors = False
            try:
                self._compiled = re2.compile(pattern, options)
            except re2.error as err:
                reason = err.args[0] if err.args else "not a valid pattern"
                if isinstance(reason, bytes):
                    reason = reason.decode("utf-8", "replace")
                raise ValueError(str(reason)) from None

    def matches(self, tag: str) -> bool:
        return self._compiled is None or self._compiled.search(tag) is not None


@dataclass(frozen=True, slots=True)
class SyncSource:
    """One image a list names (*reference*, a full reference), or, with *tags*, the tags of
    the repository *reference* names that the pattern selects. *where* is ``FILE:LINE`` or
    ``FILE: REPOSITORY``, for messages; *list_id* identifies the list (for ``--prune``)."""

    reference: str
    where: str
    list_id: str
    platforms: tuple[str, ...] = ()
    all_platforms: bool = False
    tags: TagPattern | None = None


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """What a YAML file says of one registry host."""

    tls_verify: bool | None = None
    cert_dir: str | None = None
    credentials: Credentials | None = None


@dataclass(slots=True)
class SyncList:
    """What one or more list files name, and the per-registry settings of YAML files."""

    sources: list[SyncSource] = field(default_factory=list)
    registries: dict[str, RegistrySettings] = field(default_factory=dict)


def read(paths: Sequence[str | os.PathLike[str]]) -> SyncList:
    """Read list files: skopeo-sync YAML when the name ends in ``.yaml`` or ``.yml``, else a
    text list."""
    result = SyncList()
    for path in paths:
        text = _read_text(Path(path))
        list_id = str(Path(path).resolve())
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            _parse_yaml(text, str(path), list_id, result)
        else:
            result.sources += parse_text(text, str(path), list_id)
    return result


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            raw = f.read(LIST_LIMIT + 1)
    except OSError as exc:
        raise SyncListError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > LIST_LIMIT:
        raise SyncListError(f"{path} is larger than {LIST_LIMIT} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SyncListError(f"{path}: not UTF-8 text (byte {exc.start})") from None


# -- text lists ------------------------------------------------------------------------------


def parse_text(text: str, name: str, list_id: str) -> list[SyncSource]:
    """The references of a text list, one a line, each checked."""
    sources: list[SyncSource] = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{number}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise SyncListError(f"{where}: {exc}") from None
        if not words:
            continue
        platforms, all_platforms = _line_options(words[1:], where)
        reference = _reference(words[0], where)
        sources.append(SyncSource(reference, where, list_id, platforms, all_platforms))
    return sources


def _line_options(words: list[str], where: str) -> tuple[tuple[str, ...], bool]:
    """A line's ``--platform P[,P]`` (repeatable) and ``--all-platforms``."""
    platforms: list[str] = []
    all_platforms = False
    rest = iter(words)
    for word in rest:
        if word == "--all-platforms":
            all_platforms = True
            continue
        if word == "--platform":
            value = next(rest, None)
            if value is None:
                raise SyncListError(f"{where}: --platform needs a value")
        elif word.startswith("--platform="):
            value = word.removeprefix("--platform=")
        else:
            raise SyncListError(f"{where}: unexpected {word[:100]!r} after the reference")
        for item in value.split(","):
            try:
                platforms.append(str(Platform.parse(item.strip())))
            except InvalidPlatformError as exc:
                raise SyncListError(f"{where}: {exc}") from None
    return tuple(platforms), all_platforms


def _reference(text: str, where: str) -> str:
    try:
        return str(Reference.parse(text))
    except InvalidReferenceError as exc:
        raise SyncListError(f"{where}: {exc}") from None


def _repository(text: str, where: str) -> str:
    """``domain/path`` of a repository a YAML file names (no tag or digest in it)."""
    try:
        reference = Reference.parse(text)
    except InvalidReferenceError as exc:
        raise SyncListError(f"{where}: {exc}") from None
    if reference.digest is not None or text.rsplit("/", 1)[-1].count(":"):
        raise SyncListError(f"{where}: a repository, not an image, is expected here")
    return f"{reference.domain}/{reference.path}"


# -- skopeo sync YAML ------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML without aliases: a list has no use for them, and they make a small file expand
    into an enormous structure (the "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases are not accepted", event.start_mark
            )
        return super().compose_node(parent, index)


def _parse_yaml(text: str, name: str, list_id: str, result: SyncList) -> None:
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader without aliases
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise SyncListError(f"{name}: {problem}{at}") from None
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise SyncListError(f"{name}: not a mapping of registries (skopeo sync's YAML)")
    for registry, entry in doc.items():
        _parse_registry(str(registry), entry, name, list_id, result)
    if len(result.sources) > _MAX_ENTRIES:
        raise SyncListError(f"{name}: more than {_MAX_ENTRIES} entries")


def _parse_registry(
    registry: str, entry: object, name: str, list_id: str, result: SyncList
) -> None:
    """One registry of a YAML file: its images and its settings."""
    where = f"{name}: {registry}"
    if not isinstance(entry, dict):
        raise SyncListError(f"{where}: not a mapping")
    unknown = sorted(str(k) for k in entry if k not in _REGISTRY_KEYS)
    if unknown:
        raise SyncListError(f"{where}: unknown key {unknown[0][:100]!r}")
    if "images-by-semver" in entry:
        raise SyncListError(f"{where}: images-by-semver is not supported; list the tags")
    host = _registry_host(registry, where)
    settings = _settings(entry, where)
    if result.registries.get(host, settings) != settings:
        raise SyncListError(f"{where}: settings differ from another entry of {host}")
    result.registries[host] = settings
    images = _mapping(entry.get("images"), f"{where}: images")
    for repo, tags in images.items():
        result.sources += _tagged(registry, str(repo), tags, f"{name}: {registry}/{repo}", list_id)
    regexes = _mapping(entry.get("images-by-tag-regex"), f"{where}: images-by-tag-regex")
    for repo, pattern in regexes.items():
        repo_where = f"{name}: {registry}/{repo}"
        if not isinstance(pattern, str):
            raise SyncListError(f"{repo_where}: the tag pattern is not a string")
        try:
            tags = TagPattern(pattern)
        except ValueError as exc:
            raise SyncListError(f"{repo_where}: invalid pattern: {exc}") from None
        ref = _repository(f"{registry}/{repo}", repo_where)
        result.sources.append(SyncSource(ref, repo_where, list_id, tags=tags))


def _registry_host(registry: str, where: str) -> str:
    """The reference domain a YAML key names (its first component, which must be a registry
    host: a name with a dot or a port, or localhost; Docker Hub's names are one)."""
    try:
        domain = Reference.parse(f"{registry}/x").domain
    except InvalidReferenceError:
        domain = None
    first = registry.split("/", 1)[0].lower()
    hub = domain == DEFAULT_DOMAIN and first == "index.docker.io"
    if domain is None or not (domain == first or hub):
        raise SyncListError(
            f"{where}: not a registry host (a name with a dot or a port, or localhost)"
        )
    return domain


def _mapping(value: object, where: str) -> dict[object, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SyncListError(f"{where}: not a mapping of repositories")
    return value


def _tagged(registry: str, repo: str, tags: object, where: str, list_id: str) -> list[SyncSource]:
    """``repo: [tags or digests]``; an empty list (or none) is every tag, as in skopeo."""
    ref = _repository(f"{registry}/{repo}", where)
    if tags is None or tags == []:
        return [SyncSource(ref, where, list_id, tags=TagPattern(None))]
    if not isinstance(tags, list):
        raise SyncListError(f"{where}: not a list of tags")
    sources = []
    for tag in tags:
        text = str(tag)  # YAML reads 1.0 as a number; skopeo's files quote it, some do not
        if isinstance(tag, bool) or not isinstance(tag, str | int | float):
            raise SyncListError(f"{where}: {text[:100]!r} is not a tag")
        if ":" in text:
            try:
                full = f"{ref}@{Digest.parse(text)}"
            except CargoholdError as exc:
                raise SyncListError(f"{where}: {exc}") from None
        elif is_tag(text):
            full = f"{ref}:{text}"
        else:
            raise SyncListError(f"{where}: {text[:100]!r} is not a tag")
        sources.append(SyncSource(full, where, list_id))
    return sources


def _settings(entry: dict[object, object], where: str) -> RegistrySettings:
    tls = entry.get("tls-verify")
    if tls is not None and not isinstance(tls, bool):
        raise SyncListError(f"{where}: tls-verify is not true or false")
    cert_dir = entry.get("cert-dir")
    if cert_dir is not None and not isinstance(cert_dir, str):
        raise SyncListError(f"{where}: cert-dir is not a path")
    creds = entry.get("credentials")
    credentials = None
    if creds is not None:
        if not isinstance(creds, dict):
            raise SyncListError(f"{where}: credentials is not a mapping")
        user, password = creds.get("username"), creds.get("password")
        if not isinstance(user, str) or not isinstance(password, str):
            raise SyncListError(f"{where}: credentials need a username and a password")
        try:
            credentials = Credentials(user, password)
        except CargoholdError as exc:
            raise SyncListError(f"{where}: {exc}") from None
    return RegistrySettings(tls, cert_dir, credentials)
