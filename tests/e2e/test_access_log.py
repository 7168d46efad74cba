"""--access-log: one common-log-format line per request on stdout."""
import datetime
import re

from conftest import Conn, fetch, utcnow, wait_for

# Common log format; the combined format's two extra fields may follow.
CLF = re.compile(r'(\S+) (\S+) (\S+) \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
                 r'"([^"]*)" (\d{3}) (\d+|-)(?: "[^"]*" "[^"]*")?')


def entries(text):
    out = []
    for line in text.splitlines():
        m = CLF.fullmatch(line)
        assert m, "not a common log format line: %r" % line
        out.append(m)
    return out


def test_access_log_lines(server):
    srv = server("router:app", "--access-log", "--workers", "1")
    fetch(srv, "/hello-list?x=1")
    fetch(srv, "/nowhere")
    fetch(srv, "/echo", "POST", body=b"abc")
    with Conn(srv) as c:
        c.request("HEAD", "/hello-list")
    assert srv.stop() == 0
    lines = entries(srv.stdout_text())
    assert len(lines) == 4, srv.stdout_text()
    first = lines[0]
    assert first.group(1) == "127.0.0.1"
    assert first.group(5) == "GET /hello-list?x=1 HTTP/1.1"
    assert first.group(6) == "200" and first.group(7) == "14"
    ts = datetime.datetime.strptime(first.group(4), "%d/%b/%Y:%H:%M:%S %z")
    assert abs((utcnow() - ts).total_seconds()) < 120
    assert lines[1].group(5) == "GET /nowhere HTTP/1.1" and lines[1].group(6) == "404"
    assert lines[2].group(5) == "POST /echo HTTP/1.1" and lines[2].group(6) == "200"
    assert lines[3].group(5).startswith("HEAD ")


def test_access_log_errors_logged(server):
    srv = server("router:app", "--access-log", "--workers", "1")
    assert fetch(srv, "/raises").status == 500
    with Conn(srv) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n")
        assert c.response().status == 400
    assert srv.stop() == 0
    lines = entries(srv.stdout_text())
    assert [m.group(6) for m in lines] == ["500", "400"], srv.stdout_text()
    assert lines[0].group(5) == "GET /raises HTTP/1.1", srv.stdout_text()
    assert lines[1].group(5) == "GET / HTTP/1.1", srv.stdout_text()
    assert lines[1].group(7) == str(len("Bad Request\n")), srv.stdout_text()


def test_access_log_is_written_while_running(server):
    srv = server("router:app", "--access-log", "--workers", "1")
    fetch(srv, "/hello?live=1")
    wait_for(lambda: "/hello?live=1" in srv.stdout_text(), 5,
             what="the access log line while the server runs")


def test_no_access_log_by_default(server):
    srv = server("router:app", "--workers", "1")
    for _ in range(3):
        fetch(srv, "/hello")
    assert srv.stop() == 0
    assert srv.stdout_text().strip() == "", srv.stdout_text()
    assert "GET /hello" not in srv.stderr_text()


def test_long_fields_are_cut_and_missing_ones_are_dashes(server):
    """The target is cut at 2000 bytes, Referer and User-Agent at 500 each;
    an HTTP/1.0 request says so, and a field it lacks is "-"."""
    srv = server("router:app", "--access-log", "--workers", "1")
    target = b"/hello?" + b"a" * 2100
    with Conn(srv) as c:
        c.send(b"GET " + target + b" HTTP/1.0\r\nHost: x\r\nReferer: " + b"r" * 600 +
               b"\r\nUser-Agent: " + b"u" * 600 + b"\r\n\r\n")
        assert c.response().status == 200
    with Conn(srv) as c:
        c.send(b"GET /hello HTTP/1.0\r\n\r\n")
        assert c.response().status == 200
    assert srv.stop() == 0
    lines = srv.stdout_text().splitlines()
    assert len(lines) == 2, srv.stdout_text()
    request, ref, ua = re.search(r'"([^"]*)" \d{3} \d+ "([^"]*)" "([^"]*)"$', lines[0]).groups()
    assert request == "GET %s HTTP/1.0" % target[:2000].decode()
    assert (ref, ua) == ("r" * 500, "u" * 500)
    assert re.search(r'"GET /hello HTTP/1\.0" 200 \d+ "-" "-"$', lines[1]), lines[1]
