"""Signatures, attestations and SBOMs kept with their images: import, export, gc, verify."""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from cargohold.errors import SignatureError
from cargohold.operations.context import VERSION_FILE
from cargohold.operations.store import Store
from clisupport import ERROR_PREFIX, run
from imagefactory import ArchiveBuilder, digest_of, dumps
from signing import (
    SPDX,
    Artifact,
    add_artifact,
    independent_verify,
    new_key,
    payload_for,
    public_pem,
    sbom,
    sig_tag,
    signature,
)
from snapshots import HOST

REPO = "registry.example/team/app"
NAME = f"{REPO}:1"


def signed_archive(
    tmp_path: Path, key: Any, *, signed: bytes | None = None, stored: bytes | None = None
) -> tuple[Path, dict[str, Any], str, str]:
    """An OCI archive of one image, its cosign signature (tagged) and an SBOM (untagged, with
    a subject); returns the path, the image's descriptor and the two referrers' digests."""
    builder = ArchiveBuilder()
    image = builder.image(HOST)
    builder.add(image, name=NAME)
    sig = signature(image["digest"], REPO, key, signed=signed, stored=stored)
    add_artifact(builder, sig, ref_name=sig_tag(image["digest"]))
    bom = sbom(image)
    add_artifact(builder, bom)
    return builder.write(tmp_path / "signed.tar"), image, sig.digest, bom.digest


def index_entries(archive: Path) -> list[dict[str, Any]]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        entries: list[dict[str, Any]] = json.load(member)["manifests"]
    return entries


def blob_reader(archive: Path) -> Any:
    def read(digest: str) -> bytes:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("blobs/" + digest.replace(":", "/"))
            assert member is not None
            return member.read()

    return read


def test_referrers_cross_export_and_import_with_digests_unchanged(tmp_path: Path) -> None:
    key = new_key()
    archive, image, sig_digest, bom_digest = signed_archive(tmp_path, key)
    with Store(tmp_path / "a") as store:
        result = store.import_archive(archive)
        assert [i.name for i in result.images] == [NAME]  # the referrers are no images
        kept = {str(r.digest): r for r in store.referrers(NAME)}
        assert set(kept) == {sig_digest, bom_digest}
        assert kept[sig_digest].kind == "sig"
        assert kept[bom_digest].kind == ""
        assert kept[bom_digest].descriptor.artifact_type == SPDX
        store.export(tmp_path / "out.tar", [NAME])
    entries = index_entries(tmp_path / "out.tar")
    by_digest = {e["digest"]: e for e in entries}
    assert by_digest[sig_digest]["annotations"] == {
        "org.opencontainers.image.ref.name": f"{REPO}:{sig_tag(image['digest'])}"
    }
    assert (
        "annotations" not in by_digest[bom_digest]
        or "org.opencontainers.image.ref.name" not in (by_digest[bom_digest]["annotations"])
    )
    read = blob_reader(tmp_path / "out.tar")
    assert independent_verify(read(sig_digest), read, image["digest"], public_pem(key))
    assert json.loads(read(bom_digest))["subject"]["digest"] == image["digest"]
    with Store(tmp_path / "b") as other:
        other.import_archive(tmp_path / "out.tar")
        assert {str(r.digest) for r in other.referrers(NAME)} == {sig_digest, bom_digest}


def test_export_no_referrers_leaves_them_out(tmp_path: Path) -> None:
    archive, image, sig_digest, bom_digest = signed_archive(tmp_path, new_key())
    with Store(tmp_path / "a") as store:
        store.import_archive(archive)
        store.export(tmp_path / "out.tar", [NAME], referrers=False)
    with tarfile.open(tmp_path / "out.tar") as tar:
        names = set(tar.getnames())
    assert [e["digest"] for e in index_entries(tmp_path / "out.tar")] == [image["digest"]]
    assert "blobs/" + sig_digest.replace(":", "/") not in names
    assert "blobs/" + bom_digest.replace(":", "/") not in names


def test_gc_keeps_referrers_while_the_subject_lives_and_removing_it_removes_them(
    tmp_path: Path,
) -> None:
    archive, image, sig_digest, bom_digest = signed_archive(tmp_path, new_key())
    with Store(tmp_path / "a") as store:
        store.import_archive(archive)
        assert store.gc().removed == []
        stored = {str(c.digest) for c in store.content()}
        assert {sig_digest, bom_digest} <= stored
        store.tag(NAME, [f"{REPO}:also"])
        store.remove([NAME])  # another name keeps the image, and its referrers with it
        assert {str(r.digest) for r in store.referrers(f"{REPO}:also")} == {
            sig_digest,
            bom_digest,
        }
        removed = store.remove([f"{REPO}:also"])
        assert removed.gc is not None
        assert {str(c.digest) for c in store.content()} == set()
        assert store.referrers(image["digest"]) == []


