"""Writes fuzz/corpus-h2: the seed inputs of fuzz/fuzz_h2.c.

Each input is two control bytes (how the connection starts, which bridge
answers, the size of the pieces it is written in; see fuzz/fuzz_h2.c) and
then what a client sends after its preface: frames made with python-hyper's
h2 (requirements-dev.txt) and a few by hand. Run from the checkout:
.venv/bin/python fuzz/make_h2_corpus.py
"""
import os
import struct

import h2.config
import h2.connection

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus-h2")


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def client(upgrade):
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    if upgrade:
        c.initiate_upgrade_connection()
    else:
        c.initiate_connection()
    data = c.data_to_send()
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    return c, data[len(preface):] if data.startswith(preface) else data


def req(path, method="GET", extra=()):
    return [(":method", method), (":path", path), (":scheme", "http"), (":authority", "fuzz"), *extra]


def scenarios(upgrade):
    first = 3 if upgrade else 1
    c, pre = client(upgrade)
    c.send_headers(first, req("/"), end_stream=True)
    yield "get", pre + c.data_to_send()

    c, pre = client(upgrade)
    c.send_headers(first, req("/echo", "POST", [("content-length", "11")]))
    c.send_data(first, b"hello there", end_stream=True)
    yield "post", pre + c.data_to_send()

    c, pre = client(upgrade)
    c.send_headers(first, req("/echo", "POST"))
    c.send_data(first, b"x" * 3000)
    c.send_headers(first, [("x-trailer", "1")], end_stream=True)
    yield "trailers", pre + c.data_to_send()

    c, pre = client(upgrade)
    for i in range(5):
        c.send_headers(first + 2 * i, req("/s%d" % i, extra=[("cookie", "a=%d" % i), ("cookie", "b=2")]),
                       end_stream=True)
    yield "many", pre + c.data_to_send()

    c, pre = client(upgrade)
    c.send_headers(first, req("/up", "POST"))
    c.send_data(first, b"y" * 100)
    c.reset_stream(first, error_code=8)
    c.send_headers(first + 2, req("/"), end_stream=True)
    yield "reset", pre + c.data_to_send()

    c, pre = client(upgrade)
    c.send_headers(first, req("/big"), end_stream=True)
    c.increment_flow_control_window(1 << 20)
    c.increment_flow_control_window(1 << 16, stream_id=first)
    c.ping(b"12345678")
    yield "window", pre + c.data_to_send()

    c, pre = client(upgrade)
    c.send_headers(first, req("/"), end_stream=True)
    c.close_connection()
    yield "goaway", pre + c.data_to_send()

    _c, pre = client(upgrade)
    hdr = frame(0x1, 0x0, first, b"\x82\x86\x84")      # HEADERS without END_HEADERS
    cont = frame(0x9, 0x4, first, b"\x41\x04fuzz")       # CONTINUATION with it
    yield "continuation", pre + hdr + cont
    yield "priority", pre + frame(0x2, 0, first, b"\x00\x00\x00\x00\x10") + frame(0x1, 0x25, first, b"\x00\x00\x00\x00\x10\x82\x86\x84\x41\x04fuzz")
    yield "badframes", pre + frame(0x0, 0x1, 0, b"x") + frame(0x8, 0, 0, b"\x00\x00\x00\x00")


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.unlink(os.path.join(OUT, f))
    for mode in range(8):
        upgrade = mode & 1
        for name, data in scenarios(upgrade):
            step = 255 if mode < 4 else 2   # whole, or a few bytes at a time
            with open(os.path.join(OUT, "%s-%d" % (name, mode)), "wb") as f:
                f.write(bytes([mode, step]) + data)


if __name__ == "__main__":
    main()
