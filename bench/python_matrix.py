#!/usr/bin/env python3
"""gorgon on the Python that runs this script, in each execution mode.

    python bench/python_matrix.py [--rounds 3] [--modes interpreters,processes,threads]

Run from the checkout, with the extension built in place for this Python
(`make PYTHON=...`) and Flask importable (the test venv has it); h2load
(Debian's nghttp2-client) on PATH. bench/python-versions runs it on every
CPython the test tiers use, inside each Debian root for theirs.

For each mode (the server is `python -m gorgon` with this Python, on loopback):
  plaintext  bench/apps/hello.py, 2 workers: a 2,000-request warm-up, then
             ROUNDS rounds of `h2load --h1 -t 1 -c 32 -n 20000`; req/s, median.
  cpu        bench/apps/cpu.py (pi to 1,000 digits): one server with 1 worker
             and one with 2, side by side; each round loads one then the other
             with `h2load --h1 -t 1 -c 4 -n 40`; the speed-up is the median of
             the rounds' 2-worker / 1-worker req/s.
  flask      bench/apps/flask_app.py, 4 workers: 1,000 requests (8
             connections), then the PSS of every process of the server,
             summed (/proc/PID/smaps_rollup). Measured once: it moves little.
Prints progress on stderr and, last on stdout, one JSON object.

    python bench/python_matrix.py --table RESULTS.json [--not-built 'LABEL: REASON']

prints the markdown table of docs/benchmarks.md from a list of those objects,
with one line for each Python that could not be measured.
"""

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time

from idle_conns import tree_pids
from warm_pool import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(ROOT, "bench", "apps")


def log(msg):
    print("python_matrix: " + msg, file=sys.stderr, flush=True)


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def get_status(port, path):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
        m = re.match(rb"HTTP/1\.1 (\d+)", head)
        return int(m.group(1)) if m else None
    except OSError:
        return None


class Server:
    def __init__(self, app, mode, workers, path="/"):
        self.port = free_port()
        self.path = path
        env = dict(os.environ, PYTHONPATH=ROOT)
        cmd = [sys.executable, "-m", "gorgon", app, "--mode", mode, "--workers", str(workers),
               "--bind", "127.0.0.1:%d" % self.port, "--log-level", "warning", "--pythonpath", APPS]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
        deadline = time.monotonic() + 60
        while get_status(self.port, path) != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("python_matrix: %s did not start (%s)" % (" ".join(cmd), self.proc.poll()))
            time.sleep(0.1)

    def url(self, path=None):
        return "http://127.0.0.1:%d%s" % (self.port, path or self.path)

    def pss_kb(self):
        """PSS of the server and every process below it, summed."""
        pids = tree_pids(self.proc.pid)
        total = 0
        for pid in pids:
            try:
                with open("/proc/%d/smaps_rollup" % pid) as f:
                    total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
            except OSError:
                pass
        return total, len(pids)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def h2load(url, n, conns):
    """h2load --h1's req/s; fails loudly on any error or non-2xx."""
    out = subprocess.run([os.environ.get("H2LOAD", "h2load"), "--h1", "-t", "1", "-c", str(conns), "-n", str(n), url],
                         capture_output=True, text=True, check=True).stdout
    rps = re.search(r"finished in [^,]+, ([\d.]+) req/s", out)
    ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    if not (rps and ok and codes) or int(ok.group(1)) != n or int(codes.group(1)) != n:
        raise SystemExit("python_matrix: h2load on %s: not %d clean 2xx answers:\n%s" % (url, n, out))
    return float(rps.group(1))


def plaintext(mode, rounds):
    srv = Server("hello:app", mode, 2)
    try:
        h2load(srv.url(), 2000, 32)
        runs = [h2load(srv.url(), 20000, 32) for _ in range(rounds)]
    finally:
        srv.stop()
    log("%s plaintext req/s %s" % (mode, [round(r) for r in runs]))
    return {"req_s": median(runs), "runs": runs}


def cpu(mode, rounds):
    path = "/?digits=1000"
    one = Server("cpu:app", mode, 1, path)
    try:
        two = Server("cpu:app", mode, 2, path)
        try:
            for s in (one, two):
                h2load(s.url(), 8, 4)
            runs = []
            for _ in range(rounds):
                a = h2load(one.url(), 40, 4)
                b = h2load(two.url(), 40, 4)
                runs.append({"w1": a, "w2": b, "speedup": b / a})
        finally:
            two.stop()
    finally:
        one.stop()
    log("%s cpu speed-up %s" % (mode, [round(r["speedup"], 2) for r in runs]))
    return {"speedup": median([r["speedup"] for r in runs]), "w1_req_s": median([r["w1"] for r in runs]),
            "w2_req_s": median([r["w2"] for r in runs]), "runs": runs}


def flask_pss(mode):
    srv = Server("flask_app:app", mode, 4)
    try:
        h2load(srv.url(), 1000, 8)
        time.sleep(0.5)
        kb, procs = srv.pss_kb()
    finally:
        srv.stop()
    log("%s Flask 4 workers: PSS %.1f MB in %d process(es)" % (mode, kb / 1024, procs))
    return {"pss_mb": kb / 1024, "processes": procs}


def table(results, not_built):
    out = ["| Python | mode | plaintext req/s, 2 workers (rounds) | CPU: 2 workers / 1 (rounds) "
           "| Flask, 4 workers: PSS MB (processes) |", "|---|---|---:|---:|---:|"]
    for r in results:
        for mode, m in r["modes"].items():
            pt, cp, fl = m["plaintext"], m["cpu"], m["flask"]
            out.append("| %s | %s | %s (%s) | %.2fx (%s) | %.1f (%d) |" % (
                r["python"], mode, format(round(pt["req_s"]), ","),
                ", ".join(format(round(x), ",") for x in pt["runs"]), cp["speedup"],
                ", ".join("%.2f" % x["speedup"] for x in cp["runs"]), fl["pss_mb"], fl["processes"]))
    for line in not_built:
        label, _, reason = line.partition(": ")
        out.append("| %s | threads, interpreters, processes | not built: %s | | |" % (label, reason))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="interpreters,processes,threads")
    ap.add_argument("--table", metavar="RESULTS.json")
    ap.add_argument("--not-built", action="append", default=[], metavar="LABEL: REASON")
    args = ap.parse_args()
    if args.table:
        with open(args.table) as f:
            print(table(json.load(f), args.not_built))
        return
    if shutil.which(os.environ.get("H2LOAD", "h2load")) is None:
        raise SystemExit("python_matrix: no h2load on PATH (Debian's nghttp2-client)")
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    res = {"python": platform.python_version() + ("t" if free_threaded else ""),
           "executable": os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(ROOT + "/")
           else sys.executable, "free_threaded": free_threaded, "rounds": args.rounds,
           "loadavg_before": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "modes": {}}
    t0 = time.monotonic()
    for mode in args.modes.split(","):
        res["modes"][mode] = {"plaintext": plaintext(mode, args.rounds), "cpu": cpu(mode, args.rounds),
                              "flask": flask_pss(mode)}
    res["loadavg_after"] = os.getloadavg()
    res["seconds"] = round(time.monotonic() - t0)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
