"""Signatures and SBOMs cross the gap with their image, between real Distribution registries.

A cosign-format signature (written here: Debian's skopeo is built without sigstore signing) and
an SBOM pushed with oras-py (a client no one here wrote) with a ``subject``, listed in the
referrers tag schema (Distribution 2.8 has no referrers API), go through ``image pull`` →
``image export`` → ``image import`` into another store → ``image push`` to a second registry.
There a verifier that uses no cargohold code finds a valid signature of the image's digest and
the SBOM listed; pushed with ``--no-referrers``, the same verifier finds none.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import oras.oci  # type: ignore[import-untyped]
import oras.provider  # type: ignore[import-untyped]
import pytest
from registries import free_port, running_registry

from clisupport import run
from imagefactory import OCI_INDEX, OCI_MANIFEST, ArchiveBuilder, digest_of, dumps
from signing import (
    independent_verify,
    new_key,
    public_pem,
    sig_tag,
    signature,
)
from snapshots import HOST

REPO: Final = "team/app"
SPDX_TYPE: Final = "application/spdx+json"


def _start(directory: Path) -> Iterator[str]:
    """A plain-HTTP docker-registry on a free port; yields its host:port."""
    port = free_port()
    config = (
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(directory / 'data'))}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
    )
    with running_registry(directory, config, f"http://127.0.0.1:{port}/v2/"):
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _start(tmp_path_factory.mktemp("registry-source"))


@pytest.fixture(scope="module")
def destination(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _start(tmp_path_factory.mktemp("registry-destination"))


class Raw:
    """The Distribution API by hand (httpx), so the test's view owes nothing to cargohold."""

    def __init__(self, netloc: str) -> None:
        self.base = f"http://{netloc}"
        self.client = httpx.Client(trust_env=False, timeout=30)

    def put_blob(self, repo: str, data: bytes) -> None:
        started = self.client.post(f"{self.base}/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = httpx.URL(self.base).join(started.headers["location"])
        done = self.client.put(
            location.copy_merge_params({"digest": digest_of(data)}), content=data
        )
        assert done.status_code == 201, done.text

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> None:
        done = self.client.put(
            f"{self.base}/v2/{repo}/manifests/{ref}",
            content=data,
            headers={"Content-Type": media_type},
        )
        assert done.status_code == 201, done.text

    def manifest(self, repo: str, ref: str) -> bytes | None:
        accept = f"{OCI_MANIFEST}, {OCI_INDEX}"
        got = self.client.get(f"{self.base}/v2/{repo}/manifests/{ref}", headers={"Accept": accept})
        if got.status_code == 404:
            return None
        assert got.status_code == 200, got.text
        return got.content

    def blob(self, repo: str, digest: str) -> bytes:
        got = self.client.get(f"{self.base}/v2/{repo}/blobs/{digest}", follow_redirects=True)
        assert got.status_code == 200 and digest_of(got.content) == digest
        return got.content


def publish_signed(netloc: str, key: Any, tmp_path: Path) -> tuple[str, str, str]:
    """The image, its cosign signature and an SBOM (oras-py, with a subject, listed in the
    tag schema) in the source registry; returns the three digests."""
    raw = Raw(netloc)
    builder = ArchiveBuilder()
    image = builder.image(HOST)
    for digest, data in builder.blobs.items():
        if digest != image["digest"]:
            raw.put_blob(REPO, data)
    raw.put_manifest(REPO, "1", builder.blobs[image["digest"]], OCI_MANIFEST)
    sig = signature(image["digest"], f"{netloc}/{REPO}", key)
    for data in sig.blobs.values():
        raw.put_blob(REPO, data)
    raw.put_manifest(REPO, sig_tag(image["digest"]), sig.manifest, OCI_MANIFEST)
    (tmp_path / "sbom.spdx.json").write_text('{"spdxVersion": "SPDX-2.3", "name": "app"}')
    registry = oras.provider.Registry(hostname=netloc, insecure=True)
    subject = oras.oci.Subject(image["mediaType"], image["digest"], image["size"])
    registry.push(
        target=f"{netloc}/{REPO}:sbom",
        files=[f"{tmp_path / 'sbom.spdx.json'}:{SPDX_TYPE}"],
        subject=subject,
        disable_path_validation=True,
        quiet=True,
    )
    sbom_manifest = raw.manifest(REPO, "sbom")
    assert sbom_manifest is not None
    sbom_digest = digest_of(sbom_manifest)
    listing = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sbom_digest, "size": len(sbom_manifest),
             "artifactType": json.loads(sbom_manifest)["config"]["mediaType"]}
        ],
    }  # fmt: skip
    raw.put_manifest(REPO, image["digest"].replace(":", "-"), dumps(listing), OCI_INDEX)
    return image["digest"], sig.digest, sbom_digest


