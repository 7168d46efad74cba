"""20 MiB uploads (Content-Length and chunked) and downloads."""
import hashlib
import os

import httpx
import pytest

from conftest import PATTERN, Conn, build_request, chunked, fetch

MIB20 = 20 << 20


@pytest.fixture(scope="module")
def blob():
    return os.urandom(MIB20)


def test_upload_20mib_content_length(router, blob):
    r = fetch(router, "/echo", "POST", body=blob, timeout=60)
    j = r.json()
    assert j["body_len"] == MIB20
    assert j["body_sha256"] == hashlib.sha256(blob).hexdigest()


def test_upload_20mib_chunked(router, blob):
    def body():
        for i in range(0, len(blob), 65536 + 7):
            yield blob[i:i + 65536 + 7]

    with httpx.Client(timeout=60) as client:
        r = client.post("http://127.0.0.1:%d/echo" % router.port, content=body())
    assert r.status_code == 200
    assert r.request.headers.get("transfer-encoding") == "chunked"
    j = r.json()
    assert j["body_len"] == MIB20
    assert j["body_sha256"] == hashlib.sha256(blob).hexdigest()


def test_upload_20mib_with_expect_continue(router, blob):
    with Conn(router, timeout=60) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
               b"Expect: 100-continue\r\n\r\n" % MIB20)
        assert c.read_response(timeout=5).status == 100
        c.send(blob)
        j = c.response().json()
    assert j["body_sha256"] == hashlib.sha256(blob).hexdigest()


@pytest.mark.parametrize("chunked", [False, True])
def test_download_20mib(router, chunked):
    r = fetch(router, "/big?mib=20" + ("&chunked=1" if chunked else ""), timeout=60)
    assert r.status == 200
    assert r.chunked == chunked
    assert len(r.body) == MIB20
    assert hashlib.sha256(r.body).digest() == hashlib.sha256(PATTERN * 20).digest()


def test_download_20mib_httpx_streaming(router):
    h = hashlib.sha256()
    n = 0
    with httpx.Client(timeout=60) as client:
        with client.stream("GET", "http://127.0.0.1:%d/big?mib=20" % router.port) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                h.update(chunk)
                n += len(chunk)
    assert n == MIB20 and h.digest() == hashlib.sha256(PATTERN * 20).digest()


def test_upload_and_download_keep_alive(router, blob):
    with Conn(router, timeout=60) as c:
        c.send(build_request("POST", "/echo", body=blob[:5 << 20], host="x"))
        assert c.response().json()["body_len"] == 5 << 20
        r = c.request("GET", "/big?mib=5")
        assert len(r.body) == 5 << 20
        assert c.request("GET", "/hello-list").body == b"Hello, world!\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_readline_on_a_body_spilled_to_a_file(server, tmp_path, framing):
    """A body past the 1 MiB the server keeps in memory goes to an unlinked
    file in $TMPDIR; readline() over it gives the same lines, including
    lines that cross the 1 MiB mark and a line longer than 1 MiB. A small
    body opens no file."""
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    srv = server("router:app", "--workers", "1", env={"TMPDIR": str(spill_dir)})
    lines = [b"%06d %s\n" % (i, b"x" * (i % 97)) for i in range(20000)]
    lines.insert(5000, b"L" * (1200 * 1024) + b"\n")
    body = b"".join(lines) + b"no newline at the end"
    assert len(body) > 2 * 1024 * 1024
    target = "/inputs?mode=readline&spill=1"
    if framing == "chunked":
        req = build_request("POST", target, headers={"Transfer-Encoding": "chunked"},
                            body=chunked(body, size=65536 + 3), host="x")
    else:
        req = build_request("POST", target, body=body, host="x")
    with Conn(srv, timeout=60) as c:
        c.send(req)
        j = c.response().json()
    got = [p.encode("latin-1") for p in j["pieces"]]
    assert got[-1] == b"" and got[-2] == b"no newline at the end"
    assert got[:-2] == lines, "readline() over a spilled body gave other lines"
    assert any("(deleted)" in f for f in j["spill_files"]), \
        "no spill file under TMPDIR during the request: %r" % j["spill_files"]
    small = fetch(srv, "/inputs?mode=readline&spill=1", "POST", body=b"a\nb\n").json()
    assert small["pieces"] == ["a\n", "b\n", ""] and small["spill_files"] == []


def test_spill_dir_that_does_not_exist_falls_back_to_tmp(server, tmp_path):
    srv = server("router:app", "--workers", "1", env={"TMPDIR": str(tmp_path / "no-such-dir")})
    body = os.urandom(2 << 20)
    r = fetch(srv, "/echo", "POST", body=body, timeout=60)
    assert r.status == 200 and r.json()["body_sha256"] == hashlib.sha256(body).hexdigest(), r


def test_body_that_cannot_be_spilled_is_503(server, tmp_path):
    """The spill file cannot grow (a file size limit on the server process,
    as a full disk would do): that request gets 503 and its connection is
    closed; smaller bodies, and the worker, go on."""
    import resource
    srv = server("router:app", "--workers", "1", env={"TMPDIR": str(tmp_path)})
    resource.prlimit(srv.pid, resource.RLIMIT_FSIZE, (1536 * 1024, resource.RLIM_INFINITY))
    with Conn(srv, timeout=60) as c:
        c.send(build_request("POST", "/echo", body=os.urandom(3 << 20), host="x"))
        r = c.response()
        assert r.status == 503, r
        assert c.wait_closed(10) == b""
    body = os.urandom(1200 * 1024)  # spilled, under the limit
    r = fetch(srv, "/echo", "POST", body=body, timeout=60)
    assert r.status == 200 and r.json()["body_sha256"] == hashlib.sha256(body).hexdigest(), r
