"""What the garbage collector is told gorgon's objects hold (their
tp_traverse, and the module's m_traverse): everything such an object
reports holding must name it among its referrers (gc.get_referrers walks
the same function and stops at the first match), and it must report what
it holds, or a reference cycle through it would never be collected."""
import json
import subprocess
import sys
import textwrap

from conftest import fetch, scaled, server_env

MODULE = textwrap.dedent('''
    import gc, io, sys
    import gorgon
    from gorgon import _gorgon

    def held_by(obj):
        held = gc.get_referents(obj)
        for v in held:
            assert any(r is obj for r in gc.get_referrers(v)), (obj, v)
        return held

    # The module state: its types and exceptions, while the asyncio helper
    # for channels is not imported yet, and after.
    gc.collect()
    held = held_by(_gorgon)
    for obj in (_gorgon.RequestTimeout, gorgon.Empty, gorgon.Full, gorgon.Closed, gorgon.Unavailable,
                type(gorgon.shared), _gorgon.FileWrapper):
        assert any(v is obj for v in held), obj
    ch = gorgon.channel("gc")
    assert "gorgon._shared_aio" not in sys.modules
    ch.recv_async(timeout=0).close()
    aio = sys.modules["gorgon._shared_aio"]
    assert any(v is aio for v in held_by(_gorgon)) and any(v is type(ch) for v in held_by(_gorgon))

    # wsgi.file_wrapper: its type and the file it wraps.
    f = io.BytesIO(b"abc")
    fw = _gorgon.FileWrapper(f, 2)
    assert held_by(fw) == [type(fw), f] or held_by(fw) == [f, type(fw)]
    assert list(fw) == [b"ab", b"c"]
    # ... and what it refuses (PEP 3333: blocks of blksize bytes, close() passed on)
    for blksize in (0, -1):
        try:
            _gorgon.FileWrapper(f, blksize)
        except ValueError as e:
            assert str(e) == "blksize must be positive", e
        else:
            raise AssertionError("blksize %d accepted" % blksize)
    fw.close()
    assert f.closed
    assert _gorgon.FileWrapper(iter([])).close() is None  # nothing to close

    class Broken:
        def read(self, n):
            raise OSError("disk gone")
    try:
        next(_gorgon.FileWrapper(Broken()))
    except OSError as e:
        assert str(e) == "disk gone", e
    else:
        raise AssertionError("a failing read() was not raised")
    print("ok")
''')


def test_module_state_and_file_wrapper_report_what_they_hold(tmp_path):
    out = subprocess.run([sys.executable, "-c", MODULE], env=server_env(), capture_output=True, text=True,
                         timeout=scaled(60), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok", out.stdout


def test_asgi_request_and_ready_awaitable_report_what_they_hold(server):
    srv = server("gcrefs:app", "--workers", "1")
    r = fetch(srv, "/", method="POST", body=b"payload")
    assert r.status == 200, (r, srv.describe())
    report = json.loads(r.body)
    assert report["body"] == "payload"
    # The awaitable holds its type and one object; the request its type,
    # the app's task and a list (the body's chunks).
    assert len(report["ready"]) == 2 and "type" in report["ready"], report
    assert report["request"] == ["Task", "list", "type"], report
    assert "AssertionError" not in srv.stderr_text(), srv.describe()
