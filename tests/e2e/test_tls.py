"""TLS (--certfile and friends): HTTPS for WSGI and ASGI, wss, mutual TLS,
plain HTTP on a TLS port, a stalled handshake, and configuration errors.

The certificates are made for each run with the `openssl` command (a CA, a
server certificate for localhost / 127.0.0.1 signed by it, a client
certificate for mutual TLS); the clients are Python's ssl, httpx and
websockets, verifying the server against that CA.
"""
import hashlib
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import httpx
import pytest
from conftest import PATTERN, Conn, child_pids, free_port, in_threads, run_gorgon, scaled, wait_for

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl command (scripts/bootstrap installs it)")

EXT = {
    "ca": "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
          "subjectKeyIdentifier=hash\n",
    "server": "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
              "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    "client": "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
}


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_cert(d, name, cn, signer, kind=None):
    (d / (name + ".ext")).write_text(EXT[kind or name])
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    sign = ["-signkey", name + ".key"] if signer is None else ["-CA", "ca.pem", "-CAkey", "ca.key",
                                                                 "-CAcreateserial"]
    openssl("x509", "-req", "-in", name + ".csr", *sign, "-days", "2", "-out", name + ".pem",
            "-extfile", name + ".ext", cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    make_cert(d, "ca", "gorgon test CA", None)
    make_cert(d, "server", "localhost", "ca")
    make_cert(d, "client", "test client", "ca")
    make_cert(d, "server2", "localhost", "ca", kind="server")  # what a reload brings
    # The certificate followed by its chain, in one file.
    (d / "fullchain.pem").write_text((d / "server.pem").read_text() + (d / "ca.pem").read_text())
    openssl("pkey", "-in", "server.key", "-aes256", "-passout", "pass:s3cret", "-out", "server-enc.key", cwd=d)
    openssl("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "other.key", cwd=d)
    return d


def client_ctx(certs, cert=False):
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    return ctx


def tls_args(certs, *extra):
    return ("--certfile", certs / "fullchain.pem", "--keyfile", certs / "server.key", *extra)


def url(srv, path):
    return "https://localhost:%d%s" % (srv.port, path)


class TlsConn(Conn):
    """Conn over TLS: the raw HTTP/1.1 client of the other tests."""

    def __init__(self, srv, ctx, timeout=10):
        super().__init__(srv, timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")


def test_wsgi_https_keepalive_and_scheme(server, certs):
    srv = server("router:app", *tls_args(certs))
    assert "Listening at: https://127.0.0.1:%d" % srv.port in srv.stderr_text()
    with TlsConn(srv, client_ctx(certs)) as c:
        for _ in range(3):  # one connection, three requests
            r = c.request("GET", "/echo")
            assert r.status == 200
            env = json.loads(r.body)
            assert env["environ"]["wsgi.url_scheme"] == "https"
            assert env["environ"]["SERVER_PORT"] == str(srv.port)
        # Pipelined: both requests in one TLS write, answered in order.
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /status?code=204 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.response().body == b"Hello, world!\n"
        assert c.response().status == 204


def test_large_bodies_both_ways(server, certs, tmp_path):
    srv = server("router:app", *tls_args(certs))
    up = bytes(range(251)) * 9000  # 2.2 MB
    with httpx.Client(verify=client_ctx(certs), timeout=scaled(30)) as client:
        r = client.post(url(srv, "/echo"), content=up)
        assert r.status_code == 200
        assert r.json()["body_sha256"] == hashlib.sha256(up).hexdigest()
        r = client.get(url(srv, "/big?mib=3"))
        assert r.content == PATTERN * 3
        r = client.get(url(srv, "/big?mib=2&chunked=1"))
        assert r.content == PATTERN * 2
        # wsgi.file_wrapper: read and encrypted, not sendfile'd, under TLS.
        path = tmp_path / "file.bin"
        path.write_bytes(up)
        for route in ("/file-sendfile", "/file"):
            r = client.get(url(srv, "%s?path=%s" % (route, path)))
            assert r.status_code == 200 and r.content == up, route


def test_asgi_scheme_and_tls_extension(server, certs, tmp_path):
    srv = server("asgi_app:app", *tls_args(certs))
    with httpx.Client(verify=client_ctx(certs)) as client:
        # http.response.pathsend: read and encrypted under TLS.
        path = tmp_path / "file.bin"
        data = bytes(range(256)) * 5000
        path.write_bytes(data)
        r = client.get(url(srv, "/pathsend?path=%s" % path))
        assert r.status_code == 200 and r.content == data
        r = client.get(url(srv, "/tls"))
        info = r.json()
        assert info["scheme"] == "https"
        tls = info["tls"]
        assert tls["tls_version"] in (0x0303, 0x0304)
        assert tls["cipher_suite"] > 0
        assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
        assert tls["server_cert"] is None


def test_websocket_over_tls(server, certs):
    from websockets.sync.client import connect
    srv = server("asgi_app:app", *tls_args(certs))
    with connect("wss://localhost:%d/ws/echo" % srv.port, ssl=client_ctx(certs),
                 open_timeout=scaled(10)) as ws:
        ws.send("scope")
        scope = json.loads(ws.recv(timeout=scaled(10)))
        assert scope["scheme"] == "wss"
        assert "tls" in scope["extensions"]
        big = bytes(range(256)) * 1024
        ws.send(big)
        assert ws.recv(timeout=scaled(10)) == big


def test_mutual_tls_required(server, certs):
    srv = server("asgi_app:app", *tls_args(certs, "--ca-certs", certs / "ca.pem", "--cert-reqs", "required"))
    # Without a certificate: the handshake fails (with TLS 1.3 the client
    # hears of it at its first read).
    with pytest.raises((ssl.SSLError, httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        with httpx.Client(verify=client_ctx(certs)) as client:
            client.get(url(srv, "/tls"))
    with httpx.Client(verify=client_ctx(certs, cert=True)) as client:
        tls = client.get(url(srv, "/tls")).json()["tls"]
    assert len(tls["client_cert_chain"]) >= 1
    assert tls["client_cert_chain"][0].startswith("-----BEGIN CERTIFICATE-----")
    assert tls["client_cert_name"] == "CN=test client"


def test_client_certificate_chain_is_passed_on_in_order(server, certs):
    # A client that sends its certificate with the CA's after it: the scope
    # lists both, the client's first; the name is the client's.
    (certs / "client-chain.pem").write_text((certs / "client.pem").read_text() + (certs / "ca.pem").read_text())
    srv = server("asgi_app:app", *tls_args(certs, "--ca-certs", certs / "ca.pem", "--cert-reqs", "required"))
    ctx = client_ctx(certs)
    ctx.load_cert_chain(str(certs / "client-chain.pem"), str(certs / "client.key"))
    with httpx.Client(verify=ctx) as client:
        tls = client.get(url(srv, "/tls")).json()["tls"]
    chain = [ssl.PEM_cert_to_DER_cert(pem) for pem in tls["client_cert_chain"]]
    assert chain == [der(certs / "client.pem"), der(certs / "ca.pem")]
    assert tls["client_cert_name"] == "CN=test client"


def test_mutual_tls_optional(server, certs):
    srv = server("asgi_app:app", *tls_args(certs, "--ca-certs", certs / "ca.pem", "--cert-reqs", "optional"))
    with httpx.Client(verify=client_ctx(certs)) as client:
        assert client.get(url(srv, "/tls")).json()["tls"]["client_cert_chain"] == []
    with httpx.Client(verify=client_ctx(certs, cert=True)) as client:
        assert client.get(url(srv, "/tls")).json()["tls"]["client_cert_name"] == "CN=test client"


def test_plain_http_on_tls_port(server, certs):
    srv = server("router:app", *tls_args(certs), "--log-level", "debug")
    with Conn(srv) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.response()
        assert r.status == 400 and b"HTTPS" in r.body
        c.wait_closed()
    # With a body the server does not read: drained before the close, so the
    # 400 is not lost to a reset.
    with Conn(srv) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n" + b"x" * 300000)
        r = c.response()
        assert r.status == 400 and b"HTTPS" in r.body
        c.wait_closed()
        assert not c.reset
    # Every method gets the 400, not only those OpenSSL itself recognises.
    for method in ("DELETE", "OPTIONS", "PATCH", "CONNECT"):
        with Conn(srv) as c:
            c.send(method.encode() + b" /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.response()
            assert r.status == 400 and b"HTTPS" in r.body, method
            c.wait_closed()
    # Garbage that is not HTTP either: closed, nothing else affected.
    for garbage in (b"\x16\x03\x01\x00\x05hello-not-tls", b"\x00\x01binary", b"hello\r\n"):
        with Conn(srv) as c:
            c.send(garbage)
            assert not c.wait_closed().startswith(b"HTTP/"), garbage  # at most a TLS alert
    with httpx.Client(verify=client_ctx(certs)) as client:
        assert client.get(url(srv, "/hello")).text == "Hello, world!\n"
    log = srv.stderr_text()
    assert "[DEBUG] TLS handshake with 127.0.0.1" in log
    assert "[ERROR]" not in log and "[WARNING]" not in log


def test_stalled_handshake_is_dropped_and_blocks_nobody(server, certs):
    srv = server("router:app", *tls_args(certs), "--header-timeout", "1", workers=1)
    stalled = [Conn(srv) for _ in range(4)]
    stalled[0].send(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
    # A whole ClientHello: the server answers it and waits for the client's
    # Finished, which never comes.
    out = ssl.MemoryBIO()
    hello = client_ctx(certs).wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        hello.do_handshake()
    stalled[1].send(out.read())
    assert stalled[1]._fill(time.monotonic() + scaled(10), "the ServerHello")
    try:
        start = time.monotonic()
        with httpx.Client(verify=client_ctx(certs)) as client:
            assert client.get(url(srv, "/hello")).status_code == 200
        assert time.monotonic() - start < scaled(1), "a stalled handshake held up another client"
        for c in stalled:
            assert c.closed_within(scaled(5)), "a stalled handshake was not dropped"
    finally:
        for c in stalled:
            c.close()


def test_idle_tls_connections_move_to_an_idle_worker(server, certs):
    """A TLS keep-alive connection taken over by an idle worker (src/http/
    group.h) goes on with its TLS state: CPU-bound requests on a warm pool
    are answered by both interpreters, over the same connections."""
    srv = server("router:app", *tls_args(certs), "--workers", "2", "--mode", "interpreters",
                 "--keep-alive", "120")
    ctx = client_ctx(certs)
    conns = [TlsConn(srv, ctx) for _ in range(8)]
    try:
        for c in conns:
            assert c.request("GET", "/hello").status == 200
        time.sleep(0.3)
        answers = in_threads(lambda c: c.request("GET", "/cpu?ms=300").json(), [(c,) for c in conns])
        assert len({a["interp"] for a in answers}) == 2
        for c in conns:
            assert c.request("GET", "/hello").body == b"Hello, world!\n"
    finally:
        for c in conns:
            c.close()


def test_tls_keepalive_connections_outlive_a_reload(server, certs):
    """A retiring worker hands its idle TLS connections, TLS state and all,
    to a new worker: after SIGHUP the same connections are answered by the
    new interpreters."""
    srv = server("router:app", *tls_args(certs), "--workers", "2", "--mode", "interpreters")
    conns = [TlsConn(srv, client_ctx(certs)) for _ in range(4)]
    try:
        old = {c.request("GET", "/cpu?ms=1").json()["interp"] for c in conns}
        srv.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded in" in srv.stderr_text(), what="reload", timeout=scaled(30))
        for c in conns:  # the old worker may answer once more, then hands it over
            answers = [c.request("GET", "/cpu?ms=1").json()["interp"] for _ in range(2)]
            assert answers[-1] not in old, (answers, old, srv.describe())
    finally:
        for c in conns:
            c.close()


@pytest.mark.parametrize("mode", [("--mode", "interpreters"), ("--mode", "threads"),
                                  ("--mode", "processes"), ("--mode", "interpreters", "--processes", "2")],
                         ids=["interpreters", "threads", "processes", "processes-x-interpreters"])
def test_modes(server, certs, mode):
    srv = server("router:app", *tls_args(certs), *mode)
    with httpx.Client(verify=client_ctx(certs)) as client:
        for _ in range(4):
            r = client.get(url(srv, "/echo"))
            assert r.json()["environ"]["wsgi.url_scheme"] == "https"


def test_encrypted_key_with_password_from_env(server, certs):
    srv = server("router:app", "--certfile", certs / "server.pem", "--keyfile", certs / "server-enc.key",
                 env={"GORGON_KEYFILE_PASSWORD": "s3cret"})
    with httpx.Client(verify=client_ctx(certs)) as client:
        assert client.get(url(srv, "/hello")).status_code == 200


def test_tls12_client_and_ciphers(server, certs):
    srv = server("asgi_app:app", *tls_args(certs, "--ssl-ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"))
    ctx = client_ctx(certs)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=ctx) as client:
        tls = client.get(url(srv, "/tls")).json()["tls"]
    assert tls["tls_version"] == 0x0303
    assert tls["cipher_suite"] == 0xC02B  # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256


def test_minimum_version_13(server, certs):
    srv = server("router:app", *tls_args(certs, "--ssl-min-version", "1.3"))
    ctx = client_ctx(certs)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=scaled(5)) as s:
            ctx.wrap_socket(s, server_hostname="localhost")


def bad_config(certs, *args, env=None):
    r = run_gorgon("router:app", "--bind", "127.0.0.1:0", *[str(a) for a in args], env=env)
    err = r.stderr.decode()
    assert r.returncode != 0, err
    return err


def test_config_errors(certs, tmp_path):
    missing = tmp_path / "nope.pem"
    err = bad_config(certs, "--certfile", missing, "--keyfile", certs / "server.key")
    assert "--certfile %s: No such file or directory" % missing in err and "Traceback" not in err
    err = bad_config(certs, "--certfile", certs / "server.pem", "--keyfile", certs / "other.key")
    assert "does not match the certificate" in err
    err = bad_config(certs, "--certfile", certs / "server.pem", "--keyfile", certs / "server-enc.key",
                     "--keyfile-password", "wrong")
    assert "--keyfile-password" in err and "Traceback" not in err
    err = bad_config(certs, "--certfile", certs / "server.pem", "--keyfile", certs / "server-enc.key")
    assert "--keyfile-password" in err
    err = bad_config(certs, "--certfile", certs / "ca.key")
    assert "--certfile" in err and "not a PEM certificate" in err
    err = bad_config(certs, *tls_args(certs, "--cert-reqs", "required"))
    assert "--cert-reqs required needs --ca-certs" in err
    err = bad_config(certs, "--keyfile", certs / "server.key")
    assert "--keyfile needs --certfile" in err
    err = bad_config(certs, *tls_args(certs, "--ssl-ciphers", "NO-SUCH-CIPHER"))
    assert "--ssl-ciphers" in err
    err = bad_config(certs, *tls_args(certs, "--ca-certs", missing, "--cert-reqs", "required"))
    assert "--ca-certs %s: No such file or directory" % missing in err and "Traceback" not in err
    # The environment's value is not one of the flag's choices: refused all the same.
    err = bad_config(certs, *tls_args(certs), env={"GORGON_SSL_MIN_VERSION": "1.1"})
    assert "--ssl-min-version 1.1: not 1.2 or 1.3" in err and "Traceback" not in err
    # A file with no certificate in it (a key): refused, not an empty CA list.
    err = bad_config(certs, *tls_args(certs, "--ca-certs", certs / "other.key", "--cert-reqs", "required"))
    assert "--ca-certs %s: no PEM certificate in it" % (certs / "other.key") in err and "Traceback" not in err


def served_cert(srv, ctx):
    """The certificate a new connection is served (DER)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=scaled(10)) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


def der(path):
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def reloads_finished(srv, mode):
    """Reloads done, from the log: a line per reload in one process, a line
    per process replaced with worker processes."""
    text = srv.stderr_text()
    if "--processes" in mode:
        return len(re.findall(r"worker process \d+: pid \d+ serves", text))
    return len(re.findall(r"reloaded in \d+ ms", text))


@pytest.mark.parametrize("mode", [("--mode", "interpreters"), ("--mode", "interpreters", "--processes", "2")],
                         ids=["interpreters", "processes-x-interpreters"])
def test_sighup_reloads_the_certificate(server, certs, tmp_path, mode):
    """SIGHUP reads --certfile/--keyfile again: new connections get the new
    certificate, a connection opened before keeps its own (its request in
    flight is answered); files that do not load leave the certificate in use,
    with one log line."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(certs / "fullchain.pem", cert)
    shutil.copy(certs / "server.key", key)
    srv = server("router:app", "--certfile", cert, "--keyfile", key, "--workers", "2", *mode)
    ctx = client_ctx(certs)
    first, second = der(certs / "server.pem"), der(certs / "server2.pem")
    assert first != second
    assert served_cert(srv, ctx) == first
    procs = 2 if "--processes" in mode else 1

    def reload(what):
        before = reloads_finished(srv, mode)
        srv.send_signal(signal.SIGHUP)
        wait_for(lambda: what in srv.stderr_text(), timeout=30, what=what)
        wait_for(lambda: reloads_finished(srv, mode) >= before + procs, timeout=60, what="the reload")

    marker = tmp_path / "started"
    old_procs = child_pids(srv.pid) if procs > 1 else set()
    with TlsConn(srv, ctx) as old:
        assert old.request("GET", "/hello").status == 200  # a keep-alive connection, before
        old.request("GET", "/slow?s=%g&marker=%s" % (scaled(1), marker), read=False)
        wait_for(marker.exists, timeout=30, what="the slow request to start")
        shutil.copy(certs / "server2.pem", cert)
        shutil.copy(certs / "server2.key", key)
        reload("TLS certificate reloaded from %s" % cert)
        assert old.response().status == 200  # answered over the connection's own TLS session
        assert old.sock.getpeercert(binary_form=True) == first
    # A replaced worker process may accept a client or two (on its old
    # certificate) until it has handled its SIGHUP; once they are gone every
    # connection is the new processes'.
    wait_for(lambda: not old_procs & child_pids(srv.pid), timeout=scaled(30), what="the old worker processes to end")
    for _ in range(4):  # on every worker the kernel picks
        assert served_cert(srv, ctx) == second
    with httpx.Client(verify=ctx) as client:
        assert client.get(url(srv, "/hello")).text == "Hello, world!\n"

    cert.write_text("not a certificate\n")
    reload("TLS certificate not reloaded, the one in use stays: --certfile %s: not a PEM certificate" % cert)
    for _ in range(4):
        assert served_cert(srv, ctx) == second
    assert srv.running()


@pytest.mark.tsan
def test_old_workers_take_the_new_certificate_when_the_application_reload_fails(server, certs, tmp_path):
    """The reload of the application fails (its new code does not import), so
    the workers already serving go on: they too hand the new certificate to
    new connections, and their open connections keep working."""
    app = tmp_path / "tlsapp.py"
    app.write_text("def app(environ, start_response):\n"
                   "    start_response('200 OK', [('Content-Length', '2')])\n"
                   "    return [b'ok']\n")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(certs / "fullchain.pem", cert)
    shutil.copy(certs / "server.key", key)
    srv = server("tlsapp:app", "--pythonpath", tmp_path, "--certfile", cert, "--keyfile", key, "--workers", "2")
    ctx = client_ctx(certs)
    with TlsConn(srv, ctx) as old:
        assert old.request("GET", "/").body == b"ok"
        app.write_text("def app(environ, start_response:\n")
        shutil.copy(certs / "server2.pem", cert)
        shutil.copy(certs / "server2.key", key)
        srv.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed, the old workers go on serving" in srv.stderr_text(), timeout=60,
                 what="the failed reload")
        assert "TLS certificate reloaded from" in srv.stderr_text()
        for _ in range(6):
            assert served_cert(srv, ctx) == der(certs / "server2.pem")
        assert old.request("GET", "/").body == b"ok"  # idle through it all, still served
        assert old.sock.getpeercert(binary_form=True) == der(certs / "server.pem")


# ---- the PROXY protocol in front of TLS -------------------------------------------

PROXY_V1 = b"PROXY TCP4 203.0.113.7 198.51.100.2 40001 443\r\n"
PROXY_V2 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + (12).to_bytes(2, "big") +
            socket.inet_aton("203.0.113.9") + socket.inet_aton("198.51.100.2") +
            (40002).to_bytes(2, "big") + (443).to_bytes(2, "big"))


def echo_over(tls_sock):
    """GET /echo on a TLS socket (an ssl.SSLSocket or a MemoryBIO pair)."""
    tls_sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        got = tls_sock.recv(65536)
        if not got:
            break
        data += got
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)["environ"]


class BioSocket:
    """TLS over a socket through ssl.MemoryBIO: the test decides what goes
    into each write, so the PROXY header and the ClientHello can share one."""

    def __init__(self, sock, ctx, first=b""):
        self.sock, self.inc, self.out = sock, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        self.first = first
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()

    def _flush(self):
        data = self.first + self.out.read()
        self.first = b""
        if data:
            self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if data:
            self.inc.write(data)
        else:
            self.inc.write_eof()

    def sendall(self, data):
        self.obj.write(data)
        self._flush()

    def recv(self, n):
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                self._fill()
            except ssl.SSLZeroReturnError:
                return b""


def test_proxy_protocol_before_the_handshake(server, certs):
    """A PROXY header (v1 or v2) in the clear, then the TLS handshake: sent
    apart, or in one write with the ClientHello; the app sees the header's
    client, and the connection is HTTPS."""
    srv = server("router:app", *tls_args(certs), "--proxy-protocol", "--workers", "1")
    ctx = client_ctx(certs)
    for header, client in ((PROXY_V1, ("203.0.113.7", "40001")), (PROXY_V2, ("203.0.113.9", "40002"))):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=scaled(10)) as s:
            s.sendall(header)
            time.sleep(0.05)  # the header alone in the server's first read
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                env = echo_over(t)
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == client
        assert env["wsgi.url_scheme"] == "https"
        with socket.create_connection(("127.0.0.1", srv.port), timeout=scaled(10)) as s:
            env = echo_over(BioSocket(s, ctx, first=header))  # header + ClientHello in one write
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == client
        # Byte by byte: the header is read whole before the handshake starts.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=scaled(10)) as s:
            for i in range(len(header)):
                s.sendall(header[i:i + 1])
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                assert echo_over(t)["REMOTE_ADDR"] == client[0]


def test_proxy_protocol_with_tls_refuses_what_it_refuses_without(server, certs):
    """No header (a TLS client straight to the port) is refused as in the
    clear, with one line and no answer; an HTTPS bind without the flag still
    takes clients directly."""
    srv = server("router:app", *tls_args(certs), "--proxy-protocol", "--workers", "1")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=scaled(10)) as s:
        with pytest.raises((ssl.SSLError, OSError)):
            client_ctx(certs).wrap_socket(s, server_hostname="localhost")
    wait_for(lambda: "PROXY protocol: closing the connection" in srv.stderr_text(), timeout=10,
             what="the log line")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=scaled(10)) as s:
        s.sendall(PROXY_V1)
        with client_ctx(certs).wrap_socket(s, server_hostname="localhost") as t:
            assert echo_over(t)["REMOTE_ADDR"] == "203.0.113.7"


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_tls_passed_through_haproxy_with_a_proxy_header(server, certs, tmp_path, send):
    """HAProxy in TCP mode in front (TLS passed through, a PROXY header sent
    before it): the client's TLS ends in gorgon, and the app sees the
    client's own address."""
    from test_proxy_protocol import haproxy
    srv = server("router:app", *tls_args(certs), "--proxy-protocol")
    port = free_port()
    with haproxy(tmp_path, srv.port, [("tls", "127.0.0.1:%d" % port, send)]) as proc:
        deadline = time.monotonic() + scaled(10)
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.05)
        with client_ctx(certs).wrap_socket(s, server_hostname="localhost") as t:
            env = echo_over(t)
            client_port = t.getsockname()[1]
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("127.0.0.1", str(client_port))
    assert env["wsgi.url_scheme"] == "https"
