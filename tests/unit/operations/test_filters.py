from __future__ import annotations

import pytest

from cargohold.errors import InvalidFilterError
from cargohold.oci.digests import Digest
from cargohold.operations.filters import ImageFilter
from cargohold.storage.metadata import ImageRecord

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

ALPINE = ImageRecord(
    name="docker.io/library/alpine:3.20",
    media_type=INDEX,
    digest=Digest("sha256", "a" * 64),
    size=1,
    labels={"org.example/team": "infra", "tier": "base", "empty": ""},
    annotations={"org.opencontainers.image.ref.name": "3.20", "note": 'say "hi", bye'},
)
BUSYBOX = ImageRecord(
    name="docker.io/library/busybox:latest",
    media_type=MANIFEST,
    digest=Digest("sha256", "b" * 64),
    size=2,
    labels={"tier": "tools", "a,b": "comma"},
)
LOCAL = ImageRecord(
    name="localhost/app:dev", media_type=INDEX, digest=Digest("sha512", "c" * 128), size=3
)
RECORDS = (ALPINE, BUSYBOX, LOCAL)


def matching(*expressions: str) -> list[str]:
    image_filter = ImageFilter.parse(expressions)
    return [record.name.split("/")[-1] for record in RECORDS if image_filter.matches(record)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # name
        ("name==docker.io/library/alpine:3.20", ["alpine:3.20"]),
        ("name!=docker.io/library/alpine:3.20", ["busybox:latest", "app:dev"]),
        ("name~=busy", ["busybox:latest"]),
        ("name", ["alpine:3.20", "busybox:latest", "app:dev"]),
        # target.digest
        (f"target.digest==sha256:{'b' * 64}", ["busybox:latest"]),
        (f"target.digest!=sha256:{'b' * 64}", ["alpine:3.20", "app:dev"]),
        ("target.digest~=^sha512:", ["app:dev"]),
        ("target.digest", ["alpine:3.20", "busybox:latest", "app:dev"]),
        # target.mediatype
        (f"target.mediatype=={INDEX}", ["alpine:3.20", "app:dev"]),
        (f"target.mediatype!={INDEX}", ["busybox:latest"]),
        ("target.mediatype~=docker", ["busybox:latest"]),
        ("target.mediatype", ["alpine:3.20", "busybox:latest", "app:dev"]),
        # labels: != and ~= do not need the label to be present, == and presence do
        ("labels.tier==base", ["alpine:3.20"]),
        ("labels.tier!=base", ["busybox:latest", "app:dev"]),
        ("labels.tier~=o", ["busybox:latest"]),
        ("labels.tier", ["alpine:3.20", "busybox:latest"]),
        ("labels.tier~=^$", ["app:dev"]),
        ("labels.empty", ["alpine:3.20"]),
        ('labels.empty==""', ["alpine:3.20"]),
        # annotations
        ('annotations."org.opencontainers.image.ref.name"==3.20', ["alpine:3.20"]),
        ('annotations."org.opencontainers.image.ref.name"!=3.20', ["busybox:latest", "app:dev"]),
        ('annotations."org.opencontainers.image.ref.name"~=^3\\.', ["alpine:3.20"]),
        ("annotations.note", ["alpine:3.20"]),
    ],
)
def test_each_operator_on_each_field(expression: str, expected: list[str]) -> None:
    assert matching(expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        'labels."org.example/team"==infra',
        'labels."org.example/team"',
        'labels."org.example/team"~=^inf',
        'labels . "org.example/team" == infra',  # whitespace between tokens is not significant
        'labels."org.example\\x2fteam"==infra',  # escapes in quoted field names
        'labels."org"."example/team"==infra',  # map keys are the rest of the path, joined by "."
    ],
)
def test_quoted_label_keys_with_dots_and_slashes(expression: str) -> None:
    assert matching(expression) == ["alpine:3.20"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('labels."a,b"==comma', ["busybox:latest"]),
        ('labels.tier=="tools",name~=busybox', ["busybox:latest"]),
        ('annotations.note=="say \\"hi\\", bye"', ["alpine:3.20"]),
        ('annotations.note~="\\"hi\\","', ["alpine:3.20"]),
        ('name=="docker.io/library/alpine:3.20"', ["alpine:3.20"]),
        ('name=="\\u0064ocker.io/library/alpine:3.20"', ["alpine:3.20"]),
        ('name=="\\144ocker.io/library/alpine:3.20"', ["alpine:3.20"]),
        ("name~=/alpine\\/?/", ["alpine:3.20"]),  # containerd's regex quotes
        ("name~=|library/b|", ["busybox:latest"]),
        ("labels.tier==/tools/", []),  # regex quotes are for ~= only: a bare value here
    ],
)
def test_quoted_values(expression: str, expected: list[str]) -> None:
    assert matching(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("labels.tier,name~=alpine", ["alpine:3.20"]),
        ("name~=docker.io, labels.tier!=base", ["busybox:latest"]),
        (f"target.mediatype=={INDEX},labels.tier", ["alpine:3.20"]),
        ("name~=alpine,name~=busybox", []),
        ("  name~=app ,  target.digest~=sha512  ", ["app:dev"]),
    ],
)
def test_selectors_in_one_argument_are_and_ed(expression: str, expected: list[str]) -> None:
    assert matching(expression) == expected


