"""The write() callable returned by start_response.

?mode=write_only: write(b"one,"), write(b"two,"), return []
?mode=mixed: write(b"one,"), then a generator yields b"two,", b"three"
?mode=cl: Content-Length: 8, write(b"abcd"), return [b"efgh"]
"""
from _wsgicheck import checked, query


def _writer(environ, start_response):
    mode = query(environ).get("mode", "write_only")
    headers = [("Content-Type", "text/plain")]
    if mode == "cl":
        headers.append(("Content-Length", "8"))
    write = start_response("200 OK", headers)
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


app = checked(_writer)
