"""Docker reference parsing must agree with docker and containerd, or names would not match."""

from __future__ import annotations

import pytest

from cargohold.errors import CargoholdError, InvalidReferenceError
from cargohold.oci.digests import Digest
from cargohold.oci.references import Reference, is_tag, parse_repository

HEX = "a" * 64
DIGEST = f"sha256:{HEX}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:3.19", "docker.io/library/alpine:3.19"),
        ("library/alpine", "docker.io/library/alpine:latest"),
        ("docker.io/alpine", "docker.io/library/alpine:latest"),
        ("docker.io/library/alpine:edge", "docker.io/library/alpine:edge"),
        ("index.docker.io/library/a", "docker.io/library/a:latest"),
        ("index.docker.io/a", "docker.io/library/a:latest"),
        ("foo/bar:1", "docker.io/foo/bar:1"),
        ("foo/bar/baz", "docker.io/foo/bar/baz:latest"),
        ("localhost/x", "localhost/x:latest"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        ("localhost:5000/x:y", "localhost:5000/x:y"),
        ("localhost", "docker.io/library/localhost:latest"),
        ("localhost:5000", "docker.io/library/localhost:5000"),
        ("ghcr.io/x/y:2", "ghcr.io/x/y:2"),
        ("ghcr.io/x", "ghcr.io/x:latest"),
        ("Registry.Example.COM/team/app", "Registry.Example.COM/team/app:latest"),
        ("example:5000/app", "example:5000/app:latest"),
        ("127.0.0.1:5000/app:v1", "127.0.0.1:5000/app:v1"),
        ("[::1]:5000/a:b", "[::1]:5000/a:b"),
        ("[2001:db8::1]/a", "[2001:db8::1]/a:latest"),
        ("my-app", "docker.io/library/my-app:latest"),
        ("a_b__c--d/e.f", "docker.io/a_b__c--d/e.f:latest"),
        ("alpine:Latest_1.2-rc", "docker.io/library/alpine:Latest_1.2-rc"),
        ("alpine:_x", "docker.io/library/alpine:_x"),
        (f"alpine@{DIGEST}", f"docker.io/library/alpine@{DIGEST}"),
        (f"alpine:3.19@{DIGEST}", f"docker.io/library/alpine@{DIGEST}"),
        (f"ghcr.io/x/y:2@{DIGEST}", f"ghcr.io/x/y@{DIGEST}"),
        (f"sha256:{HEX}", f"docker.io/library/sha256:{HEX}"),
    ],
)
def test_parse_normalises(value: str, expected: str) -> None:
    assert str(Reference.parse(value)) == expected


def test_parse_fields() -> None:
    ref = Reference.parse("localhost:5000/team/app:v2")
    assert ref == Reference("localhost:5000", "team/app", "v2", None)
    assert ref.repository == "localhost:5000/team/app"


def test_tag_and_digest_keeps_only_the_digest() -> None:
    ref = Reference.parse(f"alpine:3.19@{DIGEST}")
    assert ref.tag is None
    assert ref.digest == Digest.parse(DIGEST)


def test_parse_is_idempotent_on_its_output() -> None:
    for value in ("alpine", "foo/bar:1", "[::1]:5000/a:b", f"alpine@{DIGEST}"):
        ref = Reference.parse(value)
        assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("value", "familiar"),
    [
        ("alpine", "alpine:latest"),
        ("docker.io/library/alpine:3.19", "alpine:3.19"),
        ("foo/bar:1", "foo/bar:1"),
        ("library/a/b", "library/a/b:latest"),
        ("ghcr.io/x/y:2", "ghcr.io/x/y:2"),
        ("localhost:5000/a:b", "localhost:5000/a:b"),
        ("[::1]:5000/a:b", "[::1]:5000/a:b"),
        (f"alpine@{DIGEST}", f"alpine@{DIGEST}"),
        (f"ghcr.io/x/y@{DIGEST}", f"ghcr.io/x/y@{DIGEST}"),
        ("index.docker.io/foo/bar", "foo/bar:latest"),
    ],
)
def test_familiar_round_trips(value: str, familiar: str) -> None:
    ref = Reference.parse(value)
    assert ref.familiar() == familiar
    assert Reference.parse(ref.familiar()) == ref


@pytest.mark.parametrize(
    "ref",
    [
        # Dropping docker.io here would turn the first component into a registry host.
        Reference("docker.io", "foo.bar/baz", "1"),
        Reference("docker.io", "localhost/baz", "1"),
        # Without a tag the short form would look like an image ID.
        Reference("docker.io", f"library/{HEX}"),
    ],
)
def test_familiar_keeps_the_domain_when_needed(ref: Reference) -> None:
    assert ref.familiar().startswith("docker.io/")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("Foo/bar", "must be lowercase"),
        ("foo/Bar", "must be lowercase"),
        ("ALPINE", "must be lowercase"),
        ("ghcr.io/Team/app", "must be lowercase"),
        ("a//b", "empty path component"),
        ("/a", "empty path component"),
        ("a/", "empty path component"),
        ("ghcr.io/", "missing repository name"),
        ("-a", "invalid path component '-a'"),
        ("a-", "invalid path component"),
        ("a..b", "invalid path component"),
        ("a___b", "invalid path component"),
        ("a b", "invalid path component"),
        ("a+b", "invalid path component"),
        ("alpine:" + "x" * 129, "tag is longer than 128"),
        ("alpine:.x", "invalid tag"),
        ("alpine:-x", "invalid tag"),
        ("alpine:", "missing tag"),
        ("alpine:é", "invalid tag"),
        (":tag", "missing repository name"),
        ("@" + DIGEST, "missing repository name"),
        ("alpine@sha256:abc", "invalid digest"),
        ("alpine@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("alpine@" + DIGEST.upper(), "invalid digest"),
        ("alpine@", "invalid digest"),
        (f"alpine@{DIGEST}@{DIGEST}", "invalid digest"),
        ("a" * 256, "longer than 255"),
        ("ghcr.io/" + "a" * 248, "longer than 255"),
        ("x" * 2000, "longer than 1024"),
        (HEX, "looks like an image ID"),
        ("-bad.io/a", "invalid domain"),
        ("bad_domain.io/a", "invalid domain"),
        ("[::1/a", "invalid domain"),
        ("host:port/a", "invalid domain"),
        ("alpine\n", "invalid"),
    ],
)
def test_invalid_references(value: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid reference") as info:
        Reference.parse(value)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, CargoholdError)
    assert isinstance(info.value, ValueError)


