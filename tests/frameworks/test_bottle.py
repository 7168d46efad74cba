"""Bottle: template, form POST, JSON, in every mode."""
from conftest import assert_mode, client, server_fixture  # noqa: F401

srv = server_fixture("fw_bottle:app", auto_expected="interpreters")


def test_mode(srv, client):
    assert_mode(srv, client)


def test_template(client):
    r = client.get("/hello/<b>")
    assert r.status_code == 200 and r.text == "<h1>Hello, &lt;b&gt;!</h1><p>2 items</p>", r.text


def test_form_post(client):
    r = client.post("/form", data={"name": "Grace", "n": "41"})
    assert r.status_code == 200 and r.json() == {"name": "Grace", "n": 42}


def test_404(client):
    assert client.get("/nope").status_code == 404
