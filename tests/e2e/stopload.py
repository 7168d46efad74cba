"""A bounded load of new and keep-alive connections, for stop tests.

`run_stop_under_load(srv, sig)` starts client threads, lets them run, sends
the signal, and counts what every request got. `run_load_around(srv, action)`
runs a bounded number of requests and calls action() part-way through, for a
server that goes on serving (a reload); it keeps every response body. A request "got a connection"
once connect() returned; from then on a reset, a timeout or a cut response is
a failure. A keep-alive connection that the server closed between requests
(the client's next request meets end-of-stream before any response byte, with
no reset) is the ordinary keep-alive race that HTTP clients retry (RFC 9112
9.3.1): counted apart, as `closed_idle`.
"""
import errno
import select
import socket
import threading
import time



class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"ok": 0, "refused": 0, "reset": 0, "failed": 0, "closed_idle": 0}
        self.notes = []
        self.bodies = []  # of the 200 responses, in the order they completed
        self.changed = threading.Condition(self.lock)

    def add(self, what, note=None, body=None):
        with self.lock:
            self.counts[what] += 1
            if body is not None:
                self.bodies.append(body)
            if note and len(self.notes) < 20:
                self.notes.append("%s: %s" % (what, note))
            self.changed.notify_all()

    def answered(self):
        """Requests that got an outcome (closed_idle ones are retried)."""
        return sum(v for k, v in self.counts.items() if k != "closed_idle")

    def failures(self):
        c = self.counts
        return c["refused"] + c["reset"] + c["failed"]


def _connect(addr):
    host, port = addr
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect((host, port))
    except OSError:
        s.close()
        raise
    return s


def _read_response(s, out=None):
    """One response: (status, close, got_any_byte), its body appended to the
    list out if one is given. Raises on a cut stream."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            if buf:
                raise EOFError("stream cut inside a response head")
            return None, True, False
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip().lower()
    if fields.get("transfer-encoding") == "chunked":
        rest = _read_chunked(s, rest)
    else:
        length = int(fields.get("content-length", "0"))
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                raise EOFError("stream cut inside a response body")
            rest += chunk
    if out is not None:
        out.append(rest)
    return status, fields.get("connection") == "close", True


def _read_chunked(s, buf):
    body = b""
    while True:
        while b"\r\n" not in buf:
            buf += _recv_some(s)
        line, buf = buf.split(b"\r\n", 1)
        size = int(line.split(b";")[0], 16)
        while len(buf) < size + 2:
            buf += _recv_some(s)
        body += buf[:size]
        buf = buf[size + 2:]
        if size == 0:
            return body


def _recv_some(s):
    chunk = s.recv(65536)
    if not chunk:
        raise EOFError("stream cut inside a chunked body")
    return chunk


def _classify(e):
    if isinstance(e, ConnectionResetError) or getattr(e, "errno", None) in (errno.ECONNRESET, errno.EPIPE):
        return "reset"
    return "failed"


def _peer_closed(s):
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _connect_counted(addr, tally):
    """A new connection, or None after counting why there is none."""
    try:
        return _connect(addr)
    except ConnectionRefusedError:
        tally.add("refused")
        time.sleep(0.005)
    except OSError as e:
        tally.add("failed", "connect: %r" % e)
    return None


def _new_conn_client(addr, path, stop, tally):
    req = b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path
    while not stop.is_set():
        s = _connect_counted(addr, tally)
        if s is None:
            continue
        try:
            s.sendall(req)
            body = []
            status, _, any_byte = _read_response(s, body)
            if status == 200:
                tally.add("ok", body=body[0])
            else:
                tally.add("failed", "status %s, any byte %s" % (status, any_byte))
        except OSError as e:
            tally.add(_classify(e), "new connection: %r" % e)
        except EOFError as e:
            tally.add("failed", str(e))
        finally:
            s.close()


def _keepalive_client(addr, path, stop, tally):
    req = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path
    s = None
    while not stop.is_set():
        if s is None:
            s = _connect_counted(addr, tally)
            if s is None:
                continue
            reused = False
        elif _peer_closed(s):  # what a pooling client checks before reuse
            s.close()
            s = None
            continue
        try:
            s.sendall(req)
            body = []
            status, close, any_byte = _read_response(s, body)
            if not any_byte and reused:
                tally.add("closed_idle")
                close = True
            elif status == 200:
                tally.add("ok", body=body[0])
            else:
                tally.add("failed", "keep-alive status %s" % status)
            reused = True
            if close:
                s.close()
                s = None
        except OSError as e:
            tally.add(_classify(e), "keep-alive (reused %s): %r" % (reused, e))
            s.close()
            s = None
        except EOFError as e:
            tally.add("failed", str(e))
            s.close()
            s = None
    if s is not None:
        s.close()


def _start_clients(srv, path, stop, tally, new_clients, keepalive_clients):
    """The load's client threads, started: some opening a new connection per
    request, some keeping theirs alive."""
    threads = [threading.Thread(target=_new_conn_client, args=(srv.addr, path, stop, tally), daemon=True)
               for _ in range(new_clients)]
    threads += [threading.Thread(target=_keepalive_client, args=(srv.addr, path, stop, tally), daemon=True)
                for _ in range(keepalive_clients)]
    for t in threads:
        t.start()
    return threads


def run_stop_under_load(srv, sig, path=b"/hello", new_clients=6, keepalive_clients=4, before=1.0, after=0.3):
    """Load, then sig, then more load until the server is gone; returns
    (tally, exit code)."""
    stop = threading.Event()
    tally = Tally()
    threads = _start_clients(srv, path, stop, tally, new_clients, keepalive_clients)
    time.sleep(before)
    srv.send_signal(sig)
    rc = srv.wait_exit(30)
    time.sleep(after if rc is not None else 0)
    stop.set()
    for t in threads:
        t.join(15)
    return tally, rc


def run_load_around(srv, action, path=b"/", total=2000, at=0.25, after=500, new_clients=4, keepalive_clients=4,
                    timeout=180):
    """A bounded load of `total` requests (new and keep-alive connections),
    and at least `after` more once action() returned; action() runs, on this
    thread, once `at` of them were answered, while the clients go on.
    Returns the tally: bodies of the 200s in tally.bodies, and in
    tally.action_done how many there were when action() returned."""
    stop = threading.Event()
    tally = Tally()
    threads = _start_clients(srv, path, stop, tally, new_clients, keepalive_clients)
    deadline = time.monotonic() + timeout
    try:
        with tally.lock:
            while tally.answered() < total * at and time.monotonic() < deadline:
                tally.changed.wait(1)
        action()
        with tally.lock:
            tally.action_done = len(tally.bodies)
            total = max(total, tally.answered() + after)
            while tally.answered() < total and time.monotonic() < deadline:
                tally.changed.wait(1)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    return tally
