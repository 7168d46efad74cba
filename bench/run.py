#!/usr/bin/env python3
"""gorgon against its peers, same apps, same Python, same machine, one run.

`make bench` (full: worker counts 1 and 2, 3 interleaved repetitions of an
8 s run after a 2 s warm-up, about an hour) and `make bench-quick` (2 workers,
one 2 s run per cell, under 3 minutes) run `.venv/bin/python bench/run.py
[--quick]`. Only the standard library is used here; the peers, Flask and
matplotlib come from .venv-bench, made by bench/setup-venv (called first,
idempotent). gorgon runs from that venv's python with the gorgon package on
PYTHONPATH (it is not installed there), so it serves apps that import Flask.
The package is copied at start from the in-place build (`make`) into a
temporary directory, so a rebuild during the run does not change what is
measured; `--gorgon-rev REV` instead exports that git revision (git archive),
builds it there with make and measures it, for results tied to a commit.

Sections:
  peers      (the default) every workload -- plaintext and JSON, each WSGI and
             ASGI; pi to --peer-pi-digits (300) digits; a Flask template page
             -- against gorgon (interpreters, --mode processes, --mode threads)
             and each peer speaking that interface: granian (wsgi, with its
             defaults and tuned; asgi), gunicorn sync and gthread, uWSGI
             (--http11-socket --die-on-term), uvicorn (uvloop+httptools),
             hypercorn; nginx `return 200` as the plaintext ceiling. Each
             worker count of --peer-workers for every server. A cell starts
             the server on the run's one port, times launch to first 200,
             checks that concurrent keep-alive connections all get answered
             (fairness probe), warms up, measures with wrk, reads the PSS of
             all the server's processes, and stops it.
  core       gorgon's own measurements, the five sections below:
  plaintext  hello WSGI, wrk -t2 -c64: gorgon -w2, nginx `return 200` (2 worker
             processes, the ceiling), gunicorn sync -w2, gunicorn gthread -w2 --threads 4
  accept     gorgon --reuse-port (socket per worker) vs --no-reuse-port (one
             socket, EPOLLEXCLUSIVE): req/s and requests/connections per worker
  cpu        pure-Python pi digits, wrk -t2 -c4: gorgon -w1 vs -w2 (both accept
             modes, with the per-worker split) and gunicorn -w2
  memory     Flask + Jinja page, 1000 requests, then PSS summed over the server's
             processes: gorgon -w4, gunicorn -w4, gunicorn --preload -w4
  startup    launch to first 200, Flask app: gorgon -w4 vs gunicorn -w4

The load generator is wrk, on the same machine as the servers (the output says
so). The machine may be shared: each measured run records the CPU share other
processes took ("other load"); before a run the script waits (bounded) for a
quiet machine and retries a disturbed run, keeping the least disturbed attempt
(full mode; --quick only measures and flags).

Each server is started for its measurement and stopped (SIGTERM) right after;
the script checks that no server process is left, kills leftovers and fails
loudly. All traffic goes to 127.0.0.1 and every load is bounded in time.
Results: bench/results/core-<timestamp>.json, .md (the tables, also on stdout) and a
folder of PNG plots (bench/plot.py).
"""

import argparse
import datetime
import hashlib
import http.client
import json
import os
import platform
import random
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
APPS = os.path.join(BENCH, "apps")
VENV = os.path.join(ROOT, ".venv-bench")
VPY = os.path.join(VENV, "bin", "python")
GUNICORN = os.path.join(VENV, "bin", "gunicorn")
UWSGI = os.path.join(VENV, "bin", "uwsgi")
HOST = "127.0.0.1"

READY_TIMEOUT = 60.0  # seconds a server gets to answer its first 200
STOP_TIMEOUT = 40.0  # seconds a server gets to exit after SIGTERM (both graceful timeouts are 30 s)
PI_DIGITS = 1000  # ~35 ms per request on this machine's CPU (recorded in the JSON)
COUNT_SLOTS = 64  # must match bench/apps/counted.py

# Lines in a server's log that mean something went wrong.
BAD_LOG = re.compile(r"\[(WARNING|ERROR|CRITICAL)\]|Traceback|Fatal Python error|Segmentation fault"
                     r"|core dumped|AddressSanitizer|\[(emerg|alert|crit|error)\]")


# ---------------------------------------------------------------- reporting

PROBLEMS = []  # (severity, text): "FAIL" makes the run exit 1, "WARN" is printed loudly


def loud(severity, text):
    PROBLEMS.append({"severity": severity, "text": text})
    bar = "!" * 78
    print(f"\n{bar}\n!!! {severity}: {text}\n{bar}", file=sys.stderr, flush=True)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

