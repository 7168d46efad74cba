"""Starlette (ASGI): routing, JSON, lifespan state, streaming, multipart."""
import hashlib
import os

from conftest import assert_mode, client, server_fixture  # noqa: F401

srv = server_fixture("fw_starlette:app", auto_expected="interpreters")


def test_mode(srv, client):
    assert_mode(srv, client)


def test_plain_text(client):
    r = client.get("/")
    assert r.status_code == 200 and r.text == "Hello from Starlette"


def test_path_query_and_lifespan_state(client):
    r = client.get("/users/ada", params={"x": "1"})
    assert r.json() == {"name": "ada", "q": {"x": "1"}, "greeting": "set by lifespan"}


def test_json_echo(client):
    body = {"list": list(range(100)), "s": "ü"}
    assert client.post("/json", json=body).json() == {"got": body}


def test_streaming(client):
    r = client.get("/stream")
    assert r.status_code == 200 and r.text == "chunk 0\nchunk 1\nchunk 2\n"


def test_multipart_upload(client):
    data = os.urandom(300 * 1024)
    r = client.post("/upload", files={"file": ("a.bin", data)}, data={"note": "n"})
    assert r.status_code == 200, r.text
    assert r.json() == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "note": "n"}
