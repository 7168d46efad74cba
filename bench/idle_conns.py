#!/usr/bin/env python3
"""What idle keep-alive connections cost: N connections opened one after
another, one request each, then held open. For each server: resident memory
(RSS summed over its processes) grown per held connection, the p99 latency of
fresh requests (a new connection each) while they are held, and the CPU the
server burns while they sit idle.

    .venv/bin/python bench/idle_conns.py [--conns 10000] [--hold 30]
    GORGON_OLD=/path/to/other/checkout ...   # also that build, for before/after
    ... --websocket     # idle WebSockets (one echo each), gorgon and uvicorn
    ... --tls           # the same over TLS (a self-signed certificate made with
                        # the openssl command): what an idle TLS connection costs

gorgon (2 workers) and Debian's nginx (2 worker processes, `return 200`)
always run; gunicorn gthread, uvicorn and granian when .venv-bench (or
BENCH_VENV) has them. The client raises its own open-file limit to the hard
limit, which also bounds N (about half of it: every connection is a
descriptor in the client and in the server). Writes
docs/results/idle_conns.json (idle_conns_tls.json with --tls).
"""
import argparse
import json
import os
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from warm_pool import BENCH_BIN, HOST, PY, REPO, free_port, request, start, stop  # noqa: E402

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# --tls: (certfile, keyfile) of a self-signed certificate, and the client's
# context, which trusts it; None: plaintext.
TLS = None


def make_tls():
    d = tempfile.mkdtemp(prefix="idle-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    return cert, key, ctx


def connect(port):
    s = socket.create_connection((HOST, port), 10)
    return TLS[2].wrap_socket(s) if TLS else s


def tree_pids(root):
    """root and its descendants (forked workers)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kb(root):
    total = 0
    for p in tree_pids(root):
        try:
            with open("/proc/%d/statm" % p) as f:
                total += int(f.read().split()[1]) * PAGE_KB
        except OSError:
            pass
    return total


def cpu_s(root):
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for p in tree_pids(root):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def ws_handshake(port, extensions=b""):
    """A raw client's WebSocket handshake on a new connection to /ws (extra
    header lines in `extensions`): the socket, the response head, and the
    bytes that came after it."""
    s = connect(port)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
              extensions + b"\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("handshake: %r" % buf[:40])
    head, rest = buf.split(b"\r\n\r\n", 1)
    return s, head, rest


def ws_open(port):
    """A WebSocket that has echoed one message, left open."""
    s = ws_handshake(port)[0]
    ws_echo(s)
    return s


def ws_echo(s):
    payload = b"hello"
    mask = b"\x01\x02\x03\x04"
    s.sendall(b"\x81" + bytes([0x80 | len(payload)]) + mask +
              bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    got = b""
    while len(got) < 2 + len(payload):
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed before the echo")
        got += chunk
    if got[2:2 + len(payload)] != payload:
        raise RuntimeError("echo: %r" % got[:20])


def fresh_latencies(port, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        with connect(port) as s:
            request(s, "/")
        out.append(time.perf_counter() - t0)
    return out


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))]


def measure(argv, port, conns, hold, fresh, websocket=False):
    p = start(argv, port)
    held = []
    try:
        fresh_latencies(port, 50)  # warm-up: imports, first allocations
        time.sleep(1)
        before = rss_kb(p.pid)
        for _ in range(conns):
            if websocket:
                held.append(ws_open(port))
                continue
            s = connect(port)
            request(s, "/")
            held.append(s)
        time.sleep(2)
        after = rss_kb(p.pid)
        lat = fresh_latencies(port, fresh)
        c0, t0 = cpu_s(p.pid), time.monotonic()
        time.sleep(hold)
        idle_cpu = (cpu_s(p.pid) - c0) / (time.monotonic() - t0)
        alive = 0
        for s in held:  # every held connection still answers
            try:
                ws_echo(s) if websocket else request(s, "/")
                alive += 1
            except (OSError, RuntimeError):
                pass
        return {"kb_per_conn": (after - before) / conns, "rss_before_mb": before / 1024,
                "rss_after_mb": after / 1024, "fresh_p99_ms": p99(lat) * 1000,
                "fresh_median_ms": statistics.median(lat) * 1000, "idle_cpu_pct": idle_cpu * 100,
                "still_answered": alive}
    finally:
        for s in held:
            s.close()
        stop(p)


def nginx_argv(port, conns):
    d = tempfile.mkdtemp(prefix="idle-nginx-")
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    conf = os.path.join(d, "nginx.conf")
    tls_lines = "ssl_certificate %s; ssl_certificate_key %s;" % TLS[:2] if TLS else ""
    with open(conf, "w") as f:
        f.write(f"""{user}
