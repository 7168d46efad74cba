"""The documented gorgon.shared and gorgon.channel calls that the worker tests
(test_shared.py) do not make, checked in a plain Python process (outside the
server gorgon.shared and channels work for that one process; the C behind
them is the same), with the in-process store and again over a redis-server."""
import subprocess
import sys
import textwrap

import pytest

from conftest import scaled, server_env

SCRIPT = textwrap.dedent('''
    import gorgon
    s = gorgon.shared
    s.clear()

    # setdefault stores only when the key is missing, and returns what is stored
    assert s.setdefault("sd", 1) == 1
    assert s.setdefault("sd", 2) == 1 and s.get("sd") == 1
    assert s.setdefault(b"sd", (1, "x")) == (1, "x")  # bytes and str keys differ
    assert s.get("sd") == 1

    # cas compares type and value exactly: 1, 1.0 and True differ
    s.set("c", 1)
    assert s.cas("c", 1.0, "x") is False and s.cas("c", True, "x") is False
    assert s.get("c") == 1 and type(s.get("c")) is int
    assert s.cas("c", 1, "y") is True and s.get("c") == "y"
    s.set("f", 1.0)
    assert s.cas("f", 1, 0) is False and s.cas("f", True, 0) is False and s.cas("f", 1.0, 0) is True
    s.set("b", True)
    assert s.cas("b", 1, 0) is False and s.cas("b", 1.0, 0) is False and s.cas("b", True, 0) is True
    # a missing key compares as None
    assert s.cas("missing", 0, 5) is False and "missing" not in s
    assert s.cas("missing", None, 5) is True and s.get("missing") == 5
    # delete says whether the key was there
    s.set("gone", 1)
    assert s.delete("gone") is True and "gone" not in s and s.get("gone", "dflt") == "dflt"
    assert s.delete("gone") is False and s.delete(b"never") is False

    assert len(s) == 6 and sorted(s.keys(), key=repr) == sorted(["b", "c", "f", "missing", "sd", b"sd"], key=repr)

    # channels: capacity, len, closed, repr; reopening
    ch = gorgon.channel("api-ch", 3)
    assert ch.capacity == 3 and len(ch) == 0 and ch.closed is False
    assert repr(ch) == "<gorgon.Channel 'api-ch': 0 of 3>", repr(ch)
    try:
        gorgon.channel("api-ch", 4)
    except ValueError as e:
        assert "capacity 3" in str(e), e
    else:
        raise AssertionError("a different capacity for an existing channel was accepted")
    same = gorgon.channel("api-ch")  # no capacity: the existing one
    assert same.capacity == 3
    ch.send(1)
    same.send_nowait(2)
    assert len(ch) == 2 and len(same) == 2
    assert repr(ch) == "<gorgon.Channel 'api-ch': 2 of 3>", repr(ch)
    assert gorgon.channel("api-ch", 3).capacity == 3  # the same capacity is fine
    ch.close()
    assert ch.closed is True and same.closed is True
    assert ch.recv() == 1 and same.recv_nowait() == 2  # what was queued, then Closed
    for call in (ch.recv_nowait, lambda: ch.send(3), lambda: ch.recv(timeout=5)):
        try:
            call()
        except gorgon.Closed:
            pass
        else:
            raise AssertionError("a closed channel did not raise Closed")
    print("ok")
''')


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_documented_shared_and_channel_calls(tmp_path, request, backend):
    script = SCRIPT
    if backend == "redis":
        # The same calls on a store and channels in Redis (what --shared-url
        # gives the workers), under a prefix of this test's own.
        url = request.getfixturevalue("redis_server").url
        script = "from gorgon import _gorgon\n_gorgon._shared_connect(%r, 'api-test:')\n" % url + SCRIPT
    out = subprocess.run([sys.executable, "-c", script], env=server_env(), capture_output=True,
                         text=True, timeout=scaled(30), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok", out.stdout
