"""Every option is also a GORGON_<NAME> environment variable; flags win."""
import time

import pytest

from conftest import Conn, fetch, free_port, scaled


def test_env_workers(server):
    srv = server("hello:app", env={"GORGON_WORKERS": "3"}, workers=None)
    assert sorted(srv.ready_workers()) == [0, 1, 2], srv.stderr_text()


def test_env_bind_list(server, tmp_path):
    port = free_port()
    sock = str(tmp_path / "env.sock")
    srv = server("hello:app", env={"GORGON_BIND": "127.0.0.1:%d,unix:%s" % (port, sock)})
    text = srv.stderr_text()
    assert "http://127.0.0.1:%d" % port in text and "unix:%s" % sock in text, text
    assert fetch(("127.0.0.1", port), "/").status == 200
    assert fetch(sock, "/").status == 200


def test_env_access_log(server):
    srv = server("router:app", env={"GORGON_ACCESS_LOG": "1"})
    fetch(srv, "/hello?via=env")
    assert srv.stop() == 0
    assert "GET /hello?via=env HTTP/1.1" in srv.stdout_text(), srv.stdout_text()


def test_env_keep_alive(server):
    srv = server("hello:app", env={"GORGON_KEEP_ALIVE": "1"})
    with Conn(srv) as c:
        assert c.request().status == 200
        t0 = time.monotonic()
        assert c.closed_within(scaled(4)), "idle connection not closed with GORGON_KEEP_ALIVE=1"
        assert time.monotonic() - t0 > 0.5


def test_env_limit_request_line(server):
    srv = server("hello:app", env={"GORGON_LIMIT_REQUEST_LINE": "200"})
    assert fetch(srv, "/?" + "a" * 100).status == 200
    assert fetch(srv, "/?" + "a" * 400).status == 414


def test_flag_wins_over_env_workers(server):
    srv = server("hello:app", "--workers", "1", env={"GORGON_WORKERS": "3"}, workers=None)
    assert srv.ready_workers() == [0], srv.stderr_text()


def test_flag_wins_over_env_bind(server):
    env_port, flag_port = free_port(), free_port()
    srv = server("hello:app", "--bind", "127.0.0.1:%d" % flag_port,
                 env={"GORGON_BIND": "127.0.0.1:%d" % env_port})
    assert fetch(("127.0.0.1", flag_port), "/").status == 200
    assert "127.0.0.1:%d" % env_port not in srv.stderr_text()
    with pytest.raises(OSError):
        fetch(("127.0.0.1", env_port), "/", timeout=2)


def test_flag_wins_over_env_limit(server):
    srv = server("router:app", "--limit-request-body", "1000",
                 env={"GORGON_LIMIT_REQUEST_BODY": "100"})
    r = fetch(srv, "/echo", "POST", body=b"x" * 500)
    assert r.status == 200 and r.json()["body_len"] == 500


def test_env_header_timeout(server):
    srv = server("hello:app", env={"GORGON_HEADER_TIMEOUT": "1"})
    with Conn(srv) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert c.response(timeout=scaled(4)).status == 408


def test_env_limit_request_fields(server):
    srv = server("hello:app", env={"GORGON_LIMIT_REQUEST_FIELDS": "5"})
    assert fetch(srv, "/", headers=[("X-%d" % i, "v") for i in range(2)]).status == 200
    assert fetch(srv, "/", headers=[("X-%d" % i, "v") for i in range(10)]).status == 431


def test_env_pythonpath_and_chdir(server, tmp_path):
    (tmp_path / "gt_env_app.py").write_text(
        "import os\n"
        "from wsgiref.validate import validator\n"
        "def _app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [os.getcwd().encode()]\n"
        "app = validator(_app)\n")
    wd = tmp_path / "wd"
    wd.mkdir()
    srv = server("gt_env_app:app", env={"GORGON_PYTHONPATH": str(tmp_path),
                                        "GORGON_CHDIR": str(wd)})
    assert fetch(srv, "/").body.decode() == str(wd.resolve())


def test_env_log_level(server):
    srv = server("hello:app", env={"GORGON_LOG_LEVEL": "error"}, wait="port")
    assert fetch(srv, "/").status == 200
    assert srv.stop() == 0
    assert "[INFO]" not in srv.stderr_text().upper(), srv.stderr_text()
