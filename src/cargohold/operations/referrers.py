"""The referrers a namespace keeps: listing them for a subject (what a server's referrers API
answers), and following them from an image's documents (what export and push carry)."""

from __future__ import annotations

from collections.abc import Iterable

from ..oci.digests import Digest
from ..oci.referrers import Referrer, follow_referrers, parse_referrer_tag, referrers_index
from .context import StoreContext


def list_referrers(
    ctx: StoreContext, subject: Digest, artifact_type: str | None = None
) -> list[Referrer]:
    """The referrers *ctx*'s namespace keeps for *subject* (filtered by *artifact_type*),
    cosign's tag attachments included (their ``kind`` says which tag they go under)."""
    found = ctx.meta.referrers(ctx.namespace, subject)
    if artifact_type is not None:
        found = [r for r in found if r.descriptor.artifact_type == artifact_type]
    return found


def referrers_response(
    ctx: StoreContext, subject: Digest, artifact_type: str | None = None
) -> bytes:
    """The body of ``GET /v2/<name>/referrers/<subject>``: an OCI index of the OCI referrers
    (cosign's attachments are served under their tags, not here)."""
    return referrers_index(list_referrers(ctx, subject), artifact_type)


def find_attachment(ctx: StoreContext, tag: str) -> Referrer | None:
    """The cosign attachment kept under *tag* (``sha256-<hex>.sig``, ``.att``, ``.sbom``), for
    a server answering ``GET /v2/<name>/manifests/<tag>``; None for any other tag or when the
    namespace keeps none. (A tag-schema tag, ``sha256-<hex>``, is answered with
    :func:`referrers_response`.)"""
    parsed = parse_referrer_tag(tag)
    if parsed is None or not parsed[1]:
        return None
    subject, kind = parsed
    return next((r for r in list_referrers(ctx, subject) if r.kind == kind), None)


def referrer_closure(ctx: StoreContext, subjects: Iterable[Digest]) -> list[Referrer]:
    """Every referrer of *subjects*, and of those referrers in turn (a signature of an SBOM),
    parents before children, each (subject, digest) once."""
    found: list[Referrer] = []
    seen: set[tuple[Digest, Digest]] = set()

    def visit(subject: Digest) -> list[Digest]:
        following = []
        for referrer in ctx.meta.referrers(ctx.namespace, subject):
            if (referrer.subject, referrer.digest) not in seen:
                seen.add((referrer.subject, referrer.digest))
                found.append(referrer)
                following.append(referrer.digest)
        return following

    follow_referrers(subjects, visit)
    return found