def test_a_referrer_with_a_name_of_its_own_outlives_its_subject(tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    image = builder.image(HOST)
    builder.add(image, name=NAME)
    bom = sbom(image)
    add_artifact(builder, bom)
    builder.add(bom.descriptor(), name=f"{REPO}:sbom")
    with Store(tmp_path / "s") as store:
        store.import_archive(builder.write(tmp_path / "a.tar"))
        assert [str(r.digest) for r in store.referrers(NAME)] == [bom.digest]
        store.remove([NAME])
        stored = {str(c.digest) for c in store.content()}
        assert bom.digest in stored
        assert image["digest"] not in stored


def test_image_verify_passes_for_the_signed_image(tmp_path: Path) -> None:
    key = new_key()
    archive, _image, _sig, _bom = signed_archive(tmp_path, key)
    (tmp_path / "cosign.pub").write_bytes(public_pem(key))
    assert run(tmp_path / "s", "image", "import", str(archive)).returncode == 0
    done = run(tmp_path / "s", "image", "verify", "--key", str(tmp_path / "cosign.pub"), NAME)
    assert done.returncode == 0, done.stderr
    assert b"verified" in done.stdout
    with_identity = run(
        tmp_path / "s", "image", "verify", "--key", str(tmp_path / "cosign.pub"),
        "--identity", REPO, NAME,
    )  # fmt: skip
    assert with_identity.returncode == 0, with_identity.stderr
    wrong_identity = run(
        tmp_path / "s", "image", "verify", "--key", str(tmp_path / "cosign.pub"),
        "--identity", "registry.example/other", NAME,
    )  # fmt: skip
    assert wrong_identity.returncode == 1
    assert b"not registry.example/other" in wrong_identity.stderr


@pytest.mark.parametrize("case", ["tampered", "other-key", "other-digest", "unsigned"])
def test_image_verify_fails_without_a_valid_signature(tmp_path: Path, case: str) -> None:
    key = new_key()
    other_digest = digest_of(b"another image")
    builder = ArchiveBuilder()
    image = builder.image(HOST)
    builder.add(image, name=NAME)
    honest = payload_for(image["digest"], REPO)
    signer = new_key() if case == "other-key" else key
    if case == "tampered":
        sig = signature(image["digest"], REPO, signer, stored=honest.replace(b"cosign", b"cosigN"))
    elif case == "other-digest":
        sig = signature(image["digest"], REPO, signer, signed=payload_for(other_digest, REPO))
    else:
        sig = signature(image["digest"], REPO, signer)
    if case != "unsigned":
        add_artifact(builder, sig, ref_name=sig_tag(image["digest"]))
    archive = builder.write(tmp_path / "a.tar")
    (tmp_path / "cosign.pub").write_bytes(public_pem(key))
    assert run(tmp_path / "s", "image", "import", str(archive)).returncode == 0
    done = run(tmp_path / "s", "image", "verify", "--key", str(tmp_path / "cosign.pub"), NAME)
    assert done.returncode == 1
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX + NAME + ": no valid signature")
    expected = {
        "tampered": "does not verify",
        "other-key": "does not verify",
        "other-digest": f"signed for another image, {other_digest}",
        "unsigned": "it has no signatures",
    }[case]
    assert expected in lines[0]


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_verify_reads_rsa_and_ed25519_keys(tmp_path: Path, kind: str) -> None:
    key: Any = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    builder = ArchiveBuilder()
    image = builder.image(HOST)
    builder.add(image, name=NAME)
    ec_sig = signature(image["digest"], REPO, new_key())
    layer = json.loads(ec_sig.manifest)["layers"][0]
    payload = ec_sig.blobs[layer["digest"]]
    raw = (
        key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        if kind == "rsa"
        else key.sign(payload)
    )
    layer["annotations"]["dev.cosignproject.cosign/signature"] = base64.b64encode(raw).decode()
    manifest = json.loads(ec_sig.manifest)
    manifest["layers"] = [layer]
    add_artifact(
        builder, Artifact(dumps(manifest), ec_sig.blobs), ref_name=sig_tag(image["digest"])
    )
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "k.pub").write_bytes(pem)
    with Store(tmp_path / "s") as store:
        store.import_archive(builder.write(tmp_path / "a.tar"))
        [result] = store.verify([NAME], tmp_path / "k.pub")
        assert result.ok, result.rejected


def test_import_require_signature_refuses_an_unsigned_archive_and_changes_nothing(
    tmp_path: Path,
) -> None:
    key = new_key()
    (tmp_path / "cosign.pub").write_bytes(public_pem(key))
    builder = ArchiveBuilder()
    image = builder.image(HOST)
    builder.add(image, name=NAME)
    add_artifact(builder, sbom(image))
    unsigned = builder.write(tmp_path / "unsigned.tar")
    root = tmp_path / "s"
    refused = run(root, "image", "import", "--require-signature", str(tmp_path / "cosign.pub"),
                  str(unsigned))  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.decode().startswith(f"{ERROR_PREFIX}{NAME}: no valid signature")
    with Store(root) as store:
        assert store.list_images() == []
        assert store.content() == []
    signed, *_ = signed_archive(tmp_path, key)
    accepted = run(root, "image", "import", "--require-signature", str(tmp_path / "cosign.pub"),
                   str(signed))  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    with Store(root) as store, pytest.raises(SignatureError):
        store.import_archive(unsigned, require_signature=tmp_path / "cosign.pub", force=True)


