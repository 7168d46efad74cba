#!/usr/bin/env python3
"""WebSocket echo with and without permessage-deflate, in one run.

gorgon (1 worker, bench/apps/ws_echo.py) is started twice, without and with
--ws-per-message-deflate. Against each: echo throughput (--conns clients,
each sending --messages JSON text messages of about --size bytes one after
another and waiting for each echo; the client is websockets' asyncio client,
offering compression only to the server that accepts it), the bytes the
server wrote per message, and what --idle WebSockets cost while idle after
one echo each (RSS growth of the server process divided by the connections).

    .venv/bin/python bench/ws_deflate.py [--conns 8] [--messages 2000] [--size 2048] [--idle 2000]
"""
import argparse
import asyncio
import json
import os
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idle_conns import rss_kb, ws_handshake  # noqa: E402
from warm_pool import HOST, PY, free_port, start, stop  # noqa: E402


def payload(size, i):
    rows, n = [], 0
    while n < size:
        row = {"id": i * 1000 + len(rows), "user": "user%d" % (len(rows) % 50), "online": len(rows) % 3 == 0,
               "text": "message number %d from the chat room" % len(rows)}
        rows.append(row)
        n += len(json.dumps(row))
    return json.dumps(rows)


async def client(port, deflate, messages, size, k):
    import websockets
    ws = await websockets.connect("ws://%s:%d/ws" % (HOST, port), compression="deflate" if deflate else None,
                                  max_size=None)
    async with ws:
        for i in range(messages):
            m = payload(size, k * messages + i % 10)
            await ws.send(m)
            assert await ws.recv() == m


OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


def wire_bytes(port, msg):
    """Bytes of the server's frame echoing msg, by a raw client offering deflate."""
    s, head, rest = ws_handshake(port, OFFER)
    send_frame(s, msg.encode(), b"permessage-deflate" in head)
    data = rest
    while len(data) < 4:
        data += s.recv(65536)
    n = data[1] & 0x7f
    hl = 2 + (2 if n == 126 else 8 if n == 127 else 0)
    n = int.from_bytes(data[2:hl], "big") if hl > 2 else n
    s.close()
    return n + hl


def send_frame(s, data, deflate):
    b0 = 0x81
    if deflate:
        z = zlib.compressobj(6, zlib.DEFLATED, -11)
        data = (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
        b0 |= 0x40
    mask = b"\x01\x02\x03\x04"
    n = len(data)
    head = bytes([b0, 0x80 | n]) if n < 126 else bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def idle_cost(proc, port, n, size):
    """KB per idle WebSocket that has echoed one --size message."""
    msg = payload(size, 0).encode()
    before = rss_kb(proc.pid)
    socks = []
    for _ in range(n):
        s, head, got = ws_handshake(port, OFFER)
        send_frame(s, msg, b"permessage-deflate" in head)
        need = None
        while need is None or len(got) < need:
            got += s.recv(65536)
            if need is None and len(got) >= 4:
                l7 = got[1] & 0x7f
                need = 4 + int.from_bytes(got[2:4], "big") if l7 == 126 else 2 + l7
        socks.append(s)
    time.sleep(2)
    after = rss_kb(proc.pid)
    for s in socks:
        s.close()
    return (after - before) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--messages", type=int, default=2000, help="per connection")
    ap.add_argument("--size", type=int, default=2048, help="approximate JSON message size in bytes")
    ap.add_argument("--idle", type=int, default=2000, help="idle WebSockets for the memory figure")
    args = ap.parse_args()
    rows = []
    for deflate in (False, True):
        port = free_port()
        argv = [PY, "-m", "gorgon", "ws_echo:app", "--bind", "%s:%d" % (HOST, port), "--workers", "1",
                "--log-level", "warning"] + (["--ws-per-message-deflate"] if deflate else [])
        p = start(argv, port)
        try:
            idle = idle_cost(p, port, args.idle, args.size)
            t = time.perf_counter()
            async def clients():
                await asyncio.gather(*(client(port, deflate, args.messages, args.size, k)
                                       for k in range(args.conns)))
            asyncio.run(asyncio.wait_for(clients(), 600))
            secs = time.perf_counter() - t
            msg = payload(args.size, 0)
            rows.append({"deflate": deflate, "msgs_per_s": args.conns * args.messages / secs,
                         "message_bytes": len(msg), "wire_bytes": wire_bytes(port, msg),
                         "idle_kib_per_ws": idle})
        finally:
            stop(p)
    print("| compression | echo msgs/s | message | server frame | idle KB per WebSocket |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| %s | %.0f | %d B | %d B | %.1f |" % ("permessage-deflate" if r["deflate"] else "off",
              r["msgs_per_s"], r["message_bytes"], r["wire_bytes"], r["idle_kib_per_ws"]))


if __name__ == "__main__":
    main()
