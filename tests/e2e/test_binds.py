"""Unix sockets, IPv6 loopback and several binds at once."""
import pytest

from conftest import Conn, fetch, free_port, ipv6_loopback_available


def test_unix_socket(server, tmp_path):
    path = str(tmp_path / "g.sock")
    srv = server("router:app", "--bind", "unix:" + path)
    assert "Listening at: unix:" + path in srv.stderr_text(), srv.stderr_text()
    r = fetch(path, "/hello-list")
    assert r.status == 200 and r.body == b"Hello, world!\n"
    with Conn(path) as c:
        for _ in range(3):
            assert c.request("POST", "/echo", body=b"over unix").json()["body"] == "over unix"


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6_loopback(server):
    port = free_port("::1")
    srv = server("router:app", "--bind", "[::1]:%d" % port)
    assert "Listening at: http://[::1]:%d" % port in srv.stderr_text(), srv.stderr_text()
    env = fetch(("::1", port), "/echo").json()["environ"]
    assert env["REMOTE_ADDR"] == "::1"
    assert env["SERVER_PORT"] == str(port)


def test_several_binds(server, tmp_path):
    p1, p2 = free_port(), free_port()
    path = str(tmp_path / "multi.sock")
    srv = server("router:app", "--bind", "127.0.0.1:%d" % p1, "--bind", "127.0.0.1:%d" % p2,
                 "--bind", "unix:" + path)
    text = srv.stderr_text()
    for addr in ("http://127.0.0.1:%d" % p1, "http://127.0.0.1:%d" % p2, "unix:" + path):
        assert "Listening at: " + addr in text, text
    for target in (("127.0.0.1", p1), ("127.0.0.1", p2), path):
        assert fetch(target, "/hello").status == 200
    assert fetch(("127.0.0.1", p2), "/echo").json()["environ"]["SERVER_PORT"] == str(p2)