def proc_stat(pid):
    """(ppid, session, starttime, state) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); ppid=4, session=6, starttime=22
    return int(fields[1]), int(fields[3]), int(fields[19]), fields[0]


def all_procs():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                out[int(name)] = st
    return out


def descendants(root):
    """root and every process below it (by parent pid), with start times."""
    procs = all_procs()
    children = {}
    for pid, (ppid, _s, _t, _st) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in procs and pid not in out:
            out[pid] = procs[pid][2]
            todo.extend(children.get(pid, []))
    return out


def alive(pids_with_start):
    """Those of {pid: starttime} still running (same start time, not a zombie)."""
    left = {}
    for pid, start in pids_with_start.items():
        st = proc_stat(pid)
        if st and st[2] == start and st[3] != "Z":
            left[pid] = start
    return left


def wait_port_free(port):
    """Wait (bounded) until nothing listens on port: the previous server, just
    stopped, may still hold it for a moment."""
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"port {port} still taken 10 s after the last server stopped")
        time.sleep(0.05)


def run_port():
    """A free port below the kernel's ephemeral range, so that no client
    socket on the machine takes it between two servers."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for port in random.sample(range(max(1025, low - 12000), low), 200):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port))
                return port
            except OSError:
                continue
    return free_port()


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_get(port, path="/", timeout=5.0, close=True):
    """(status, body) of one GET on a fresh connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"} if close else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Server:
    """One server under test: started in its own session, stopped with SIGTERM."""

    launched = []  # every Server ever started, for the final leftover check

    def __init__(self, name, argv, tmp, env=None, cwd=None, is_gorgon=False, port=None):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd or tmp
        self.is_gorgon = is_gorgon
        self.port = port
        self.log_path = os.path.join(tmp, f"{re.sub(r'[^A-Za-z0-9]+', '_', name)}-{time.monotonic_ns()}.log")
        self.proc = None
        self.t_launch = None
        self.known = {}
        self.counts_path = None
        self.workers = None
        self.expect_mode = "interpreters"  # gorgon only: the mode its log must report
        self.expected_log = None  # a peer's known, harmless warning line
        self.clean_exits = (0,)  # exit statuses that mean a clean stop after SIGTERM

    def start(self):
        wait_port_free(self.port)
        self.logf = open(self.log_path, "wb")
        self.t_launch = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                     start_new_session=True)
        Server.launched.append(self)
        return self

    def wait_ready(self, path="/"):
        """Seconds from launch to the first 200 on path; raises if none in time."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before answering"
                                   f"\n{self.log_tail()}")
            try:
                status, _ = http_get(self.port, path, timeout=READY_TIMEOUT)
                if status == 200:
                    return time.perf_counter() - self.t_launch
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} gave no 200 within {READY_TIMEOUT}s\n{self.log_tail()}")

    def tree(self):
        return descendants(self.proc.pid)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=25):
        return "\n".join("    | " + line for line in self.log_text().splitlines()[-n:])

    def stop(self):
        """SIGTERM, wait, check the exit and that every process of it is gone."""
        who = "gorgon" if self.is_gorgon else "peer"
        sev = "FAIL" if self.is_gorgon else "WARN"
        cmd = " ".join(self.argv)
        if self.proc.poll() is not None:
            loud(sev, f"{self.name} ({who}) died during its run, exit {self.proc.returncode}\n"
                      f"    command: {cmd}\n{self.log_tail()}")
        self.known.update(self.tree())
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        t0 = time.perf_counter()
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            loud(sev, f"{self.name} did not exit within {STOP_TIMEOUT}s of SIGTERM: killed\n"
                      f"    command: {cmd}\n{self.log_tail()}")
            os.killpg(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait(timeout=10)
        stop_s = time.perf_counter() - t0
        self.logf.close()
        deadline = time.monotonic() + 5
        while alive(self.known) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = alive(self.known)
        if left:
            loud("FAIL", f"{self.name}: processes {sorted(left)} still running after the server exited: killed")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if rc not in self.clean_exits:
            loud(sev, f"{self.name} exited with {rc} after SIGTERM (expected {' or '.join(map(str, self.clean_exits))})\n"
                      f"    command: {cmd}\n{self.log_tail()}")
        text = self.log_text()
        mode = None
        if self.is_gorgon:
            m = re.search(r"mode (\w+)", text)
            mode = m.group(1) if m else None
            if mode != self.expect_mode:
                loud("FAIL", f"{self.name}: gorgon ran in mode {mode!r}, not {self.expect_mode}\n"
                             f"    command: {cmd}\n{self.log_tail()}")
        bad = [line for line in text.splitlines()
               if BAD_LOG.search(line) and not (self.expected_log and self.expected_log.search(line))]
        if bad:
            loud(sev, f"{self.name}: {len(bad)} warning/error lines in its log ({self.log_path})\n"
                      f"    command: {cmd}\n" + "\n".join("    | " + b for b in bad[:15]))
        out = {"exit": rc, "stop_s": round(stop_s, 3), "log_problems": bad[:50]}
        if self.is_gorgon:
            out["gorgon_mode"] = mode
        return out


def leftover_check():
    """Any process still in a session of a server we launched: kill it, fail loudly."""
    procs = all_procs()
    left = []
    for srv in Server.launched:
        sid = srv.proc.pid
        for pid, (_pp, session, start, state) in procs.items():
            if state != "Z" and (session == sid or srv.known.get(pid) == start):
                left.append((srv.name, pid))
        if srv.proc.poll() is None:
            left.append((srv.name, srv.proc.pid))
    for name, pid in sorted(set(left)):
        loud("FAIL", f"leftover process {pid} of {name}: killing it")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return sorted(set(left))


# ---------------------------------------------------------------- servers

class Env:
    def __init__(self, tmp, gorgon_path, port):
        self.tmp = tmp
        self.port = port
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = gorgon_path + (os.pathsep + self.env["PYTHONPATH"] if self.env.get("PYTHONPATH") else "")
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        for k in list(self.env):
            if k.startswith("GORGON_"):
                del self.env[k]  # the flags below say everything

    def take_port(self):
        """The one port every server listens on in turn (Server.start waits
        until the previous server has let go of it)."""
        return self.port

    def gorgon(self, app, workers, extra=(), name=None, counts=False, mode=None):
        """counts: give the app a fresh $BENCH_COUNTS file (apps/counting.py).
        mode: pass --mode MODE (and expect the log to report it)."""
        port = self.take_port()
        if mode:
            extra = ["--mode", mode, *extra]
        argv = [VPY, "-m", "gorgon", app, "--bind", f"{HOST}:{port}", "--workers", str(workers),
                "--chdir", APPS, *extra]
        e = dict(self.env)
        counts_path = None
        if counts:
            fd, counts_path = tempfile.mkstemp(prefix="counts-", dir=self.tmp)
            os.write(fd, bytes(COUNT_SLOTS * 16))
            os.close(fd)
            e["BENCH_COUNTS"] = counts_path
        srv = Server(name or f"gorgon -w{workers}", argv, self.tmp, env=e, is_gorgon=True, port=port)
        srv.counts_path = counts_path
        srv.workers = workers
        srv.expect_mode = mode or "interpreters"
        return srv

    def gunicorn(self, app, workers, extra=(), name=None):
        port = self.take_port()
        argv = [GUNICORN, "--bind", f"{HOST}:{port}", "--workers", str(workers), "--chdir", APPS,
                "--no-control-socket", "--log-level", "info", *extra, app]
        return Server(name or f"gunicorn -w{workers}", argv, self.tmp, env=dict(self.env), port=port)

    def _peer(self, name, argv, port):
        e = dict(self.env)
        e["PYTHONPATH"] = APPS + os.pathsep + e["PYTHONPATH"]
        return Server(name, argv, self.tmp, env=e, cwd=APPS, port=port)

    def granian(self, app, workers, interface, tuned=False):
        """tuned: the WSGI settings granian's start-up warning points to (its
        default allows up to 256 blocking threads per worker); on this machine
        they serve the CPU-bound workload ~19 % faster with a fifth of the p99."""
        port = self.take_port()
        extra = ["--blocking-threads", "2", "--backpressure", "64"] if tuned else []
        argv = [os.path.join(VENV, "bin", "granian"), "--interface", interface, "--host", HOST,
                "--port", str(port), "--workers", str(workers), "--no-ws", "--log-level", "warning", *extra, app]
        srv = self._peer(f"granian {interface} -w{workers}" + (" " + " ".join(extra) if tuned else ""), argv, port)
        # Printed at start by the default WSGI configuration: advice, not a fault.
        srv.expected_log = re.compile(r"Configuration allows spawning up to \d+ Python threads")
        return srv

    def uvicorn(self, app, workers):
        port = self.take_port()
        argv = [os.path.join(VENV, "bin", "uvicorn"), app, "--host", HOST, "--port", str(port),
                "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
                "--no-access-log", "--log-level", "warning"]
        srv = self._peer(f"uvicorn -w{workers} (uvloop, httptools)", argv, port)
        # A single-process uvicorn shuts down, then re-raises the SIGTERM it
        # caught, so that its exit status says what stopped it.
        srv.clean_exits = (0, -signal.SIGTERM)
        return srv

    def hypercorn(self, app, workers):
        port = self.take_port()
        argv = [os.path.join(VENV, "bin", "hypercorn"), "--bind", f"{HOST}:{port}", "--workers", str(workers),
                "--worker-class", "uvloop", app]
        return self._peer(f"hypercorn -w{workers} (uvloop)", argv, port)

    def uwsgi(self, app, workers):
        # uWSGI ignores SIGTERM (it reloads) unless --die-on-term is given.
        port = self.take_port()
        module, _, attr = app.partition(":")
        argv = [UWSGI, "--http11-socket", f"{HOST}:{port}", "--die-on-term", "--master",
                "--processes", str(workers), "--home", VENV, "--chdir", APPS,
                "--wsgi-file", os.path.join(APPS, module + ".py"), "--callable", attr,
                "--need-app", "--disable-logging", "--lazy-apps"]
        return self._peer(f"uWSGI -p{workers} (http11-socket)", argv, port)

    def nginx(self, workers):
        port = self.take_port()
        d = tempfile.mkdtemp(prefix="nginx-", dir=self.tmp)
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""
        conf = f"""# written by bench/run.py
{user}
worker_processes {workers};
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {HOST}:{port};
        location / {{
            default_type text/plain;
            return 200 "Hello, World!";
        }}
    }}
}}
"""
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        argv = [shutil.which("nginx") or "/usr/sbin/nginx", "-p", d, "-e", f"{d}/error.log", "-c", path]
        return Server(f"nginx -w{workers}", argv, self.tmp, env=dict(os.environ), port=port)


# ---------------------------------------------------------------- load

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def wrk(port, path, conns, threads, seconds):
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "10s",
            f"http://{HOST}:{port}{path}"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    out = p.stdout
    r = {"cmd": " ".join(argv), "rc": p.returncode, "rps": None, "requests": None, "non2xx": 0,
         "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}, "latency_ms": {}}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    for pct, val in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M):
        r["latency_ms"][pct] = _ms(val)
    m = re.search(r"^\s+Latency\s+(\S+)", out, re.M)
    if m:
        r["latency_ms"]["mean"] = _ms(m.group(1))
    r["conns"] = conns
    if p.returncode != 0 or r["rps"] is None:
        r["raw"] = out + p.stderr
    return r


def check_wrk(name, r, is_gorgon):
    """Errors, and latency figures that cannot be true: at most `conns`
    requests are outstanding, so (Little's law) mean latency <= conns / req/s.
    wrk has printed means 2-4x above that bound for gorgon on the fast
    workloads (never for the peers measured), and 100x in threads-mode ASGI,
    where h2load on the same server gave a mean within it; such a run's
    latency figures are flagged rather than trusted."""
    mean, rps = r["latency_ms"].get("mean"), r["rps"]
    if mean and rps and mean / 1000 > 1.5 * r["conns"] / rps:
        r["latency_inconsistent"] = True
        loud("WARN", f"{name}: wrk's mean latency {mean:.2f} ms is above what {r['conns']} connections at "
                     f"{rps:.0f} req/s allow ({1000 * r['conns'] / rps:.2f} ms): its latency figures for this "
                     f"run cannot all be per-request times; cross-check with h2load")
    errs = sum(r["socket_errors"].values())
    if r["rps"] is None or r["rc"] != 0:
        loud("FAIL" if is_gorgon else "WARN", f"{name}: wrk failed (rc {r['rc']})\n    {r['cmd']}\n{r.get('raw', '')}")
    if r["non2xx"] or errs:
        loud("FAIL" if is_gorgon else "WARN",
             f"{name}: {r['non2xx']} non-2xx responses, socket errors {r['socket_errors']}"
             f" of {r['requests']} requests\n    {r['cmd']}")


# ---- other load on the machine: the machine is shared, so every measured run
# records how much CPU went to processes that are not part of it ("foreign"),
# waits for a quiet machine before starting, and is retried when disturbed.

TICK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def cpu_busy_s():
    """Seconds of user+nice+system time on all CPUs since boot (no irq/softirq:
    with IRQ time accounting those are not charged to any process either)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2]) / TICK


def proc_cpu_s(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (all threads)
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def own_cpu_s():
    import resource
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk and the clients, once reaped
    return time.process_time() + ch.ru_utime + ch.ru_stime


class CpuWatch:
    """Fraction of the machine's CPU used by anything but srv's processes, this
    script and its reaped children (wrk) between start() and stop()."""

    def __init__(self, srv=None):
        self.srv = srv

    def _snap(self):
        pids = list(self.srv.tree()) if self.srv else []
        return time.monotonic(), cpu_busy_s(), proc_cpu_s(pids), own_cpu_s()

    def start(self):
        self.a = self._snap()
        return self

    def stop(self):
        b = self._snap()
        wall = b[0] - self.a[0]
        foreign = (b[1] - self.a[1]) - (b[2] - self.a[2]) - (b[3] - self.a[3])
        return max(0.0, foreign / (wall * NCPU)) if wall > 0 else 0.0


def wait_quiet(cfg, what):
    """Wait (bounded) until other processes use < cfg.quiet of the machine."""
    if cfg.quiet_wait <= 0:
        return None  # quick mode: no 1 s sample; each run's own figure says whether it was disturbed
    deadline = time.monotonic() + cfg.quiet_wait
    waited = False
    while True:
        w = CpuWatch().start()
        time.sleep(1.0)
        busy = w.stop()
        if busy < cfg.quiet:
            if waited:
                log(f"machine quiet again ({busy * 100:.0f}% busy)")
            return busy
        if time.monotonic() > deadline:
            loud("WARN", f"{what}: machine still {busy * 100:.0f}% busy with other processes after "
                         f"{cfg.quiet_wait}s: measuring anyway")
            return busy
        if not waited:
            log(f"{what}: other processes use {busy * 100:.0f}% of the CPUs: waiting (up to {cfg.quiet_wait}s)")
            waited = True
        time.sleep(2.0)


def measure_wrk(make_srv, path, conns, threads, warmup, seconds, cfg, cell=False):
    """Start a server from make_srv, warm up, measure, stop: the wrk result plus
    the server's stop record and, for a server with counters, what each worker
    served in the measured run. A run disturbed by other processes is retried.
    cell: also record launch-to-first-200, the PSS of the server's processes
    right after the measured run, and whether every connection gets served."""
    attempts = []
    for attempt in range(1 + cfg.retries):
        srv = make_srv()
        wait_quiet(cfg, srv.name)
        srv.start()
        try:
            first_200 = srv.wait_ready(path)
            if cell:  # before the load: its requests are also the first warm-up (all of it in quick mode)
                fair = fairness_probe(srv.port, path, conns)
                check_fairness(srv, fair)
            if warmup:
                w = wrk(srv.port, path, conns, threads, warmup)
                check_wrk(srv.name + " (warm-up)", w, srv.is_gorgon)
            if srv.counts_path:
                time.sleep(0.5)  # requests the warm-up left queued finish before the snapshot
            before = read_counts(srv.counts_path) if srv.counts_path else None
            watch = CpuWatch(srv).start()
            r = wrk(srv.port, path, conns, threads, seconds)
            r["foreign_cpu"] = round(watch.stop(), 3)
            check_wrk(srv.name, r, srv.is_gorgon)
            if srv.counts_path:
                r.update(worker_split(before, read_counts(srv.counts_path), srv.workers))
                check_split(srv, r, conns, seconds)
            if cell:
                r["first_200_ms"] = round(first_200 * 1000, 1)
                mem = memory_of(srv.tree())
                r["pss_kb"] = sum(m.get("Pss", 0) for m in mem.values())
                r["processes"] = len(mem)
                r["fairness"] = fair
        finally:
            r_stop = srv.stop()
        r["stop"] = r_stop
        attempts.append(r)
        if r["foreign_cpu"] <= cfg.quiet:
            break
        log(f"{srv.name}: other processes took {r['foreign_cpu'] * 100:.0f}% of the CPUs during the run"
            + (": measuring again" if attempt < cfg.retries else ""))
    best = min(attempts, key=lambda a: a["foreign_cpu"])
    if best["foreign_cpu"] > cfg.quiet:
        loud("WARN", f"{srv.name}: every attempt disturbed by other processes "
                     f"(best: {best['foreign_cpu'] * 100:.0f}% of the CPUs): numbers unreliable")
    best["foreign_cpu_attempts"] = [a["foreign_cpu"] for a in attempts]
    # Errors in a discarded attempt are still errors: keep them countable.
    best["discarded_attempts"] = [
        {k: a[k] for k in ("rps", "foreign_cpu", "non2xx", "socket_errors", "requests")}
        for a in attempts if a is not best]
    return best


def fairness_probe(port, path, conns, within=3.0):
    """Open `conns` keep-alive connections at once, send one GET on each and
    count those answered (a 2xx status line and headers) within `within` s.
    wrk cannot tell a connection that was never served from one that was slow:
    a server that holds one keep-alive connection per process (uWSGI's
    --http11-socket) shows full req/s from a handful of connections while the
    rest wait, with no wrk error. Every server here should answer them all in
    well under a second (the heaviest case: 16 pi requests on one worker).
    Like wrk, the probe keeps an answered connection open unless the response
    says `Connection: close`."""
    req = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    bufs, outcome, t0 = {}, {}, time.monotonic()  # outcome: socket -> "200", "closed", "error ..."
    deadline = t0 + within
    errors = []
    for _ in range(conns):
        try:
            s = socket.create_connection((HOST, port), timeout=max(0.05, deadline - time.monotonic()))
        except OSError as e:
            errors.append(f"connect: {type(e).__name__}")
            continue
        bufs[s] = b""
        try:
            s.sendall(req)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        except OSError as e:
            outcome[s] = f"send: {type(e).__name__}"
    try:
        while len(outcome) < len(bufs) and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    data, why = b"", f"recv: {type(e).__name__}"
                else:
                    why = "closed before answering"
                if not data:
                    outcome[s] = why
                    sel.unregister(s)
                    continue
                bufs[s] += data
                if b"\r\n\r\n" in bufs[s]:
                    head = bufs[s].split(b"\r\n\r\n", 1)[0].lower()
                    m = re.match(rb"http/1\.[01] (\d{3})", head)
                    outcome[s] = m.group(1).decode() if m else "malformed status line"
                    sel.unregister(s)
                    if re.search(rb"\r\nconnection:[ \t]*close", head):
                        s.close()  # as wrk does: a server may linger until the client closes
    finally:
        for s in bufs:
            s.close()
        sel.close()
    counts = {}
    for v in list(outcome.values()) + errors:
        counts[v] = counts.get(v, 0) + 1
    counts["no answer"] = len(bufs) - len(outcome)
    answered = sum(n for v, n in counts.items() if v.startswith("2"))
    return {"connections": conns, "answered": answered, "within_s": within,
            "slowest_s": round(time.monotonic() - t0, 3) if answered == conns else None,
            "other": {v: n for v, n in counts.items() if n and not v.startswith("2")}}


def check_fairness(srv, f):
    if f["answered"] < f["connections"]:
        loud("FAIL" if srv.is_gorgon else "WARN",
             f"{srv.name}: starves connections: {f['answered']} of {f['connections']} concurrent keep-alive "
             f"connections answered with a 2xx within {f['within_s']}s {f['other']} -- its req/s comes from the "
             f"served ones only and is left out of the ratios")


def check_split(srv, r, conns, seconds):
    """Connections that got no answer in a whole run, or a worker that served
    nothing under enough connections, are gorgon misbehaving: say so loudly.
    (Connections are counted as distinct client ports, so a port reused from
    the warm-up can hide one: hence the 10 % slack.)"""
    served = sum(r["connections"])
    if served < 0.9 * conns:
        loud("FAIL", f"{srv.name}: only {served} of {conns} wrk connections got any response in "
                     f"the {seconds}s run (connections per worker {r['connections']}, "
                     f"{r['requests']} requests)\n    command: {' '.join(srv.argv)}")
    if conns >= 4 * srv.workers and min(r["shares"]) == 0:
        loud("WARN", f"{srv.name}: a worker served nothing with {conns} connections "
                     f"(requests per interpreter {r['per_interpreter']})")


def read_counts(path):
    with open(path, "rb") as f:
        data = f.read(COUNT_SLOTS * 16)
    vals = memoryview(data).cast("Q")
    return {i: (vals[2 * i], vals[2 * i + 1]) for i in range(COUNT_SLOTS) if vals[2 * i] or vals[2 * i + 1]}


def worker_split(before, after, workers):
    """Requests and new connections per interpreter between two snapshots;
    workers that served nothing count as 0. Shares sorted busiest first."""
    per = {}
    for i, (req, conn) in after.items():
        b = before.get(i, (0, 0))
        per[i] = {"requests": req - b[0], "connections": conn - b[1]}
    total = sum(v["requests"] for v in per.values()) or 1
    rows = sorted(per.values(), key=lambda v: -v["requests"])
    rows += [{"requests": 0, "connections": 0}] * max(0, workers - len(rows))
    shares = [v["requests"] / total for v in rows]
    return {"per_interpreter": per, "shares": shares, "connections": [v["connections"] for v in rows],
            "max_over_min": (shares[0] / shares[-1]) if shares[-1] else float("inf")}


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(runs):
    return {
        "rps": median([r["rps"] for r in runs]),
        "p50_ms": median([r["latency_ms"].get("50") for r in runs]),
        "p99_ms": median([r["latency_ms"].get("99") for r in runs]),
        "non2xx": sum(r["non2xx"] for r in runs),
        "socket_errors": sum(sum(r["socket_errors"].values()) for r in runs),
        "socket_errors_by_kind": {k: sum(r["socket_errors"][k] for r in runs)
                                  for k in ("connect", "read", "write", "timeout")},
        "rps_runs": [r["rps"] for r in runs],
        "n_runs": len(runs),
        "latency_inconsistent_runs": sum(1 for r in runs if r.get("latency_inconsistent")),
        "pss_mb": (median([r.get("pss_kb") for r in runs]) or 0) / 1024 or None,
        "first_200_ms": median([r.get("first_200_ms") for r in runs]),
        "starved": any(r["fairness"]["answered"] < r["fairness"]["connections"] for r in runs if "fairness" in r),
        "fairness_answered": [f"{r['fairness']['answered']}/{r['fairness']['connections']}"
                              for r in runs if "fairness" in r],
        "foreign_cpu_max": max(r.get("foreign_cpu", 0) for r in runs),
        "errors_in_discarded_attempts": sum(a["non2xx"] + sum(a["socket_errors"].values())
                                            for r in runs for a in r.get("discarded_attempts", [])),
    }


def rotate(items, i):
    i %= len(items)
    return items[i:] + items[:i]


# ---------------------------------------------------------------- sections

def bench_plaintext(env, cfg):
    servers = {
        "gorgon -w2": lambda: env.gorgon("hello:app", 2),
        "nginx static (2 workers)": lambda: env.nginx(2),
        "gunicorn sync -w2": lambda: env.gunicorn("hello:app", 2, name="gunicorn sync -w2"),
        "gunicorn gthread -w2 --threads 4": lambda: env.gunicorn(
            "hello:app", 2, ["--worker-class", "gthread", "--threads", "4"], name="gunicorn gthread -w2 --threads 4"),
    }
    runs = {k: [] for k in servers}
    for rep in range(cfg.repeat):
        for name in rotate(list(servers), rep):
            log(f"plaintext rep {rep + 1}/{cfg.repeat}: {name}")
            runs[name].append(measure_wrk(servers[name], "/", 64, 2, cfg.warmup, cfg.duration, cfg))
    res = {k: {"summary": summarize(v), "runs": v} for k, v in runs.items()}
    g = res["gorgon -w2"]["summary"]["rps"]
    for k, v in res.items():
        v["summary"]["gorgon_ratio"] = (g / v["summary"]["rps"]) if g and v["summary"]["rps"] else None
    return {"wrk": "-t2 -c64", "duration_s": cfg.duration, "warmup_s": cfg.warmup, "servers": res}


def split_summary(s, runs):
    """Add the per-worker split of runs (from worker_split) to summary s."""
    s["max_share_median"] = median([r["shares"][0] for r in runs])
    s["max_over_min_median"] = median([r["max_over_min"] for r in runs])
    s["shares_runs"] = [[round(x, 3) for x in r["shares"]] for r in runs]
    s["connections_runs"] = [r["connections"] for r in runs]
    return s


def bench_accept(env, cfg):
    workers = 2
    modes = {"reuse-port (socket per worker)": ["--reuse-port"],
             "no-reuse-port (shared socket, EPOLLEXCLUSIVE)": ["--no-reuse-port"]}
    runs = {k: [] for k in modes}
    for rep in range(cfg.repeat):
        for mode in rotate(list(modes), rep):
            log(f"accept rep {rep + 1}/{cfg.repeat}: {mode}")
            make = lambda: env.gorgon("counted:app", workers, modes[mode], counts=True,  # noqa: E731
                                      name=f"gorgon -w{workers} {modes[mode][0]}")
            runs[mode].append(measure_wrk(make, "/", 64, 2, cfg.warmup, cfg.duration, cfg))
    res = {mode: {"summary": split_summary(summarize(v), v), "runs": v} for mode, v in runs.items()}
    return {"wrk": "-t2 -c64", "workers": workers, "app": "bench/apps/counted.py", "modes": res}


def bench_cpu(env, cfg):
    sys.path.insert(0, APPS)
    import cpu  # the same function the servers run, timed here once

    cpu.pi_digits(PI_DIGITS)
    t = []
    for _ in range(5):
        t0 = time.perf_counter()
        cpu.pi_digits(PI_DIGITS)
        t.append(time.perf_counter() - t0)
    one_ms = statistics.median(t) * 1000
    path = f"/?digits={PI_DIGITS}"
    servers = {
        "gorgon -w1": lambda: env.gorgon("cpu:app", 1, counts=True),
        "gorgon -w2 --reuse-port": lambda: env.gorgon("cpu:app", 2, ["--reuse-port"], counts=True,
                                                      name="gorgon -w2 --reuse-port"),
        "gorgon -w2 --no-reuse-port": lambda: env.gorgon("cpu:app", 2, ["--no-reuse-port"], counts=True,
                                                         name="gorgon -w2 --no-reuse-port"),
        "gunicorn sync -w2": lambda: env.gunicorn("cpu:app", 2, name="gunicorn sync -w2"),
    }
    runs = {k: [] for k in servers}
    for rep in range(cfg.repeat):
        for name in rotate(list(servers), rep):
            log(f"cpu rep {rep + 1}/{cfg.repeat}: {name}")
            runs[name].append(measure_wrk(servers[name], path, 4, 2, cfg.warmup, cfg.duration, cfg))
    res = {k: {"summary": summarize(v), "runs": v} for k, v in runs.items()}
    for k, v in res.items():
        if "shares" in v["runs"][0]:
            split_summary(v["summary"], v["runs"])
    w1 = res["gorgon -w1"]["summary"]["rps"]
    for k, v in res.items():
        v["summary"]["speedup_vs_gorgon_w1"] = (v["summary"]["rps"] / w1) if w1 and v["summary"]["rps"] else None
    return {"wrk": "-t2 -c4", "digits": PI_DIGITS, "one_request_ms_in_process": round(one_ms, 2),
            "duration_s": cfg.duration, "warmup_s": cfg.warmup, "servers": res}


def drive(port, total, threads, path="/"):
    """total GETs, each on a fresh connection, from `threads` threads; counts of statuses."""
    statuses, lock = {}, threading.Lock()
    per = [total // threads + (1 if i < total % threads else 0) for i in range(threads)]

    def run(n):
        for _ in range(n):
            try:
                st, _ = http_get(port, path, timeout=10)
            except OSError as e:
                st = type(e).__name__
            with lock:
                statuses[st] = statuses.get(st, 0) + 1

    ts = [threading.Thread(target=run, args=(n,)) for n in per]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    return statuses


def memory_of(pids):
    out = {}
    for pid in pids:
        rec = {}
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    k, _, rest = line.partition(":")
                    if k in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty"):
                        rec[k] = int(rest.split()[0])
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        rec["VmHWM"] = int(line.split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                rec["cmd"] = f.read().replace(b"\0", b" ").decode(errors="replace")[:120]
        except OSError:
            continue
        out[pid] = rec
    return out


def bench_memory(env, cfg):
    servers = {
        "gorgon -w4": lambda: env.gorgon("flask_app:app", 4),
        "gunicorn sync -w4": lambda: env.gunicorn("flask_app:app", 4, name="gunicorn sync -w4"),
        "gunicorn sync --preload -w4": lambda: env.gunicorn("flask_app:app", 4, ["--preload"],
                                                            name="gunicorn sync --preload -w4"),
    }
    runs = {k: [] for k in servers}
    for rep in range(cfg.repeat):
        for name in rotate(list(servers), rep):
            log(f"memory rep {rep + 1}/{cfg.repeat}: {name}")
            srv = servers[name]()
            wait_quiet(cfg, srv.name)
            srv.start()
            try:
                srv.wait_ready()
                statuses = drive(srv.port, 999, 8)  # + wait_ready's GET = 1000
                ok = statuses.get(200, 0)
                if ok != 999:
                    loud("FAIL" if srv.is_gorgon else "WARN", f"{name}: 1000 requests gave {statuses}")
                time.sleep(0.5)
                procs = srv.tree()
                mem = memory_of(procs)
            finally:
                stop = srv.stop()
            runs[name].append({
                "statuses": {str(k): v for k, v in statuses.items()},
                "processes": len(mem),
                "pss_kb": sum(m.get("Pss", 0) for m in mem.values()),
                "rss_kb": sum(m.get("Rss", 0) for m in mem.values()),
                "private_kb": sum(m.get("Private_Clean", 0) + m.get("Private_Dirty", 0) for m in mem.values()),
                "per_process": {str(p): m for p, m in mem.items()},
                "stop": stop,
            })
    res = {}
    for k, v in runs.items():
        res[k] = {"summary": {"pss_mb": median([r["pss_kb"] for r in v]) / 1024,
                              "rss_mb": median([r["rss_kb"] for r in v]) / 1024,
                              "processes": v[0]["processes"],
                              "pss_mb_runs": [round(r["pss_kb"] / 1024, 1) for r in v]},
                  "runs": v}
    g = res["gorgon -w4"]["summary"]["pss_mb"]
    for v in res.values():
        v["summary"]["gorgon_ratio"] = g / v["summary"]["pss_mb"]
    return {"app": "bench/apps/flask_app.py", "requests": 1000, "client": "8 threads, new connection per request",
            "servers": res}


def bench_startup(env, cfg):
    servers = {
        "gorgon -w4": lambda: env.gorgon("flask_app:app", 4),
        "gunicorn sync -w4": lambda: env.gunicorn("flask_app:app", 4, name="gunicorn sync -w4"),
    }
    runs = {k: [] for k in servers}
    for rep in range(cfg.startup_runs):
        for name in rotate(list(servers), rep):
            srv = servers[name]()
            wait_quiet(cfg, srv.name)
            srv.start()
            try:
                t = srv.wait_ready()
            finally:
                stop = srv.stop()
            log(f"startup run {rep + 1}/{cfg.startup_runs}: {name}: {t * 1000:.0f} ms")
            runs[name].append({"first_200_ms": round(t * 1000, 1), "stop": stop})
    res = {}
    for k, v in runs.items():
        xs = [r["first_200_ms"] for r in v]
        res[k] = {"summary": {"median_ms": statistics.median(xs), "min_ms": min(xs), "max_ms": max(xs),
                              "runs_ms": xs}, "runs": v}
    return {"app": "bench/apps/flask_app.py", "measure": "Popen to first 200 on GET /, polled every 5 ms",
            "servers": res}


def peer_workloads(env, cfg, w):
    """{workload: (app, path, connections, {server name: factory})} for w workers."""
    have_uwsgi = os.path.exists(UWSGI)

    def gorgons(app):
        return {
            f"gorgon -w{w} (interpreters)": lambda: env.gorgon(app, w, mode="interpreters",
                                                               name=f"gorgon -w{w} (interpreters)"),
            f"gorgon -w{w} --mode processes": lambda: env.gorgon(app, w, mode="processes",
                                                                 name=f"gorgon -w{w} --mode processes"),
            f"gorgon -w{w} --mode threads": lambda: env.gorgon(app, w, mode="threads",
                                                               name=f"gorgon -w{w} --mode threads"),
        }

    def wsgi_peers(app):
        d = {
            f"granian wsgi -w{w}": lambda: env.granian(app, w, "wsgi"),
            f"granian wsgi -w{w} tuned": lambda: env.granian(app, w, "wsgi", tuned=True),
            f"gunicorn sync -w{w}": lambda: env.gunicorn(app, w, name=f"gunicorn sync -w{w}"),
            f"gunicorn gthread -w{w} --threads 4": lambda: env.gunicorn(
                app, w, ["--worker-class", "gthread", "--threads", "4"], name=f"gunicorn gthread -w{w} --threads 4"),
        }
        if have_uwsgi:
            d[f"uWSGI -p{w}"] = lambda: env.uwsgi(app, w)
        return d

    def asgi_peers(app):
        return {
            f"granian asgi -w{w}": lambda: env.granian(app, w, "asgi"),
            f"uvicorn -w{w} (uvloop, httptools)": lambda: env.uvicorn(app, w),
            f"hypercorn -w{w} (uvloop)": lambda: env.hypercorn(app, w),
        }

    nginx = {f"nginx static -w{w} (ceiling)": lambda: env.nginx(w)}
    digits = cfg.peer_pi_digits
    return {
        "plaintext WSGI": ("hello:app", "/", 64, {**gorgons("hello:app"), **wsgi_peers("hello:app"), **nginx}),
        "plaintext ASGI": ("plain_asgi:app", "/", 64, {**gorgons("plain_asgi:app"), **asgi_peers("plain_asgi:app"),
                                                       **nginx}),
        "JSON WSGI": ("json_app:app", "/", 64, {**gorgons("json_app:app"), **wsgi_peers("json_app:app")}),
        "JSON ASGI": ("json_asgi:app", "/", 64, {**gorgons("json_asgi:app"), **asgi_peers("json_asgi:app")}),
        f"CPU pi {digits} digits (WSGI)": ("cpu:app", f"/?digits={digits}", 16,
                                           {**gorgons("cpu:app"), **wsgi_peers("cpu:app")}),
        "Flask template (WSGI)": ("flask_app:app", "/", 64,
                                  {**gorgons("flask_app:app"), **wsgi_peers("flask_app:app")}),
    }


def peers_one_count(env, cfg, w, out):
    """Every workload at w workers into out: cells interleaved across servers per repetition."""
    only = [x.strip().lower() for x in (cfg.peer_workloads or "").split(",") if x.strip()]
    for wl, (app, path, conns, servers) in peer_workloads(env, cfg, w).items():
        if only and not any(o in wl.lower() for o in only):
            continue
        runs = {k: [] for k in servers}
        for rep in range(cfg.repeat):
            for name in rotate(list(servers), rep):
                log(f"peers -w{w} [{wl}] rep {rep + 1}/{cfg.repeat}: {name}")
                try:
                    runs[name].append(measure_wrk(servers[name], path, conns, 2, cfg.warmup, cfg.duration, cfg,
                                                  cell=True))
                except Exception as e:  # a peer that will not start must not stop the section
                    loud("FAIL" if name.startswith("gorgon") else "WARN",
                         f"peers -w{w} [{wl}] {name}: {type(e).__name__}: {str(e)[:2000]}")
        res = {}
        for k, v in runs.items():
            res[k] = {"summary": summarize(v) if v else {"rps": None, "failed": True}, "runs": v}
        g = res[f"gorgon -w{w} (interpreters)"]["summary"]
        for v in res.values():
            s = v["summary"]
            ok = g.get("rps") and s.get("rps") and not s.get("starved") and not g.get("starved")
            s["gorgon_ratio"] = g["rps"] / s["rps"] if ok else None
            s["pss_ratio"] = g["pss_mb"] / s["pss_mb"] if g.get("pss_mb") and s.get("pss_mb") else None
        out[wl] = {"app": f"bench/apps/{app.split(':')[0]}.py", "path": path, "wrk": f"-t2 -c{conns}",
                   "servers": res}


def bench_peers(env, cfg):
    """Every workload against gorgon (three modes) and every peer that speaks
    its interface, for each worker count; ratios are gorgon (interpreters) ÷ peer."""
    if not os.path.exists(UWSGI):
        loud("WARN", f"uWSGI missing from .venv-bench ({UWSGI}): did `pip install uwsgi` fail to build "
                     f"from the sdist? (see bench/setup-venv's output) -- uWSGI left out of the peers section")
    res = {"workers": cfg.peer_workers, "pi_digits": cfg.peer_pi_digits, "duration_s": cfg.duration,
            "warmup_s": cfg.warmup, "port": env.port, "load_generator": "wrk -t2, on the same machine as the servers",
            "notes": ["wrk runs on the same machine as the servers and competes with them for its CPUs",
                      "every server listens on the same port in turn; each cell starts the server, times launch "
                      "to its first 200, warms up, measures, reads the PSS of all its processes, checks that "
                      "every connection gets served, and stops it with SIGTERM",
                      "uWSGI runs with --die-on-term: without it uWSGI treats SIGTERM as 'reload', not 'stop'",
                      "gunicorn gthread uses --threads 4 per worker; hypercorn uses its uvloop worker class",
                      "granian wsgi runs twice: with its defaults, and 'tuned' with --blocking-threads 2 "
                      "--backpressure 64, the settings its start-up warning about 256 threads points to",
                      "nginx answers `return 200` itself: the ceiling for the plaintext rows, not a Python server",
                      "a server that leaves concurrent keep-alive connections unanswered (the fairness probe) is "
                      "marked 'starves' and left out of the ratios: its req/s comes from the served few"],
            "by_workers": {}}
    cfg.results["peers"] = res  # filled in place: an interrupted run keeps what it measured
    for w in cfg.peer_workers:
        res["by_workers"][str(w)] = {}
        peers_one_count(env, cfg, w, res["by_workers"][str(w)])
    return res


# ---------------------------------------------------------------- output

def fmt(x, spec=".0f", none="-"):
    return none if x is None else format(x, spec)


def errs(s, key=None):
    """Errors of the kept runs, plus those of retried (disturbed) attempts."""
    n = s[key] if key else s["non2xx"] + s["socket_errors"]
    extra = s.get("errors_in_discarded_attempts", 0)
    return f"{n} (+{extra} in retried runs)" if extra else str(n)


def markdown(results):
    out = []
    p = results.get("plaintext")
    if p:
        g = results.get("gorgon", {})
        out += [f"### Plaintext hello (wrk {p['wrk']}, {p['duration_s']}s after {p['warmup_s']}s warm-up, "
                f"median of {results['config']['repeat']}; gorgon with its defaults: "
                f"{'--reuse-port' if g.get('reuse_port_default') else '--no-reuse-port'})", "",
                "| server | req/s | p50 ms | p99 ms | non-2xx | socket errors | gorgon ÷ server | other load |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for k, v in p["servers"].items():
            s = v["summary"]
            out.append(f"| {k} | {fmt(s['rps'])} | {fmt(s['p50_ms'], '.2f')} | {fmt(s['p99_ms'], '.2f')} | "
                       f"{s['non2xx']} | {errs(s, 'socket_errors')} | {fmt(s['gorgon_ratio'], '.2f')} | "
                       f"{s['foreign_cpu_max'] * 100:.0f}% |")
        out.append("")
    a = results.get("accept")
    if a:
        out += [f"### gorgon accept mode (counting hello app, {a['workers']} workers, wrk {a['wrk']})", "",
                "| mode | req/s | p50 ms | p99 ms | request share per worker, each run | "
                "connections per worker, each run | busiest ÷ idlest (median) | errors | other load |",
                "| --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |"]
        for k, v in a["modes"].items():
            s = v["summary"]
            shares = " ; ".join("/".join(f"{x * 100:.0f}%" for x in run) for run in s["shares_runs"])
            conns = " ; ".join("/".join(str(c) for c in run) for run in s["connections_runs"])
            out.append(f"| {k} | {fmt(s['rps'])} | {fmt(s['p50_ms'], '.2f')} | {fmt(s['p99_ms'], '.2f')} | "
                       f"{shares} | {conns} | {fmt(s['max_over_min_median'], '.2f')} | "
                       f"{errs(s)} | {s['foreign_cpu_max'] * 100:.0f}% |")
        out.append("")
    c = results.get("cpu")
    if c:
        out += [f"### CPU-bound: pi to {c['digits']} digits (~{c['one_request_ms_in_process']:.0f} ms each in "
                f"one interpreter), wrk {c['wrk']}, {c['duration_s']}s", "",
                "| server | req/s | p50 ms | p99 ms | errors | ÷ gorgon -w1 | connections per worker, each run | other load |",
                "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
        for k, v in c["servers"].items():
            s = v["summary"]
            conns = " ; ".join("/".join(str(x) for x in run) for run in s.get("connections_runs", [])) or "-"
            out.append(f"| {k} | {fmt(s['rps'], '.1f')} | {fmt(s['p50_ms'], '.1f')} | {fmt(s['p99_ms'], '.1f')} | "
                       f"{errs(s)} | {fmt(s['speedup_vs_gorgon_w1'], '.2f')} | {conns} | "
                       f"{s['foreign_cpu_max'] * 100:.0f}% |")
        out.append("")
    m = results.get("memory")
    if m:
        out += ["### Memory: Flask + Jinja page, PSS summed over the server's processes after 1000 requests", "",
                "| server | processes | PSS MB | RSS MB (sum) | gorgon ÷ server (PSS) |",
                "| --- | ---: | ---: | ---: | ---: |"]
        for k, v in m["servers"].items():
            s = v["summary"]
            out.append(f"| {k} | {s['processes']} | {s['pss_mb']:.1f} | {s['rss_mb']:.1f} | {s['gorgon_ratio']:.2f} |")
        out.append("")
    pr = results.get("peers")
    if pr:
        out += peers_markdown(results, pr)
    st = results.get("startup")
    if st:
        out += [f"### Start-up: launch to first 200, Flask app ({results['config']['startup_runs']} runs)", "",
                "| server | median ms | min ms | max ms |", "| --- | ---: | ---: | ---: |"]
        for k, v in st["servers"].items():
            s = v["summary"]
            out.append(f"| {k} | {s['median_ms']:.0f} | {s['min_ms']:.0f} | {s['max_ms']:.0f} |")
        out.append("")
    return "\n".join(out)


def peers_markdown(results, pr):
    repeat = results["config"]["repeat"]
    out = [f"### Peers: {pr['duration_s']}s measured after {pr['warmup_s']}s warm-up, median of "
           f"{repeat}; load from {pr['load_generator']}", ""]
    out += [f"- {n}" for n in pr["notes"]] + [""]
    for w, wls in pr["by_workers"].items():
        for wl, d in wls.items():
            out += [f"#### {wl}, {w} worker(s) ({d['app']} {d['path']}, wrk {d['wrk']})", "",
                    "| server | req/s | p50 ms | p99 ms | errors | PSS MB | first 200 ms | gorgon ÷ server "
                    "| connections served | other load |",
                    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
            for k, v in d["servers"].items():
                s = v["summary"]
                if s.get("failed"):
                    out.append(f"| {k} | **failed** | - | - | - | - | - | - | - | - |")
                    continue
                e = s["non2xx"] + s["socket_errors"]
                served = ", ".join(s["fairness_answered"])
                n = s.get("n_runs", repeat)
                runs = "" if n == repeat else f" (**{n} of {repeat} runs**)"
                odd = s.get("latency_inconsistent_runs")
                p99 = fmt(s['p99_ms'], '.2f') + (f" (wrk inconsistent in {odd} run(s))" if odd else "")
                out.append(f"| {k}{runs} | {fmt(s['rps'])} | {fmt(s['p50_ms'], '.2f')} | {p99} | "
                           f"{('**' + errs(s) + '**') if e else errs(s)} | {fmt(s['pss_mb'], '.1f')} | "
                           f"{fmt(s['first_200_ms'])} | "
                           f"{'starves' if s['starved'] else fmt(s['gorgon_ratio'], '.2f')} | "
                           f"{('**' + served + '**') if s['starved'] else served} | "
                           f"{s['foreign_cpu_max'] * 100:.0f}% |")
            out.append("")
    out += ratio_matrix(pr)
    return out


def ratio_matrix(pr):
    """One table per worker count: gorgon (interpreters) req/s ÷ each server's."""
    out = []
    for w, wls in pr["by_workers"].items():
        names = []
        for d in wls.values():
            names += [k for k in d["servers"] if k not in names and "(interpreters)" not in k]
        out += [f"#### gorgon -w{w} (interpreters) req/s ÷ each server's, {w} worker(s)", "",
                "| server | " + " | ".join(wls) + " |", "| --- |" + " ---: |" * len(wls)]
        for n in names:
            cells = []
            for d in wls.values():
                s = d["servers"].get(n, {}).get("summary")
                cells.append("" if s is None else "starves" if s.get("starved") else fmt(s.get("gorgon_ratio"), ".2f"))
            out.append(f"| {n} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def run_text(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip() or \
            subprocess.run(argv, capture_output=True, text=True, timeout=30).stderr.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine():
    model = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": run_text([VPY, "-c", "import sys; print(sys.version.split()[0])"]),
        "gunicorn": run_text([GUNICORN, "--version"]),
        "peers": run_text([VPY, "-c", "import importlib.metadata as m\nfor p in ('granian', 'uvicorn', 'uvloop', "
                           "'httptools', 'hypercorn', 'uwsgi'):\n    try: print(p, m.version(p))\n"
                           "    except Exception: print(p, 'missing')"]),
        "flask": run_text([VPY, "-c", "import importlib.metadata as m; print(m.version('flask'))"]),
        "nginx": nginx_v,
        "wrk": (run_text(["wrk", "--version"]) or "").splitlines()[0] if run_text(["wrk", "--version"]) else None,
    }


def prepare_gorgon(cfg, tmp):
    """A private copy of the gorgon package to measure: {path, source, so_sha256, ...}."""
    dest = os.path.join(tmp, "gorgon-under-test")
    info = {}
    if cfg.gorgon_rev:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--verify", cfg.gorgon_rev + "^{commit}"],
                             capture_output=True, text=True, check=True).stdout.strip()
        os.makedirs(dest)
        log(f"building gorgon at {rev[:12]} in {dest}")
        archive = subprocess.Popen(["git", "-C", ROOT, "archive", rev], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", dest], stdin=archive.stdout, check=True)
        archive.wait()
        b = subprocess.run(["make", "ext"], cwd=dest, capture_output=True, text=True, timeout=600)
        if b.returncode != 0:
            sys.exit(f"bench: building {rev} failed:\n{b.stdout[-3000:]}{b.stderr[-3000:]}")
        info.update(source=f"git {rev}", rev=rev, dirty=False)
    else:
        shutil.copytree(os.path.join(ROOT, "gorgon"), os.path.join(dest, "gorgon"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        rev = run_text(["git", "-C", ROOT, "rev-parse", "HEAD"])
        dirty = (run_text(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "gorgon"]) or "").splitlines()
        info.update(source="in-place build (copied at start)", rev=rev, dirty=bool(dirty), dirty_paths=dirty)
    sos = [f for f in os.listdir(os.path.join(dest, "gorgon")) if f.startswith("_gorgon") and f.endswith(".so")]
    if not sos:
        sys.exit("bench: no gorgon/_gorgon*.so: run `make` first")
    with open(os.path.join(dest, "gorgon", sos[0]), "rb") as f:
        info["so_sha256"] = hashlib.sha256(f.read()).hexdigest()
    probe = ("import json, gorgon, gorgon._cli as c; a = c.build_parser().parse_args(['x:app']); "
             "print(json.dumps({'version': gorgon.__version__, 'reuse_port_default': getattr(a, 'reuse_port', None), "
             "'mode_default': getattr(a, 'mode', None)}))")
    e = dict(os.environ, PYTHONPATH=dest)
    for k in list(e):
        if k.startswith("GORGON_"):
            del e[k]
    out = subprocess.run([VPY, "-c", probe], capture_output=True, text=True, env=e, cwd=tmp)
    if out.returncode != 0:
        sys.exit(f"bench: the gorgon under test does not import with {VPY}:\n{out.stderr}")
    info.update(json.loads(out.stdout))
    info["path"] = dest
    return info


def plots(out):
    """PNG plots of the run (bench/plot.py, matplotlib from .venv-bench) in a
    folder named after the JSON; a plotting failure is loud but keeps the data."""
    d = out[:-5] if out.endswith(".json") else out + "-plots"
    p = subprocess.run([VPY, os.path.join(BENCH, "plot.py"), out, "--out-dir", d, "--prefix", ""],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        loud("WARN", f"bench/plot.py failed: {p.stderr[-2000:]}")
    else:
        print(f"plots: {os.path.relpath(d, os.getcwd())}/ ({len(p.stdout.split())} PNG files)")


def preflight(cfg):
    subprocess.run([os.path.join(BENCH, "setup-venv")], check=True, stdout=sys.stderr)
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"bench: {tool} not found (scripts/bootstrap installs it)")
    suffix = subprocess.run([VPY, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    so = os.path.join(ROOT, "gorgon", "_gorgon" + suffix)
    if not cfg.gorgon_rev and not os.path.exists(so):
        sys.exit(f"bench: {so} missing: run `make` first (built for the .venv-bench python?)")
    if sysconfig.get_config_var("EXT_SUFFIX") != suffix:
        log(f"note: this python's EXT_SUFFIX differs from .venv-bench's ({suffix})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs, 1 repetition (peers: 2 workers, 2 s per cell, no wrk warm-up, < 3 minutes)")
    ap.add_argument("--duration", type=int, help="seconds of each measured wrk run (peers: full 8, quick 2; core: 15, 5)")
    ap.add_argument("--warmup", type=int, help="seconds of wrk warm-up before each (peers: full 2, quick 0; core: 3, 1)")
    ap.add_argument("--repeat", type=int, help="repetitions, interleaved across servers (full 3, quick 1)")
    ap.add_argument("--quiet", type=float, default=0.10,
                    help="share of the CPUs other processes may use before a run is waited for or retried")
    ap.add_argument("--quiet-wait", type=int, help="seconds to wait for a quiet machine (full 120, quick 0: measure and flag)")
    ap.add_argument("--retries", type=int, help="extra attempts for a disturbed run (full 2, quick 0)")
    ap.add_argument("--only", default="peers",
                    help="comma-separated sections to run: peers (the default), plaintext, accept, cpu, memory, "
                         "startup, or core for those five")
    ap.add_argument("--peer-workers", help="peers section: comma-separated worker counts, the same for every "
                    "server (full 1,2; quick 2)")
    ap.add_argument("--port", type=int, help="the port every server listens on in turn (default: a free one)")
    ap.add_argument("--peer-pi-digits", type=int, default=300, help="peers section: pi digits of the CPU workload")
    ap.add_argument("--peer-workloads", help="peers section: only workloads whose name contains one of these "
                    "(comma-separated, e.g. plaintext,json,cpu,flask)")
    ap.add_argument("--gorgon-rev", help="measure this git revision (exported and built in a temporary "
                    "directory) instead of a copy of the in-place build")
    ap.add_argument("--out", help="JSON path (default bench/results/core-<timestamp>.json)")
    cfg = ap.parse_args()
    core = cfg.only.replace("core", "plaintext,accept,cpu,memory,startup")
    sections = [s.strip() for s in core.split(",") if s.strip()]
    peers_only = sections == ["peers"]
    # Quick (< 3 minutes with the 46 peer cells): 2 s cells; the core sections keep 5 s.
    cfg.duration = cfg.duration or ((2 if peers_only else 5) if cfg.quick else (8 if peers_only else 15))
    # A peers cell's fairness probe (one request on each connection) is its only
    # warm-up in quick mode.
    cfg.warmup = cfg.warmup if cfg.warmup is not None else ((0 if peers_only else 1) if cfg.quick else
                                                            (2 if peers_only else 3))
    cfg.peer_workers = [int(x) for x in (cfg.peer_workers or ("2" if cfg.quick else "1,2")).split(",")]
    cfg.repeat = cfg.repeat or (1 if cfg.quick else 3)
    cfg.startup_runs = 3 if cfg.quick else 5
    # The full peers run has 276 cells: one retry and a shorter wait keep it near an hour.
    cfg.quiet_wait = cfg.quiet_wait if cfg.quiet_wait is not None else (0 if cfg.quick else
                                                                        (60 if peers_only else 120))
    cfg.retries = cfg.retries if cfg.retries is not None else (0 if cfg.quick else (1 if peers_only else 2))
    preflight(cfg)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = cfg.out or os.path.join(BENCH, "results", f"core-{stamp}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    # SIGTERM to us: unwind through the finally below, which stops the servers.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    results = {"started": stamp, "command": " ".join([os.path.relpath(sys.executable, ROOT)] + sys.argv),
               "config": {"quick": cfg.quick, "duration_s": cfg.duration, "warmup_s": cfg.warmup,
                          "repeat": cfg.repeat, "peer_workers": cfg.peer_workers, "startup_runs": cfg.startup_runs, "sections": sections,
                          "quiet": cfg.quiet, "quiet_wait_s": cfg.quiet_wait, "retries": cfg.retries},
               "machine": machine()}
    cfg.results = results
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="gorgon-bench-")
    results["gorgon"] = g = prepare_gorgon(cfg, tmp)
    log(f"gorgon under test: {g['source']}{' + uncommitted changes' if g.get('dirty') else ''}, "
        f"default --reuse-port={g.get('reuse_port_default')}, --mode={g.get('mode_default')}")
    env = Env(tmp, g["path"], cfg.port or run_port())
    funcs = {"plaintext": bench_plaintext, "accept": bench_accept, "cpu": bench_cpu,
             "memory": bench_memory, "startup": bench_startup, "peers": bench_peers}
    try:
        for s in sections:
            log(f"== {s}")
            try:
                results[s] = funcs[s](env, cfg)
            except Exception as e:  # one broken section must not hide the others
                loud("FAIL", f"section {s} failed: {type(e).__name__}: {e}")
                results[s + "_error"] = f"{type(e).__name__}: {e}"
    except KeyboardInterrupt:
        loud("FAIL", "interrupted")
    finally:
        for srv in Server.launched:
            if srv.proc.poll() is None:
                srv.stop()
        results["leftover_processes"] = leftover_check()
    results["elapsed_s"] = round(time.monotonic() - t0, 1)
    results["problems"] = PROBLEMS
    table = markdown(results)
    with open(out, "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(out[:-5] + ".md" if out.endswith(".json") else out + ".md", "w") as f:
        f.write(table + "\n")
    print(table)
    print(f"results: {os.path.relpath(out, os.getcwd())}  ({results['elapsed_s']} s)")
    plots(out)
    fails = [p for p in PROBLEMS if p["severity"] == "FAIL"]
    warns = [p for p in PROBLEMS if p["severity"] == "WARN"]
    if PROBLEMS:
        print(f"\n!!! {len(fails)} failure(s), {len(warns)} warning(s):")
        for p in PROBLEMS:
            print(f"!!! {p['severity']}: {p['text'].splitlines()[0]}")
    if not results["leftover_processes"]:
        print("all servers stopped; no server process left")
    shutil.rmtree(tmp, ignore_errors=True) if not fails else print(f"server logs kept in {tmp}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
