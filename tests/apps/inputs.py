"""wsgi.input variants; answers JSON {"pieces": [latin-1 str, ...]}.

?mode=read_all    read() with no argument (on the server's own object)
?mode=read_n      read(n) until b"" (n = ?n=, default 3), then one more read(n)
?mode=readline    readline() until b""
?mode=readline_n  readline(n) until b""
?mode=readlines   readlines()
?mode=readlines_hint  readlines(hint) (hint = ?n=)
?mode=iter        for line in wsgi.input (the server's own __iter__)
?mode=mixed       readline(), then read(n), then read() the rest
?mode=partial     read(n) once and answer without reading the rest
&spill=1          also answer "spill_files": the files open in this process
                  under $TMPDIR (where the server spills large bodies)
"""
import os

from _wsgicheck import checked, json_response, query, raw_input


def _inputs(environ, start_response):
    q = query(environ)
    mode = q.get("mode", "read_all")
    n = int(q.get("n", "3"))
    inp = environ["wsgi.input"]
    pieces = []
    if mode == "read_all":
        pieces.append(raw_input(environ).read())
        pieces.append(raw_input(environ).read())
    elif mode == "read_n":
        while True:
            p = inp.read(n)
            pieces.append(p)
            if not p:
                break
        pieces.append(inp.read(n))
    elif mode == "readline":
        while True:
            p = inp.readline()
            pieces.append(p)
            if not p:
                break
    elif mode == "readline_n":
        while True:
            p = inp.readline(n)
            pieces.append(p)
            if not p:
                break
    elif mode == "readlines":
        pieces.extend(inp.readlines())
    elif mode == "readlines_hint":
        pieces.extend(inp.readlines(n))
    elif mode == "iter":
        pieces.extend(iter(raw_input(environ)))
    elif mode == "mixed":
        pieces.append(inp.readline())
        pieces.append(inp.read(n))
        pieces.append(raw_input(environ).read())
    elif mode == "partial":
        pieces.append(inp.read(n))
    else:
        raise ValueError("unknown mode %r" % mode)
    for p in pieces:
        if type(p) is not bytes:
            raise TypeError("wsgi.input gave %r, not bytes" % (type(p),))
    out = {"pieces": [p.decode("latin-1") for p in pieces]}
    if q.get("spill") == "1":
        out["spill_files"] = _open_under(os.environ.get("TMPDIR") or "/tmp")
    return json_response(start_response, out)


def _open_under(directory):
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if target.startswith(directory.rstrip("/") + "/"):
            found.append(target)
    return found


app = checked(_inputs)
