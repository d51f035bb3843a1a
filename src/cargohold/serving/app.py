"""The registry API as an aiohttp application: read-only, every error the spec's JSON body.

One handler takes every request, so that every path and method gets an answer in the spec's
form: ``GET``/``HEAD`` of ``/v2/``, manifests, blobs, ``tags/list`` and ``_catalog``; any
other method under ``/v2/`` is ``405 UNSUPPORTED`` and changes nothing; any other path is
``404``. Names and digests from the URL are validated before they are used: a blob's file
name is built from a parsed digest only, so no request reaches outside ``content/blobs``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from ..errors import ApiError, CargoholdError, InvalidReferenceError
from .auth import Htpasswd
from .content import Blob, ServedStore, parse_digest
from .names import request_name, store_repository
from .ranges import BlobResponse, requested_range

READ_METHODS: Final = frozenset({"GET", "HEAD"})
API_VERSION: Final = {"Docker-Distribution-API-Version": "registry/2.0"}
_MANIFEST_OR_BLOB: Final = re.compile(r"/v2/(.+)/(manifests|blobs)/([^/]+)")
_TAGS: Final = re.compile(r"/v2/(.+)/tags/list")
_REFERRERS: Final = re.compile(r"/v2/(.+)/referrers/([^/]+)")
#: Largest page of tags or repositories one request gets (``n`` above it is lowered).
MAX_PAGE: Final = 10_000
#: The key under which a request's authenticated user is kept (for the access log).
USER_KEY: Final = "cargohold.user"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: ApiError) -> web.Response:
    """The spec's error body for *error* (aiohttp leaves a HEAD's body out)."""
    body = json.dumps({"errors": [{"code": error.code, "message": error.message}]})
    return web.Response(
        status=error.status,
        body=body.encode(),
        content_type="application/json",
        headers=error.headers,
    )


def make_app(served: ServedStore, htpasswd: Htpasswd | None) -> web.Application:
    """The application serving *served*, behind *htpasswd* when given."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            if request.path.startswith("/v2"):
                await _authenticate(request, htpasswd)
            return await _route(request, served)
        except ApiError as exc:
            return error_response(exc)
        except CargoholdError as exc:  # the store's metadata cannot be read, say
            return error_response(ApiError(500, "UNKNOWN", f"the store: {exc}"))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)

    async def headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(API_VERSION)

    app.on_response_prepare.append(headers)
    return app


async def _authenticate(request: web.Request, htpasswd: Htpasswd | None) -> None:
    if htpasswd is None:
        return
    user = await htpasswd.check(request.headers.get("Authorization"))
    if user is None:
        raise ApiError(
            401,
            "UNAUTHORIZED",
            "authentication required",
            {"WWW-Authenticate": 'Basic realm="cargohold"'},
        )
    request[USER_KEY] = user


async def _route(request: web.Request, served: ServedStore) -> web.StreamResponse:
    path = request.path
    if not path.startswith("/v2/") and path != "/v2":
        raise ApiError(404, "UNSUPPORTED", "not a registry API path")
    if request.method not in READ_METHODS:
        raise ApiError(405, "UNSUPPORTED", "this registry is read-only", {"Allow": "GET, HEAD"})
    if path in ("/v2", "/v2/"):
        return _json({})
    if path == "/v2/_catalog":
        return _catalog(request, served)
    if "/blobs/uploads" in path:
        raise ApiError(405, "UNSUPPORTED", "this registry is read-only", {"Allow": "GET, HEAD"})
    ns = request.query.get("ns")
    tags = _TAGS.fullmatch(path)
    if tags is not None:
        return _tags(request, served, _repository(tags.group(1), ns), tags.group(1))
    referrers = _REFERRERS.fullmatch(path)
    if referrers is not None:
        return _referrers(request, served, _repository(referrers.group(1), ns), referrers.group(2))
    found = _MANIFEST_OR_BLOB.fullmatch(path)
    if found is None:
        raise ApiError(404, "UNSUPPORTED", "not a registry API path")
    name, kind, reference = found.groups()
    repository = _repository(name, ns)
    if kind == "manifests":
        return _manifest(request, served, repository, reference)
    return _blob(request, served.blob(repository, parse_digest(reference)))


