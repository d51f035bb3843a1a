"""Where credentials are found (podman's order, docker's helpers, identity tokens), how
``login`` writes them, and the tag lists ``sync`` reads."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import httpx
import pytest

from cargohold.errors import CredentialsError, RegistryProtocolError
from cargohold.oci.mediatypes import OCI_MANIFEST
from cargohold.registry.authfiles import (
    AuthFile,
    auth_files,
    default_auth_file,
    find_credentials,
    remove_login,
    store_login,
)
from cargohold.registry.client import Credentials, RegistryClient, RetryPolicy
from fakeregistry import FakeRegistry, TokenService, serve

HOST = "registry.example:5000"
MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}}
).encode()  # fmt: skip


def auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def write(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every place credentials are looked up is under tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return tmp_path


def helper(directory: Path, name: str, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    directory.mkdir(exist_ok=True)
    program = directory / f"docker-credential-{name}"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")


def test_podman_order(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = write(home / "docker" / "config.json", {"auths": {HOST: auth("docker", "d")}})
    assert find_credentials(HOST, auth_files()) == Credentials("docker", "d")
    write(home / "config" / "containers" / "auth.json", {"auths": {HOST: auth("xdg", "x")}})
    assert find_credentials(HOST, auth_files()) == Credentials("xdg", "x")
    write(home / "run" / "containers" / "auth.json", {"auths": {HOST: auth("run", "r")}})
    assert find_credentials(HOST, auth_files()) == Credentials("run", "r")
    assert default_auth_file() == home / "run" / "containers" / "auth.json"
    # a file given (--authfile, $REGISTRY_AUTH_FILE) is the only one read
    alone = write(home / "alone.json", {"auths": {}})
    assert find_credentials(HOST, auth_files(alone)) is None
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(alone))
    assert auth_files() == [AuthFile(alone)] and default_auth_file() == alone
    assert find_credentials(HOST, [AuthFile(docker, docker=True)]) == Credentials("docker", "d")


def test_keys_stay_with_their_registry(tmp_path: Path) -> None:
    path = write(tmp_path / "auth.json", {"auths": {
        f"{HOST}/team/app": auth("repo-only", "p"),
        "registry.example": auth("other-port", "p"),
        "https://docker.io/v1/": auth("hub", "h"),
    }})  # fmt: skip
    assert find_credentials(HOST, [AuthFile(path)]) is None
    assert find_credentials("index.docker.io", [AuthFile(path)]) == Credentials("hub", "h")
    # docker drops the path of a key in its own file
    assert find_credentials(HOST, [AuthFile(path, docker=True)]) == Credentials("repo-only", "p")


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    answer = '{\\"Username\\": \\"u-${host%%:*}\\", \\"Secret\\": \\"s\\"}'
    helper(bin_dir, "vault", f'read host; echo "{answer}"\n', monkeypatch)
    helper(bin_dir, "empty", "echo 'credentials not found in native keychain'; exit 1\n",
           monkeypatch)  # fmt: skip
    helper(bin_dir, "token", 'echo \'{"Username": "<token>", "Secret": "refresh-me"}\'\n',
           monkeypatch)  # fmt: skip
    config = tmp_path / "config.json"
    file = AuthFile(config, docker=True)
    write(config, {"credHelpers": {HOST: "vault"}, "auths": {HOST: auth("file", "f")}})
    assert find_credentials(HOST, [file]) == Credentials("u-registry.example", "s")
    write(config, {"credsStore": "empty", "auths": {HOST: {}}})
    assert find_credentials(HOST, [file]) is None
    write(config, {"credsStore": "token"})
    found = find_credentials(HOST, [file])
    assert found is not None and found.identity_token == "refresh-me"
    assert "refresh-me" not in repr(found)
    write(config, {"credsStore": "absent"})
    with pytest.raises(CredentialsError, match=r"docker-credential-absent .* not on PATH"):
        find_credentials(HOST, [file])
    write(config, {"credsStore": "../../bin/sh"})
    with pytest.raises(CredentialsError, match="invalid credential helper name"):
        find_credentials(HOST, [file])


def test_login_writes_podmans_file(tmp_path: Path) -> None:
    before = {"auths": {"quay.io": auth("q", "q")}, "credHelpers": {"gcr.io": "gcr"}}
    path = write(tmp_path / "containers" / "auth.json", before)
    store_login(path, HOST, Credentials("alice", "pw:1"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["credHelpers"] == {"gcr.io": "gcr"} and set(doc["auths"]) == {"quay.io", HOST}
    assert find_credentials(HOST, [AuthFile(path)]) == Credentials("alice", "pw:1")
    fresh = tmp_path / "new" / "dir" / "auth.json"
    store_login(fresh, "index.docker.io", Credentials("hub", "h"))
    assert list(json.loads(fresh.read_text())["auths"]) == ["docker.io"]
    assert stat.S_IMODE(fresh.parent.stat().st_mode) == 0o700
    assert remove_login(path, HOST) == [HOST]
    assert remove_login(path, HOST) == []
    assert remove_login(path, None) == ["quay.io"]


def test_an_identity_token_is_traded_at_the_token_service(tmp_path: Path) -> None:
    tokens = TokenService(anonymous=False, refresh_tokens={"refresh-me": "alice"})
    registry = FakeRegistry(auth="bearer", tokens=tokens)
    registry.add_manifest("team/app", "1", MANIFEST, OCI_MANIFEST)
    with serve(registry) as server:
        registry.realm = f"{server.url}/token"
        entry = {"auth": base64.b64encode(b"alice:").decode(), "identitytoken": "refresh-me"}
        config = write(tmp_path / "auth.json", {"auths": {server.netloc: entry}})
        with RegistryClient(
            server.netloc, plain_http=True, config_path=config, trust_env=False,
            retry=RetryPolicy(attempts=1),
        ) as client:  # fmt: skip
            assert client.get_manifest("team/app", "1").data == MANIFEST
    [form] = tokens.posts
    assert form["grant_type"] == ["refresh_token"] and form["scope"] == ["repository:team/app:pull"]
    assert all("authorization" not in r.headers for r in server.requests_for("POST", "/token"))


# -- tag lists ---------------------------------------------------------------------------------


def tag_client(pages: dict[str, tuple[object, str | None]]) -> RegistryClient:
    """A client of a registry whose tag list answers *pages* (by query: body, Link)."""

    def answer(request: httpx.Request) -> httpx.Response:
        body, link = pages[request.url.query.decode()]
        headers = {"Link": link} if link else {}
        # bodies are iterators: streamed as from a socket, not read ahead by httpx
        return httpx.Response(200, content=iter([json.dumps(body).encode()]), headers=headers)

    return RegistryClient(
        HOST, plain_http=True, use_docker_config=False, trust_env=False,
        transport=httpx.MockTransport(answer), retry=RetryPolicy(attempts=1),
    )  # fmt: skip


def test_tag_lists_are_followed_on_the_registry_only() -> None:
    second = "/v2/team/app/tags/list?n=1000&last=b"
    pages: dict[str, tuple[object, str | None]] = {
        "n=1000": ({"name": "team/app", "tags": ["a", "b"]}, f'<{second}>; rel="next"'),
        "n=1000&last=b": ({"name": "team/app", "tags": ["c"]}, None),
    }
    with tag_client(pages) as client:
        assert client.list_tags("team/app") == ["a", "b", "c"]
    pages["n=1000&last=b"] = ({"tags": None}, None)
    with tag_client(pages) as client:
        assert client.list_tags("team/app") == ["a", "b"]
    pages["n=1000"] = ({"tags": ["a"]}, '<http://elsewhere.example/v2/x/tags/list>; rel="next"')
    with tag_client(pages) as client, pytest.raises(RegistryProtocolError, match="links to"):
        client.list_tags("team/app")
    pages["n=1000"] = ({"tags": ["ok", "not a tag!"]}, None)
    with tag_client(pages) as client, pytest.raises(RegistryProtocolError, match="invalid tag"):
        client.list_tags("team/app")
