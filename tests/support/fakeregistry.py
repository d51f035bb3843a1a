"""An in-process fake of an OCI registry, its token service and a blob storage host.

Each runs on a ``ThreadingHTTPServer`` bound to 127.0.0.1 in a daemon thread. A server is
addressed by a host name of the test's choosing (``127.0.0.1`` or ``localhost``), so that two
servers count as two hosts for the client's credential and redirect rules. Tests inject faults
with interceptors: functions that see each request first and may answer it themselves (drop the
connection after some bytes, send an endless body, a wrong digest…). Every request is recorded
with its headers, so tests can assert what reached which host.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cargohold.oci.digests import Digest


@dataclass(frozen=True)
class Recorded:
    """A request as it arrived."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    #: The client's port: requests with the same one came over the same connection.
    client_port: int = 0


class Exchange:
    """One request as a fake server sees it, and the means to answer it."""

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler
        self.method = handler.command
        split = urlsplit(handler.path)
        self.path = split.path
        self.query = parse_qs(split.query, keep_blank_values=True)
        self.headers = {k.lower(): v for k, v in handler.headers.items()}
        self._body: bytes | None = None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def body(self) -> bytes:
        if self._body is None:
            if "transfer-encoding" in self.headers:
                raise ValueError("the fake registry wants Content-Length bodies")
            length = int(self.headers.get("content-length", "0"))
            self._body = self.handler.rfile.read(length)
        return self._body

    def respond(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        if self._body is None and self.method in ("PUT", "PATCH", "POST"):
            self.body()  # keep the connection usable
        self.send_head(status, {"Content-Length": str(len(body)), **(headers or {})})
        if self.method != "HEAD":
            self.handler.wfile.write(body)

    def send_head(self, status: int, headers: dict[str, str]) -> None:
        self.handler.send_response(status)
        for key, value in headers.items():
            self.handler.send_header(key, value)
        self.handler.end_headers()

    def error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        doc = {"errors": [{"code": code, "message": message, "detail": None}]}
        self.respond(
            status,
            json.dumps(doc).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def trickle(
        self,
        data: bytes,
        headers: dict[str, str] | None = None,
        *,
        step: int = 64,
        pause: float = 0.02,
        for_seconds: float = 5.0,
    ) -> None:
        """Answer 200 with *data* as a registry that keeps a connection barely alive: *step*
        bytes every *pause* seconds (the server's own pace, in its own thread) for
        *for_seconds*, then the rest at once, so that a client without a floor on progress
        gets it all in the end. Stops quietly when the client hangs up."""
        self.send_head(200, {"Content-Length": str(len(data)), **(headers or {})})
        deadline = time.monotonic() + for_seconds
        offset = 0
        try:
            while offset < len(data):
                size = step if time.monotonic() < deadline else len(data) - offset
                self.handler.wfile.write(data[offset : offset + size])
                offset += size
                if offset < len(data):
                    time.sleep(pause)
        except OSError:
            self.handler.close_connection = True

    def read_body_slowly(
        self, *, step: int = 4096, pause: float = 0.01, for_seconds: float = 5.0
    ) -> bytes | None:
        """Take the request body as a registry that reads it barely: *step* bytes every *pause*
        seconds for *for_seconds* (with a small receive buffer, so that the client feels it),
        then the rest at once. None when the client hung up first; the body is kept for
        :meth:`body` otherwise."""
        self.handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
        remaining = int(self.headers.get("content-length", "0"))
        deadline = time.monotonic() + for_seconds
        data = bytearray()
        while remaining:
            slow = time.monotonic() < deadline
            chunk = self.handler.rfile.read(min(step if slow else remaining, remaining))
            if not chunk:
                self.handler.close_connection = True
                return None
            data += chunk
            remaining -= len(chunk)
            if slow:
                time.sleep(pause)
        self._body = bytes(data)
        return self._body

    def close_connection(self) -> None:
        """End the connection after this answer (a break in the middle of a body)."""
        self.handler.close_connection = True
        self.handler.wfile.flush()

    @property
    def host_header(self) -> str:
        return self.headers.get("host", "")


App = Callable[[Exchange], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30

    def _handle(self) -> None:
        exchange = Exchange(self)
        self.server.owner.record(exchange)
        try:
            self.server.owner.app(exchange)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up on an unread body (as the client under test does on purpose)
        # or refuses our certificate is no server error worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class FakeServer:
    """An HTTP(S) server on 127.0.0.1 in a thread, answering with *app*."""

    def __init__(
        self, app: App, host_name: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.app = app
        self.host_name = host_name
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def netloc(self) -> str:
        return f"{self.host_name}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self.requests.append(
                Recorded(
                    exchange.method,
                    exchange.path,
                    exchange.query,
                    exchange.headers,
                    exchange.handler.client_address[1],
                )
            )

    def requests_for(self, method: str, path_part: str = "") -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method and path_part in r.path]

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def serve(app: App, host_name: str = "127.0.0.1") -> Iterator[FakeServer]:
    with FakeServer(app, host_name) as server:
        yield server


def basic_user(headers: dict[str, str], users: dict[str, str]) -> str | None:
    """The user of a valid basic Authorization header, else None."""
    value = headers.get("authorization", "")
    if not value.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
    except ValueError:
        return None
    return user if users.get(user) == password else None


class TokenService:
    """A bearer token service: users get what they ask for, anonymous callers get
    *anonymous_actions* (or a 401 when *anonymous* is false)."""

    def __init__(
        self,
        users: dict[str, str] | None = None,
        *,
        anonymous: bool = True,
        anonymous_actions: frozenset[str] = frozenset({"pull"}),
        expires_in: int = 300,
        refresh_tokens: dict[str, str] | None = None,
    ) -> None:
        #: docker's identity tokens (OAuth2 refresh tokens, POSTed), by the user they stand for
        self.refresh_tokens = refresh_tokens or {}
        self.posts: list[dict[str, list[str]]] = []
        self.users = users or {}
        self.anonymous = anonymous
        self.anonymous_actions = anonymous_actions
        self.expires_in = expires_in
        self.issued: dict[str, frozenset[tuple[str, str]]] = {}
        self.lock = threading.Lock()

    def __call__(self, ex: Exchange) -> None:
        if ex.path != "/token":
            ex.error(404, "NOT_FOUND", "no such endpoint")
            return
        user = basic_user(ex.headers, self.users)
        scopes = ex.query.get("scope", [])
        if ex.method == "POST":
            form = parse_qs(ex.body().decode())
            self.posts.append(form)
            refresh = form.get("refresh_token", [""])[0]
            if form.get("grant_type") != ["refresh_token"] or refresh not in self.refresh_tokens:
                ex.error(401, "UNAUTHORIZED", "bad refresh token")
                return
            user = self.refresh_tokens[refresh]
            scopes = " ".join(form.get("scope", [])).split()
        elif "authorization" in ex.headers and user is None:
            ex.error(401, "UNAUTHORIZED", "bad credentials")
            return
        if user is None and not self.anonymous:
            ex.error(401, "UNAUTHORIZED", "anonymous access is not allowed")
            return
        granted: set[tuple[str, str]] = set()
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository":
                continue
            for action in actions.split(","):
                if user is not None or action in self.anonymous_actions:
                    granted.add((name, action))
        token = "tok-" + secrets.token_hex(8)
        with self.lock:
            self.issued[token] = frozenset(granted)
        body = {"token": token, "expires_in": self.expires_in, "issued_at": "2024-01-01T00:00:00Z"}
        ex.respond(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def scopes_of(self, headers: dict[str, str]) -> frozenset[tuple[str, str]] | None:
        value = headers.get("authorization", "")
        if not value.startswith("Bearer "):
            return None
        with self.lock:
            return self.issued.get(value[7:])


@dataclass
class Upload:
    repository: str
    data: bytearray = field(default_factory=bytearray)
    state: str = field(default_factory=lambda: secrets.token_hex(4))
    chunks: list[int] = field(default_factory=list)


_MANIFEST = re.compile(r"/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)")
_UPLOADS = re.compile(r"/v2/(?P<name>.+)/blobs/uploads/")
_UPLOAD = re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<id>[A-Za-z0-9-]+)")
_BLOB = re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[a-z0-9]+:[a-f0-9]+)")
_RANGE = re.compile(r"bytes=([0-9]+)-")


def sha256(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


class FakeRegistry:
    """The Distribution API over dictionaries.

    *auth* is None, ``"basic"`` (checked against *users*) or ``"bearer"`` (tokens of
    *tokens*, whose realm is :attr:`realm`: set it once the token service's server runs; when
    *tokens* is set and no other server runs it, the registry answers ``/token`` itself).
    """

    def __init__(
        self,
        *,
        auth: str | None = None,
        users: dict[str, str] | None = None,
        tokens: TokenService | None = None,
        absolute_locations: bool = False,
        chunk_min_length: int | None = None,
        redirect_blobs_to: str | None = None,
    ) -> None:
        self.auth = auth
        self.users = users or {}
        self.tokens = tokens
        self.realm = ""
        self.absolute_locations = absolute_locations
        self.chunk_min_length = chunk_min_length
        self.redirect_blobs_to = redirect_blobs_to
        self.blobs: dict[str, dict[str, bytes]] = {}
        self.manifests: dict[str, dict[str, tuple[bytes, str]]] = {}
        self.uploads: dict[str, Upload] = {}
        #: (repository, digest, sizes of the PATCH chunks) of each upload committed.
        self.finished_uploads: list[tuple[str, Digest, list[int]]] = []
        self.cancelled_uploads: list[str] = []
        self.interceptors: list[Callable[[Exchange], bool]] = []
        self.lock = threading.Lock()

    # -- content -------------------------------------------------------------------------

    def add_blob(self, repository: str, data: bytes) -> Digest:
        digest = sha256(data)
        self.blobs.setdefault(repository, {})[str(digest)] = data
        return digest

    def add_manifest(
        self, repository: str, tag: str | None, data: bytes, media_type: str
    ) -> Digest:
        digest = sha256(data)
        refs = self.manifests.setdefault(repository, {})
        refs[str(digest)] = (data, media_type)
        if tag is not None:
            refs[tag] = (data, media_type)
        return digest

    def blob(self, digest: str) -> bytes | None:
        for repo in self.blobs.values():
            if digest in repo:
                return repo[digest]
        return None

    # -- serving -------------------------------------------------------------------------

    def __call__(self, ex: Exchange) -> None:
        for intercept in list(self.interceptors):
            if intercept(ex):
                return
        if ex.path == "/token" and self.tokens is not None:
            self.tokens(ex)
            return
        if ex.path in ("/v2/", "/v2"):
            if self._authorized(ex, None, "pull"):
                ex.respond(200, b"{}", {"Content-Type": "application/json"})
            return
        for pattern, handler in (
            (_UPLOAD, self._upload),
            (_UPLOADS, self._start_upload),
            (_BLOB, self._blob),
            (_MANIFEST, self._manifest),
        ):
            match = pattern.fullmatch(ex.path)
            if match is not None:
                name = match["name"]
                action = "pull" if ex.method in ("GET", "HEAD") else "push"
                if self._authorized(ex, name, action):
                    handler(ex, match)
                return
        ex.error(404, "NOT_FOUND", "no such endpoint")

    def _authorized(self, ex: Exchange, name: str | None, action: str) -> bool:
        if self.auth is None:
            return True
        if self.auth == "basic":
            if basic_user(ex.headers, self.users) is not None:
                return True
            ex.error(
                401, "UNAUTHORIZED", "authentication required",
                {"WWW-Authenticate": 'Basic realm="fake"'},
            )  # fmt: skip
            return False
        assert self.tokens is not None
        granted = self.tokens.scopes_of(ex.headers)
        if granted is not None and (name is None or (name, action) in granted):
            return True
        actions = "pull" if action == "pull" else "pull,push"
        scope = f',scope="repository:{name}:{actions}"' if name is not None else ""
        problem = ',error="insufficient_scope"' if granted is not None else ""
        challenge = f'Bearer realm="{self.realm}",service="fake-registry"{scope}{problem}'
        ex.error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge})
        return False

    def _location(self, ex: Exchange, path: str) -> str:
        if self.absolute_locations:
            return f"http://{ex.host_header}{path}"
        return path

    def _manifest(self, ex: Exchange, match: re.Match[str]) -> None:
        name, ref = match["name"], match["ref"]
        if ex.method == "PUT":
            data = ex.body()
            media_type = ex.headers.get("content-type", "")
            digest = self.add_manifest(name, None if ":" in ref else ref, data, media_type)
            if ":" in ref and ref != str(digest):
                ex.error(400, "DIGEST_INVALID", "manifest digest did not match")
                return
            ex.respond(
                201,
                headers={
                    "Docker-Content-Digest": str(digest),
                    "Location": f"/v2/{name}/manifests/{digest}",
                },
            )
            return
        found = self.manifests.get(name, {}).get(ref)
        if found is None:
            ex.error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            return
        data, media_type = found
        ex.respond(
            200,
            data,
            {"Content-Type": media_type, "Docker-Content-Digest": str(sha256(data))},
        )

    def _blob(self, ex: Exchange, match: re.Match[str]) -> None:
        name, digest = match["name"], match["digest"]
        data = self.blobs.get(name, {}).get(digest)
        if data is None:
            ex.error(404, "BLOB_UNKNOWN", "blob unknown to registry")
            return
        if self.redirect_blobs_to is not None and ex.method == "GET":
            location = f"{self.redirect_blobs_to}/storage/{digest}?X-Signature=s3cr3t"
            ex.respond(307, headers={"Location": location})
            return
        serve_blob(ex, data, {"Docker-Content-Digest": digest})

    def _start_upload(self, ex: Exchange, match: re.Match[str]) -> None:
        name = match["name"]
        ex.body()
        mount, source = ex.param("mount"), ex.param("from")
        if mount is not None and source is not None:
            data = self.blobs.get(source, {}).get(mount)
            allowed = True
            if self.auth == "bearer" and self.tokens is not None:
                granted = self.tokens.scopes_of(ex.headers) or frozenset()
                allowed = (source, "pull") in granted
            if data is not None and allowed:
                self.blobs.setdefault(name, {})[mount] = data
                ex.respond(
                    201,
                    headers={
                        "Location": self._location(ex, f"/v2/{name}/blobs/{mount}"),
                        "Docker-Content-Digest": mount,
                    },
                )
                return
        upload_id = secrets.token_hex(8)
        upload = Upload(name)
        with self.lock:
            self.uploads[upload_id] = upload
        headers = {
            "Location": self._upload_location(ex, name, upload_id, upload),
            "Docker-Upload-UUID": upload_id,
            "Range": "0-0",
        }
        if self.chunk_min_length is not None:
            headers["OCI-Chunk-Min-Length"] = str(self.chunk_min_length)
        ex.respond(202, headers=headers)

    def _upload_location(self, ex: Exchange, name: str, upload_id: str, upload: Upload) -> str:
        upload.state = secrets.token_hex(4)
        path = f"/v2/{name}/blobs/uploads/{upload_id}?_state={upload.state}"
        return self._location(ex, path)

    def _upload(self, ex: Exchange, match: re.Match[str]) -> None:
        name, upload_id = match["name"], match["id"]
        with self.lock:
            upload = self.uploads.get(upload_id)
        if upload is None or upload.repository != name:
            ex.error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
            return
        if ex.method == "DELETE":
            with self.lock:
                self.uploads.pop(upload_id, None)
                self.cancelled_uploads.append(upload_id)
            ex.respond(204)
            return
        if ex.param("_state") != upload.state:
            ex.error(400, "BLOB_UPLOAD_INVALID", "upload state lost (query dropped?)")
            return
        body = ex.body()
        if ex.method == "PATCH":
            content_range = ex.headers.get("content-range")
            if content_range is not None:
                start, _, end = content_range.partition("-")
                if int(start) != len(upload.data) or int(end) != len(upload.data) + len(body) - 1:
                    ex.error(416, "BLOB_UPLOAD_INVALID", "range does not follow the upload")
                    return
            upload.chunks.append(len(body))
            upload.data += body
            ex.respond(
                202,
                headers={
                    "Location": self._upload_location(ex, name, upload_id, upload),
                    "Range": f"0-{len(upload.data) - 1}",
                    "Docker-Upload-UUID": upload_id,
                },
            )
            return
        if ex.method == "PUT":
            upload.data += body
            expected = ex.param("digest")
            actual = sha256(bytes(upload.data))
            if expected != str(actual):
                ex.error(400, "DIGEST_INVALID", f"provided digest did not match ({actual})")
                return
            with self.lock:
                self.uploads.pop(upload_id, None)
                self.blobs.setdefault(name, {})[str(actual)] = bytes(upload.data)
                self.finished_uploads.append((name, actual, upload.chunks))
            ex.respond(
                201,
                headers={
                    "Location": self._location(ex, f"/v2/{name}/blobs/{actual}"),
                    "Docker-Content-Digest": str(actual),
                },
            )
            return
        ex.error(405, "UNSUPPORTED", "method not allowed")


def serve_blob(ex: Exchange, data: bytes, headers: dict[str, str] | None = None) -> None:
    """Serve *data* with Range support, as a registry or a storage host does."""
    headers = dict(headers or {})
    headers["Content-Type"] = "application/octet-stream"
    match = _RANGE.fullmatch(ex.headers.get("range", ""))
    if match is not None and ex.method == "GET":
        start = int(match[1])
        if start >= len(data):
            ex.respond(416, headers={"Content-Range": f"bytes */{len(data)}"})
            return
        headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        ex.respond(206, data[start:], headers)
        return
    ex.respond(200, data, headers)


class Storage:
    """A blob storage host that registries redirect downloads to (``/storage/<digest>``)."""

    def __init__(self, registry: FakeRegistry) -> None:
        self.registry = registry

    def __call__(self, ex: Exchange) -> None:
        digest = ex.path.removeprefix("/storage/")
        data = self.registry.blob(digest)
        if data is None or ex.param("X-Signature") != "s3cr3t":
            ex.respond(403, b"<Error>AccessDenied</Error>", {"Content-Type": "application/xml"})
            return
        serve_blob(ex, data)
