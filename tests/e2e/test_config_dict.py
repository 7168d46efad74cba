"""The C side of the settings (src/server/config.c): gorgon._gorgon.serve()
takes the dict the command line makes, and refuses one it cannot use with the
exception and message that name the key, before anything starts. The command
line never sends such a dict (test_config_errors.py: it refuses bad values
first); this is the check behind it, called directly."""
import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import scaled, server_env

# (key, value or DELETE, exception type name, text in the message)
DELETE = "<delete>"
CASES = [
    ("app", DELETE, "KeyError", "gorgon config: missing app"),
    ("app", 1, "TypeError", "bad argument type"),
    ("binds", "127.0.0.1:0", "TypeError", "gorgon config: binds must be a list"),
    ("binds", [1], "TypeError", "bad argument type"),
    ("sys_path", DELETE, "KeyError", "gorgon config: missing sys_path"),
    ("workers", "2", "TypeError", "'str' object cannot be interpreted as an integer"),
    ("workers", 0, "ValueError", "gorgon config: workers must be positive"),
    ("backlog", 0, "ValueError", "gorgon config: backlog must be positive"),
    ("shared_max_bytes", 0, "ValueError", "gorgon config: shared_max_bytes must be positive"),
    ("graceful_timeout", "soon", "TypeError", "must be real number, not str"),
    ("graceful_timeout", DELETE, "KeyError", "gorgon config: missing graceful_timeout"),
    ("log_level", "loud", "ValueError", "gorgon config: unknown log_level"),
    ("limit_request_line", 0, "ValueError", "gorgon config: limit_request_line must be positive"),
    ("limit_request_fields", 0, "ValueError", "gorgon config: limit_request_fields must be positive"),
    ("limit_request_field_size", 0, "ValueError", "gorgon config: limit_request_field_size must be positive"),
    ("limit_request_header_size", 0, "ValueError", "gorgon config: limit_request_header_size must be positive"),
    ("limit_request_body", -2, "ValueError", "gorgon config: limit_request_body + 1 must be positive"),
    ("limit_request_body", DELETE, "KeyError", "gorgon config: missing limit_request_body"),
    ("max_connections", -2, "ValueError", "gorgon config: max_connections + 1 must be positive"),
    ("write_high_water", 0, "ValueError", "gorgon config: write_high_water must be positive"),
    ("access_log", "yes", "TypeError", "'str' object cannot be interpreted as an integer"),
    ("max_connections_total", -2, "ValueError", "gorgon config: max_connections_total + 1 must be positive"),
    ("max_connections_total", "many", "TypeError", "'str' object cannot be interpreted as an integer"),
    ("ws_max_size", 0, "ValueError", "gorgon config: ws_max_size must be positive"),
    ("ws_per_message_deflate", "on", "TypeError", "'str' object cannot be interpreted as an integer"),
    ("http", 3, "ValueError", "gorgon config: http must be 0 (auto), 1 or 2"),
    ("http", "2", "TypeError", "'str' object cannot be interpreted as an integer"),
    ("ws_ping_interval", DELETE, "KeyError", "gorgon config: missing ws_ping_interval"),
    ("io_timeout", "x", "TypeError", "must be real number, not str"),
    ("shared_url", None, "TypeError", "bad argument type"),
    ("shared_timeout", "x", "TypeError", "must be real number, not str"),
    ("mode", "forks", "ValueError", "gorgon config: unknown mode 'forks'"),
    ("processes", -2, "ValueError", "gorgon config: processes + 1 must be positive"),
    ("probe_timeout", 0.0001, "ValueError", "gorgon config: probe_timeout must be positive"),
    ("max_requests", -2, "ValueError", "gorgon config: max_requests + 1 must be positive"),
    ("max_requests_jitter", -2, "ValueError", "gorgon config: max_requests_jitter + 1 must be positive"),
    ("max_worker_memory", -2, "ValueError", "gorgon config: max_worker_memory + 1 must be positive"),
    ("proxy_listeners", [1], "ValueError", "gorgon config: proxy_listeners: 1 is not one of the first 64 binds"),
    ("proxy_listeners", [-1], "ValueError", "gorgon config: proxy_listeners: -1 is not one of the first 64 binds"),
    ("proxy_listeners", ["0"], "TypeError", "'str' object cannot be interpreted as an integer"),
    ("forwarded_allow_ips", "10.0.0.300", "ValueError", "--forwarded-allow-ips: "),
    ("forwarded_allow_ips", 10, "TypeError", "bad argument type"),
    ("uid", "root", "TypeError", "'str' object cannot be interpreted as an integer"),
    ("certfile", 1, "TypeError", "bad argument type"),
    ("ssl_min_version", 1.3, "TypeError", "bad argument type"),
    ("metrics_bind", DELETE, "KeyError", "gorgon config: missing metrics_bind"),
]

