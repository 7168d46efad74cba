"""Flask: template, session cookie, JSON, file upload, in every mode."""
import hashlib
import os

from conftest import assert_mode, client, server_fixture  # noqa: F401

srv = server_fixture("fw_flask:app", auto_expected="interpreters")


def test_mode(srv, client):
    assert_mode(srv, client)


def test_template_is_rendered_and_escaped(client):
    r = client.get("/", params={"name": "<Ada>"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<h1>Hello, &lt;Ada&gt;!</h1>" in r.text and r.text.count("<li>") == 3, r.text


def test_session_cookie_round_trips(client):
    ns = [client.get("/session").json()["n"] for _ in range(4)]
    assert ns == [1, 2, 3, 4]
    assert "session" in client.cookies


def test_json_echo(client):
    body = {"b": [1, 2, {"x": None}], "a": "é"}
    r = client.post("/json", json=body)
    assert r.status_code == 200 and r.json() == {"got": body, "keys": ["a", "b"]}


def test_file_upload(client):
    data = os.urandom(1536 * 1024)  # above the 1 MiB spill threshold
    r = client.post("/upload", files={"file": ("blob.bin", data, "application/octet-stream")},
                    data={"note": "hi"})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "blob.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "note": "hi"}


def test_404(client):
    assert client.get("/nope").status_code == 404
