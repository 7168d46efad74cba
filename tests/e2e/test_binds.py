"""Unix sockets, IPv6 loopback and several binds at once; binds that cannot
be used."""
import socket

import pytest

from conftest import Conn, fetch, free_port, ipv6_loopback_available, run_gorgon


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


def _taken_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


@pytest.mark.parametrize("bind,says", [
    ("[::1", "invalid bind address '[::1' (expected HOST:PORT, [IPv6]:PORT or unix:/path)"),
    ("[::1]8000", "invalid bind address '[::1]8000' (expected HOST:PORT, [IPv6]:PORT or unix:/path)"),
    ("127.0.0.1:", "invalid bind address '127.0.0.1:' (expected HOST:PORT, [IPv6]:PORT or unix:/path)"),
    ("127.0.0.1:http-nonexistent-service", "cannot resolve bind address '127.0.0.1:http-nonexistent-service': "),
    ("unix:", "invalid unix socket path ''"),
    ("unix:/" + "x" * 120, "invalid unix socket path '/xxxx"),
    ("unix:/nonexistent/gorgon-dir/s.sock", "cannot listen on unix:/nonexistent/gorgon-dir/s.sock: "
                                            "No such file or directory"),
    ("fd://", "invalid bind address 'fd://' (expected fd://N)"),
    ("fd://3x", "invalid bind address 'fd://3x' (expected fd://N)"),
    ("fd://-1", "invalid bind address 'fd://-1' (expected fd://N)"),
], ids=["v6-unclosed", "v6-no-colon", "no-port", "unknown-service", "unix-empty",
        "unix-too-long", "unix-no-dir", "fd-empty", "fd-letters", "fd-negative"])
def test_bind_that_cannot_be_used_is_one_line_and_exit_1(bind, says):
    r = run_gorgon("hello:app", "--bind", bind, timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 1, (r.returncode, err)
    assert says in err and "Traceback" not in err, err
    assert "Listening at" not in err, err


def test_bind_to_a_port_in_use_is_one_line_and_exit_1():
    with _taken_port() as s:
        port = s.getsockname()[1]
        r = run_gorgon("hello:app", "--bind", "127.0.0.1:%d" % port, timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 1, (r.returncode, err)
    assert "cannot listen on 127.0.0.1:%d: Address already in use" % port in err, err


def test_metrics_bind_to_a_port_in_use_is_two_lines_and_exit_1():
    with _taken_port() as s:
        port = s.getsockname()[1]
        r = run_gorgon("hello:app", "--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:%d" % port, timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 1, (r.returncode, err)
    assert "cannot listen on 127.0.0.1:%d: Address already in use" % port in err, err
    assert "--metrics-bind 127.0.0.1:%d: cannot listen" % port in err and "Listening at" not in err, err
