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
BENCH_VENV) has them. Writes docs/results/idle_conns.json (idle_conns_tls.json
with --tls; idle_conns_N.json for another --conns).

Every connection is a descriptor in the client and in the server, and one
process may hold no more than its open-file limit: the client raises its soft
limit to the hard one and holds the connections in as many processes as that
takes, each from its own loopback address (127.0.0.2, .3, ...: one address
has about 28,000 ephemeral ports towards one server port), and --procs P runs
every server as P processes of one worker each. For 50,000 connections with a
hard limit of 20,000 a process:

    .venv/bin/python bench/idle_conns.py --conns 50000 --procs 4
"""
import argparse
import json
import multiprocessing
import os
import resource
import shutil
import signal
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


def connect(port, source=None):
    s = socket.create_connection((HOST, port), 10, source_address=(source, 0) if source else None)
    return TLS[2].wrap_socket(s) if TLS else s


def fd_room():
    """Connections one process may hold: its hard open-file limit, less a reserve."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 300


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


def ws_handshake(port, extensions=b"", source=None):
    """A raw client's WebSocket handshake on a new connection to /ws (extra
    header lines in `extensions`, from the address source): the socket, the
    response head, and the bytes that came after it."""
    s = connect(port, source)
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


def holder(pipe, port, n, source, websocket):
    """A client process: opens n connections from the address source, one
    after another, says how many it has; on "check" says how many still
    answer; closes them all when the pipe ends."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    held = []
    try:
        for _ in range(n):
            if websocket:
                s = ws_handshake(port, source=source)[0]
                ws_echo(s)
            else:
                s = connect(port, source)
                request(s, "/")
            held.append(s)
        pipe.send(len(held))
    except (OSError, RuntimeError) as e:
        pipe.send("%d opened, then: %s" % (len(held), e))
        return
    if pipe.recv() == "check":
        alive = 0
        for s in held:  # every held connection still answers
            try:
                ws_echo(s) if websocket else request(s, "/")
                alive += 1
            except (OSError, RuntimeError):
                pass
        pipe.send(alive)
        pipe.recv()


def open_held(port, conns, websocket):
    """The held connections, in client processes of at most fd_room() each,
    opened one process after another: [(process, pipe)]."""
    ctx = multiprocessing.get_context("fork")
    shards, left, k = [], conns, 0
    while left > 0:
        n = min(left, fd_room())
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=holder, args=(theirs, port, n, "127.0.0.%d" % (k + 2), websocket))
        proc.start()
        shards.append((proc, mine))
        got = mine.recv()
        if got != n:
            raise RuntimeError("client process %d: %s" % (k, got))
        left -= n
        k += 1
    return shards


def close_held(shards):
    for proc, pipe in shards:
        pipe.close()
        proc.join(30)
        if proc.is_alive():
            proc.kill()


def measure(argv, port, conns, hold, fresh, websocket=False):
    p = start(argv, port)
    shards = []
    try:
        fresh_latencies(port, 50)  # warm-up: imports, first allocations
        time.sleep(1)
        before = rss_kb(p.pid)
        shards = open_held(port, conns, websocket)
        time.sleep(2)
        after = rss_kb(p.pid)
        lat = fresh_latencies(port, fresh)
        c0, t0 = cpu_s(p.pid), time.monotonic()
        time.sleep(hold)
        idle_cpu = (cpu_s(p.pid) - c0) / (time.monotonic() - t0)
        for _, pipe in shards:
            pipe.send("check")
        alive = sum(pipe.recv() for _, pipe in shards)
        return {"kb_per_conn": (after - before) / conns, "rss_before_mb": before / 1024,
                "rss_after_mb": after / 1024, "fresh_p99_ms": p99(lat) * 1000,
                "fresh_median_ms": statistics.median(lat) * 1000, "idle_cpu_pct": idle_cpu * 100,
                "still_answered": alive}
    finally:
        close_held(shards)
        stop(p)


def nginx_argv(port, conns, procs=2):
    d = tempfile.mkdtemp(prefix="idle-nginx-")
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    conf = os.path.join(d, "nginx.conf")
    tls_lines = "ssl_certificate %s; ssl_certificate_key %s;" % TLS[:2] if TLS else ""
    with open(conf, "w") as f:
        f.write(f"""{user}
worker_processes {procs}; worker_rlimit_nofile {min(conns + 1000, fd_room() + 300)}; daemon off;
pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections {min(conns + 1000, fd_room())}; }}
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