worker_processes 2; worker_rlimit_nofile {conns + 1000}; daemon off; pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {conns + 1000}; }}
http {{
    access_log off; keepalive_timeout 600s; keepalive_requests 100000;
    client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
    uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
    server {{ listen {HOST}:{port}{" ssl" if TLS else ""}; {tls_lines}
              location / {{ return 200 "Hello, World!"; }} }}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return [nginx, "-p", d, "-e", d + "/error.log", "-c", conf]


def tls_flags(cert_flag, key_flag):
    return [cert_flag, TLS[0], key_flag, TLS[1]] if TLS else []


def servers(conns, old):
    per_worker = str(conns // 2 + 500)
    g = ["hello:app", "--workers", "2", "--mode", "interpreters", "--keep-alive", "600",
         "--max-connections", per_worker, "--log-level", "warning", *tls_flags("--certfile", "--keyfile")]
    yield "gorgon", lambda port: [PY, "-m", "gorgon", *g, "--bind", f"{HOST}:{port}"]
    if old:
        yield "gorgon (%s)" % os.path.basename(old.rstrip("/")), \
            lambda port: [PY, "-P", "-c", "import sys; sys.path.insert(0, %r); import runpy; "
                          "runpy.run_module('gorgon', run_name='__main__')" % old,
                          *g, "--bind", f"{HOST}:{port}"]
    yield "nginx", lambda port: nginx_argv(port, conns)
    bb = lambda name: os.path.join(BENCH_BIN, name)  # noqa: E731
    if os.path.exists(bb("gunicorn")):
        yield "gunicorn gthread", lambda port: [bb("gunicorn"), "-w", "2", "-k", "gthread", "--threads", "4",
                                                "--worker-connections", str(conns + 1000), "--keep-alive", "600",
                                                "-b", f"{HOST}:{port}", *tls_flags("--certfile", "--keyfile"),
                                                "hello:app"]
    if os.path.exists(bb("uvicorn")):
        yield "uvicorn", lambda port: [bb("uvicorn"), "--workers", "2", "--timeout-keep-alive", "600",
                                       "--log-level", "warning", "--host", HOST, "--port", str(port),
                                       *tls_flags("--ssl-certfile", "--ssl-keyfile"), "plain_asgi:app"]
    if os.path.exists(bb("granian")):
        yield "granian WSGI", lambda port: [bb("granian"), "--interface", "wsgi", "--workers", "2",
                                            "--backpressure", str(conns + 1000), "--host", HOST,
                                            "--port", str(port), *tls_flags("--ssl-certificate", "--ssl-keyfile"),
                                            "hello:app"]


def ws_servers(conns, old):
    g = ["ws_echo:app", "--workers", "2", "--mode", "interpreters", "--max-connections", str(conns // 2 + 500),
         "--ws-ping-interval", "0", "--log-level", "warning", *tls_flags("--certfile", "--keyfile")]
    yield "gorgon", lambda port: [PY, "-m", "gorgon", *g, "--bind", f"{HOST}:{port}"]
    if old:
        yield "gorgon (%s)" % os.path.basename(old.rstrip("/")), \
            lambda port: [PY, "-P", "-c", "import sys; sys.path.insert(0, %r); import runpy; "
                          "runpy.run_module('gorgon', run_name='__main__')" % old,
                          *g, "--bind", f"{HOST}:{port}"]
    uv = os.path.join(BENCH_BIN, "uvicorn")
    if os.path.exists(uv):
        yield "uvicorn", lambda port: [uv, "--workers", "2", "--ws-ping-interval", "0", "--log-level",
                                       "warning", "--host", HOST, "--port", str(port),
                                       *tls_flags("--ssl-certfile", "--ssl-keyfile"), "ws_echo:app"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--hold", type=float, default=30, help="seconds the connections are held idle")
    ap.add_argument("--fresh", type=int, default=500, help="fresh requests measured while they are held")
    ap.add_argument("--only", help="comma-separated server names")
    ap.add_argument("--websocket", action="store_true",
                    help="idle WebSockets (one echo each) instead of keep-alive connections")
    ap.add_argument("--tls", action="store_true", help="every connection over TLS (gorgon's --certfile)")
    args = ap.parse_args()
    global TLS
    if args.tls:
        TLS = make_tls()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.conns + 200 > hard:
        sys.exit("--conns %d needs more descriptors than the hard limit (%d) allows" % (args.conns, hard))
    rows = []
    old = os.environ.get("GORGON_OLD")
    for name, argv in (ws_servers(args.conns, old) if args.websocket else servers(args.conns, old)):
        if args.only and name not in args.only.split(","):
            continue
        port = free_port()
        try:
            r = measure(argv(port), port, args.conns, args.hold, args.fresh, args.websocket)
        except Exception as e:  # noqa: BLE001 - a peer that fails is reported, not fatal
            print("%-22s failed: %s" % (name, e), flush=True)
            continue
        r["server"] = name
        rows.append(r)
        print("%-22s %6.2f KB/conn  RSS %6.1f -> %6.1f MB  fresh p99 %5.2f ms  idle CPU %4.1f%%  "
              "%d/%d still answer" % (name, r["kb_per_conn"], r["rss_before_mb"], r["rss_after_mb"],
                                     r["fresh_p99_ms"], r["idle_cpu_pct"], r["still_answered"], args.conns),
              flush=True)
    out = os.path.join(REPO, "docs", "results", "%s%s.json" % (
        "idle_websockets" if args.websocket else "idle_conns", "_tls" if args.tls else ""))
    with open(out, "w") as f:
        json.dump({"conns": args.conns, "hold_s": args.hold, "tls": args.tls, "python": sys.version.split()[0],
                   "rows": rows}, f, indent=1)
    print("wrote", os.path.relpath(out, REPO))


if __name__ == "__main__":
    main()
