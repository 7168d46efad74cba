"""Falcon: resources with JSON media, path converters, 404, in every mode."""
from conftest import assert_mode, client, server_fixture  # noqa: F401

srv = server_fixture("fw_falcon:app", auto_expected="interpreters")


def test_mode(srv, client):
    assert_mode(srv, client)


def test_put_then_get(srv, client):
    r = client.put("/items/7", json={"name": "lamp", "price": 12.5})
    assert r.status_code == 201 and r.json() == {"id": 7, "stored": True}
    # items live in each worker's memory: ask until the worker that stored it answers
    for _ in range(50):
        r = client.get("/items/7")
        if r.status_code == 200:
            break
    assert r.status_code == 200 and r.json() == {"id": 7, "name": "lamp", "price": 12.5}


def test_not_found_and_bad_path(client):
    r = client.get("/items/9999")
    assert r.status_code == 404 and r.json()["title"] == "no such item"
    assert client.get("/items/abc").status_code == 404
