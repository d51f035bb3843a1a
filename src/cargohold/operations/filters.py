"""containerd's filter syntax for ``image ls``.

Users who know ``ctr image ls 'labels."org.example/key"==x'`` should be able to type the same
thing here, so this follows containerd's ``pkg/filters`` grammar and matching rules rather than
inventing a friendlier language: arguments are OR-ed, comma-separated selectors AND-ed, ``!=``
matches a missing field, ``~=`` is an unanchored search that does not need the field present,
and ``/regex/`` or ``|regex|`` quote a regular expression with the same escapes as ``"..."``.

Two additions for names, because every command takes the short form (``alpine:3.19``): the
value of ``name==`` and ``name!=`` is normalised as a reference when it is one (``app:1`` means
``docker.io/library/app:1``), and ``name~=`` searches the short form as well as the stored one.
An argument that is neither selectors nor a known field (``alpine``, ``'app*'``) is a name or a
shell-style glob, matched as podman's and docker's positional argument is: against the stored
and the short form, each with and without its tag, so ``alpine`` lists every tag of alpine.

Deliberate differences: containerd lets a selector on an unknown field silently match nothing,
and compiles a regular expression only when matching (a bad one then matches nothing). Both
turn a typo into an empty listing that looks like "no such images", so both are errors here,
raised before any record is looked at.

Regular expressions are RE2's, as containerd's (Go's ``regexp``) are: matching takes time linear
in the name's length whatever the pattern, so ``name~=(a+)+$`` cannot hang on a long name that an
archive chose. RE2 has no backreferences or lookaround; such a pattern is a filter error.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from string import ascii_letters, digits
from typing import Any, Final

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

from ..errors import InvalidFilterError, InvalidReferenceError
from ..oci.references import Reference
from ..storage.metadata import ImageRecord

_FIELD_CHARS: Final = frozenset(ascii_letters + digits + "-_")
_OPERATORS: Final = ("==", "!=", "~=")
_FIELD_HEADS: Final = frozenset({"name", "target", "labels", "annotations"})
#: What a bare argument (a name or a glob, no operator) is made of.
_NAME_OR_GLOB: Final = re.compile(r"[A-Za-z0-9._/:@*?\[\]-]+")
_KNOWN_FIELDS: Final = "name, target.digest, target.mediatype, labels.<key>, annotations.<key>"
_SIMPLE_ESCAPES: Final = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"
}  # fmt: skip
_NUMERIC_ESCAPES: Final = {"x": (2, 16), "u": (4, 16), "U": (8, 16)}


class _Regex:
    """A pattern compiled by RE2, which matches in time linear in the text whatever the pattern."""

    __slots__ = ("_compiled",)

    def __init__(self, pattern: str) -> None:
        """``ValueError`` with RE2's reason when *pattern* is not an RE2 pattern
        (backreferences, lookaround, bad syntax)."""
        options = re2.Options()
        options.log_errors = False  # RE2 would otherwise log every bad pattern to stderr
        try:
            self._compiled: Any = re2.compile(pattern, options)
        except re2.error as err:
            reason = err.args[0] if err.args else "not a valid pattern"
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise ValueError(str(reason)) from None

    def search(self, text: str) -> bool:
        # Searched as UTF-8 bytes: an annotation may hold a lone surrogate (a JSON "\udcff"),
        # which strict UTF-8 cannot encode; RE2 reads such bytes as no character.
        return self._compiled.search(text.encode("utf-8", "surrogatepass")) is not None


@dataclass(frozen=True, slots=True)
class _Selector:
    path: tuple[str, ...]
    operator: str  # "" tests presence
    value: str
    pattern: _Regex | None

    def matches(self, record: ImageRecord) -> bool:
        value, present = _lookup(record, self.path)
        if self.operator == "==":
            return present and value == self.value
        if self.operator == "!=":
            return value != self.value
        if self.pattern is not None:
            if self.path == ("name",):  # the short form too, as podman: name~=^alpine:
                return any(self.pattern.search(form) for form in _name_forms(record.name)[::2])
            return self.pattern.search(value)
        return present


@dataclass(frozen=True, slots=True)
class _NamePattern:
    """A bare argument (``image ls alpine``, ``'app*'``): a name or shell-style glob matched
    against the stored name and its short form, each with and without its tag or digest, so
    that ``alpine`` lists every tag of alpine, as ``docker images alpine`` does."""

    pattern: str
    #: For a pattern that is a name: what it normalises to (``library/alpine`` is
    #: ``docker.io/library/alpine``), the whole name when a tag or digest was given.
    normalised: str | None = None

    def matches(self, record: ImageRecord) -> bool:
        forms = _name_forms(record.name)
        if self.normalised is not None and self.normalised in forms[:2]:
            return True
        return any(fnmatchcase(form, self.pattern) for form in forms)


def _name_forms(name: str) -> tuple[str, ...]:
    """The stored *name*, its repository, its short form and the short repository (in that
    order); just the name if it does not parse."""
    try:
        reference = Reference.parse(name)
    except InvalidReferenceError:
        return (name,)
    familiar = reference.familiar()
    suffix = f":{reference.tag}" if reference.tag is not None else f"@{reference.digest}"
    return (name, reference.repository, familiar, familiar.removesuffix(suffix))


def _normalised_name(value: str) -> str:
    """A ``name==``/``name!=`` value as stored: ``app:1`` is ``docker.io/library/app:1``."""
    try:
        return str(Reference.parse(value))
    except InvalidReferenceError:
        return value  # matches nothing stored, as containerd's would


def _is_bare(text: str) -> bool:
    """Whether a filter argument is a bare name or glob rather than selectors: only the
    characters of names and globs, and not beginning with a field (``name`` and ``labels.x``
    test presence; ``target.size`` stays an unknown field)."""
    text = text.strip()
    if not text or not _NAME_OR_GLOB.fullmatch(text):
        return False
    return text.split(".")[0] not in _FIELD_HEADS


def _name_pattern(text: str) -> _NamePattern:
    """A bare argument as a name pattern; one without glob characters must be an image name,
    so that a typo is an error rather than an empty listing."""
    pattern = text.strip()
    if any(char in pattern for char in "*?["):
        return _NamePattern(pattern)
    try:
        reference = Reference.parse(pattern)
    except InvalidReferenceError as err:
        raise InvalidFilterError(
            f"invalid filter {pattern!r}: neither a selector (field==value) nor an image"
            f" name: {err}"
        ) from None
    explicit = "@" in pattern or ":" in pattern.rpartition("/")[2]
    return _NamePattern(pattern, str(reference) if explicit else reference.repository)


def _lookup(record: ImageRecord, path: tuple[str, ...]) -> tuple[str, bool]:
    """The field's value and whether it is present, as containerd's image adaptor has them."""
    if path[0] == "name":
        return record.name, bool(record.name)
    if path[0] == "target":
        value = str(record.digest) if path[1] == "digest" else record.media_type
        return value, bool(value)
    mapping = record.labels if path[0] == "labels" else record.annotations
    key = ".".join(path[1:])
    return mapping.get(key, ""), key in mapping


def _is_known(path: tuple[str, ...]) -> bool:
    head, rest = path[0], path[1:]
    if head == "name":
        return not rest
    if head == "target":
        return rest in (("digest",), ("mediatype",))
    return head in ("labels", "annotations") and bool(rest)


class _Parser:
    """A hand-written scanner and parser for one filter argument."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, problem: str, pos: int | None = None, hint: str = "") -> InvalidFilterError:
        where = self.pos if pos is None else pos
        suffix = f" ({hint})" if hint else ""
        # Quoted as typed, so positions line up, unless that would break the line.
        shown = f"'{self.text}'" if self.text.isprintable() else repr(self.text)
        return InvalidFilterError(f"invalid filter {shown}: {problem} at position {where}{suffix}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self) -> None:
        while self.peek().isspace():
            self.pos += 1

    def parse(self) -> tuple[_Selector, ...]:
        if not self.text:  # containerd: the empty filter matches everything
            return ()
        selectors = [self.selector()]
        while self.pos < len(self.text):
            if self.peek() != ",":
                raise self.error(
                    f"unexpected {self.peek()!r}", hint="selectors are separated by ','"
                )
            self.pos += 1
            selectors.append(self.selector())
        return tuple(selectors)

    def selector(self) -> _Selector:
        self.skip_space()
        start = self.pos
        path = [self.segment()]
        self.skip_space()
        while self.peek() == ".":
            self.pos += 1
            path.append(self.segment())
            self.skip_space()
        if not _is_known(tuple(path)):
            raise self.error(f"unknown field {'.'.join(path)!r}", start, f"known: {_KNOWN_FIELDS}")
        if self.peek() in ("", ","):
            return _Selector(tuple(path), "", "", None)
        operator = self.operator()
        self.skip_space()
        value_pos = self.pos
        value = self.value(operator)
        self.skip_space()
        pattern = None
        if operator == "~=":
            try:
                pattern = _Regex(value)
            except ValueError as err:
                raise self.error(
                    f"invalid regular expression {value!r}: {err}", value_pos
                ) from None
        if path == ["name"] and operator in ("==", "!="):
            value = _normalised_name(value)
        return _Selector(tuple(path), operator, value, pattern)

    def segment(self) -> str:
        self.skip_space()
        char, start = self.peek(), self.pos
        if char == '"':
            return self.quoted()
        while self.peek() in _FIELD_CHARS:
            self.pos += 1
        if self.pos == start:
            found = f", found {char!r}" if char else ""
            raise self.error(f"expected a field name{found}")
        return self.text[start : self.pos]

    def operator(self) -> str:
        start = self.pos
        while self.peek() in ("=", "!", "~"):
            self.pos += 1
        operator = self.text[start : self.pos]
        if operator in _OPERATORS:
            return operator
        expected = "expected '==', '!=' or '~='"
        if operator:
            raise self.error(f"unsupported operator {operator!r}", start, expected)
        hint = f'{expected}; quote a field name with other characters: labels."a/b"'
        raise self.error(f"unexpected {self.peek()!r}", start, hint)

    def value(self, operator: str) -> str:
        char, start = self.peek(), self.pos
        if char in ("", ","):
            raise self.error(f"expected a value after {operator!r}")
        if char == '"' or (operator == "~=" and char in "/|"):
            return self.quoted()
        while self.peek() and self.peek() != "," and not self.peek().isspace():
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        """A Go-style quoted string whose closing quote matches the opening one."""
        quote, start = self.peek(), self.pos
        self.pos += 1
        out: list[str] = []
        while (char := self.peek()) != quote:
            if char in ("", "\n"):
                raise self.error(f"unterminated quoted string (missing {quote})", start)
            if char != "\\":
                out.append(char)
                self.pos += 1
                continue
            out.append(self.escape(quote))
        self.pos += 1
        return "".join(out)

    def escape(self, quote: str) -> str:
        start = self.pos
        kind = self.text[start + 1 : start + 2]
        if kind in _SIMPLE_ESCAPES or kind == quote:
            self.pos += 2
            return _SIMPLE_ESCAPES.get(kind, quote)
        if not kind:  # a backslash at the end: let quoted() report the open quote
            self.pos += 1
            return ""
        if kind in _NUMERIC_ESCAPES or kind in "01234567":
            count, base = _NUMERIC_ESCAPES.get(kind, (3, 8))
            first = start + (1 if base == 8 else 2)
            text = self.text[first : first + count]
            code = int(text, base) if len(text) == count and _all_digits(text, base) else -1
            if 0 <= code <= (0xFF if base == 8 else 0x10FFFF) and not 0xD800 <= code <= 0xDFFF:
                self.pos = first + count
                return chr(code)
            raise self.error(f"invalid numeric escape '{self.text[start : first + count]}'", start)
        raise self.error(f"invalid escape sequence '\\{kind}'", start)


def _all_digits(text: str, base: int) -> bool:
    allowed = "01234567" if base == 8 else "0123456789abcdefABCDEF"
    return all(char in allowed for char in text)


class ImageFilter:
    """``ctr image ls`` filter arguments: any argument matches if all of its selectors do."""

    __slots__ = ("_alternatives", "_expressions")

    def __init__(
        self,
        expressions: tuple[str, ...],
        alternatives: tuple[tuple[_Selector | _NamePattern, ...], ...],
    ) -> None:
        self._expressions = expressions
        self._alternatives = alternatives

    @classmethod
    def parse(cls, expressions: Sequence[str]) -> ImageFilter:
        """Parse filter arguments; no arguments match every image."""
        if isinstance(expressions, str):
            raise TypeError("ImageFilter.parse takes a sequence of expressions, not one string")
        texts = tuple(expressions)
        return cls(
            texts,
            tuple(
                (_name_pattern(text),) if _is_bare(text) else _Parser(text).parse()
                for text in texts
            ),
        )

    def matches(self, record: ImageRecord) -> bool:
        if not self._alternatives:
            return True
        return any(all(s.matches(record) for s in alt) for alt in self._alternatives)

    def __str__(self) -> str:
        return " ".join(shlex.quote(text) for text in self._expressions)

    def __repr__(self) -> str:
        return f"ImageFilter.parse({list(self._expressions)!r})"
