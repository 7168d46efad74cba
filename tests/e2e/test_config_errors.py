"""Settings that cannot work are refused before anything starts: a usage
message naming the setting (exit status 2, as argparse gives) or, for a bad
GORGON_* value, one line naming the variable (exit status 1); never a
traceback, never a server that starts anyway."""
import pytest

from conftest import run_gorgon


@pytest.mark.parametrize("flag,value", [
    ("--limit-request-line", "0"), ("--limit-request-fields", "0"),
    ("--limit-request-field-size", "-1"), ("--limit-request-header-size", "0"),
    ("--limit-request-body", "-1"), ("--ws-max-size", "0"), ("--write-high-water", "0"),
    ("--io-timeout", "0"), ("--io-timeout", "-1"), ("--header-timeout", "0"),
    ("--keep-alive", "-5"), ("--graceful-timeout", "-1"), ("--ws-ping-interval", "nan"),
    ("--io-timeout", "inf"), ("--workers", "0"), ("--max-connections", "-2"),
    ("--processes", "-1"), ("--probe-timeout", "0"), ("--shared-max-bytes", "0"),
    ("--workers", "two"), ("--forwarded-allow-ips", "10.0.0.300"),
    ("--max-requests", "-1"), ("--max-requests-jitter", "-1"),
])
def test_bad_flag_value_is_refused(flag, value):
    r = run_gorgon("hello:app", "--bind", "127.0.0.1:0", flag, value, timeout=20)
    err = r.stderr.decode()
    assert r.returncode == 2, (r.returncode, err)
    assert "Traceback" not in err, err
    assert flag in err, err


@pytest.mark.parametrize("flag,value", [("--keep-alive", "0"), ("--graceful-timeout", "0"),
                                        ("--limit-request-body", "0"), ("--ws-ping-interval", "0")])
def test_zero_where_zero_means_something_is_accepted(server, flag, value):
    srv = server("hello:app", flag, value, wait="port")
    assert srv.stop() == 0


@pytest.mark.parametrize("var,value", [("GORGON_WORKERS", "many"), ("GORGON_IO_TIMEOUT", "soon"),
                                       ("GORGON_LIMIT_REQUEST_BODY", "1e3"), ("GORGON_KEEP_ALIVE", "x"),
                                       ("GORGON_CERT_REQS", "maybe")])
def test_bad_environment_value_is_refused(var, value):
    r = run_gorgon("hello:app", "--bind", "127.0.0.1:0", env={var: value}, timeout=20)
    err = r.stderr.decode()
    assert r.returncode == 1, (r.returncode, err)
    assert "Traceback" not in err, err
    assert err.strip() == "gorgon: %s=%r is not a valid value" % (var, value), err


def test_bad_environment_value_that_parses_is_checked_as_the_flag():
    r = run_gorgon("hello:app", "--bind", "127.0.0.1:0", env={"GORGON_IO_TIMEOUT": "-3"}, timeout=20)
    err = r.stderr.decode()
    assert r.returncode == 2 and "--io-timeout" in err and "Traceback" not in err, (r.returncode, err)


@pytest.mark.parametrize("flag,value,says", [
    ("--chdir", "/nonexistent/gorgon-dir", "gorgon: --chdir /nonexistent/gorgon-dir: No such file or directory"),
    ("--pid", "/nonexistent/gorgon-dir/x.pid", "gorgon: --pid /nonexistent/gorgon-dir/x.pid: No such file or directory"),
])
def test_path_that_cannot_be_used_is_one_line(flag, value, says):
    r = run_gorgon("hello:app", "--bind", "127.0.0.1:0", flag, value, timeout=20)
    err = r.stderr.decode()
    assert r.returncode == 1 and err.strip() == says, (r.returncode, err)



BINDS_64 = ",".join("127.0.0.1:%d" % (20000 + i) for i in range(64))


@pytest.mark.parametrize("args,says", [
    (("--cert-reqs", "maybe"), "--cert-reqs/--ssl-cert-reqs: not none, optional or required (or 0, 1, 2)"),
    (("--reload", "--reload-dir", "/nonexistent/gorgon-dir"), "--reload-dir: not a directory: /nonexistent/gorgon-dir"),
    (("--shared-timeout", "0"), "--shared-timeout must be more than 0 seconds"),
    (("--shared-url", "http://127.0.0.1:6379"), "--shared-url: expected redis://"),
    (("--max-worker-memory", "-1"), "--max-worker-memory must be a number of mebibytes"),
    (("--timeout", "-1"), "--timeout must be a number of seconds, at least 0"),
    (("--bind", BINDS_64, "--proxy-protocol-bind", "127.0.0.1:20064"),
     "the PROXY protocol is available on the first 64 binds only"),
], ids=["cert-reqs", "reload-dir", "shared-timeout", "shared-url", "max-worker-memory",
        "timeout", "proxy-bind-65"])
def test_bad_setting_is_a_usage_message(args, says):
    bind = () if "--bind" in args else ("--bind", "127.0.0.1:0")
    r = run_gorgon("hello:app", *bind, *args, timeout=20)
    err = r.stderr.decode()
    assert r.returncode == 2, (r.returncode, err)
    assert "Traceback (most recent call last)" not in err and says in err, err