def test_import_reads_the_tag_schema_and_hauler_conventions(tmp_path: Path) -> None:
    """regctl's ocidir keeps referrers in an index tagged sha256-<hex>; Hauler marks entries
    with a kind annotation and the subject's digest."""
    builder = ArchiveBuilder()
    image = builder.image(HOST)
    builder.add(image, name=NAME, ref_name="1")
    bom = sbom(image)
    builder.blobs.update(bom.blobs)
    builder.blobs[bom.digest] = bom.manifest
    listing = builder.index([{**bom.descriptor(), "artifactType": SPDX}])
    builder.add(listing, ref_name=image["digest"].replace(":", "-"))
    sig = signature(image["digest"], REPO, new_key())
    builder.blobs.update(sig.blobs)
    builder.blobs[sig.digest] = sig.manifest
    builder.entries.append(
        {
            **sig.descriptor(),
            "annotations": {
                "kind": "dev.hauler/sigs",
                "org.opencontainers.image.ref.name": "1",
                "hauler.dev/subject-digest": image["digest"],
            },
        }
    )
    with Store(tmp_path / "s") as store:
        result = store.import_archive(builder.write(tmp_path / "a.tar"))
        assert [i.name for i in result.images] == [NAME]
        kinds = {str(r.digest): r.kind for r in store.referrers(NAME)}
        assert kinds == {bom.digest: "", sig.digest: "sig"}


def test_a_referrer_of_an_image_the_archive_lacks_is_left_out_with_a_warning(
    tmp_path: Path,
) -> None:
    builder = ArchiveBuilder()
    image = builder.image(HOST)
    builder.add(image, name=NAME)
    stray = sbom({"mediaType": image["mediaType"], "digest": digest_of(b"x"), "size": 1})
    add_artifact(builder, stray)
    with Store(tmp_path / "s") as store:
        result = store.import_archive(builder.write(tmp_path / "a.tar"))
        assert any("is not in the archive" in w for w in result.warnings)
        assert store.referrers(NAME) == []
        assert stray.digest not in {str(c.digest) for c in store.content()}


def test_a_format_2_store_is_upgraded(tmp_path: Path) -> None:
    archive, *_ = signed_archive(tmp_path, new_key())
    with Store(tmp_path / "s") as store:
        store.import_archive(archive)
    (tmp_path / "s" / VERSION_FILE).write_text("2\n")
    with Store(tmp_path / "s", mode="read") as reader:
        assert len(reader.referrers(NAME)) == 2
    with Store(tmp_path / "s") as store:
        assert len(store.referrers(NAME)) == 2
    assert (tmp_path / "s" / VERSION_FILE).read_text() == "3\n"


def test_inspect_lists_referrers_and_ls_counts_them(tmp_path: Path) -> None:
    archive, image, sig_digest, bom_digest = signed_archive(tmp_path, new_key())
    root = tmp_path / "s"
    assert run(root, "image", "import", str(archive)).returncode == 0
    listed = json.loads(run(root, "image", "ls", "--format", "json").stdout)
    assert [(row["name"], row["referrers"]) for row in listed] == [(NAME, 2)]
    inspected = json.loads(run(root, "image", "inspect", "--format", "json", NAME).stdout)
    found = {r["digest"]: r for r in inspected["referrers"]}
    assert set(found) == {sig_digest, bom_digest}
    assert found[sig_digest]["kind"] == "signature"
    assert found[bom_digest]["kind"] == "referrer"
    assert found[bom_digest]["artifactType"] == SPDX
    assert found[bom_digest]["subject"] == image["digest"]
    assert found[bom_digest]["annotations"] == {
        "org.opencontainers.image.created": "2024-01-01T00:00:00Z"
    }
    text = run(root, "image", "inspect", NAME).stdout.decode()
    assert "Referrers (signatures, attestations, SBOMs)" in text
    assert sig_digest in text and f"{SPDX}" in text


def test_a_referrer_whose_content_is_missing_refuses_the_archive(tmp_path: Path) -> None:
    builder = ArchiveBuilder()
    image = builder.image(HOST)
    builder.add(image, name=NAME)
    bom = sbom(image)
    add_artifact(builder, bom)
    layer = json.loads(bom.manifest)["layers"][0]["digest"]
    archive = builder.write(tmp_path / "a.tar", omit=frozenset({layer}))
    root = tmp_path / "s"
    refused = run(root, "image", "import", str(archive))
    assert refused.returncode == 1
    [line] = refused.stderr.decode().splitlines()
    assert line.startswith(ERROR_PREFIX) and layer in line
    with Store(root) as store:
        assert store.list_images() == [] and store.content() == []
