"""What a registry's answer says, read as from an untrusted peer: its headers checked against
the grammar they must follow, and its error document read from its first few KiB only."""

from __future__ import annotations

import json
import re
from typing import Final

import httpx

from ..errors import BelowSpeedFloor, CargoholdError, RegistryProtocolError
from ..oci.digests import Digest
from .messages import Reporter, Target, clean
from .speed import SpeedMeter

__all__ = [
    "DIGITS",
    "MEDIA_TYPE",
    "announced_digest",
    "check_encoding",
    "content_length",
    "expect",
    "location",
    "media_type",
    "own_media_type",
    "read_error_document",
    "retry_after",
]

#: Most of an error body read: enough for an OCI error document, never a hostile endless body.
_ERROR_BODY_LIMIT: Final = 8 << 10

MEDIA_TYPE: Final = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
DIGITS: Final = re.compile(r"[0-9]{1,20}")


def retry_after(response: httpx.Response) -> float | None:
    """The seconds ``Retry-After`` asks us to wait, when it gives a number of them."""
    value = response.headers.get("retry-after", "").strip()
    return float(value) if DIGITS.fullmatch(value) else None


def media_type(response: httpx.Response) -> str | None:
    """The ``Content-Type`` without parameters, when it is a well-formed media type."""
    value = response.headers.get("content-type")
    if value is None:
        return None
    value = value.split(";", 1)[0].strip()
    return value if MEDIA_TYPE.fullmatch(value) else None


def own_media_type(data: bytes) -> str | None:
    """The ``mediaType`` a JSON document names for itself, when it names a well-formed one."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    value = doc.get("mediaType") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and MEDIA_TYPE.fullmatch(value) else None


def expect(
    reporter: Reporter, response: httpx.Response, target: Target, what: str, *statuses: int
) -> None:
    """Refuse a status the Distribution API does not allow for this request."""
    if response.status_code not in statuses:
        raise reporter.error(
            RegistryProtocolError, target,
            f"unexpected HTTP {response.status_code} for a {what}",
            status_code=response.status_code,
        )  # fmt: skip


def location(
    reporter: Reporter,
    response: httpx.Response,
    target: Target,
    default: httpx.URL | None = None,
) -> httpx.URL:
    """Where an upload goes on: ``Location``, relative to the request or absolute."""
    value = response.headers.get("location")
    if value is None:
        if default is not None:
            return default
        raise reporter.error(RegistryProtocolError, target, "upload answer without a Location")
    try:
        url = response.url.join(value.strip())
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise reporter.error(
            RegistryProtocolError, target, f"invalid upload Location {clean(value, 100)!r}"
        )
    return url


def announced_digest(reporter: Reporter, response: httpx.Response, target: Target) -> Digest | None:
    """The digest ``Docker-Content-Digest`` names, when the registry sends one."""
    value = response.headers.get("docker-content-digest")
    if value is None:
        return None
    try:
        return Digest.parse(value.strip())
    except CargoholdError:
        raise reporter.error(
            RegistryProtocolError, target,
            f"invalid Docker-Content-Digest {clean(value, 100)!r}",
        ) from None  # fmt: skip


def content_length(reporter: Reporter, response: httpx.Response, target: Target) -> int | None:
    """``Content-Length``, when sent; several different values, or not a number, are refused."""
    values = response.headers.get_list("content-length")
    if not values:
        return None
    if len(set(values)) != 1 or not DIGITS.fullmatch(values[0].strip()):
        raise reporter.error(RegistryProtocolError, target, "invalid Content-Length")
    return int(values[0])


def check_encoding(reporter: Reporter, response: httpx.Response, target: Target, what: str) -> None:
    """Refuse a body sent encoded: bodies are hashed and bounded as stored, not decoded."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise reporter.error(
            RegistryProtocolError, target,
            f"{what} sent with Content-Encoding {clean(encoding, 40)!r}, not as stored",
        )  # fmt: skip


def read_error_document(
    response: httpx.Response, meter: SpeedMeter | None
) -> tuple[str | None, str | None]:
    """The code and message of an OCI error body, from its first few KiB only; a hostile
    registry may send an endless body, which is never read to its end, or trickle one, which
    is read only while it keeps to the floor of *meter*. The response is closed."""
    data = bytearray()
    try:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            for chunk in response.iter_raw():
                data += chunk
                if len(data) >= _ERROR_BODY_LIMIT:
                    break
                if meter is not None:
                    meter.advance(len(chunk))
    except (httpx.HTTPError, BelowSpeedFloor):
        pass
    finally:
        response.close()
    return _error_document(bytes(data[:_ERROR_BODY_LIMIT]))


def _error_document(data: bytes) -> tuple[str | None, str | None]:
    """The code and message of the first error of an OCI error document, or a line of plain
    text; truncated JSON or an HTML page would only clutter a message."""
    try:
        doc = json.loads(data)
    except ValueError:
        text = data[:200].decode("utf-8", "replace").strip()
        plain = clean(text, 120) if text and not text.startswith(("{", "[", "<")) else None
        return None, plain
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, None
    first = errors[0]
    code = first.get("code")
    message = first.get("message")
    code_text = clean(code, 60) if isinstance(code, str) and code else None
    detail = clean(message) if isinstance(message, str) and message else None
    if len(errors) > 1 and detail:
        detail += f" (and {len(errors) - 1} more)"
    return code_text, detail
