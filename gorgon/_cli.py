"""Command line and GORGON_* environment parsing.

Only configuration lives here: the server itself (sockets, workers,
interpreters, HTTP, WSGI) is the C extension ``gorgon._gorgon``. The main
interpreter never imports the application; each worker does, in its own
sub-interpreter.
"""

import argparse
import importlib.util
import ipaddress
import math
import os
import sys
import sysconfig

from gorgon import __version__

DISTRIBUTION = "gorgon-server"  # the name on PyPI; the package and the command are `gorgon`

# (flag, type, default, help). Every flag is also read from GORGON_<FLAG>.
LIMITS = [
    ("--limit-request-line", int, 8190, "longest request line in bytes (414 beyond)"),
    ("--limit-request-fields", int, 100, "most header fields in a request (431 beyond; at most 256)"),
    ("--limit-request-field-size", int, 8190, "longest header field in bytes (431 beyond)"),
    ("--limit-request-header-size", int, 65536, "largest request head in bytes (431 beyond)"),
    ("--limit-request-body", int, 100 * 1024 * 1024, "largest request body in bytes, 0 for no limit (413 beyond)"),
    ("--ws-max-size", int, 16 * 1024 * 1024, "largest WebSocket message in bytes (close code 1009 beyond)"),
]

# gorgon.shared, the store every worker of the process shares.
SHARED = [
    ("--shared-max-bytes", int, 64 * 1024 * 1024,
     "bound on gorgon.shared's total size in bytes (keys, values and overhead); a set beyond it "
     "raises MemoryError and changes nothing (with --shared-url: the largest value; Redis's own "
     "maxmemory bounds the total)"),
    ("--shared-url", str, "",
     "keep gorgon.shared and channels in this Redis or Valkey instead of the process: "
     "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], the same with rediss:// for TLS (query: "
     "?ca=FILE&cert=FILE&key=FILE) or unix:///PATH[?db=N]; every process and every "
     "instance that names the same server and prefix shares one store"),
    ("--shared-prefix", str, "gorgon:", "with --shared-url: the prefix of every Redis key gorgon writes"),
    ("--shared-timeout", float, 2.0,
     "with --shared-url: seconds a connect or a call to Redis may take before it raises "
     "gorgon.Unavailable"),
    ("--shared-wait", float, 0.0,
     "with --shared-url: seconds to keep trying a Redis that does not answer at start (one log "
     "line, then retries with backoff) before exiting with status 1; 0 exits at once"),
]

TIMEOUTS = [
    ("--keep-alive", float, 5.0, "seconds an idle keep-alive connection is kept"),
    ("--header-timeout", float, 10.0, "seconds a client has to send a request head (408 after)"),
    ("--io-timeout", float, 60.0, "seconds without progress reading a body or writing a response"),
    ("--graceful-timeout", float, 30.0, "seconds in-flight requests get to finish on stop"),
    ("--ws-ping-interval", float, 20.0, "idle seconds before the server pings a WebSocket client, 0 for never; "
     "no pong within as long again closes it"),
]

# Limits and timeouts for which 0 means something (no body limit; no idle
# keep-alive; stop at once; never ping); every other one must be above 0.
ZERO_ALLOWED = {"--limit-request-body", "--keep-alive", "--graceful-timeout", "--ws-ping-interval"}

DEFAULT_BIND = "127.0.0.1:8000"
# --reload's patterns, as uvicorn's.
RELOAD_INCLUDE = ["*.py"]
RELOAD_EXCLUDE = [".*", ".py[cod]", ".sw.*", "~*"]
DEFAULT_ATTRIBUTE = "application"  # APP without :ATTRIBUTE, as gunicorn does

# Environment variables whose name is not GORGON_<LONG FLAG> (None: no variable).
ENV_NAMES = {"help": None, "version": None, "app": "GORGON_APP",
             "pure_fallback": "GORGON_NO_PURE_FALLBACK"}

