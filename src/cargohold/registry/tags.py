"""A repository's tag list (``GET /v2/<name>/tags/list``), read page by page as an untrusted
peer's answer: every page bounded, every tag checked against the grammar, and a ``Link`` to the
next page followed only on the registry's own origin."""

from __future__ import annotations

import json
import re
from typing import Final

import httpx

from ..errors import RegistryProtocolError
from ..oci.references import is_tag
from .http import Session
from .messages import Reporter, Target, clean

__all__ = ["MAX_TAG_PAGES", "TAGS_LIMIT", "next_page", "parse_tags"]

#: Most pages of a tag list followed, and most bytes of one page read.
MAX_TAG_PAGES: Final = 1000
TAGS_LIMIT: Final = 4 << 20
_NEXT_LINK: Final = re.compile(r'<([^>]{1,2000})>\s*;[^,]*\brel="?next"?')


def parse_tags(data: bytes, reporter: Reporter, target: Target) -> list[str]:
    """The tags of one page of a tag list; a tag outside the grammar is an error."""
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    tags = doc.get("tags") if isinstance(doc, dict) else None
    if tags is None and isinstance(doc, dict):
        return []  # Distribution answers "tags": null for a repository without tags
    if not isinstance(tags, list):
        raise reporter.error(RegistryProtocolError, target, "tag list is not a JSON tag list")
    for tag in tags:
        if not isinstance(tag, str) or not is_tag(tag):
            shown = clean(str(tag), 100)
            raise reporter.error(RegistryProtocolError, target, f"invalid tag {shown!r} in list")
    return tags


def next_page(
    link: str | None, url: httpx.URL, session: Session, reporter: Reporter, target: Target
) -> httpx.URL | None:
    """The next page a ``Link: <…>; rel="next"`` header names, on the registry's origin."""
    if not link:
        return None
    match = _NEXT_LINK.search(link)
    if match is None:
        return None
    try:
        following = url.join(match[1])
    except httpx.InvalidURL:
        following = None
    if following is None or not session.is_registry(following):
        raise reporter.error(
            RegistryProtocolError, target, f"tag list links to {clean(match[1], 100)!r}"
        )
    return following