def servers(conns, old, procs=None):
    """With procs, every server runs as that many processes (gorgon: of one
    interpreter each); else each has 2 workers (gorgon: in one process)."""
    w = procs or 2
    if procs:
        # One SO_REUSEPORT socket each: the kernel spreads the connections
        # over the processes by their addresses' hash. On one shared socket
        # the same idle process is woken for each, and passes them on to
        # the others only once it is at its bound.
        layout = ["--processes", str(procs), "--workers", "1", "--reuse-port"]
        per_worker = min(fd_room(), conns + 500)
    else:
        layout = ["--workers", "2"]
        per_worker = conns // 2 + 500
    g = ["hello:app", *layout, "--mode", "interpreters", "--keep-alive", "600",
         "--max-connections", str(per_worker), "--log-level", "warning", *tls_flags("--certfile", "--keyfile")]
    yield "gorgon", lambda port: [PY, "-m", "gorgon", *g, "--bind", f"{HOST}:{port}"]
    if old:
        yield "gorgon (%s)" % os.path.basename(old.rstrip("/")), \
            lambda port: [PY, "-P", "-c", "import sys; sys.path.insert(0, %r); import runpy; "
                          "runpy.run_module('gorgon', run_name='__main__')" % old,
                          *g, "--bind", f"{HOST}:{port}"]
    yield "nginx", lambda port: nginx_argv(port, conns, w)
    bb = lambda name: os.path.join(BENCH_BIN, name)  # noqa: E731
    if os.path.exists(bb("gunicorn")):
        yield "gunicorn gthread", lambda port: [bb("gunicorn"), "-w", str(w), "-k", "gthread", "--threads", "4",
                                                "--worker-connections", str(conns + 1000), "--keep-alive", "600",
                                                "-b", f"{HOST}:{port}", *tls_flags("--certfile", "--keyfile"),
                                                "hello:app"]
    if os.path.exists(bb("uvicorn")):
        yield "uvicorn", lambda port: [bb("uvicorn"), "--workers", str(w), "--timeout-keep-alive", "600",
                                       "--log-level", "warning", "--host", HOST, "--port", str(port),
                                       *tls_flags("--ssl-certfile", "--ssl-keyfile"), "plain_asgi:app"]
    if os.path.exists(bb("granian")):
        # granian closes a keep-alive connection that sends no new request
        # within its header read timeout, 60 s at most (30 by default).
        yield "granian WSGI", lambda port: [bb("granian"), "--interface", "wsgi", "--workers", str(w),
                                            "--backpressure", str(conns + 1000), "--http1-header-read-timeout",
                                            "60000", "--host", HOST,
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
    ap.add_argument("--bound", type=float, default=900, help="seconds one server's measurement may take "
                    "(then it is reported as failed)")
    ap.add_argument("--procs", type=int, help="run every server as this many processes (gorgon: --processes "
                    "N --workers 1), for more connections than one process's open-file limit allows")
    args = ap.parse_args()
    global TLS

    def took_too_long(*_):
        raise TimeoutError("took more than --bound %g s" % args.bound)
    signal.signal(signal.SIGALRM, took_too_long)
    if args.tls:
        TLS = make_tls()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    per_server_proc = args.conns / (args.procs or 1)
    if per_server_proc > fd_room():
        sys.exit("--conns %d: more than %d connections in one server process (its hard open-file limit, %d, "
                 "less a reserve); give --procs" % (args.conns, fd_room(), hard))
    rows = []
    old = os.environ.get("GORGON_OLD")
    for name, argv in (ws_servers(args.conns, old) if args.websocket else servers(args.conns, old, args.procs)):
        if args.only and name not in args.only.split(","):
            continue
        port = free_port()
        signal.alarm(int(args.bound))
        try:
            r = measure(argv(port), port, args.conns, args.hold, args.fresh, args.websocket)
        except Exception as e:  # noqa: BLE001 - a peer that fails is reported, not fatal
            print("%-22s failed: %s" % (name, e), flush=True)
            continue
        finally:
            signal.alarm(0)
        r["server"] = name
        rows.append(r)
        print("%-22s %6.2f KB/conn  RSS %6.1f -> %6.1f MB  fresh p99 %5.2f ms  idle CPU %4.1f%%  "
              "%d/%d still answer" % (name, r["kb_per_conn"], r["rss_before_mb"], r["rss_after_mb"],
                                     r["fresh_p99_ms"], r["idle_cpu_pct"], r["still_answered"], args.conns),
              flush=True)
    out = os.path.join(REPO, "docs", "results", "%s%s%s.json" % (
        "idle_websockets" if args.websocket else "idle_conns", "_tls" if args.tls else "",
        "" if args.conns == 10000 else "_%d" % args.conns))
    if args.only and os.path.exists(out):  # the other servers' rows of an earlier run stay
        with open(out) as f:
            ran = {r["server"] for r in rows}
            rows = [r for r in json.load(f)["rows"] if r["server"] not in ran] + rows
    with open(out, "w") as f:
        json.dump({"conns": args.conns, "hold_s": args.hold, "tls": args.tls, "procs": args.procs,
                   "python": sys.version.split()[0], "nofile_hard": hard, "rows": rows}, f, indent=1)
    print("wrote", os.path.relpath(out, REPO))


if __name__ == "__main__":
    main()