@pytest.mark.parametrize(
    ("expressions", "expected"),
    [
        (("name~=alpine", "name~=busybox"), ["alpine:3.20", "busybox:latest"]),
        (("labels.tier==base", "target.digest~=sha512"), ["alpine:3.20", "app:dev"]),
        (("name~=nothing", "name~=nope"), []),
        (("name~=alpine,labels.tier==tools", "name~=app"), ["app:dev"]),
    ],
)
def test_arguments_are_or_ed(expressions: tuple[str, ...], expected: list[str]) -> None:
    assert matching(*expressions) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("name~=alpine", ["alpine:3.20"]),  # a search, not a full match
        ("name~=^alpine", ["alpine:3.20"]),  # the short form is searched too
        ("name~=^docker\\.io/library/alpine:", ["alpine:3.20"]),
        ("name~=^library/", []),  # neither the stored nor the short form begins so
        ("name~=:3\\.20$", ["alpine:3.20"]),
        ("name~=.", ["alpine:3.20", "busybox:latest", "app:dev"]),
        ("labels.missing~=.*", ["alpine:3.20", "busybox:latest", "app:dev"]),
        ("labels.missing~=.", []),
    ],
)
def test_regex_is_an_unanchored_search(expression: str, expected: list[str]) -> None:
    assert matching(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("name==alpine:3.20", ["alpine:3.20"]),
        ("name!=alpine:3.20", ["busybox:latest", "app:dev"]),
        ("name==busybox", ["busybox:latest"]),  # the default tag, as everywhere
        ("name==localhost/app:dev", ["app:dev"]),
        ("name==ALPINE:3.20", []),  # no reference: compared as typed, matches nothing
    ],
)
def test_name_equality_takes_the_short_form(expression: str, expected: list[str]) -> None:
    assert matching(expression) == expected


@pytest.mark.parametrize(
    ("expressions", "expected"),
    [
        (("alpine",), ["alpine:3.20"]),  # every tag of the repository
        (("alpine:3.20",), ["alpine:3.20"]),
        (("alpine:3.19",), []),
        (("docker.io/library/busybox",), ["busybox:latest"]),
        (("library/busybox:latest",), ["busybox:latest"]),
        (("localhost/app",), ["app:dev"]),
        (("app",), []),  # localhost/app is not docker.io/library/app
        (("*box*",), ["busybox:latest"]),
        (("alp?ne:*",), ["alpine:3.20"]),
        (("*/app:dev",), ["app:dev"]),
        (("alpine", "busybox"), ["alpine:3.20", "busybox:latest"]),
        (("alpine", "labels.tier==tools"), ["alpine:3.20", "busybox:latest"]),
    ],
)
def test_a_bare_argument_is_a_name_or_glob(
    expressions: tuple[str, ...], expected: list[str]
) -> None:
    assert matching(*expressions) == expected


