"""The one walk of referrers: over a store's records and a registry's listings alike."""

from __future__ import annotations

from cargohold.oci.digests import Digest
from cargohold.oci.referrers import MAX_REFERRER_DEPTH, follow_referrers


def test_referrers_are_followed_level_by_level_to_the_depth_limit() -> None:
    """Parents before children, each level after the one above; a chain deeper than
    MAX_REFERRER_DEPTH is followed no further (a hostile source can list referrers forever)."""
    chain = [Digest.of_bytes(str(i).encode()) for i in range(MAX_REFERRER_DEPTH + 3)]
    side = Digest.of_bytes(b"side")
    children = {chain[i]: [chain[i + 1]] for i in range(len(chain) - 1)}
    children[chain[0]] = [chain[1], side]
    visited: list[Digest] = []

    def visit(subject: Digest) -> list[Digest]:
        visited.append(subject)
        return children.get(subject, [])

    follow_referrers([chain[0], chain[0]], visit)
    assert visited == [chain[0], chain[1], side, *chain[2 : MAX_REFERRER_DEPTH + 1]]
