"""FastAPI: pydantic v2 validation (422 on bad input). pydantic_core refuses
sub-interpreters, so auto must pick processes and name it; forced into
interpreters the server must fail with that exact message."""
from conftest import FW_APPS, assert_mode, client, e2e, server_fixture  # noqa: F401

srv = server_fixture("fw_fastapi:app", auto_expected="processes", modes=["auto", "processes", "threads"])


def test_mode(srv, client):
    line = assert_mode(srv, client)
    if srv.requested_mode == "auto":
        assert "module pydantic_core._pydantic_core refuses sub-interpreters" in line, line
        assert "does not support loading in subinterpreters" in line, line


def test_valid_item(client):
    r = client.post("/items", json={"name": "pen", "price": 2.5, "tags": ["office"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"item": {"name": "pen", "price": 2.5, "tags": ["office"]}, "with_tax": 3.0}


def test_invalid_item_is_422(client):
    r = client.post("/items", json={"name": "", "price": -1})
    assert r.status_code == 422, r.text
    locs = sorted(tuple(e["loc"]) for e in r.json()["detail"])
    assert locs == [("body", "name"), ("body", "price")], r.json()


def test_path_and_query_validation(client):
    assert client.get("/items/5", params={"q": "x"}).json() == {"item_id": 5, "q": "x"}
    assert client.get("/items/five").status_code == 422


def test_openapi_schema(client):
    assert "Item" in client.get("/openapi.json").json()["components"]["schemas"]


def test_forced_into_interpreters_fails_clearly(tmp_path):
    s = e2e.Server("fw_fastapi:app", ["--pythonpath", str(FW_APPS), "--mode", "interpreters"], logdir=tmp_path)
    s.start()
    rc = s.wait_exit(60)
    text = s.stderr_text()
    assert rc == 1, text
    assert "pydantic_core._pydantic_core does not support loading in subinterpreters" in text, text
    assert "Traceback" not in text and "Segmentation" not in text, text
