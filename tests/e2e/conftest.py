"""End-to-end test fixtures: run the real server (`python -m gorgon`) and talk
to it over real sockets.

- `server(app, *args, env=..., wait=...)` starts a server for one test and
  stops it at teardown (SIGTERM, then SIGKILL), whatever happened.
- `shared_server(app, *args)` / `router` hand out a server that lives for the
  whole session (one per app + args), to keep the run short.
- `Conn` is a raw-socket HTTP/1.x client that reads whole responses
  (Content-Length, chunked, until close) and can tell when the peer closed.

Every server's stderr is checked at teardown for "AssertionError" or
"WSGIWarning": the reference apps are wrapped in wsgiref.validate.validator,
so a compliance problem fails the test that caused it.

Environment: GORGON_BUILD_DIR (a sanitizer build of the package, first on
PYTHONPATH); GORGON_TEST_SLOW (multiplier for time limits; default 1, or 3
when GORGON_BUILD_DIR is set).
"""
import atexit
import contextlib
import datetime
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APPS = REPO / "tests" / "apps"
BUILD_DIR = os.environ.get("GORGON_BUILD_DIR", "")
SANITIZED = bool(BUILD_DIR)
# `python -m` puts the working directory first on sys.path, and gorgon puts it
# first on the workers' path too: servers run from the build under test, or
# the in-place build in the checkout would shadow it.
SERVER_CWD = Path(BUILD_DIR) if BUILD_DIR else REPO
SLOW = float(os.environ.get("GORGON_TEST_SLOW") or (3 if SANITIZED else 1))

LISTEN_RE = re.compile(r"Listening at: (\S+)")
READY_RE = re.compile(r"worker (\d+) ready")
# After "Listening at" (logged once the first worker serves): every worker serves.
ALL_READY_RE = re.compile(r"\d+ workers ready in|\d+ worker processes ready")
LOG_LINE_RE = re.compile(
    r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+0000\] \[(\d+)\] \[([A-Za-z]+)\] (.*)")
VALIDATOR_MARKERS = ("AssertionError", "WSGIWarning")
# Exit statuses that mean the process crashed rather than exited.
CRASH_CODES = {-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS, -signal.SIGFPE,
               -signal.SIGILL, -signal.SIGKILL, 128 + signal.SIGSEGV,
               128 + signal.SIGABRT, 128 + signal.SIGBUS, 134, 139}

# Same as tests/apps/big.py.
PATTERN = bytes(range(256)) * 4096

# Option environment variables of the server; a value inherited from the
# developer's shell must not change what a test runs.
OPTION_ENV = {"GORGON_" + n for n in (
    "BIND", "WORKERS", "CHDIR", "PYTHONPATH", "LOG_LEVEL", "ACCESS_LOG",
    "KEEP_ALIVE", "GRACEFUL_TIMEOUT", "HEADER_TIMEOUT", "LIMIT_REQUEST_LINE",
    "LIMIT_REQUEST_FIELDS", "LIMIT_REQUEST_FIELD_SIZE", "LIMIT_REQUEST_BODY",
    "MAX_CONNECTIONS", "WRITE_HIGH_WATER", "NO_DATETIME_WORKAROUND",
    "MODE", "PROCESSES", "NO_PURE_FALLBACK", "PROBE_TIMEOUT", "PROXY_PROTOCOL",
    "PROXY_PROTOCOL_BIND", "FORWARDED_ALLOW_IPS", "SHARED_URL", "SHARED_PREFIX",
    "SHARED_TIMEOUT", "SHARED_MAX_BYTES", "CERTFILE", "KEYFILE", "KEYFILE_PASSWORD",
    "CA_CERTS", "CERT_REQS", "SSL_CIPHERS", "SSL_MIN_VERSION", "METRICS_BIND", "TIMEOUT", "MAX_WORKER_MEMORY",
    "RELOAD", "RELOAD_DIR", "RELOAD_INCLUDE", "RELOAD_EXCLUDE")}


def scaled(seconds):
    return seconds * SLOW


# ---------------------------------------------------------------------------
# pytest hooks