# Every key the C side reads without a default: each missing in turn is a
# KeyError naming it.
REQUIRED = ["app", "interface", "lifespan", "root_path", "binds", "sys_path", "workers", "backlog", "reuse_port",
            "datetime_workaround", "graceful_timeout", "log_level", "shared_max_bytes", "limit_request_line",
            "limit_request_fields", "limit_request_field_size", "limit_request_header_size",
            "limit_request_body", "max_connections", "write_high_water", "access_log", "ws_max_size",
            "ws_ping_interval", "header_timeout", "keep_alive", "io_timeout", "shared_url", "shared_prefix",
            "shared_timeout", "shared_wait", "mode", "processes", "pure_fallback", "probe_timeout",
            "max_requests", "timeout", "max_worker_memory", "max_requests_jitter", "metrics_bind"]
CASES += [(key, DELETE, "KeyError", "gorgon config: missing %s" % key) for key in REQUIRED]
# Keys that may be absent or None, but must be str (TLS) or int (the rest) when given.
CASES += [(key, 1, "TypeError", "bad argument type")
          for key in ("certfile", "keyfile", "keyfile_password", "ca_certs", "cert_reqs", "ssl_ciphers")]
CASES += [(key, "x", "TypeError", "'str' object cannot be interpreted as an integer") for key in ("gid",)]

SCRIPT = textwrap.dedent('''
    import json, sys
    from gorgon import _cli, _gorgon
    # An application that cannot be imported: a config wrongly accepted ends soon.
    base = _cli.make_config(_cli.build_parser().parse_args(["no_such_module_here:app", "--bind", "127.0.0.1:0"]))
    base["uid"], base["gid"] = -1, -1
    results = []
    for key, value in json.loads(sys.argv[1]):
        cfg = dict(base)
        if value == "%s":
            del cfg[key]
        else:
            cfg[key] = value
        try:
            _gorgon.serve(cfg)
        except Exception as e:
            results.append([type(e).__name__, str(e)])
        else:
            results.append(["served", ""])
    try:
        _gorgon.serve([base])
    except TypeError as e:
        results.append(["TypeError", str(e)])
    print(json.dumps(results))
''' % DELETE)


def test_a_config_it_cannot_use_is_refused_naming_the_key(tmp_path):
    cases = [[key, value] for key, value, _, _ in CASES]
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cases)], env=server_env(),
                         capture_output=True, text=True, timeout=scaled(60), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert results[-1] == ["TypeError", "gorgon config must be a dict"], results[-1]
    for (key, value, exc, text), (got, msg) in zip(CASES, results):
        assert got == exc and text in msg, (key, value, got, msg)
    # Nothing started: no worker, no listening line.
    assert "Listening at" not in out.stderr and "worker" not in out.stderr, out.stderr


@pytest.mark.skipif(sys.version_info < (3, 13), reason="the _interpreters module is 3.13's")
def test_serve_from_a_sub_interpreter_is_refused(tmp_path):
    script = textwrap.dedent('''
        import _interpreters
        interp = _interpreters.create()
        exc = _interpreters.run_string(interp, "from gorgon import _gorgon\\n_gorgon.serve({})")
        print(exc.type.__name__, exc.msg)
    ''')
    out = subprocess.run([sys.executable, "-c", script], env=server_env(), capture_output=True, text=True,
                         timeout=scaled(60), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "RuntimeError gorgon._gorgon.serve() runs in the main interpreter only", out


TLS_SCRIPT = textwrap.dedent('''
    import json, sys
    from gorgon import _cli, _gorgon
    certfile, keyfile, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    base = _cli.make_config(_cli.build_parser().parse_args(
        ["no_such_module_here:app", "--bind", "127.0.0.1:0", "--certfile", certfile, "--keyfile", keyfile]))
    base["uid"], base["gid"] = -1, -1
    for reqs, ca in cases:
        cfg = dict(base, cert_reqs=reqs, ca_certs=ca)
        print(_gorgon.serve(cfg), flush=True)
''')


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (scripts/bootstrap installs it)")
def test_tls_settings_the_command_line_would_refuse_end_serve_with_one_line(tmp_path):
    """--cert-reqs outside none/optional/required, or asking for client
    certificates with no --ca-certs to check them: the C side refuses them
    too (serve() returns 1 and logs one critical line, nothing listens)."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", "k.pem", "-out", "c.pem", "-days", "2", "-subj", "/CN=localhost"],
                   cwd=tmp_path, check=True, capture_output=True)
    cases = [["sometimes", None], ["required", None], ["optional", ""]]
    out = subprocess.run([sys.executable, "-c", TLS_SCRIPT, str(tmp_path / "c.pem"), str(tmp_path / "k.pem"),
                          json.dumps(cases)], env=server_env(), capture_output=True, text=True,
                         timeout=scaled(60), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "1"], (out.stdout, out.stderr)
    critical = [line.split("[CRITICAL] ", 1)[1] for line in out.stderr.splitlines() if "[CRITICAL] " in line]
    assert critical == ["--cert-reqs sometimes: not none, optional or required",
                        "--cert-reqs required needs --ca-certs (the CAs that sign client certificates)",
                        "--cert-reqs optional needs --ca-certs (the CAs that sign client certificates)"], out.stderr
    assert "Listening at" not in out.stderr, out.stderr
