#!/usr/bin/env python3
"""Reload under load: a bounded load of plain requests (4 clients on
keep-alive connections, 4 opening a new connection for each request) runs
against a server with 2 workers; the application's source changes on disk
and the server gets SIGHUP, `--rounds` times. For each server: requests
answered, requests failed (refused or reset connections, 5xx, no answer in
5 s, a connection closed before a complete answer; a reused keep-alive
connection closed before any answer byte is the race HTTP clients retry,
counted apart), how long after the signal the new code first answered and the old
one last answered, and the p99 and worst latency from the signal to the
last old answer plus 0.5 s.

gorgon in one process (interpreters), with 2 worker processes, and under
ASGI; and, when .venv-bench has them (bench/setup-venv), gunicorn (sync and
gthread: HUP starts new workers and stops the old ones gracefully), uvicorn
(`--workers 2`: SIGHUP restarts its worker processes) and granian
(`--workers 2`: SIGHUP respawns its workers).

    .venv/bin/python bench/reload.py [--rounds 3] [--only gorgon,gunicorn]

Writes docs/results/reload.json.
"""
import argparse
import json
import os
import select
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from warm_pool import BENCH_BIN, HOST, PY, REPO, free_port, start, stop  # noqa: E402

WSGI = '''VERSION = b"{v}"


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(VERSION)))])
    return [VERSION]
'''
ASGI = '''VERSION = b"{v}"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(VERSION))]}})
    await send({{"type": "http.response.body", "body": VERSION}})
'''


def servers():
    """(name, template, argv builder taking port)."""
    g = [PY, "-m", "gorgon", "reloadable:app", "--workers", "2", "--log-level", "warning"]
    yield "gorgon WSGI (interpreters)", WSGI, lambda port: g + ["--bind", f"{HOST}:{port}"]
    g1 = [PY, "-m", "gorgon", "reloadable:app", "--workers", "1", "--log-level", "warning"]
    yield "gorgon WSGI (2 processes)", WSGI, lambda port: g1 + ["--processes", "2", "--bind", f"{HOST}:{port}"]
    yield "gorgon ASGI (interpreters)", ASGI, lambda port: g + ["--bind", f"{HOST}:{port}"]
    b = BENCH_BIN
    if os.path.exists(os.path.join(b, "gunicorn")):
        gu = [os.path.join(b, "gunicorn"), "-w", "2", "--log-level", "warning", "reloadable:app"]
        yield "gunicorn sync", WSGI, lambda port: gu + ["-b", f"{HOST}:{port}"]
        yield "gunicorn gthread", WSGI, lambda port: gu + ["-k", "gthread", "--threads", "4", "-b", f"{HOST}:{port}"]
    if os.path.exists(os.path.join(b, "uvicorn")):
        yield "uvicorn", ASGI, lambda port: [os.path.join(b, "uvicorn"), "reloadable:app", "--workers", "2",
                                             "--log-level", "warning", "--host", HOST, "--port", str(port)]
    if os.path.exists(os.path.join(b, "granian")):
        yield "granian WSGI", WSGI, lambda port: [os.path.join(b, "granian"), "--interface", "wsgi", "--workers",
                                                  "2", "--host", HOST, "--port", str(port), "reloadable:app"]


class IdleClose(Exception):
    """End-of-stream before any answer byte on a reused keep-alive connection:
    the keep-alive race HTTP clients retry (RFC 9112, 9.3.1), not a failure."""


def peer_closed(sock):
    """What a pooling client checks before reusing a connection."""
    r, _, _ = select.select([sock], [], [], 0)
    return bool(r) and sock.recv(1, socket.MSG_PEEK) == b""


