"""containerd reads what cargohold exports with referrers: the image imports under its name,
the referrers' entries of ``index.json`` do not fail the import (containerd's issue 11344 with
attestation manifests), the SBOM (an untagged OCI referrer) is no image of its own, and
cosign's signature is listed under its tag, as a registry lists it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cargohold.operations.store import Store
from imagefactory import ArchiveBuilder
from signing import add_artifact, new_key, sbom, sig_tag
from signing import signature as cosign_signature
from snapshots import HOST

if TYPE_CHECKING:
    from conftest import Containerd

REPO = "registry.example/team/signed"


def test_an_export_with_referrers_imports_into_containerd(
    containerd: Containerd, ctr_namespace: str, tmp_path: Path
) -> None:
    builder = ArchiveBuilder()
    image: dict[str, Any] = builder.image(HOST)
    builder.add(image, name=f"{REPO}:1")
    sig = cosign_signature(image["digest"], REPO, new_key())
    add_artifact(builder, sig, ref_name=sig_tag(image["digest"]))
    add_artifact(builder, sbom(image))
    out = tmp_path / "signed-export.tar"
    with Store(tmp_path / "store") as store:
        store.import_archive(builder.write(tmp_path / "signed.tar"))
        assert len(store.referrers(f"{REPO}:1")) == 2
        store.export(out, [f"{REPO}:1"])

    containerd.ctr("image", "import", "--no-unpack", str(out), namespace=ctr_namespace)

    images = containerd.images(ctr_namespace)
    signature_name = f"{REPO}:{sig_tag(image['digest'])}"
    assert sorted(images) == sorted([f"{REPO}:1", signature_name])
    assert images[f"{REPO}:1"].digest == image["digest"]
    assert images[signature_name].digest == sig.digest
