"""The WSGI environ (PEP 3333) as the app sees it."""
import pytest

from conftest import Conn, fetch, wait_for


def echo(router, target="/echo", method="GET", headers=(), body=b"", version="HTTP/1.1"):
    r = fetch(router, target, method, headers, body, version)
    assert r.status == 200, r
    return r.json()


def test_cgi_variables(router):
    with Conn(router) as c:
        j = c.request("GET", "/echo/a?x=1&y=2").json()
        local_port = c.local_port
    env = j["environ"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/echo/a"
    assert env["QUERY_STRING"] == "x=1&y=2"
    assert env["RAW_URI"] == "/echo/a?x=1&y=2"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(router.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(local_port)
    assert env["HTTP_HOST"] == "127.0.0.1:%d" % router.port


def test_wsgi_variables(router):
    w = echo(router)["wsgi"]
    assert w["wsgi.version"] == [1, 0]
    assert w["wsgi.url_scheme"] == "http"
    assert w["wsgi.input_terminated"] is True
    assert w["wsgi.multithread"] is False
    assert isinstance(w["wsgi.multiprocess"], bool), w
    assert w["wsgi.run_once"] is False
    assert w["wsgi.file_wrapper"] is True
    assert w["wsgi.errors"] is True


def test_app_runs_in_a_sub_interpreter(router):
    j = echo(router)
    assert j["interp"] not in (0, None), j["interp"]
    assert j["tid"] != j["pid"], "app ran on the process's main thread"


def test_empty_query_string_present(router):
    env = echo(router, "/echo/x")["environ"]
    assert env["QUERY_STRING"] == "" and env["RAW_URI"] == "/echo/x"


def test_path_info_percent_decoded_latin1(router):
    env = echo(router, "/echo/a%20b/%C3%A9/%7e?q=a%20b")["environ"]
    assert env["PATH_INFO"] == "/echo/a b/\u00c3\u00a9/~"
    assert env["QUERY_STRING"] == "q=a%20b"
    assert env["RAW_URI"] == "/echo/a%20b/%C3%A9/%7e?q=a%20b"


def test_path_info_encoded_slash_and_percent(router):
    env = echo(router, "/echo/a%2Fb%25c")["environ"]
    assert env["PATH_INFO"] == "/echo/a/b%c"


def test_content_type_and_length(router):
    env = echo(router, "/echo", "POST", [("Content-Type", "text/x-test; charset=utf-8")],
               b"12345")["environ"]
    assert env["CONTENT_TYPE"] == "text/x-test; charset=utf-8"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_http_headers(router):
    env = echo(router, headers=[("X-Custom-Header", "value 1"), ("x-lower", "v2"),
                                ("User-Agent", "gorgon-tests"), ("Accept", "*/*")])["environ"]
    assert env["HTTP_X_CUSTOM_HEADER"] == "value 1"
    assert env["HTTP_X_LOWER"] == "v2"
    assert env["HTTP_USER_AGENT"] == "gorgon-tests"
    assert env["HTTP_ACCEPT"] == "*/*"


def test_header_value_whitespace_trimmed(router):
    with Conn(router) as c:
        c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Pad: \t  padded value \t \r\n\r\n")
        env = c.response().json()["environ"]
    assert env["HTTP_X_PAD"] == "padded value"


def test_header_names_with_underscore_dropped(router):
    env = echo(router, headers=[("X_Under", "evil"), ("X-Under", "good")])["environ"]
    assert env["HTTP_X_UNDER"] == "good"
    assert not any("evil" in v for v in env.values()), env


def test_repeated_headers_joined_with_comma(router):
    env = echo(router, headers=[("X-Rep", "a"), ("X-Other", "o"), ("X-Rep", "b"),
                                ("x-rep", "c")])["environ"]
    assert env["HTTP_X_REP"] == "a,b,c"
    assert env["HTTP_X_OTHER"] == "o"


def test_obs_text_header_value_is_latin1(router):
    with Conn(router) as c:
        c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9\r\n\r\n")
        env = c.response().json()["environ"]
    assert env["HTTP_X_LATIN"] == "caf\u00e9"


def test_http10_protocol(router):
    with Conn(router) as c:
        c.send(b"GET /echo HTTP/1.0\r\n\r\n")
        env = c.response().json()["environ"]
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                    "OPTIONS"])
def test_request_method(router, method):
    with Conn(router) as c:
        r = c.request(method, "/echo")
        assert r.status == 200
        if method != "HEAD":
            assert r.json()["environ"]["REQUEST_METHOD"] == method


def test_environ_is_fresh_per_request(router):
    with Conn(router) as c:
        for _ in range(3):
            assert c.request("GET", "/echo").json()["leaked"] is False


def test_no_header_leak_between_requests(router):
    with Conn(router) as c:
        assert c.request("GET", "/echo", headers=[("X-Once", "1")]).json()[
            "environ"]["HTTP_X_ONCE"] == "1"
        env = c.request("GET", "/echo").json()["environ"]
    assert "HTTP_X_ONCE" not in env


def test_wsgi_errors_goes_to_server_log(router):
    marker = "gorgon-test-wsgi-errors-marker-41d7"
    echo(router, "/echo?errors=" + marker)
    wait_for(lambda: marker in router.stderr_text(), 5, what="wsgi.errors text in the log")


@pytest.mark.parametrize("host,name,port", [
    ("example.com", "example.com", "80"),
    ("example.com:8080", "example.com", "8080"),
    ("[::1]:8081", "[::1]", "8081"),
    ("[::1]", "[::1]", "80"),
])
def test_server_name_and_port_from_host(router, host, name, port):
    with Conn(router) as c:
        c.send(b"GET /echo HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
        env = c.response().json()["environ"]
    assert (env["SERVER_NAME"], env["SERVER_PORT"], env["HTTP_HOST"]) == (name, port, host), env


def test_server_name_from_an_absolute_target_without_host(router):
    with Conn(router) as c:
        c.send(b"GET http://example.org:81/echo/abs HTTP/1.0\r\n\r\n")
        env = c.response().json()["environ"]
    assert (env["SERVER_NAME"], env["SERVER_PORT"], env["PATH_INFO"]) == ("example.org", "81", "/echo/abs"), env


def test_cookies_joined_with_semicolon_and_long_header_names(router):
    long_name = "X-" + "Long-" * 60 + "Name"  # past the server's stack buffer for the key
    env = echo(router, headers=[("Cookie", "a=1"), ("Cookie", "b=2"), (long_name, "v")])["environ"]
    assert env["HTTP_COOKIE"] == "a=1; b=2", env
    assert env["HTTP_" + long_name.upper().replace("-", "_")] == "v", sorted(env)