def pytest_configure(config):
    for line in (
            "stress: long or crash-provoking runs; only with -m stress",
            "tsan: exercises the threading with 2+ workers (the ThreadSanitizer tier)",
            "nosan: too slow or meaningless under sanitizers"):
        config.addinivalue_line("markers", line)


def pytest_collection_modifyitems(config, items):
    # Stress tests run only when the -m expression names them, even when
    # another -m (e.g. "not nosan") replaced pytest.ini's "not stress".
    markexpr = config.getoption("markexpr") or ""
    keep, dropped = [], []
    for item in items:
        if item.get_closest_marker("stress") and "stress" not in markexpr:
            dropped.append(item)
        else:
            keep.append(item)
        if SLOW != 1 and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(60 * SLOW))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# ---------------------------------------------------------------------------
# processes


def server_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in OPTION_ENV}
    paths = ([BUILD_DIR] if BUILD_DIR else []) + [str(REPO), str(APPS)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if extra:
        env.update(extra)
    return env


def run_gorgon(*args, env=None, timeout=30):
    """Run `python -m gorgon ARGS` to completion (for --help, --version, failures)."""
    return subprocess.run([sys.executable, "-m", "gorgon", *args], cwd=SERVER_CWD,
                          env=server_env(env), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=scaled(timeout))


def free_port(host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def parse_bind(spec):
    """'host:port' / '[::1]:port' -> (host, port); 'unix:/path' -> '/path'."""
    if spec.startswith("unix:"):
        return spec[5:]
    host, _, port = spec.rpartition(":")
    return host.strip("[]"), int(port)


_ALL_PROCS = []


@atexit.register
def _kill_leftovers():
    for p in _ALL_PROCS:
        if p.poll() is None:
            p.kill()


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def child_pids(pid):
    """The processes process `pid` forked (its worker processes)."""
    out = set()
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
            out |= {int(p) for p in f.read().split()}
    return out


def proc_io(pid):
    out = {}
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            k, v = line.split(":")
            out[k.strip()] = int(v)
    return out


class Server:
    """One `python -m gorgon APP ARGS` process with its output in files."""

    _seq = 0

    def __init__(self, app, args=(), env=None, logdir="/tmp", workers=2):
        args = [str(a) for a in args]
        env = dict(env or {})
        binds = []
        for i, a in enumerate(args):
            if a == "--bind" and i + 1 < len(args):
                binds.append(args[i + 1])
            elif a.startswith("--bind="):
                binds.append(a.split("=", 1)[1])
        if not binds and env.get("GORGON_BIND"):
            binds = [b.strip() for b in env["GORGON_BIND"].split(",") if b.strip()]
        # A port picked here is free when picked, not when the server binds
        # it: another test's server may take it in between (wait_ready).
        self.port_retries = 0
        if not binds:
            binds = ["127.0.0.1:%d" % free_port()]
            args += ["--bind", binds[0]]
            self.port_retries = 3
        if workers is not None and "--workers" not in args and "GORGON_WORKERS" not in env \
                and not any(a.startswith("--workers=") for a in args):
            args += ["--workers", str(workers)]
        self.app = app
        self.args = args
        self.env = server_env(env)
        self.binds = binds
        self.addrs = [parse_bind(b) for b in binds]
        Server._seq += 1
        self.name = "gorgon%d" % Server._seq
        self.stdout_path = Path(logdir) / (self.name + ".stdout")
        self.stderr_path = Path(logdir) / (self.name + ".stderr")
        self.proc = None

    # -- addresses --------------------------------------------------------
    @property
    def addr(self):
        """The first TCP (host, port) bound, else the first unix socket path."""
        for a in self.addrs:
            if isinstance(a, tuple):
                return a
        return self.addrs[0]

    @property
    def port(self):
        return self.addr[1]

    @property
    def pid(self):
        return self.proc.pid

    # -- running ----------------------------------------------------------
    def start(self):
        cmd = [sys.executable, "-m", "gorgon", self.app, *self.args]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=SERVER_CWD, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _ALL_PROCS.append(self.proc)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_bytes(self):
        try:
            return self.stderr_path.read_bytes()
        except FileNotFoundError:
            return b""

    def stderr_text(self):
        return self.stderr_bytes().decode("utf-8", "replace")

    def stdout_text(self):
        try:
            return self.stdout_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def describe(self, tail=80):
        lines = self.stderr_text().splitlines()
        return "%s %s %s (exit %s)\n--- stderr (last %d lines) ---\n%s" % (
            self.name, self.app, " ".join(self.args),
            None if self.proc is None else self.proc.poll(), tail,
            "\n".join(lines[-tail:]))

    def wait_ready(self, timeout=20):
        """Wait for one 'Listening at:' line per bind, then for every worker to be ready."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            text = self.stderr_text()
            if len(LISTEN_RE.findall(text)) >= len(self.binds) and ALL_READY_RE.search(text):
                return self
            if self.proc.poll() is not None:
                if self.port_retries and "Address already in use" in self.stderr_text():
                    self.port_retries -= 1
                    self.rebind()
                    self.start()
                    continue
                pytest.fail("server exited before listening\n" + self.describe(),
                            pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail("no %d 'Listening at' line(s) after %.0fs\n%s" % (
                    len(self.binds), scaled(timeout), self.describe()), pytrace=False)
            time.sleep(0.02)

    def rebind(self):
        """Another free port for the one this server was given and lost."""
        new = "127.0.0.1:%d" % free_port()
        self.args[self.args.index(self.binds[0])] = new
        self.binds = [new]
        self.addrs = [parse_bind(new)]

    def wait_port(self, timeout=20):
        """Wait until every bind accepts connections (when logs are filtered)."""
        deadline = time.monotonic() + scaled(timeout)
        for addr in self.addrs:
            while True:
                try:
                    with contextlib.closing(connect(addr, timeout=1)):
                        break
                except OSError:
                    if self.proc.poll() is not None:
                        pytest.fail("server exited before accepting\n" + self.describe(),
                                    pytrace=False)
                    if time.monotonic() > deadline:
                        pytest.fail("%r not accepting after %.0fs\n%s" % (
                            addr, scaled(timeout), self.describe()), pytrace=False)
                    time.sleep(0.05)
        return self

    def wait_exit(self, timeout=20):
        """Wait for the process to exit; fails (after killing it) on timeout."""
        try:
            return self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("server did not exit within %.0fs\n%s" % (
                scaled(timeout), self.describe()), pytrace=False)

    def send_signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Send sig and return the exit code; fails (after killing it) on timeout."""
        self.send_signal(sig)
        return self.wait_exit(timeout)

    def kill(self):
        if self.running():
            self.proc.kill()
            self.proc.wait()

    def shutdown_quietly(self, timeout=5):
        """Teardown: SIGTERM, then SIGKILL if it lingers. Never fails."""
        if self.proc is None:
            return
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(scaled(timeout))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def validator_problems(self, since=0):
        text = self.stderr_bytes()[since:].decode("utf-8", "replace")
        lines = text.splitlines()
        bad = [i for i, line in enumerate(lines) if any(m in line for m in VALIDATOR_MARKERS)]
        if not bad:
            return None
        first = bad[0]
        return "%s: wsgiref.validate reported a problem:\n%s" % (
            self.name, "\n".join(lines[max(0, first - 25):first + 5]))

    def ready_workers(self):
        return [int(n) for n in READY_RE.findall(self.stderr_text())]


@pytest.fixture
def server(tmp_path):
    """Factory: server(app, *args, env=None, wait="listen"|"port"|None, workers=2)."""
    started = []

    def start(app="router:app", *args, env=None, wait="listen", workers=2):
        s = Server(app, args, env=env, logdir=tmp_path, workers=workers)
        started.append(s)
        s.start()
        if wait == "listen":
            s.wait_ready()
        elif wait == "port":
            s.wait_port()
        return s

    yield start
    problems = []
    for s in started:
        s.shutdown_quietly()
        p = s.validator_problems()
        if p:
            problems.append(p)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


class _Pool:
    def __init__(self, logdir):
        self.logdir = logdir
        self.servers = {}

    def get(self, app, args):
        key = (app, tuple(args))
        s = self.servers.get(key)
        if s is None or not s.running():
            s = Server(app, args, logdir=self.logdir)
            self.servers[key] = s
            s.start()
            s.wait_ready()
        return s

    def shutdown(self):
        for s in self.servers.values():
            s.shutdown_quietly()


@pytest.fixture(scope="session")
def _server_pool(tmp_path_factory):
    pool = _Pool(tmp_path_factory.mktemp("shared-servers"))
    yield pool
    pool.shutdown()


# ---------------------------------------------------------------------------
# Redis (the --shared-url tests)


class RedisServer:
    """A redis-server of the test's own on a free loopback port and a unix
    socket, keeping nothing on disk; stop() and start() again (same port and
    socket) play an outage."""

    def __init__(self, workdir, extra=()):
        self.dir = Path(workdir)
        self.extra = [str(a) for a in extra]  # more redis-server options
        self.port = free_port()
        # A short path: a unix socket's name must fit in 108 bytes.
        self.sock = os.path.join(tempfile.mkdtemp(prefix="gorgon-redis-"), "redis.sock")
        self.url = "redis://127.0.0.1:%d/0" % self.port
        self.unix_url = "unix://" + self.sock
        self.proc = None

    def start(self):
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", self.sock,
               "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", str(self.dir),
               "--daemonize", "no", "--protected-mode", "no", *self.extra]
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        _ALL_PROCS.append(self.proc)
        wait_for(self.answers, timeout=scaled(10), what="redis-server to answer")
        return self

    def answers(self):
        if self.proc.poll() is not None:
            raise AssertionError("redis-server exited: " + (self.dir / "redis.log").read_text()[-2000:])
        try:
            return self.command("PING") == b"+PONG"
        except OSError:
            return False

    def command(self, *words):
        """One command over the unix socket; the raw first reply line."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.sock)
            s.sendall(b"*%d\r\n" % len(words) + b"".join(
                b"$%d\r\n%s\r\n" % (len(w), w) for w in (x.encode() if isinstance(x, str) else x
                                                              for x in words)))
            return s.recv(65536).split(b"\r\n")[0]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self):
        self.stop()
        shutil.rmtree(os.path.dirname(self.sock), ignore_errors=True)


REDIS_SERVER = shutil.which("redis-server") or shutil.which("valkey-server")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One redis-server for the session (scripts/bootstrap installs it)."""
    if REDIS_SERVER is None:
        pytest.skip("no redis-server or valkey-server on PATH (scripts/bootstrap installs redis-server)")
    r = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield r
    r.close()


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def _nginx_conf(d, port, upstreams, location):
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    servers = " ".join("server %s;" % u for u in upstreams)
    return f"""{user}
worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
    uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
    upstream app {{ {servers} keepalive 8; keepalive_timeout 3s; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_set_header Host $host; proxy_read_timeout 120s;
            add_header X-Upstream $upstream_addr always;
            {location}
        }}
    }}
}}
"""


@pytest.fixture
def nginx(tmp_path):
    """Factory: nginx(upstreams, location="") starts Debian's nginx
    (scripts/bootstrap installs it) on a free loopback port, in front of the
    upstream servers ("HOST:PORT" or "unix:PATH"), round-robin, with kept-alive
    upstream connections (closed by nginx after 3 s idle, before gorgon's
    --keep-alive would, so none is retried on the next server); location: more directives for `location /`. Each
    response names the upstream that answered in X-Upstream. Returns nginx's
    (host, port)."""
    if NGINX is None:
        pytest.skip("nginx is not installed (Debian's nginx package; scripts/bootstrap installs it)")
    procs = []

    def start(upstreams, location=""):
        d = tempfile.mkdtemp(prefix="gorgon-nginx-", dir=str(tmp_path))
        port = free_port()
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(_nginx_conf(d, port, upstreams, location))
        p = subprocess.Popen([NGINX, "-p", d, "-e", d + "/error.log", "-c", d + "/nginx.conf"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        _ALL_PROCS.append(p)

        def up():
            if p.poll() is not None:
                raise AssertionError("nginx exited: " + Path(d, "error.log").read_text()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, scaled(10), what="nginx listening")
        return ("127.0.0.1", port)

    yield start
    for p in procs:
        p.terminate()
        p.wait(scaled(10))


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server for this test alone (one it may stop)."""
    if REDIS_SERVER is None:
        pytest.skip("no redis-server or valkey-server on PATH (scripts/bootstrap installs redis-server)")
    r = RedisServer(tmp_path).start()
    yield r
    r.close()


@pytest.fixture
def shared_server(_server_pool):
    """Factory: a server shared by every test that asks for the same app + args.

    At teardown: fails if the server died during the test or its log got a
    validator complaint while the test ran."""
    leases = []

    def get(app="router:app", *args):
        s = _server_pool.get(app, [str(a) for a in args])
        leases.append((s, len(s.stderr_bytes())))
        return s

    yield get
    problems = []
    for s, offset in leases:
        if not s.running():
            problems.append("shared server died during the test\n" + s.describe())
        p = s.validator_problems(offset)
        if p:
            problems.append(p)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


ROUTER_ARGS = ("--workers", "2", "--keep-alive", "5", "--header-timeout", "5")


@pytest.fixture
def router(shared_server):
    """The shared router:app server (tests/apps/router.py), 2 workers."""
    return shared_server("router:app", *ROUTER_ARGS)


# ---------------------------------------------------------------------------
# raw HTTP client


def connect(addr, timeout=10):
    if isinstance(addr, Server):
        addr = addr.addr
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(addr)
        except OSError:
            s.close()
            raise
        return s
    host, port = addr
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except OSError:
        s.close()
        raise
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def host_header(addr):
    if isinstance(addr, Server):
        addr = addr.addr
    if isinstance(addr, str):
        return "localhost"
    host, port = addr
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


class Response:
    def __init__(self, version, status, reason, headers, body, chunked=False,
                 truncated=False, trailers=(), raw_head=b""):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.chunked = chunked
        self.truncated = truncated
        self.trailers = list(trailers)
        self.raw_head = raw_head
        self.interim = []

    def headers_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def header(self, name):
        values = self.headers_all(name)
        assert len(values) <= 1, "more than one %s header: %r" % (name, values)
        return values[0] if values else None

    def has_token(self, name, token):
        return any(token.lower() == t.strip().lower()
                   for v in self.headers_all(name) for t in v.split(","))

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError("not JSON: %r" % (self.body[:500],))

    def __repr__(self):
        return "<Response %s %s %r body=%d bytes%s%s>" % (
            self.status, self.reason, self.headers, len(self.body),
            " chunked" if self.chunked else "", " TRUNCATED" if self.truncated else "")


class Conn:
    """A raw HTTP/1.x client connection."""

    def __init__(self, addr, timeout=10):
        if isinstance(addr, Server):
            addr = addr.addr
        self.addr = addr
        self.timeout = scaled(timeout)
        self.sock = connect(addr, timeout=self.timeout)
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def abort(self):
        """Close with RST (SO_LINGER 0)."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        self.close()

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def send_slowly(self, data, step=1, pause=0.001):
        for i in range(0, len(data), step):
            self.sock.sendall(data[i:i + step])
            if pause:
                time.sleep(pause)

    def request(self, method="GET", target="/", headers=(), body=b"",
                version="HTTP/1.1", host=True, read=True):
        self.send(build_request(method, target, headers, body, version,
                                host_header(self.addr) if host is True else host))
        if read:
            return self.response(method)
        return None

    # -- reading ------------------------------------------------------------
    def _fill(self, deadline, what):
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out waiting for %s; have %d bytes: %r" % (
                what, len(self.buf), bytes(self.buf[:600])))
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 18)
        except socket.timeout:
            raise AssertionError("timed out waiting for %s; have %d bytes: %r" % (
                what, len(self.buf), bytes(self.buf[:600])))
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, marker, deadline, what):
        start = 0
        while True:
            i = self.buf.find(marker, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(marker)])
                del self.buf[:i + len(marker)]
                return out
            start = max(0, len(self.buf) - len(marker) + 1)
            if not self._fill(deadline, what):
                return None

    def _read_exact(self, n, deadline, what):
        while len(self.buf) < n:
            if not self._fill(deadline, what):
                break
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self, timeout=None):
        deadline = time.monotonic() + (scaled(timeout) if timeout else self.timeout)
        head = self._read_until(b"\r\n\r\n", deadline, "a response head")
        if head is None:
            raise AssertionError("connection closed%s before a response head; got %r" % (
                " (reset)" if self.reset else "", bytes(self.buf[:600])))
        lines = head[:-4].split(b"\r\n")
        m = re.fullmatch(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?", lines[0])
        assert m, "bad status line %r (head %r)" % (lines[0], head)
        headers = []
        for line in lines[1:]:
            assert b":" in line, "bad header line %r in %r" % (line, head)
            k, v = line.split(b":", 1)
            assert k == k.strip() and k, "bad header name %r" % (k,)
            headers.append((k.decode("latin-1"), v.strip(b" \t").decode("latin-1")))
        return Response(m.group(1).decode(), int(m.group(2)),
                        (m.group(3) or b"").decode("latin-1"), headers, b"", raw_head=head)

    def read_response(self, method="GET", timeout=None, allow_truncated=False):
        """One response (a 1xx interim one included: see response())."""
        deadline = time.monotonic() + (scaled(timeout) if timeout else self.timeout)
        resp = self.read_head(timeout)
        if method == "HEAD" or 100 <= resp.status < 200 or resp.status in (204, 304):
            return resp
        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        if te is not None:
            assert te.lower() == "chunked", "unexpected Transfer-Encoding %r" % te
            assert cl is None, "both Content-Length and Transfer-Encoding: %r" % resp
            resp.chunked = True
            body = bytearray()
            while True:
                line = self._read_until(b"\r\n", deadline, "a chunk size line")
                if line is None:
                    resp.truncated = True
                    break
                size_text = line[:-2].split(b";")[0].strip()
                assert re.fullmatch(rb"[0-9a-fA-F]+", size_text), \
                    "bad chunk size line %r" % (line,)
                size = int(size_text, 16)
                if size == 0:
                    while True:
                        t = self._read_until(b"\r\n", deadline, "trailers")
                        if t is None:
                            resp.truncated = True
                            break
                        if t == b"\r\n":
                            break
                        resp.trailers.append(t[:-2])
                    break
                data = self._read_exact(size + 2, deadline, "chunk data")
                if len(data) < size + 2:
                    body += data[:size]
                    resp.truncated = True
                    break
                assert data[size:] == b"\r\n", "chunk data not followed by CRLF: %r" % (
                    data[max(0, size - 20):],)
                body += data[:size]
            resp.body = bytes(body)
        elif cl is not None:
            assert re.fullmatch(r"\d+", cl), "bad Content-Length %r" % cl
            n = int(cl)
            resp.body = self._read_exact(n, deadline, "a %d-byte body" % n)
            resp.truncated = len(resp.body) < n
        else:
            while self._fill(deadline, "the body (read until close)"):
                pass
            resp.body = bytes(self.buf)
            self.buf.clear()
        if resp.truncated and not allow_truncated:
            raise AssertionError("response body truncated: %r, got %r" % (
                resp, resp.body[-200:]))
        return resp

    def response(self, method="GET", timeout=None, allow_truncated=False):
        """The final response; 1xx interim responses go to .interim."""
        interim = []
        while True:
            r = self.read_response(method, timeout, allow_truncated)
            if 100 <= r.status < 200:
                interim.append(r)
                continue
            r.interim = interim
            return r

    def poll_data(self, seconds):
        """Wait up to `seconds` for the server to send something or close.

        Returns the bytes that arrived (b"" when the peer closed, None when
        nothing happened)."""
        if self.buf:
            data = bytes(self.buf)
            self.buf.clear()
            return data
        if self.eof:
            return b""
        r, _, _ = select.select([self.sock], [], [], seconds)
        if not r:
            return None
        try:
            data = self.sock.recv(1 << 18)
        except ConnectionResetError:
            self.eof = self.reset = True
            return b""
        if not data:
            self.eof = True
        return data

    def wait_closed(self, timeout=5):
        """Read until the server closes; returns the extra bytes that came first.

        Fails if the connection is still open after `timeout` seconds."""
        deadline = time.monotonic() + scaled(timeout)
        extra = bytes(self.buf)
        self.buf.clear()
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection still open after %.1fs (got %r)" % (
                    scaled(timeout), extra[:300]))
            data = self.poll_data(left)
            if data:
                extra += data
        return extra

    def closed_within(self, seconds):
        """True if the server closed the connection within `seconds`.

        Bytes that arrive meanwhile are kept in self.buf."""
        deadline = time.monotonic() + seconds
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                data = self.sock.recv(1 << 18)
            except ConnectionResetError:
                self.eof = self.reset = True
                break
            if not data:
                self.eof = True
            self.buf += data
        return True


