"""The write() callable returned by start_response.

?mode=write_only: write(b"one,"), write(b"two,"), return []
?mode=mixed: write(b"one,"), then a generator yields b"two,", b"three"
?mode=cl: Content-Length: 8, write(b"abcd"), return [b"efgh"]
?mode=big&n=N&marker=PATH: write() N x 64 KiB, counting completed writes in
    PATH ("wrote K" lines, then "done" or "error <exception>")
"""
from _wsgicheck import checked, query


def _writer(environ, start_response):
    mode = query(environ).get("mode", "write_only")
    headers = [("Content-Type", "text/plain")]
    if mode == "cl":
        headers.append(("Content-Length", "8"))
    write = start_response("200 OK", headers)
    if mode == "big":
        return _big(write, int(query(environ).get("n", "16")), query(environ)["marker"])
    if mode == "cl":
        write(b"abcd")
        return [b"efgh"]
    write(b"one,")
    if mode == "mixed":
        def gen():
            yield b"two,"
            yield b"three"
        return gen()
    write(b"two,")
    return []


def _big(write, n, marker):
    chunk = b"w" * 65536
    with open(marker, "a", buffering=1) as log:
        try:
            for i in range(n):
                write(chunk)
                log.write("wrote %d\n" % (i + 1))
        except OSError as e:
            log.write("error %s\n" % e)
            raise
        log.write("done\n")
    return []


app = checked(_writer)
