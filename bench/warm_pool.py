#!/usr/bin/env python3
"""The warm-pool pattern: N keep-alive connections opened and used once while
the server is idle (as a proxy's upstream pool or a client session does), then
one CPU-bound request on every one of them at once. Wall time of that burst
for 1 and 2 workers, both servers up side by side and their bursts taken in
turn, R rounds; the speed-up is the median 1-worker time over the median
2-worker time, and beside it the median of the R pairs' ratios (which a
drift of the machine's speed during the run does not bias). A
server whose work follows idle workers is ~2x faster with 2; one that keeps
work where the connection landed is not. Also through Debian's nginx with `keepalive 4` upstream.

    .venv/bin/python bench/warm_pool.py [--rounds 5] [--conns 8] [--digits 2500]

Peers (gunicorn sync/gthread, granian) run when .venv-bench has them
(bench/setup-venv). Prints one table and writes docs/results/warm_pool.json.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(REPO, "bench", "apps")
PY = sys.executable
# Absolute: the servers start in bench/apps.
BENCH_BIN = os.path.join(os.path.abspath(os.environ.get("BENCH_VENV") or os.path.join(REPO, ".venv-bench")), "bin")
HOST = "127.0.0.1"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen on %d" % port)


def request(sock, path):
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("closed")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    fields = dict(l.split(b":", 1) for l in head.split(b"\r\n")[1:])
    fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
    if fields.get(b"transfer-encoding") == b"chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            rest += sock.recv(65536)
    else:
        n = int(fields.get(b"content-length", b"0"))
        while len(rest) < n:
            rest += sock.recv(65536)
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError("status %d" % status)


def burst(port, conns, digits):
    socks = [socket.create_connection((HOST, port), 10) for _ in range(conns)]
    try:
        for s in socks:
            request(s, "/?digits=10")
        time.sleep(0.3)
        errors = []

        def run(s):
            try:
                request(s, "/?digits=%d" % digits)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=run, args=(s,)) for s in socks]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError("errors: %r" % errors[:3])
        return time.monotonic() - t0
    finally:
        for s in socks:
            s.close()


def start(argv, port, env=None, cwd=APPS):
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, APPS]))
    e.update(env or {})
    p = subprocess.Popen(argv, cwd=cwd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    wait_port(port, p)
    return p


def stop(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def nginx_front(upstream_port):
    port = free_port()
    d = tempfile.mkdtemp(prefix="warm-nginx-")
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""{user}
worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
    uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
    upstream app {{ server {HOST}:{upstream_port}; keepalive 4; }}
    server {{
        listen {HOST}:{port};
        location / {{ proxy_pass http://app; proxy_http_version 1.1;
                     proxy_set_header Connection ""; proxy_read_timeout 60s; }}
    }}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    p = subprocess.Popen([nginx, "-p", d, "-e", d + "/error.log", "-c", conf], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port(port, p)
    return p, port


def servers(have_peers):
    """(name, interface, workers -> argv builder taking port)."""
    g = [PY, "-m", "gorgon"]
    yield "gorgon WSGI", lambda w, port: g + ["cpu:app", "--bind", f"{HOST}:{port}", "--workers", str(w),
                                              "--mode", "interpreters", "--log-level", "warning"]
    yield "gorgon WSGI --reuse-port", lambda w, port: g + ["cpu:app", "--bind", f"{HOST}:{port}", "--workers",
                                                           str(w), "--mode", "interpreters", "--reuse-port",
                                                           "--log-level", "warning"]
    yield "gorgon ASGI", lambda w, port: g + ["cpu_asgi:app", "--bind", f"{HOST}:{port}", "--workers", str(w),
                                              "--mode", "interpreters", "--log-level", "warning"]
    yield "gorgon ASGI --reuse-port", lambda w, port: g + ["cpu_asgi:app", "--bind", f"{HOST}:{port}", "--workers",
                                                           str(w), "--mode", "interpreters", "--reuse-port",
                                                           "--log-level", "warning"]
    if not have_peers:
        return
    gu = os.path.join(BENCH_BIN, "gunicorn")
    yield "gunicorn sync", lambda w, port: [gu, "-w", str(w), "-b", f"{HOST}:{port}", "cpu:app"]
    yield "gunicorn gthread", lambda w, port: [gu, "-w", str(w), "-k", "gthread", "--threads", "4", "-b",
                                               f"{HOST}:{port}", "cpu:app"]
    gr = os.path.join(BENCH_BIN, "granian")
    yield "granian WSGI", lambda w, port: [gr, "--interface", "wsgi", "--workers", str(w), "--host", HOST,
                                           "--port", str(port), "cpu:app"]


def serve(build, workers, front):
    """A server (and its nginx front): (processes to stop, port to use)."""
    port = free_port()
    procs = [start(build(workers, port), port)]
    if front:
        fp, port = nginx_front(port)
        procs.append(fp)
    return procs, port


def measure(build, rounds, conns, digits, front):
    """1 and 2 workers side by side, their bursts in turn, so that a drift of
    the machine's speed (a shared host) falls on both alike: lists of the
    1-worker times, the 2-worker times and each pair's ratio."""
    one_procs, one_port = serve(build, 1, front)
    two_procs, two_port = [], None
    try:
        two_procs, two_port = serve(build, 2, front)
        for port in (one_port, two_port):
            burst(port, conns, 10)  # warm-up: imports, first allocations
        ones, twos = [], []
        for _ in range(rounds):
            ones.append(burst(one_port, conns, digits))
            twos.append(burst(two_port, conns, digits))
        return ones, twos, [a / b for a, b in zip(ones, twos)]
    finally:
        for p in reversed(one_procs + two_procs):
            stop(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--digits", type=int, default=2500, help="pi digits per request (CPU per request)")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--only", metavar="TEXT", help="only the rows whose label contains TEXT (results not written)")
    args = ap.parse_args()
    have_peers = not args.no_peers and os.path.exists(os.path.join(BENCH_BIN, "gunicorn"))
    rows = []
    for name, build in servers(have_peers):
        for front in (False, True):
            if front and ("reuse-port" in name):
                continue
            label = name + (" behind nginx (keepalive 4)" if front else "")
            if args.only and args.only not in label:
                continue
            try:
                ones, twos, ratios = measure(build, args.rounds, args.conns, args.digits, front)
            except Exception as e:  # noqa: BLE001 - a peer that fails is reported, not fatal
                print("%-48s failed: %s" % (label, e), flush=True)
                continue
            one, two, speedup = statistics.median(ones), statistics.median(twos), statistics.median(ratios)
            rows.append({"server": label, "one_worker_s": one, "two_workers_s": two, "speedup": speedup,
                         "speedup_of_medians": one / two, "speedup_min": min(ratios), "speedup_max": max(ratios)})
            print("%-48s 1 worker %6.2f s   2 workers %6.2f s   x%.2f (median of pairs x%.2f, pairs x%.2f-x%.2f)"
                  % (label, one, two, one / two, speedup, min(ratios), max(ratios)), flush=True)
    if args.only:
        return
    out = os.path.join(REPO, "docs", "results", "warm_pool.json")
    with open(out, "w") as f:
        json.dump({"conns": args.conns, "digits": args.digits, "rounds": args.rounds,
                   "python": sys.version.split()[0], "rows": rows}, f, indent=1)
    print("wrote", os.path.relpath(out, REPO))


if __name__ == "__main__":
    main()