# Defaults the parser cannot hold as such: resolved after parsing, or
# different on each machine. Shown by --help and docs/settings.md.
SHOWN_DEFAULTS = {"bind": DEFAULT_BIND, "workers": "the number of CPU cores",
                  "shared_url": "none (the in-process store)"}

# Settings with no flag: environment variables only (CPython workarounds).
ENV_ONLY = [
    ("GORGON_NO_DATETIME_WORKAROUND",
     "1: the main interpreter does not import _datetime before the workers start (without it, "
     "workers importing datetime or sqlite3 crashed when their interpreters ended); 3.13 only: "
     "on 3.14 and newer the import is not made"),
    ("GORGON_NO_END_ORDER_WORKAROUND",
     "1: each worker's interpreter ends as soon as the worker does, instead of newest first "
     "(without it, interpreters that imported datetime and sqlite3 aborted at exit); 3.13 only: "
     "on 3.14 and newer each ends as soon as its worker does"),
    ("GORGON_NO_FAILED_IMPORT_WORKAROUND",
     "1: an interpreter that failed to import the application is ended and Python finalizes as usual, "
     "instead of keeping it and leaving with _exit(); 3.13 only: on 3.14 and newer it is so already"),
    ("GORGON_NO_DUMMY_THREAD_WORKAROUND",
     "1: a worker thread's threading._DummyThread is not dropped before its interpreter ends; "
     "3.13 only: on 3.14 and newer it is not dropped"),
]


def env_name(flag):
    return "GORGON_" + flag.lstrip("-").replace("-", "_").upper()


def action_env(action):
    """The GORGON_* variable that sets this option, or None."""
    if action.dest in ENV_NAMES:
        return ENV_NAMES[action.dest]
    return env_name([o for o in action.option_strings if o.startswith("--")][0])


def format_default(value):
    if value is None or value == "" or value is argparse.SUPPRESS:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value >= 1 << 20 and value % (1 << 20) == 0:
        return "%d (%d MiB)" % (value, value >> 20)
    return str(value)


def shown_default(action, environ=None):
    """The default as a person should read it; one set in the environment says so."""
    environ = os.environ if environ is None else environ
    env = action_env(action)
    if env and environ.get(env):
        return "%s (from %s)" % (environ[env], env)
    if action.dest in SHOWN_DEFAULTS:
        return SHOWN_DEFAULTS[action.dest]
    return format_default(action.default)


class HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default and its environment variable."""

    def _get_help_string(self, action):
        text = action.help or ""
        notes = []
        default = shown_default(action)
        if default:
            notes.append("default: " + default.replace("%", "%%"))
        env = action_env(action)
        if env:
            notes.append("env " + env)
        return text + (" (%s)" % "; ".join(notes) if notes else "")


def env_default(flag, default, conv=str):
    raw = os.environ.get(env_name(flag))
    if raw is None or raw == "":
        return default
    try:
        return conv(raw)
    except (ValueError, argparse.ArgumentTypeError):
        raise SystemExit(f"gorgon: {env_name(flag)}={raw!r} is not a valid value")


def env_bool(flag):
    raw = os.environ.get(env_name(flag), "")
    return raw.lower() in ("1", "true", "yes", "on")


def version_text():
    """What `gorgon --version` prints: gorgon, the Python under it, and what that Python offers."""
    impl = sys.implementation.name
    py = "%s %s" % ("CPython" if impl == "cpython" else impl, sys.version.split()[0])
    own_gil = impl == "cpython" and importlib.util.find_spec("_interpreters") is not None
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        free = "no (a GIL build: --mode threads takes turns)"
    elif sys._is_gil_enabled():
        free = "built for it, but the GIL is on (PYTHON_GIL=1, or a module that needs the GIL)"
    else:
        free = "yes (--mode threads runs in parallel)"
    return "\n".join([
        "gorgon %s (%s)" % (__version__, DISTRIBUTION),
        "Python: %s (%s)" % (py, sys.executable),
        "own-GIL sub-interpreters: %s" % ("yes" if own_gil else "no"),
        "free-threading: %s" % free,
    ])


class VersionAction(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser():
    p = argparse.ArgumentParser(
        prog="gorgon",
        description="Serve a WSGI or ASGI application from own-GIL sub-interpreter workers, "
        "all in one process. Every option can also be set with a GORGON_* "
        "environment variable (--workers -> GORGON_WORKERS; lists comma-separated, on/off as 1 "
        "or 0); flags win. Every setting: docs/settings.md.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("app", nargs="?", default=os.environ.get("GORGON_APP"),
                   help="the application as MODULE:ATTRIBUTE, or MODULE:FACTORY() for an app factory; "
                   "MODULE alone means MODULE:%s" % DEFAULT_ATTRIBUTE)
    p.add_argument("--version", action=VersionAction,
                   help="print gorgon's version, the Python it runs on, and whether that Python has "
                   "own-GIL sub-interpreters and free-threading, then exit")
    p.add_argument("-b", "--bind", action="append", default=None, metavar="ADDR",
                   help="address to listen on: HOST:PORT, [IPv6]:PORT, unix:/path, or fd://N (a "
                   "listening socket inherited as descriptor N); repeatable (in the environment: "
                   "comma-separated). Under systemd socket activation (LISTEN_FDS) the sockets it "
                   "passes are used, with these besides")
    p.add_argument("-w", "--workers", type=int, default=env_default("--workers", os.cpu_count() or 1, int), metavar="N",
                   help="workers: interpreters (one OS thread each), processes with --mode processes, "
                   "threads with --mode threads; per process with --processes")
    p.add_argument("--mode", choices=["auto", "interpreters", "processes", "threads"],
                   default=env_default("--mode", "auto"),
                   help="how workers run the app: interpreters (own-GIL sub-interpreters, one thread "
                   "each, one process), processes (forked children, each with the app in its main "
                   "interpreter), threads (threads sharing the main interpreter: parallel only on a "
                   "free-threaded build); auto: interpreters if the app imports in a sub-interpreter "
                   "(tried in a throwaway child process), else processes")
    p.add_argument("--processes", type=int, default=env_default("--processes", 0, int), metavar="P",
                   help="with --mode interpreters or threads: P forked worker processes with --workers "
                   "workers each, so a crash takes down one process, which is restarted (0: one process)")
    p.add_argument("--pure-fallback", dest="pure_fallback", action=argparse.BooleanOptionalAction,
                   default=not env_bool("--no-pure-fallback"),
                   help="in a sub-interpreter, when a compiled module refuses to load and its package "
                   "ships the module's .py source beside it (falcon does), load the source instead "
                   "(GORGON_NO_PURE_FALLBACK=1 turns it off)")
    p.add_argument("--probe-timeout", type=float, default=env_default("--probe-timeout", 60.0, float), metavar="SECONDS",
                   help="seconds --mode auto's import probe may take before the app is run in processes")
    p.add_argument("--interface", choices=["auto", "wsgi", "asgi"], default=env_default("--interface", "auto"),
                   help="application interface; auto: ASGI if the app is a coroutine function or "
                   "has an async __call__, else WSGI")
    p.add_argument("--http", choices=["auto", "1", "2"], default=env_default("--http", "auto"),
                   help="HTTP versions served: auto (HTTP/1.1, and HTTP/2 by ALPN h2 on TLS or by its "
                   "preface or by Upgrade: h2c in the clear, h2c), 1 (HTTP/1.1 only), 2 (HTTP/2 only)")
    p.add_argument("--lifespan", choices=["auto", "on", "off"], default=env_default("--lifespan", "auto"),
                   help="ASGI lifespan events: auto runs them if the app supports them")
    p.add_argument("--root-path", default=env_default("--root-path", ""), metavar="PATH",
                   help="ASGI root_path: the prefix the app is mounted under behind a proxy")
    p.add_argument("--chdir", default=env_default("--chdir", None), metavar="DIR", help="change to this directory first")
    p.add_argument("--pid", default=env_default("--pid", None), metavar="FILE",
                   help="write the server's process id to FILE, removed when it stops")
    p.add_argument("--umask", default=env_default("--umask", None), metavar="MASK",
                   help="file mode mask (octal, e.g. 007) set first: unix socket files and what the "
                   "app creates follow it")
    p.add_argument("--user", default=env_default("--user", None), metavar="USER",
                   help="once the sockets are bound (a port below 1024 needs root), run as this user "
                   "(name or id), in its group unless --group says otherwise")
    p.add_argument("--group", default=env_default("--group", None), metavar="GROUP",
                   help="once the sockets are bound, run in this group (name or id)")
    p.add_argument("--pythonpath", action="append", default=None, metavar="DIRS",
                   help="comma-separated directories to put first on sys.path; repeatable")
    p.add_argument("--log-level", default=env_default("--log-level", "info"),
                   choices=["debug", "info", "warning", "error", "critical"], help="error log threshold")
    p.add_argument("--access-log", action="store_true", default=env_bool("--access-log"),
                   help="write one combined-format line per request to stdout")
    p.add_argument("--backlog", type=int, default=env_default("--backlog", 2048, int), metavar="N",
                   help="listen queue length")
    p.add_argument("--max-connections", type=int, default=env_default("--max-connections", 0, int), metavar="N",
                   help="open connections per worker; beyond it the worker stops accepting and hands new "
                   "clients to a worker with room (0: an equal share of the open-file limit, whose soft "
                   "value is raised to the hard one at start)")
    p.add_argument("--max-connections-total", type=int, default=env_default("--max-connections-total", 0, int),
                   metavar="N", help="open connections in the whole server (with several processes, an equal "
                   "share each); a client beyond it is answered 503 with Connection: close (0: no bound "
                   "beyond --max-connections per worker)")
    p.add_argument("--write-high-water", type=int, default=env_default("--write-high-water", 1 << 20, int), metavar="BYTES",
                   help="queued response bytes per connection above which the worker stops "
                   "producing until the client reads")
    p.add_argument("--reuse-port", dest="reuse_port", action=argparse.BooleanOptionalAction,
                   default=env_default("--reuse-port", False, lambda s: s.lower() in ("1", "true", "yes", "on")),
                   help="one SO_REUSEPORT socket per worker for TCP binds, balanced by the kernel's "
                   "hash even onto a busy worker; the default is one shared socket that only idle "
                   "workers accept from (EPOLLEXCLUSIVE)")
    p.add_argument("--ws-per-message-deflate", dest="ws_per_message_deflate", action=argparse.BooleanOptionalAction,
                   default=env_bool("--ws-per-message-deflate"),
                   help="accept WebSocket clients' permessage-deflate offers (RFC 7692, as browsers send "
                   "them): messages both ways compressed with small zlib windows, about 31 KB more per "
                   "connection while its compression context is kept; off by default")
    p.add_argument("--proxy-protocol", action="store_true", default=env_bool("--proxy-protocol"),
                   help="connections on every bind start with a PROXY protocol header (v1 or v2, "
                   "told apart by their signatures) from a --forwarded-allow-ips peer, whose "
                   "client address the app then sees; a connection without one is closed")
    p.add_argument("--proxy-protocol-bind", action="append", default=None, metavar="ADDR",
                   help="listen on ADDR (as --bind) for connections that start with a PROXY "
                   "header, beside the plain --bind ones; repeatable "
                   "(in the environment: comma-separated)")
    p.add_argument("--proxy-headers", dest="proxy_headers", action=argparse.BooleanOptionalAction,
                   default=env_default("--proxy-headers", True, lambda s: s.lower() in ("1", "true", "yes", "on")),
                   help="from --forwarded-allow-ips peers, believe Forwarded and X-Forwarded-For/-Proto/"
                   "-Host/-Port: the client's address (the right-most untrusted hop), the scheme "
                   "(https, wss) and the host it asked for; from other peers they change nothing")
    p.add_argument("--forwarded-allow-ips", default=env_default("--forwarded-allow-ips", "127.0.0.1"),
                   metavar="IPS",
                   help="comma-separated addresses and CIDR networks trusted to send a PROXY "
                   "header and proxy headers, or '*' for any (a unix socket peer always is)")
    p.add_argument("--metrics-bind", default=env_default("--metrics-bind", ""), metavar="ADDR",
                   help="serve Prometheus metrics at http://ADDR/metrics (HOST:PORT or unix:/path), "
                   "on a listener of its own answered by the server's C code, never by a worker: "
                   "off by default")
    p.add_argument("--max-requests", type=int, default=env_default("--max-requests", 0, int), metavar="N",
                   help="replace a worker once it has served N requests (0: never): a new worker starts "
                   "first, then the old one finishes its requests and ends; with worker processes, "
                   "the worker's process is replaced")
    p.add_argument("--max-requests-jitter", type=int, default=env_default("--max-requests-jitter", 0, int),
                   metavar="J", help="add a random 0..J to each worker's --max-requests, so that workers "
                   "are not all replaced at once")
    p.add_argument("--max-worker-memory", type=float, default=env_default("--max-worker-memory", 0.0, float),
                   metavar="MB", help="replace a worker whose memory grew above MB mebibytes, as --max-requests "
                   "does (0: never): with worker processes, the process's resident memory; in one process, "
                   "the interpreter's own small-object heap (see the README for what that leaves out)")
    p.add_argument("--reload", action="store_true", default=env_bool("--reload"),
                   help="development: watch the application's files and reload it when one changes, as "
                   "SIGHUP does (new workers import it afresh); never for production")
    p.add_argument("--reload-dir", action="append", default=None, metavar="DIR",
                   help="with --reload, a directory to watch (and the directories under it); repeatable (in the "
                   "environment: comma-separated); the default is the working directory and the "
                   "--pythonpath directories")
    p.add_argument("--reload-include", action="append", default=None, metavar="GLOB",
                   help="with --reload, also watch files whose name matches GLOB (beside the default *.py); "
                   "repeatable; naming a default exclude pattern takes it out of the excludes")
    p.add_argument("--reload-exclude", action="append", default=None, metavar="GLOB",
                   help="with --reload, ignore files and directories whose name matches GLOB (beside the "
                   "defaults %s); repeatable; naming *.py takes it out of the includes" % ", ".join(RELOAD_EXCLUDE))
    p.add_argument("-t", "--timeout", type=float, default=env_default("--timeout", 0.0, float), metavar="SECONDS",
                   help="a request whose application code runs this long without returning to the server "
                   "is answered 504 (or its connection closed if the response began), logged with its "
                   "Python stack, and interrupted; a worker stuck in C code is replaced (0: off)")
    add_tls_options(p)
    for flag, conv, default, text in LIMITS + SHARED + TIMEOUTS:
        p.add_argument(flag, type=conv, default=env_default(flag, default, conv), help=text,
                       metavar="SECONDS" if conv is float else "BYTES" if "bytes" in text
                       else "URL" if flag == "--shared-url" else "TEXT" if conv is str else "N")
    return p


# --cert-reqs as gunicorn's and uvicorn's numbers (ssl.CERT_NONE, _OPTIONAL, _REQUIRED) too.
CERT_REQS = {"none": "none", "optional": "optional", "required": "required",
             "0": "none", "1": "optional", "2": "required"}


def cert_reqs(value):
    try:
        return CERT_REQS[value.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError("not none, optional or required (or 0, 1, 2)")


def add_tls_options(p):
    """TLS, with gunicorn's names (and uvicorn's --ssl-* ones as aliases)."""
    p.add_argument("--certfile", "--ssl-certfile", dest="certfile", default=env_default("--certfile", None),
                   metavar="FILE", help="serve TLS on every TCP bind with this PEM certificate (the "
                   "server's first, then any intermediate CAs); unix sockets stay plain")
    p.add_argument("--keyfile", "--ssl-keyfile", dest="keyfile", default=env_default("--keyfile", None),
                   metavar="FILE", help="the PEM private key of --certfile (if not in --certfile itself)")
    p.add_argument("--keyfile-password", "--ssl-keyfile-password", dest="keyfile_password",
                   default=env_default("--keyfile-password", None), metavar="PASSWORD",
                   help="password of an encrypted --keyfile (the environment variable keeps it out "
                   "of the process list)")
    p.add_argument("--ca-certs", "--ssl-ca-certs", dest="ca_certs", default=env_default("--ca-certs", None),
                   metavar="FILE", help="PEM CA certificates that client certificates are verified with")
    p.add_argument("--cert-reqs", "--ssl-cert-reqs", dest="cert_reqs", type=cert_reqs,
                   choices=["none", "optional", "required"], default=env_default("--cert-reqs", "none", cert_reqs),
                   help="client certificates (mutual TLS): not asked for, verified when given, or "
                   "required (a client without one fails the handshake); 0, 1, 2 as in gunicorn")
    p.add_argument("--ssl-ciphers", "--ciphers", dest="ssl_ciphers", default=env_default("--ssl-ciphers", None),
                   metavar="LIST", help="OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's "
                   "defaults); default: OpenSSL's")
    p.add_argument("--ssl-min-version", choices=["1.2", "1.3"], default=env_default("--ssl-min-version", "1.2"),
                   help="oldest TLS version accepted")


def check_tls(args):
    """The TLS options that need --certfile, and --cert-reqs that needs --ca-certs."""
    if not args.certfile:
        given = [f for f, v in (("--keyfile", args.keyfile), ("--keyfile-password", args.keyfile_password),
                                ("--ca-certs", args.ca_certs), ("--ssl-ciphers", args.ssl_ciphers)) if v]
        if given or args.cert_reqs != "none":
            build_parser().error("%s needs --certfile" % (given[0] if given else "--cert-reqs"))
        return
    if args.cert_reqs != "none" and not args.ca_certs:
        build_parser().error("--cert-reqs %s needs --ca-certs (the CAs that sign client certificates)"
                             % args.cert_reqs)


def split_list(values, env_flag):
    if values is None:
        raw = os.environ.get(env_name(env_flag), "")
        values = [raw] if raw else []
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def activated_sockets():
    """The listening sockets systemd handed over (socket activation), as
    fd://3, fd://4, ...; the variables are then removed, so that no child
    takes them for its own."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        n = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        n = 0
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return ["fd://%d" % fd for fd in range(3, 3 + max(n, 0))]