def test_a_bare_argument_that_is_no_name_is_an_error() -> None:
    with pytest.raises(InvalidFilterError, match=r"invalid filter 'Alpine': neither a selector"):
        ImageFilter.parse(["Alpine"])


def test_regex_on_a_value_with_a_lone_surrogate() -> None:
    """An annotation from an archive's JSON may be "\\udcff": searching it is no crash."""
    record = ImageRecord(
        name="example.com/odd:1",
        media_type=INDEX,
        digest=Digest("sha256", "d" * 64),
        size=1,
        annotations={"note": "a\udcffb"},
    )
    assert ImageFilter.parse(["annotations.note~=b$"]).matches(record)
    assert not ImageFilter.parse(["annotations.note~=c"]).matches(record)


def test_no_arguments_match_everything() -> None:
    image_filter = ImageFilter.parse([])
    assert all(image_filter.matches(record) for record in RECORDS)
    assert str(image_filter) == ""


def test_an_empty_argument_matches_everything_like_containerd() -> None:
    assert matching("", "name~=nothing") == ["alpine:3.20", "busybox:latest", "app:dev"]


def test_str_gives_back_the_expressions() -> None:
    image_filter = ImageFilter.parse(["name~=alpine", 'labels."a b"==x'])
    assert str(image_filter) == "'name~=alpine' 'labels.\"a b\"==x'"


def test_a_single_string_is_refused() -> None:
    with pytest.raises(TypeError):
        ImageFilter.parse("name==x")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            'name=="abc',
            "invalid filter 'name==\"abc': unterminated quoted string (missing \") at position 6",
        ),
        ('labels."tier==x', 'unterminated quoted string (missing ") at position 7'),
        ('name=="a\\', 'unterminated quoted string (missing ") at position 6'),
        ("name~=/abc", "unterminated quoted string (missing /) at position 6"),
        ('name=="a\nb"', "unterminated quoted string"),
        ("name==", "invalid filter 'name==': expected a value after '==' at position 6"),
        ("name!=,name", "expected a value after '!=' at position 6"),
        ("name~=  ", "expected a value after '~=' at position 8"),
        ("name=a", "unsupported operator '=' at position 4 (expected '==', '!=' or '~=')"),
        ("name=~a", "unsupported operator '=~' at position 4"),
        ("name===a", "unsupported operator '===' at position 4"),
        ("name<a", "unexpected '<' at position 4"),
        ("labels.example.com/key==x", "unexpected '/' at position 18"),
        ("name==a,,name", "expected a field name, found ',' at position 8"),
        ("name==a,", "expected a field name at position 8"),
        (",name==a", "expected a field name, found ',' at position 0"),
        ("labels.==x", "expected a field name, found '=' at position 7"),
        ("   ", "expected a field name at position 3"),
        ("name==a b", "unexpected 'b' at position 8 (selectors are separated by ',')"),
        ("name~=(", "invalid regular expression '(': missing ): ( at position 6"),
        ("name~=(a)\\1", "invalid escape sequence: \\1 at position 6"),
        ("name~=a(?=b)", "invalid regular expression 'a(?=b)': invalid perl operator: (?="),
        ("name==a,labels.x~=[z-a]", "invalid regular expression '[z-a]'"),
        ('labels."a\\q"', "invalid escape sequence '\\q' at position 9"),
        ('labels."\\xZZ"', "invalid numeric escape '\\xZZ' at position 8"),
        ('labels."\\400"', "invalid numeric escape '\\400' at position 8"),
        ("nmae==x", "unknown field 'nmae' at position 0 (known: name, target.digest,"),
        ("name==a,digest==x", "unknown field 'digest' at position 8"),
        ("target==x", "unknown field 'target' at position 0"),
        ("target.size", "unknown field 'target.size' at position 0"),
        ("name.first==x", "unknown field 'name.first' at position 0"),
        ("labels", "unknown field 'labels' at position 0"),
    ],
)
def test_malformed_expressions_raise(expression: str, message: str) -> None:
    with pytest.raises(InvalidFilterError) as caught:
        ImageFilter.parse(["name==ok", expression])
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert text.startswith("invalid filter ")
