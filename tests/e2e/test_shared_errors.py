"""gorgon.shared and channels refusing what they cannot do, each with its own
exception and message, and the store left as it was: bad arguments, values
and keys that cannot be shared, a full store, incr on what is not an int; over
Redis also a key another program wrote, a key of another Redis type, Redis
full (maxmemory), scripts flushed, a Redis that stops answering or closes the
connection (gorgon.Unavailable, one warning, then the line saying it answers
again), AUTH and SELECT. Checked in a plain Python process (outside the server
gorgon.shared works for that one process; the C behind it is the same)."""
import subprocess
import sys
import textwrap

import pytest

from conftest import REDIS_SERVER, RedisServer, scaled, server_env

HELPERS = textwrap.dedent('''
    import math, socket, sys, time
    import gorgon
    from gorgon import _gorgon

    def raises(exc, text, fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except exc as e:
            assert text in str(e), "expected %r in %r" % (text, str(e))
        else:
            raise AssertionError("no %s from %r%r" % (exc.__name__, fn, args))

    def eventually(fn, seconds=10):
        """fn() once it stops raising gorgon.Unavailable (a back-off ends)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                return fn()
            except gorgon.Unavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
''')

LOCAL = HELPERS + textwrap.dedent('''
    s = gorgon.shared
    s.clear()
    s.set("kept", 1)

    # arguments, as a Python function would refuse them
    raises(TypeError, "get() missing required argument 'key'", s.get)
    raises(TypeError, "get() takes at most 2 arguments (3 given)", s.get, "a", 1, 2)
    raises(TypeError, "set() got an unexpected keyword argument 'tll'", s.set, "a", 1, tll=1)
    raises(TypeError, "set() got multiple values for argument 'value'", s.set, "a", 1, value=2)
    for ttl in (-1, math.inf, math.nan):
        raises(ValueError, "ttl must be a non-negative number of seconds", s.set, "a", 1, ttl=ttl)
    raises(ValueError, "ttl must be positive (None: the key never expires)", s.set, "a", 1, ttl=0)
    raises(TypeError, "must be real number, not str", s.incr, "a", ttl="soon")
    raises(ValueError, "ttl must be positive", s.cas, "a", None, 1, ttl=0)
    raises(ValueError, "ttl must be positive", s.setdefault, "a", 1, ttl=0)
    raises(TypeError, "cas() missing required argument 'new'", s.cas, "a", None)
    raises(TypeError, "incr() takes at most 3 arguments (4 given)", s.incr, "a", 1, None, 4)
    raises(TypeError, "gorgon.shared keys must be str or bytes, not 'int'", s.incr, 5)
    raises(TypeError, "setdefault() missing required argument 'key'", s.setdefault)
    assert s.setdefault("none-by-default") is None and "none-by-default" in s

    # keys and values of the exact types only
    class Str(str):
        pass
    raises(TypeError, "gorgon.shared keys must be str or bytes, not 'int'", s.get, 1)
    raises(TypeError, "gorgon.shared keys must be str or bytes, not 'Str'", s.set, Str("a"), 1)
    raises(TypeError, "keys must be str or bytes, not 'tuple'", s.delete, ("a",))
    raises(TypeError, "keys must be str or bytes, not 'NoneType'", s.__contains__, None)
    raises(TypeError, "a value of type 'list' cannot be shared (only None, bool, int, float, str, bytes, "
                      "and tuples of these)", s.set, "a", [1])
    raises(TypeError, "a value of type 'Str' cannot be shared", s.set, "a", (1, Str("x")))
    raises(TypeError, "a value of type 'dict' cannot be shared", s.cas, "a", {}, 1)
    raises(TypeError, "a value of type 'set' cannot be shared", s.setdefault, "a", set())
    deep = ()
    for _ in range(63):
        deep = (deep,)  # 64 tuples, one in the other
    s.set("deep", deep)
    assert s.get("deep") == deep
    raises(ValueError, "tuples nested more than 64 deep cannot be shared", s.set, "a", (deep,))
    # ints of any size, and str with lone surrogates, come back as they went
    for v in (-1, -(2**200), 2**63, "\\udcff-x", (2**64, -1, 1.5, b"", None, True)):
        s.set("v", v)
        assert s.get("v") == v and type(s.get("v")) is type(v), v
    # a value over --shared-max-bytes (64 MiB here), and a store too full for a second big one
    raises(MemoryError, "value larger than 67108864 bytes, the bound set by --shared-max-bytes",
           s.set, "a", b"x" * (64 << 20))
    # a value that fills the bound to the byte (a tuple's head and a bytes' head
    # are 5 bytes each): whatever comes after it in the tuple is refused
    big = b"x" * ((64 << 20) - 10)
    for extra in (None, True, 1.5, 7, "s", "\\udcff", 2**70, (), b""):
        raises(MemoryError, "value larger than 67108864 bytes", s.set, "a", (big, extra))
    del big
    s.set("f1", b"x" * (40 << 20))
    raises(MemoryError, "gorgon.shared is full: storing 'f2' needs", s.set, "f2", b"y" * (40 << 20))
    assert "f2" not in s and len(s.get("f1")) == 40 << 20
    assert s.delete("f1") is True

    # incr: on an int only, by an int only
    s.set("str", "x")
    raises(TypeError, "gorgon.shared.incr(): the value at 'str' is a str, not an int", s.incr, "str")
    s.set("t", (1,))
    raises(TypeError, "the value at 't' is a tuple, not an int", s.incr, "t")
    raises(TypeError, "incr() delta must be an int, not 'float'", s.incr, "n", 1.5)
    raises(TypeError, "incr() delta must be an int, not 'bool'", s.incr, "n", True)
    assert s.get("str") == "x" and "n" not in s

    # channels
    raises(TypeError, "channel name must be a str, not 'bytes'", gorgon.channel, b"c")
    for cap in (0, -1, 2**24 + 1):
        raises(ValueError, "channel capacity must be between 1 and 16777216", gorgon.channel, "c", cap)
    raises(TypeError, "'str' object cannot be interpreted as an integer", gorgon.channel, "c", "3")
    raises(TypeError, "channel() missing required argument 'name'", gorgon.channel)
    ch = gorgon.channel("c", 1)
    assert ch.name == "c" and ch._remote is False
    raises(gorgon.Empty, "channel 'c' is empty", ch.recv_nowait)
    raises(gorgon.Empty, "channel 'c' is empty", ch.recv, timeout=0.05)
    raises(ValueError, "timeout must be a non-negative number of seconds", ch.recv, timeout=-1)
    raises(TypeError, "recv() takes at most 1 arguments (2 given)", ch.recv, 1, 2)
    raises(TypeError, "send() missing required argument 'value'", ch.send)
    raises(TypeError, "a value of type 'dict' cannot be shared", ch.send, {})
    raises(MemoryError, "value larger than 67108864 bytes", ch.send_nowait, b"x" * (64 << 20))
    ch.send_nowait((1, "one"))
    raises(gorgon.Full, "channel 'c' is full (capacity 1)", ch.send_nowait, 2)
    raises(gorgon.Full, "channel 'c' is full (capacity 1)", ch.send, 2, timeout=0.05)
    raises(ValueError, "timeout must be a non-negative", ch.send, 2, timeout=math.nan)
    raises(TypeError, "recv_async() got an unexpected keyword argument 'wait'", ch.recv_async, wait=1)
    raises(ValueError, "timeout must be a non-negative", ch.send_async, 2, timeout=-1)
    assert ch.recv(timeout=5) == (1, "one")
    ch.close()
    assert repr(ch) == "<gorgon.Channel 'c': 0 of 1, closed>", repr(ch)
    raises(gorgon.Closed, "channel 'c' is closed", ch.send_nowait, 1)
    raises(gorgon.Closed, "channel 'c' is closed", ch.recv)

    # a bad --shared-url for a script: refused, the in-process store still in use
    raises(ValueError, "--shared-url: expected redis://", _gorgon._shared_connect, "http://127.0.0.1:6379")
    raises(ValueError, "timeout must be a non-negative", _gorgon._shared_connect, "redis://h", timeout=-2)
    raises(TypeError, "_shared_connect() missing required argument 'url'", _gorgon._shared_connect)
    raises(TypeError, "bad argument type", _gorgon._shared_connect, 6379)
    raises(TypeError, "bad argument type", _gorgon._shared_connect, "redis://h", b"prefix:")
    assert s.get("kept") == 1 and repr(s).startswith("<gorgon.shared: ")
    print("ok")
''')