def user_ids(args):
    """--user / --group as (uid, gid), -1 for what stays as it is; a user
    without --group takes that user's own group."""
    import grp
    import pwd
    uid = gid = -1
    try:
        if args.user:
            pw = pwd.getpwuid(int(args.user)) if args.user.isdigit() else pwd.getpwnam(args.user)
            uid, gid = pw.pw_uid, pw.pw_gid
        if args.group:
            gid = int(args.group) if args.group.isdigit() else grp.getgrnam(args.group).gr_gid
    except (KeyError, ValueError) as e:
        build_parser().error(f"--user/--group: no such user or group ({e})")
    return uid, gid


def bind_plan(args):
    """Every address to listen on, and the indexes of those that expect a
    PROXY header (--proxy-protocol: all; else the --proxy-protocol-bind ones)."""
    plain = getattr(args, "activated", []) + split_list(args.bind, "--bind")
    proxied = split_list(args.proxy_protocol_bind, "--proxy-protocol-bind")
    binds = plain + [b for b in proxied if b not in plain] or [DEFAULT_BIND]
    return binds, [i for i, b in enumerate(binds) if args.proxy_protocol or b in proxied]


def make_config(args):
    binds, proxy_listeners = bind_plan(args)
    paths = [os.path.abspath(d) for d in split_list(args.pythonpath, "--pythonpath")]
    cwd = os.getcwd()
    # Workers start from the main interpreter's path (the active virtual
    # environment included), with --pythonpath and the working directory first,
    # as `python -m` and gunicorn do.
    sys_path = paths + [cwd] + [p for p in sys.path if p not in ("", cwd)]
    cfg = {
        "app": args.app,
        "version": __version__,
        "binds": binds,
        "workers": args.workers,
        "interface": args.interface,
        "lifespan": args.lifespan,
        "http": {"auto": 0, "1": 1, "2": 2}[args.http],
        "root_path": args.root_path,
        "sys_path": sys_path,
        "log_level": args.log_level,
        "access_log": bool(args.access_log),
        "backlog": args.backlog,
        "max_connections": args.max_connections,
        "max_connections_total": args.max_connections_total,
        "write_high_water": args.write_high_water,
        "reuse_port": bool(args.reuse_port),
        "ws_per_message_deflate": bool(args.ws_per_message_deflate),
        "datetime_workaround": not env_bool("--no-datetime-workaround"),
        "mode": args.mode,
        "processes": args.processes,
        "pure_fallback": bool(args.pure_fallback),
        "probe_timeout": args.probe_timeout,
        "max_requests": args.max_requests,
        "max_requests_jitter": args.max_requests_jitter,
        "timeout": args.timeout,
        "reload": bool(args.reload),
        "max_worker_memory": int(args.max_worker_memory * 1024 * 1024),
        "proxy_listeners": proxy_listeners,
        "proxy_headers": bool(args.proxy_headers),
        "forwarded_allow_ips": args.forwarded_allow_ips,
        "certfile": args.certfile or None,
        "keyfile": args.keyfile or None,
        "keyfile_password": args.keyfile_password or None,
        "ca_certs": args.ca_certs or None,
        "cert_reqs": args.cert_reqs,
        "ssl_ciphers": args.ssl_ciphers or None,
        "ssl_min_version": args.ssl_min_version,
        "metrics_bind": args.metrics_bind or "",
    }
    for flag, _conv, _default, _text in LIMITS + SHARED + TIMEOUTS:
        key = flag.lstrip("-").replace("-", "_")
        cfg[key] = getattr(args, key)
    cfg["reload_dirs"], cfg["reload_include"], cfg["reload_exclude"] = reload_plan(args)
    return cfg


