"""HTTP limits against the real app on a real uvicorn: who may send a body, and how large it may be."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
from tests.rules.test_hostile_rules import BILLION_LAUGHS, CATASTROPHIC
from tests.web.conftest import OPERATOR_TOKEN, auth

from postroom.app import App
from postroom.settings import Settings
from postroom.testing import make_eml
from postroom.web import create_app
from postroom.web.server import HttpServer

LIMIT = 64 * 1024
UPLOAD_LIMIT = 256 * 1024


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(http_max_body_bytes=LIMIT, http_max_upload_bytes=UPLOAD_LIMIT)


@pytest.fixture
def server(app: App) -> Iterator[HttpServer]:
    http = HttpServer(create_app(app), "127.0.0.1", 0)
    http.start()
    yield http
    http.stop()


def raw_request(server: HttpServer, head: str, body: bytes = b"") -> tuple[int, dict]:
    """Send a request head (and maybe the start of a body) over a socket; the answer must come without the rest."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        return read_reply(sock)


def read_reply(sock: socket.socket, reply: bytes = b"") -> tuple[int, dict]:
    """Status and JSON body of one HTTP response, however the packets fall."""
    while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < _length(reply):
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2] or b"null")


def _length(reply: bytes) -> int:
    for line in reply.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def head(path: str, *, key: str | None = None, length: int | None = None, kind: str = "application/json") -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Type: {kind}"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("path,kind", [("/api/v1/notifications/delivered", "application/json"),
                                       ("/api/v1/rules/validate", "application/yaml"),
                                       ("/api/v1/conversations/1/replies", "multipart/form-data; boundary=x")])
def test_unauthenticated_huge_body_gets_401_before_any_byte_is_sent(server: HttpServer, path: str,
                                                                     kind: str) -> None:
    """300 MB declared, not one byte sent: the answer can only come from the headers."""
    status, body = raw_request(server, head(path, length=300 * 1024 * 1024, kind=kind))
    assert status == 401 and body["error"]["message"] == "send a tenant API key as 'Authorization: Bearer KEY'"
    status, body = raw_request(server, head(path, key="pr_not-a-key", kind=kind), b"10000\r\n" + b"x" * 100)
    assert status == 401 and body["error"]["message"] == "API key is invalid or revoked"


def test_operator_api_refuses_before_the_body(server: HttpServer) -> None:
    status, body = raw_request(server, head("/api/operator/inbound/1/retry", length=300 * 1024 * 1024))
    assert status == 401 and body["error"]["message"] == "send the operator token as 'Authorization: Bearer TOKEN'"


def test_declared_body_over_the_limit_gets_413_unread(server: HttpServer, keys: dict[str, str]) -> None:
    status, body = raw_request(server, head("/api/v1/notifications/delivered", key=keys["acme"], length=LIMIT + 1))
    assert status == 413 and body == {"error": {"status": 413, "fields": [],
                                                "message": f"request body too large: the limit is {LIMIT} bytes"}}
    fits = json.dumps({"ids": [1]}).encode()
    status, body = raw_request(server, head("/api/v1/notifications/delivered", key=keys["acme"], length=len(fits)),
                               fits)
    assert status == 404 and "1" in body["error"]["message"]


def test_chunked_body_over_the_limit_gets_413_while_streaming(server: HttpServer, keys: dict[str, str]) -> None:
    """No Content-Length: the gate counts chunks as they arrive and answers before the sender is done."""
    chunk = b"%x\r\n%s\r\n" % (16 * 1024, b"y" * 16 * 1024)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head("/api/v1/rules/validate", key=keys["acme"], kind="application/yaml")
                     .replace("\n", "\r\n").encode() + b"\r\n")
        sent = 0
        while sent < 100 * LIMIT and not select.select([sock], [], [], 0.05)[0]:
            sock.sendall(chunk)
            sent += 16 * 1024
        status, body = read_reply(sock)
    assert status == 413 and body["error"]["message"] == f"request body too large: the limit is {LIMIT} bytes"
    assert sent <= 2 * LIMIT


def test_upload_endpoints_take_the_larger_limit(server: HttpServer, keys: dict[str, str]) -> None:
    with httpx.Client(base_url=f"http://{server.host}:{server.port}", headers=auth(keys["acme"]), timeout=20) as c:
        message = make_eml(body="a" * 5000 + "b\n" + "hello\n" * (LIMIT // 5)).decode()
        ok = c.post("/api/v1/rules/test", json={"rules": CATASTROPHIC, "message": message})
        assert ok.status_code == 200 and ok.json()["fired"] == ["Everything"]
        assert len(ok.json()["warnings"]) == 1 and "treated as no match" in ok.json()["warnings"][0]
        too_big = c.post("/api/v1/rules/test", json={"rules": "", "message": "x" * UPLOAD_LIMIT})
        assert too_big.status_code == 413
        yaml_too_big = c.post("/api/v1/rules/validate", content=b"#" * (LIMIT + 1),
                              headers={"Content-Type": "application/yaml"})
        assert yaml_too_big.status_code == 413


def test_billion_laughs_via_the_api_is_a_quick_error_with_its_line(server: HttpServer,
                                                                    keys: dict[str, str]) -> None:
    started = time.monotonic()
    response = httpx.post(f"http://{server.host}:{server.port}/api/v1/rules/validate", content=BILLION_LAUGHS,
                          headers={**auth(keys["acme"]), "Content-Type": "application/yaml"}, timeout=30)
    assert time.monotonic() - started < 5
    assert response.status_code == 200
    assert response.json() == {"valid": False, "rules": 0, "errors": [
        "rules.yaml:2:5: anchors (&name) and aliases (*name) are not allowed in rules files; write the value out"]}


def test_unauthenticated_streamed_body_is_never_pulled(app: App) -> None:
    """Through the ASGI transport the app pulls each chunk itself: without a key it pulls none."""
    pulled: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(1000):
            pulled.append(i)
            yield b"z" * 65536

    async def run() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            anonymous = await client.post("/api/v1/rules/validate", content=body(),
                                          headers={"Content-Type": "application/yaml"})
            operator = await client.post("/api/operator/inbound/1/retry", content=body(),
                                         headers={"Authorization": f"Bearer {OPERATOR_TOKEN}x"})
            return anonymous, operator

    anonymous, operator = anyio.run(run)
    assert anonymous.status_code == 401 and operator.status_code == 401
    assert pulled == []
