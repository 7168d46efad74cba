#!/usr/bin/env python3
"""What the metrics cost on plaintext: one run of gorgon (2 workers,
bench/apps/hello.py) under wrk, printing its requests per second and the
server's CPU time per request (user + system, from /proc; steadier than the
rate on a machine whose other load comes and goes).

    .venv/bin/python bench/metrics_cost.py --metrics      # --metrics-bind on
    .venv/bin/python bench/metrics_cost.py                # off
    .venv/bin/python bench/metrics_cost.py --checkout DIR # another build (its `make` done)

With --metrics a scraper reads /metrics every second during the run, as
Prometheus would (more often than its usual 15 s). Run the variants in turn,
several times each, and compare the medians (docs/benchmarks.md).
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("gorgon exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("gorgon did not listen on %d" % port)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape_every_second(port, stop):
    while not stop.wait(1.0):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
                while s.recv(65536):
                    pass
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics", action="store_true", help="serve metrics (and scrape them every second)")
    ap.add_argument("--checkout", default=os.path.dirname(HERE), help="the gorgon checkout whose build to run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int, default=5, help="seconds of measured load (after 1 s of warm-up)")
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    port, mport = free_port(), free_port()
    cmd = [sys.executable, "-m", "gorgon", "hello:app", "--bind", "127.0.0.1:%d" % port,
           "--workers", str(args.workers), "--mode", "interpreters", "--log-level", "warning"]
    if args.metrics:
        cmd += ["--metrics-bind", "127.0.0.1:%d" % mport]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([args.checkout, os.path.join(HERE, "apps")]))
    proc = subprocess.Popen(cmd, cwd=args.checkout, env=env, stdin=subprocess.DEVNULL)
    stop = threading.Event()
    try:
        wait_port(port, proc)
        url = "http://127.0.0.1:%d/" % port
        subprocess.run(["wrk", "-t2", "-c%d" % args.connections, "-d1s", url], capture_output=True, check=True)
        scraper = None
        if args.metrics:
            scraper = threading.Thread(target=scrape_every_second, args=(mport, stop), daemon=True)
            scraper.start()
        cpu0 = cpu_seconds(proc.pid)
        out = subprocess.run(["wrk", "-t2", "-c%d" % args.connections, "-d%ds" % args.duration, url],
                             capture_output=True, text=True, check=True).stdout
        cpu = cpu_seconds(proc.pid) - cpu0
        stop.set()
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        n = int(re.search(r"(\d+) requests in", out).group(1))
        print("rps %.0f cpu_us_per_request %.2f" % (rps, cpu / n * 1e6))
    finally:
        stop.set()
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