def reload_plan(args):
    """--reload's directories, include and exclude patterns (uvicorn's
    rules: a pattern named on the other side leaves the defaults)."""
    dirs = split_list(args.reload_dir, "--reload-dir") or (
        [os.getcwd()] + split_list(args.pythonpath, "--pythonpath"))
    inc = split_list(args.reload_include, "--reload-include")
    exc = split_list(args.reload_exclude, "--reload-exclude")
    include = [p for p in RELOAD_INCLUDE if p not in exc] + [p for p in inc if p not in RELOAD_INCLUDE]
    exclude = [p for p in RELOAD_EXCLUDE if p not in inc] + [p for p in exc if p not in RELOAD_EXCLUDE]
    return [os.path.abspath(d) for d in dirs], include, exclude


def start_watcher(config):
    """--reload: the watcher process (gorgon/_watch.py), which sends this
    process SIGHUP when a watched file changes."""
    import subprocess

    dirs, include, exclude = config["reload_dirs"], config["reload_include"], config["reload_exclude"]
    for d in dirs:
        if not os.path.isdir(d):
            build_parser().error(f"--reload-dir: not a directory: {d}")
    cmd = [sys.executable, "-m", "gorgon._watch", "--server", str(os.getpid())]
    cmd += [x for d in dirs for x in ("--dir", d)]
    cmd += [x for g in include for x in ("--include", g)]
    cmd += [x for g in exclude for x in ("--exclude", g)]
    env = dict(os.environ)
    # The watcher imports gorgon from wherever this process did.
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.activated = activated_sockets()
    if not args.app:
        build_parser().error("the application (MODULE:ATTRIBUTE) is required")
    if ":" not in args.app:
        args.app += ":" + DEFAULT_ATTRIBUTE
    if args.workers < 1:
        build_parser().error("--workers must be at least 1")
    if args.shared_max_bytes < 1:
        build_parser().error("--shared-max-bytes must be at least 1")
    if not math.isfinite(args.shared_timeout) or args.shared_timeout <= 0:
        build_parser().error("--shared-timeout must be more than 0 seconds")
    if not math.isfinite(args.shared_wait) or args.shared_wait < 0:
        build_parser().error("--shared-wait must be a number of seconds, at least 0")
    if args.shared_url and not args.shared_url.startswith(("redis://", "unix://", "rediss://")):
        build_parser().error("--shared-url: expected redis://[user:password@]host:port/db, rediss://... "
                             "or unix:///path")
    if args.processes < 0:
        build_parser().error("--processes must be at least 0")
    if args.max_connections < 0:
        build_parser().error("--max-connections must be at least 0 (0: sized from the open-file limit)")
    if args.max_connections_total < 0:
        build_parser().error("--max-connections-total must be at least 0 (0: no server-wide bound)")
    if args.processes and args.mode == "processes":
        build_parser().error("--processes goes with --mode interpreters or threads; "
                             "with --mode processes, --workers is the number of processes")
    if args.max_requests < 0 or args.max_requests_jitter < 0:
        build_parser().error("--max-requests and --max-requests-jitter must be at least 0")
    if not math.isfinite(args.max_worker_memory) or args.max_worker_memory < 0:
        build_parser().error("--max-worker-memory must be a number of mebibytes, at least 0 (0: never)")
    if not math.isfinite(args.timeout) or args.timeout < 0:
        build_parser().error("--timeout must be a number of seconds, at least 0 (0: off)")
    if args.probe_timeout <= 0:
        build_parser().error("--probe-timeout must be positive")
    if args.write_high_water < 1:
        build_parser().error("--write-high-water must be at least 1")
    for flag, conv, _default, _text in LIMITS + TIMEOUTS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if conv is int and value < (0 if flag in ZERO_ALLOWED else 1):
            build_parser().error("%s must be at least %d" % (flag, 0 if flag in ZERO_ALLOWED else 1))
        if conv is float and (not math.isfinite(value) or value < 0):
            build_parser().error("%s must be a number of seconds, at least 0" % flag)
        if conv is float and value == 0 and flag not in ZERO_ALLOWED:
            build_parser().error("%s must be more than 0 seconds" % flag)
    check_tls(args)
    if any(i >= 64 for i in bind_plan(args)[1]):
        build_parser().error("the PROXY protocol is available on the first 64 binds only")
    for item in (i.strip() for i in args.forwarded_allow_ips.split(",")):
        try:
            if item and item != "*":
                ipaddress.ip_network(item, strict=False)
        except ValueError:
            build_parser().error(f"--forwarded-allow-ips: not an address, a network or '*': {item!r}")
    if args.umask is not None:
        try:
            os.umask(int(args.umask, 8))
        except ValueError:
            build_parser().error(f"--umask: not an octal mask: {args.umask!r}")
    if args.chdir:
        try:
            os.chdir(args.chdir)
        except OSError as e:
            raise SystemExit(f"gorgon: --chdir {args.chdir}: {e.strerror}")
    from gorgon import _gorgon

    config = make_config(args)
    config["uid"], config["gid"] = user_ids(args)
    if args.pid:
        try:
            with open(args.pid, "w") as f:
                f.write("%d\n" % os.getpid())
        except OSError as e:
            raise SystemExit(f"gorgon: --pid {args.pid}: {e.strerror}")
    watcher = start_watcher(config) if args.reload else None
    try:
        return _gorgon.serve(config)
    finally:
        if watcher is not None:
            watcher.terminate()
            try:
                watcher.wait(5)
            except Exception:  # noqa: BLE001 - it goes with us anyway (PR_SET_PDEATHSIG)
                pass
        if args.pid:
            try:
                os.unlink(args.pid)
            except OSError:
                pass