def _repository(name: str, ns: str | None) -> str:
    try:
        return store_repository(name, ns)
    except InvalidReferenceError as exc:
        raise ApiError(400, "NAME_INVALID", str(exc)) from None


def _json(value: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(value).encode(), content_type="application/json", headers=headers
    )


def _referrers(
    request: web.Request, served: ServedStore, repository: str, digest: str
) -> web.Response:
    """``GET /v2/<name>/referrers/<digest>``: the OCI referrers of a subject, as an index;
    ``?artifactType=`` filters, and the answer says it did (``OCI-Filters-Applied``)."""
    artifact_type = request.query.get("artifactType")
    data = served.referrers(repository, parse_digest(digest), artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type is not None else None
    response = web.Response(body=data, headers=headers)
    response.content_type = "application/vnd.oci.image.index.v1+json"
    return response


def _manifest(
    request: web.Request, served: ServedStore, repository: str, reference: str
) -> web.Response:
    """The stored bytes with the stored media type, whatever the client's ``Accept`` says: a
    manifest is never rewritten, and clients check the type they are given."""
    manifest = served.manifest(repository, reference)
    etag = f'"{manifest.digest}"'
    headers = {"Docker-Content-Digest": str(manifest.digest), "ETag": etag}
    if etag in _etags(request.headers.get("If-None-Match")):
        return web.Response(status=304, headers=headers)
    response = web.Response(body=manifest.data, headers=headers)
    response.content_type = manifest.media_type
    return response


def _blob(request: web.Request, blob: Blob) -> web.StreamResponse:
    """A blob, whole or one range, from the open file (closed by the response)."""
    etag = f'"{blob.digest}"'
    headers = {
        "Docker-Content-Digest": str(blob.digest),
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
    }
    try:
        if etag in _etags(request.headers.get("If-None-Match")):
            blob.file.close()
            return web.Response(status=304, headers=headers)
        wanted = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        span = requested_range(wanted, blob.size) if if_range in (None, etag) else None
    except ApiError as exc:
        blob.file.close()
        exc.headers.update(headers)
        raise
    start, end = span or (0, blob.size)
    response = BlobResponse(blob, start, end, 206 if span else 200)
    response.headers.update(headers)
    response.content_type = "application/octet-stream"
    if span:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
    return response


def _etags(header: str | None) -> set[str]:
    return {tag.strip() for tag in header.split(",")} if header else set()


def _page(request: web.Request, items: list[str]) -> tuple[list[str], bool]:
    """One page of sorted *items*: those after ``last``, at most ``n``; and whether more
    follow."""
    last = request.query.get("last")
    if last:
        items = [item for item in items if item > last]
    n_text = request.query.get("n")
    if n_text is None:
        return items, False
    if not re.fullmatch(r"[0-9]{1,9}", n_text):
        raise ApiError(400, "PAGINATION_NUMBER_INVALID", f"invalid page size {n_text[:20]!r}")
    n = min(int(n_text), MAX_PAGE)
    return items[:n], len(items) > n


def _next_link(request: web.Request, page: list[str], more: bool) -> dict[str, str]:
    if not more or not page:
        return {}
    query = dict(request.query)
    query["last"] = page[-1]
    url = request.rel_url.with_query(query)
    return {"Link": f'<{url}>; rel="next"'}


def _tags(request: web.Request, served: ServedStore, repository: str, name: str) -> web.Response:
    page, more = _page(request, served.tags(repository))
    return _json({"name": name, "tags": page}, _next_link(request, page, more))


def _catalog(request: web.Request, served: ServedStore) -> web.Response:
    ns = request.query.get("ns")
    names = {request_name(repository, ns) for repository in served.repositories()}
    page, more = _page(request, sorted(name for name in names if name is not None))
    return _json({"repositories": page}, _next_link(request, page, more))