def run_script(script, *args, tmp_path):
    out = subprocess.run([sys.executable, "-c", script, *args], env=server_env(), capture_output=True,
                         text=True, timeout=scaled(60), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok", (out.stdout, out.stderr)
    return out.stderr


def test_local_store_and_channels_refuse_clearly(tmp_path):
    err = run_script(LOCAL, tmp_path=tmp_path)
    assert "WARNING" not in err and "ERROR" not in err, err


REDIS = HELPERS + textwrap.dedent('''
    url, sock = sys.argv[1], sys.argv[2]

    def cmd(*words):
        """One command to the Redis; its reply's first line."""
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(10)
            c.connect(sock)
            words = [w.encode() if isinstance(w, str) else w for w in words]
            c.sendall(b"*%d\\r\\n" % len(words) + b"".join(b"$%d\\r\\n%s\\r\\n" % (len(w), w) for w in words))
            return c.recv(65536).split(b"\\r\\n")[0]

    def key(name):  # the Redis key of a gorgon.shared str key (prefix err:)
        return b"err:k:s" + len(name).to_bytes(4, "little") + name.encode()

    _gorgon._shared_connect(url, "err:", timeout=1)
    s = gorgon.shared
    s.clear()
    assert repr(s) == "<gorgon.shared over %s>" % url, repr(s)

    # a value another program wrote under the prefix: ValueError, left alone
    assert cmd("SET", key("foreign"), b"not gorgon's") == b"+OK"
    raises(ValueError, "gorgon.shared at 'foreign': the key holds a value gorgon did not write", s.get, "foreign")
    raises(ValueError, "the key holds a value gorgon did not write", s.setdefault, "foreign", 1)
    assert cmd("SET", key("int0"), b"007") == b"+OK"
    raises(ValueError, "the key holds a value gorgon did not write", s.get, "int0")
    assert cmd("GET", key("foreign")) == b"$12"

    # a key of another Redis type: the call is refused (Unavailable, a ConnectionError)
    assert issubclass(gorgon.Unavailable, ConnectionError)
    assert cmd("LPUSH", key("list"), b"x") == b":1"
    for call in (lambda: s.get("list"), lambda: s.incr("list"), lambda: s.incr("list", ttl=5)):
        raises(gorgon.Unavailable, "refused the call: WRONGTYPE", call)
    for call in (lambda: s.cas("list", None, 1), lambda: s.setdefault("list", 1)):  # in a script
        raises(gorgon.Unavailable, "refused the call: ", call)
        raises(gorgon.Unavailable, "WRONGTYPE", call)

    # incr: on an int that fits 64 bits only
    s.set("str", "x")
    raises(TypeError, "gorgon.shared.incr(): the value at 'str' is a str, not an int", s.incr, "str")
    s.set("bigv", 10**30)
    raises(OverflowError, "over Redis, incr works on ints that fit 64 bits", s.incr, "bigv")
    raises(OverflowError, "over Redis, incr works on ints that fit 64 bits", s.incr, "n", 2**64)
    assert s.get("bigv") == 10**30 and "n" not in s and s.incr("n", -3) == -3

    # scripts the server lost (SCRIPT FLUSH) are sent again
    assert cmd("SCRIPT", "FLUSH") == b"+OK"
    assert s.cas("c", None, 1) is True and s.setdefault("sd", 2) == 2 and s.get("c") == 1

    # Redis full (maxmemory): MemoryError, nothing stored
    assert cmd("CONFIG", "SET", "maxmemory-policy", "noeviction") == b"+OK"
    assert cmd("CONFIG", "SET", "maxmemory", "1") == b"+OK"
    raises(MemoryError, "gorgon.shared is full storing 'm': Redis at %s is full (its maxmemory): OOM" % url,
           s.set, "m", b"x" * 1000)
    assert cmd("CONFIG", "SET", "maxmemory", "0") == b"+OK"
    assert "m" not in s
    st = s.stats()
    assert st["keys"] == len(s) == len(s.keys()) and st["used_bytes"] > 0 and st["max_bytes"] == 0, st

    # channels
    ch = gorgon.channel("rc", 1)
    assert ch._remote is True and ch.capacity == 1 and ch.name == "rc"
    raises(ValueError, "channel 'rc' already exists with capacity 1", gorgon.channel, "rc", 2)
    raises(gorgon.Empty, "channel 'rc' is empty", ch.recv_nowait)
    raises(gorgon.Empty, "channel 'rc' is empty", ch.recv, timeout=0.2)
    ch.send(("x", 1))
    raises(gorgon.Full, "channel 'rc' is full (capacity 1)", ch.send_nowait, 2)
    raises(gorgon.Full, "channel 'rc' is full (capacity 1)", ch.send, 2, timeout=0.2)
    assert repr(ch) == "<gorgon.Channel 'rc': 1 of 1>", repr(ch)
    assert ch.recv(timeout=5) == ("x", 1)
    ch.close()
    assert ch.closed is True and repr(ch) == "<gorgon.Channel 'rc': 0 of 1, closed>", repr(ch)
    raises(gorgon.Closed, "channel 'rc' is closed", ch.send_nowait, 1)
    raises(gorgon.Closed, "channel 'rc' is closed", ch.recv, timeout=0.2)
    # a channel's keys holding another Redis type
    assert cmd("SET", b"err:q:wq", b"x") == b"+OK"
    wq = gorgon.channel("wq")
    for call in (lambda: len(wq), wq.recv_nowait, lambda: wq.recv(timeout=0.2), lambda: wq.send_nowait(1),
                 lambda: repr(wq)):
        raises(gorgon.Unavailable, "WRONGTYPE", call)
    assert cmd("SET", b"err:c:wc", b"x") == b"+OK"
    raises(gorgon.Unavailable, "WRONGTYPE", gorgon.channel, "wc")

    # a Redis that stops answering for longer than --shared-timeout
    # (paused for longer than the three calls below can wait, 1 s each at most)
    assert cmd("CLIENT", "PAUSE", "6000") == b"+OK"
    t = time.monotonic()
    raises(gorgon.Unavailable, "Redis at %s did not answer within 1s (--shared-timeout)" % url, s.get, "c")
    # in the back-off that follows, calls fail at once with the same reason
    raises(gorgon.Unavailable, "did not answer within 1s", s.get, "c")
    raises(gorgon.Unavailable, "did not answer within 1s", lambda: gorgon.channel("rc").closed)
    while time.monotonic() - t < 6.5:
        time.sleep(0.1)
    assert eventually(lambda: s.get("c")) == 1
    # a Redis that closes the connection (over a unix socket the next write fails)
    assert cmd("CLIENT", "KILL", "TYPE", "normal") == b":1"
    raises(gorgon.Unavailable, "Redis at %s: Broken pipe" % url, s.get, "c")
    assert eventually(lambda: s.get("c")) == 1

    # a database Redis does not have: refused at connect
    _gorgon._shared_connect(url + "?db=99", "err:", timeout=1)
    raises(gorgon.Unavailable, "refused AUTH or SELECT: ERR DB index is out of range", s.get, "c")
    # every call says so, none changes anything
    for call in (lambda: s.delete("c"), s.keys, s.clear, s.stats, lambda: len(s), lambda: "c" in s,
                 lambda: s.set("c", 2), lambda: s.setdefault("c", 2), lambda: s.cas("c", 1, 2),
                 lambda: s.incr("c"), lambda: gorgon.channel("rc")):
        raises(gorgon.Unavailable, "ERR DB index is out of range", call)
    print("ok")
''')


def redis_or_skip(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip("no redis-server or valkey-server on PATH (scripts/bootstrap installs redis-server)")
    return RedisServer(tmp_path).start()


def test_redis_refusals_outages_and_wrong_types(tmp_path):
    r = redis_or_skip(tmp_path)
    try:
        err = run_script(REDIS, r.unix_url, r.sock, tmp_path=tmp_path)
    finally:
        r.close()
    where = r.unix_url
    lines = err.splitlines()
    # One warning per outage, one line when Redis answers again.
    assert sum("did not answer within 1s (--shared-timeout) (calls raise gorgon.Unavailable until it "
               "answers again)" in ln for ln in lines) == 1, err
    assert sum("redis.sock: Broken pipe (calls raise gorgon.Unavailable" in ln for ln in lines) == 1, err
    assert sum("gorgon.shared: Redis at %s answers again" % where in ln for ln in lines) == 2, err


AUTH = HELPERS + textwrap.dedent('''
    port = int(sys.argv[1])
    s = gorgon.shared
    for url in ("redis://:secret@127.0.0.1:%d/2" % port, "redis://default:secret@127.0.0.1:%d/2" % port):
        _gorgon._shared_connect(url, "auth:", timeout=2)
        s.set("k", url)
        assert s.get("k") == url
    _gorgon._shared_connect("redis://127.0.0.1:%d/0" % port, "auth:", timeout=2)
    raises(gorgon.Unavailable, "Redis at 127.0.0.1:%d refused SCRIPT LOAD: NOAUTH" % port, s.get, "k")
    # another URL at once: not held back by the back-off after the last one failed
    _gorgon._shared_connect("redis://:wrong@127.0.0.1:%d/2" % port, "auth:", timeout=2)
    raises(gorgon.Unavailable, "Redis at 127.0.0.1:%d refused AUTH or SELECT: WRONGPASS" % port, s.get, "k")
    print("ok")
''')


def test_redis_auth_and_database(tmp_path):
    r = redis_or_skip(tmp_path)
    try:
        # Set after the start: the fixture's readiness check is an unauthenticated PING.
        assert r.command("CONFIG", "SET", "requirepass", "secret") == b"+OK"
        run_script(AUTH, str(r.port), tmp_path=tmp_path)
    finally:
        r.close()