def verifier_finds(netloc: str, repo: str, image_digest: str, public_key: bytes) -> bool:
    """Independent of cargohold: a valid cosign signature of *image_digest* at its tag."""
    raw = Raw(netloc)
    manifest = raw.manifest(repo, sig_tag(image_digest))
    if manifest is None:
        return False
    return independent_verify(manifest, lambda d: raw.blob(repo, d), image_digest, public_key)


def sbom_listed(netloc: str, repo: str, image_digest: str) -> list[str]:
    """The referrers the tag schema lists for the image whose subject names it."""
    raw = Raw(netloc)
    listing = raw.manifest(repo, image_digest.replace(":", "-"))
    if listing is None:
        return []
    found = []
    for entry in json.loads(listing)["manifests"]:
        manifest = raw.manifest(repo, entry["digest"])
        assert manifest is not None and digest_of(manifest) == entry["digest"]
        if json.loads(manifest).get("subject", {}).get("digest") == image_digest:
            found.append(entry["digest"])
    return found


def test_signature_and_sbom_cross_the_gap(source: str, destination: str, tmp_path: Path) -> None:
    key = new_key()
    image, sig, sbom = publish_signed(source, key, tmp_path)
    online, offline = tmp_path / "online", tmp_path / "offline"
    ref = f"{source}/{REPO}:1"
    pulled = run(online, "image", "pull", "--plain-http", "--format", "json", ref)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["referrers"] == 2
    archive = tmp_path / "gap.tar"
    assert run(online, "image", "export", str(archive), ref).returncode == 0
    (tmp_path / "cosign.pub").write_bytes(public_pem(key))
    imported = run(offline, "image", "import", "--require-signature",
                   str(tmp_path / "cosign.pub"), str(archive))  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    verified = run(offline, "image", "verify", "--key", str(tmp_path / "cosign.pub"),
                   "--identity", f"{source}/{REPO}", ref)  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    target = f"{destination}/{REPO}:1"
    pushed = run(offline, "image", "push", "--plain-http", "--format", "json", ref, target)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["referrers"] == 2
    public = public_pem(key)
    assert verifier_finds(destination, REPO, image, public)
    assert sbom_listed(destination, REPO, image) == [sbom]
    assert Raw(destination).manifest(REPO, sig) is not None  # the same digests on both sides

    bare = f"{destination}/team/bare:1"
    dropped = run(offline, "image", "push", "--plain-http", "--no-referrers", ref, bare)
    assert dropped.returncode == 0, dropped.stderr
    assert not verifier_finds(destination, "team/bare", image, public)
    assert sbom_listed(destination, "team/bare", image) == []

    removed = run(offline, "image", "rm", ref)
    assert removed.returncode == 0, removed.stderr
    content = run(offline, "content", "ls", "--format", "json")
    assert json.loads(content.stdout) == []


def test_pull_no_referrers_leaves_them(source: str, tmp_path: Path) -> None:
    _image, sig, sbom = publish_signed(source, new_key(), tmp_path)
    root = tmp_path / "store"
    pulled = run(root, "image", "pull", "--plain-http", "--no-referrers", "--format", "json",
                 f"{source}/{REPO}:1")  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["referrers"] == 0
    listed = json.loads(run(root, "content", "ls", "--format", "json").stdout)
    digests = {row["digest"] for row in listed}
    assert sig not in digests and sbom not in digests
