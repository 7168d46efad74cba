"""The application named on the command line: MODULE:ATTRIBUTE,
MODULE:FACTORY() (called once per worker), and callable objects, told ASGI
from WSGI by their __call__; a factory that raises, or a name that is not
there, ends the start with one line naming it and exit status 1."""
import pytest

from conftest import APPS, fetch

from test_lifecycle import assert_short_error, failed_start


@pytest.mark.parametrize("spec,body", [
    ("factories:make()", b"wsgi from a factory\n"),
    ("factories:make_asgi()", b"asgi from an object\n"),
    ("factories:asgi_object", b"asgi from an object\n"),
    ("factories:wsgi_object", b"wsgi from a factory\n"),
])
def test_factories_and_callable_objects_serve(server, spec, body):
    srv = server(spec, "--workers", "1")
    r = fetch(srv, "/")
    assert r.status == 200 and r.body == body, (r, srv.describe())
    interface = "ASGI" if b"asgi" in body else "WSGI"
    assert "interface: %s (detected from the application)" % interface in srv.stderr_text(), srv.describe()


@pytest.mark.parametrize("spec,says", [
    ("factories:raises()", "cannot import application 'factories:raises()': RuntimeError: no app today (%s, line "
     % (APPS / "factories.py")),
    ("factories:missing()", "module 'factories' has no attribute 'missing'"),
    ("factories:missing", "module 'factories' has no attribute 'missing'"),
    ("factories:", "application 'factories:' is not of the form MODULE:ATTRIBUTE"),
    (":app", "application ':app' is not of the form MODULE:ATTRIBUTE"),
])
def test_factory_that_fails_is_one_line_and_exit_1(server, spec, says):
    rc, text = failed_start(server, spec, "--workers", "1", "--mode", "interpreters")
    assert rc == 1, "exit code %s\n%s" % (rc, text)
    assert says in text, text
    assert_short_error(text)
