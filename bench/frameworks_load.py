#!/usr/bin/env python3
"""Real frameworks under load: 10,000 requests at concurrency
20 against a Flask app and a FastAPI app, with 2, 4 and 10 workers, each in
the mode --mode auto picks (Flask: interpreters; FastAPI: processes, since
pydantic_core refuses sub-interpreters), plus Flask forced into processes for
comparison. Every run must end with zero failed requests.

    scripts/frameworks-env && make && .venv-frameworks/bin/python bench/frameworks_load.py

The apps are the framework tier's (tests/frameworks/apps): Flask renders a
Jinja template (GET /?name=bench), FastAPI validates path and query
parameters with pydantic and answers JSON (GET /items/5?q=bench). The load
generator is h2load (Debian's nghttp2-client) in HTTP/1.1 mode, keep-alive,
20 connections. Not part of `make test`: a benchmark, not a check.
Results: bench/results/frameworks-<timestamp>.json (+ .md) and a table on stdout.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FW_APPS = os.path.join(ROOT, "tests", "frameworks", "apps")
RESULTS = os.path.join(ROOT, "bench", "results")
BAD_LOG = re.compile(r"\[(ERROR|CRITICAL)\]|Traceback|Fatal Python error|Segmentation fault")

CASES = [  # (name, app, path, mode or None for auto)
    ("flask", "fw_flask:app", "/?name=bench", None),
    ("flask", "fw_flask:app", "/?name=bench", "processes"),
    ("fastapi", "fw_fastapi:app", "/items/5?q=bench", None),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc, log_path, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path) as f:
            text = f.read()
        # "Listening at" comes once the first worker serves; load waits for all of them.
        if "Listening at:" in text and re.search(r"\d+ workers ready in|\d+ worker processes ready", text):
            return text
        if proc.poll() is not None:
            raise SystemExit("server exited before listening:\n" + text)
        time.sleep(0.05)
    raise SystemExit("server not listening after %ds" % timeout)


def h2load(url, n, c):
    out = subprocess.run(["h2load", "--h1", "-n", str(n), "-c", str(c), url],
                         capture_output=True, text=True, timeout=600).stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    rps = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if not (m and rps and codes):
        raise SystemExit("cannot parse h2load's output:\n" + out)
    total, _, done, ok, failed, errored, timeouts = map(int, m.groups())
    return {"requests": total, "done": done, "succeeded": ok, "failed": failed, "errored": errored,
            "timeout": timeouts, "status_2xx": int(codes.group(1)), "non_2xx": sum(map(int, codes.groups()[1:])),
            "req_per_s": float(rps.group(3)),
            "latency_mean": lat.group(3) if lat else None, "latency_max": lat.group(2) if lat else None}


def run_case(name, app, path, mode, workers, n, c, logdir):
    port = free_port()
    log_path = os.path.join(logdir, "%s-%s-%d.log" % (name, mode or "auto", workers))
    args = [sys.executable, "-m", "gorgon", app, "--bind", "127.0.0.1:%d" % port, "--workers", str(workers),
            "--pythonpath", FW_APPS, "--log-level", "info"]
    if mode:
        args += ["--mode", mode]
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        text = wait_listening(proc, log_path)
        chosen = re.search(r"\] mode (\w+):", text).group(1)
        url = "http://127.0.0.1:%d%s" % (port, path)
        h2load(url, 500, c)  # warm-up: imports, caches, first connections
        result = h2load(url, n, c)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "killed"
    with open(log_path) as f:
        bad = [l for l in f.read().splitlines() if BAD_LOG.search(l)]
    result.update({"framework": name, "app": app, "path": path, "mode_asked": mode or "auto",
                   "mode": chosen, "workers": workers, "exit_code": rc, "bad_log_lines": bad[:5]})
    return result


def table(results):
    lines = ["| framework | mode (asked) | workers | req/s | failed | errored | non-2xx | mean latency |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append("| %s | %s (%s) | %d | %.0f | %d | %d | %d | %s |" % (
            r["framework"], r["mode"], r["mode_asked"], r["workers"], r["req_per_s"], r["failed"],
            r["errored"], r["non_2xx"], r["latency_mean"]))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=10000, help="requests per run")
    p.add_argument("-c", type=int, default=20, help="concurrent connections")
    p.add_argument("--workers", default="2,4,10", help="comma-separated worker counts")
    a = p.parse_args()
    if shutil.which("h2load") is None:
        raise SystemExit("h2load not found: apt-get install nghttp2-client (scripts/bootstrap does)")
    results = []
    with tempfile.TemporaryDirectory(prefix="gorgon-fwload-") as logdir:
        for name, app, path, mode in CASES:
            for w in [int(x) for x in a.workers.split(",")]:
                r = run_case(name, app, path, mode, w, a.n, a.c, logdir)
                results.append(r)
                print("%-8s %-12s (%-9s) w=%-2d %8.0f req/s  failed=%d errored=%d non-2xx=%d exit=%s" % (
                    name, r["mode"], r["mode_asked"], w, r["req_per_s"], r["failed"], r["errored"],
                    r["non_2xx"], r["exit_code"]), flush=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    os.makedirs(RESULTS, exist_ok=True)
    meta = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "n": a.n, "c": a.c,
            "load_generator": "h2load --h1"}
    base = os.path.join(RESULTS, "frameworks-%s" % stamp)
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    md = "# frameworks load, %s\n\n%s\n\n%s\n" % (stamp, json.dumps(meta), table(results))
    with open(base + ".md", "w") as f:
        f.write(md)
    print("\n" + table(results) + "\n\nresults: %s.json" % base)
    bad = [r for r in results if r["failed"] or r["errored"] or r["non_2xx"] or r["succeeded"] != a.n
           or r["exit_code"] != 0 or r["bad_log_lines"]]
    if bad:
        raise SystemExit("%d run(s) with failed requests, a bad exit or errors in the log: %s" % (
            len(bad), [(r["framework"], r["mode"], r["workers"], r["bad_log_lines"]) for r in bad]))


if __name__ == "__main__":
    main()