#: Characters a terminal acts on or that change how text reads: C0, DEL, C1, bidi, zero-width.
TERMINAL_CONTROLS = ["\x1b", "\r", "\n", "\x07", "\x7f", "\x9b", "\u202e", "\u2066", "\u200d"]


@pytest.mark.parametrize("char", TERMINAL_CONTROLS, ids=ascii)
@pytest.mark.parametrize(
    "template",
    ["example.com{}/app:1", "example.com/ap{}p:1", "example.com/app:1{}", "app@{}" + DIGEST],
    ids=["domain", "path", "tag", "digest"],
)
def test_no_name_holds_a_terminal_control(char: str, template: str) -> None:
    """Every name entering the store is parsed here (import annotations, RepoTags, --tag,
    --index-name, tag, pull), so none can carry what a terminal would obey."""
    value = template.format(char)
    with pytest.raises(InvalidReferenceError) as caught:
        Reference.parse(value)
    assert str(caught.value).isprintable()
    repository = value.partition(":1")[0].partition("@")[0]
    if char in repository:
        with pytest.raises(InvalidReferenceError):
            parse_repository(repository)


def test_name_length_limit_is_on_the_normalised_name() -> None:
    # 255 characters exactly is allowed, one more is not.
    fits = "ghcr.io/" + "a" * (255 - len("ghcr.io/"))
    assert Reference.parse(fits).repository == fits
    with pytest.raises(InvalidReferenceError):
        Reference.parse(fits + "a")
    # docker.io/library/ counts too.
    with pytest.raises(InvalidReferenceError):
        Reference.parse("a" * (256 - len("docker.io/library/")))


def test_error_names_the_value() -> None:
    with pytest.raises(InvalidReferenceError, match=r"'foo/Bar'"):
        Reference.parse("foo/Bar")


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidReferenceError, match="must be a string"):
        Reference.parse(42)  # type: ignore[arg-type]


def test_oci_ref_name() -> None:
    assert Reference.parse("ghcr.io/x/y:2").oci_ref_name() == "2"
    assert Reference.parse(f"ghcr.io/x/y@{DIGEST}").oci_ref_name() == f"ghcr.io/x/y@{DIGEST}"


def test_with_tag_and_with_digest() -> None:
    ref = Reference.parse(f"alpine@{DIGEST}")
    tagged = ref.with_tag("3.19")
    assert str(tagged) == "docker.io/library/alpine:3.19"
    assert tagged.digest is None
    pinned = tagged.with_digest(Digest.parse(DIGEST))
    assert str(pinned) == f"docker.io/library/alpine@{DIGEST}"
    assert pinned.tag is None


def test_with_tag_validates_the_tag() -> None:
    with pytest.raises(InvalidReferenceError, match="invalid tag"):
        Reference.parse("alpine").with_tag("no spaces")


@pytest.mark.parametrize(
    ("domain", "path", "tag"),
    [
        ("docker.io", "Library/alpine", "1"),
        ("bad domain", "a", "1"),
        ("docker.io", "a//b", "1"),
        ("docker.io", "a", ".bad"),
    ],
)
def test_constructor_validates(domain: str, path: str, tag: str) -> None:
    with pytest.raises(InvalidReferenceError):
        Reference(domain, path, tag)


def test_constructor_refuses_tag_and_digest_together() -> None:
    with pytest.raises(InvalidReferenceError, match="both a tag and a digest"):
        Reference("docker.io", "library/a", "1", Digest.parse(DIGEST))


def test_references_are_hashable_values() -> None:
    assert len({Reference.parse("alpine"), Reference.parse("docker.io/library/alpine")}) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("latest", True),
        ("3.19", True),
        ("v1.2.3-rc_1", True),
        ("_x", True),
        ("A" * 128, True),
        ("A" * 129, False),
        ("", False),
        (".x", False),
        ("-x", False),
        ("a/b", False),
        ("a:b", False),
        ("a@b", False),
        ("é", False),
        ("x\n", False),
    ],
)
def test_is_tag(value: str, expected: bool) -> None:
    assert is_tag(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("my-app", "docker.io/library/my-app"),
        ("foo/bar", "docker.io/foo/bar"),
        ("index.docker.io/x", "docker.io/library/x"),
        ("localhost:5000/x", "localhost:5000/x"),
        ("ghcr.io/x/y", "ghcr.io/x/y"),
    ],
)
def test_parse_repository(value: str, expected: str) -> None:
    assert parse_repository(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("alpine:3.19", "cannot have a tag"),
        ("localhost:5000/x:y", "cannot have a tag"),
        (f"alpine@{DIGEST}", "cannot have a digest"),
        ("Foo", "must be lowercase"),
        ("", "empty"),
        (HEX, "looks like an image ID"),
        ("a//b", "empty path component"),
    ],
)
def test_parse_repository_refuses(value: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=message):
        parse_repository(value)
