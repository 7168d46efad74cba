"""Quart (ASGI): template, JSON, session cookie, in every mode."""
from conftest import assert_mode, client, server_fixture  # noqa: F401

srv = server_fixture("fw_quart:app", auto_expected="interpreters")


def test_mode(srv, client):
    assert_mode(srv, client)


def test_template(client):
    r = client.get("/", params={"name": "<q>"})
    assert r.status_code == 200 and r.text == "<h1>Hello, &lt;q&gt;!</h1>"


def test_json_echo(client):
    assert client.post("/json", json={"a": [1, 2]}).json() == {"got": {"a": [1, 2]}}


def test_session_cookie_round_trips(client):
    assert [client.get("/session").json()["n"] for _ in range(3)] == [1, 2, 3]