def build_request(method="GET", target="/", headers=(), body=b"", version="HTTP/1.1",
                  host="127.0.0.1"):
    if isinstance(body, str):
        body = body.encode("latin-1")
    lines = ["%s %s %s" % (method, target, version)]
    if host:
        lines.append("Host: %s" % host)
    names = set()
    for k, v in (headers.items() if isinstance(headers, dict) else headers):
        lines.append("%s: %s" % (k, v))
        names.add(k.lower())
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(body, size=7, ext=b"", trailers=b""):
    """body as a chunked request body."""
    out = bytearray()
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
    out += b"0\r\n" + trailers + b"\r\n"
    return bytes(out)


def fetch(addr, target="/", method="GET", headers=(), body=b"", version="HTTP/1.1",
          timeout=10, allow_truncated=False):
    """One request on a fresh connection; returns the final response."""
    with Conn(addr, timeout) as c:
        c.send(build_request(method, target, headers, body, version, host_header(c.addr)))
        return c.response(method, allow_truncated=allow_truncated)


def raw_exchange(addr, data, timeout=10):
    """Send raw bytes, read one response, then whatever follows until close.

    Returns (response, extra_bytes, closed)."""
    with Conn(addr, timeout) as c:
        c.send(data)
        resp = c.response()
        closed = c.closed_within(scaled(3))
        extra = bytes(c.buf)
        return resp, extra, closed