def one_request(sock, port):
    """(sock to reuse or None, version or an error kind, seconds)."""
    t0 = time.perf_counter()
    reused = sock is not None
    try:
        s = sock or socket.create_connection((HOST, port), 5)
        s.settimeout(5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + (b"" if reused else b"Connection: close\r\n") + b"\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise IdleClose() if reused and not buf else EOFError("closed before the answer")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise EOFError("closed in the body")
            body += chunk
        status = int(head.split()[1])
        keep = reused and b"connection: close" not in head.lower()
        if not keep:
            s.close()
        return (s if keep else None), (body if status == 200 else "status %d" % status), time.perf_counter() - t0
    except (OSError, ValueError, IndexError, EOFError, IdleClose) as e:
        if sock:
            sock.close()
        return None, type(e).__name__, time.perf_counter() - t0


def client(port, keep, stop, log):
    sock = None
    while not stop.is_set():
        if keep and sock is not None and peer_closed(sock):
            sock.close()
            sock = None
        if keep and sock is None:
            try:
                sock = socket.create_connection((HOST, port), 5)
            except OSError as e:
                log.append((time.monotonic(), type(e).__name__, 0.0))
                time.sleep(0.01)
                continue
        sock, what, took = one_request(sock if keep else None, port)  # None: reconnect next
        log.append((time.monotonic(), what, took))


def measure(template, build, rounds):
    d = tempfile.mkdtemp(prefix="gorgon-reload-")
    path = os.path.join(d, "reloadable.py")
    with open(path, "w") as f:
        f.write(template.format(v="v0"))
    port = free_port()
    p = start(build(port), port, env={"PYTHONPATH": os.pathsep.join([REPO, d])}, cwd=d)
    stop_ev = threading.Event()
    log = []
    threads = [threading.Thread(target=client, args=(port, keep, stop_ev, log), daemon=True)
               for keep in (True,) * 4 + (False,) * 4]
    rows = []
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        for r in range(1, rounds + 1):
            old, new = b"v%d" % (r - 1), b"v%d" % r
            with open(path, "w") as f:
                f.write(template.format(v=new.decode()))
            hup = time.monotonic()
            start_at = len(log)
            p.send_signal(signal.SIGHUP)
            # until only the new version answers for 1 s, at most 20 s
            end = hup + 20
            while time.monotonic() < end:
                time.sleep(0.2)
                recent = [w for t, w, _ in log[start_at:] if t > time.monotonic() - 1.0]
                if recent and time.monotonic() - hup > 1.5 and all(w == new for w in recent):
                    break
            window = log[start_at:]
            first_new = min((t for t, w, _ in window if w == new), default=None)
            last_old = max((t for t, w, _ in window if w == old), default=hup)
            lat = sorted(took for t, w, took in window if isinstance(w, bytes) and t <= last_old + 0.5)
            fails = [w for _, w, _ in window if not isinstance(w, bytes) and w != "IdleClose"]
            rows.append({
                "answered": sum(isinstance(w, bytes) for _, w, _ in window),
                "failed": len(fails),
                "failures": sorted(set(fails)),
                "idle_closed": sum(w == "IdleClose" for _, w, _ in window),
                "first_new_s": None if first_new is None else round(first_new - hup, 3),
                "last_old_s": round(last_old - hup, 3),
                "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2) if lat else None,
                "max_ms": round(lat[-1] * 1000, 2) if lat else None,
            })
    finally:
        stop_ev.set()
        for t in threads:
            t.join(10)
        stop(p)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", help="comma list of name prefixes")
    args = ap.parse_args()
    only = [x.strip() for x in args.only.split(",")] if args.only else None
    results = {}
    for name, template, build in servers():
        if only and not any(name.startswith(o) for o in only):
            continue
        rows = measure(template, build, args.rounds)
        results[name] = rows
        switch = [r["first_new_s"] for r in rows if r["first_new_s"] is not None]
        p99 = [r["p99_ms"] for r in rows if r["p99_ms"] is not None]
        print("%-28s answered %6d  failed %4d %-24s idle-closed %4d  new after %s  old until %.2f s  "
              "p99 %s ms  max %s ms" % (
                  name, sum(r["answered"] for r in rows), sum(r["failed"] for r in rows),
                  ",".join(sorted({f for r in rows for f in r["failures"]})) or "-",
                  sum(r["idle_closed"] for r in rows),
                  "%.2f s" % statistics.median(switch) if switch else "never",
                  statistics.median(r["last_old_s"] for r in rows),
                  "%.1f" % statistics.median(p99) if p99 else "-",
                  max((r["max_ms"] for r in rows if r["max_ms"] is not None), default="-")), flush=True)
    out = os.path.join(REPO, "docs", "results", "reload.json")
    with open(out, "w") as f:
        json.dump({"rounds": args.rounds, "results": results}, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