def in_threads(fn, args_list, timeout=60):
    """Run fn(*args) for each args in parallel threads; results in order."""
    results = [None] * len(args_list)
    errors = []
    barrier = threading.Barrier(len(args_list))

    def run(i, args):
        try:
            barrier.wait(timeout=scaled(10))
            results[i] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((i, e))

    threads = [threading.Thread(target=run, args=(i, a), daemon=True)
               for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(timeout))
    alive = [t for t in threads if t.is_alive()]
    assert not alive, "%d threads still running after %ss" % (len(alive), scaled(timeout))
    if errors:
        i, e = errors[0]
        raise AssertionError("%d of %d calls failed; first (#%d): %r" % (
            len(errors), len(args_list), i, e)) from e
    return results


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def wait_for(predicate, timeout=5, interval=0.02, what="condition"):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (scaled(timeout), what))
        time.sleep(interval)


def log_since(s, offset):
    """What server `s` logged after the first `offset` bytes."""
    return s.stderr_bytes()[offset:].decode("utf-8", "replace")


def one_error_entry(s, offset, heading, line):
    """Waits until `line` is in what `s` logged since `offset`; it and the
    entry's `heading` are there once, and the server did not crash."""
    log = wait_for(lambda: line in log_since(s, offset) and log_since(s, offset), 5,
                   what="%r in the log" % line)
    assert log.count(heading) == 1 and log.count(line) == 1, log
    assert "Fatal" not in log and "Segmentation" not in log, log
    return log


def read_lines(path):
    try:
        return Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
