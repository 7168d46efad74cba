#!/usr/bin/env python3
"""WebSocket echo in the clear and over TLS, in one run.

gorgon (1 worker, bench/apps/ws_echo.py) is started without and with
--certfile, --rounds times, interleaved. Against each: --conns clients
(websockets' asyncio client), each sending --messages binary messages of
--size bytes one after another and waiting for each echo. Printed per
server: echo messages/s (median over the rounds) and the server's CPU time
per message (user + system, from /proc), which moves less than the first
figure on a shared machine. The client encrypts and decrypts too, in the
same process as the load: the TLS figure is a floor for the server.

    .venv/bin/python bench/ws_tls.py [--conns 8] [--messages 2000] [--size 2048] [--rounds 3]
"""
import argparse
import asyncio
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tls_file import cpu_ticks  # noqa: E402
from warm_pool import HOST, PY, free_port, start, stop  # noqa: E402


async def client(url, ctx, messages, size):
    import websockets
    async with websockets.connect(url, ssl=ctx, compression=None, max_size=None) as ws:
        msg = os.urandom(size)
        for _ in range(messages):
            await ws.send(msg)
            assert await ws.recv() == msg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--messages", type=int, default=2000, help="per connection")
    ap.add_argument("--size", type=int, default=2048, help="bytes per message")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ws-tls-")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    servers = [("clear (ws://)", [], None), ("TLS (wss://)", ["--certfile", cert, "--keyfile", key], ctx)]
    results = {name: ([], []) for name, _, _ in servers}
    n = a.conns * a.messages
    for _ in range(a.rounds):
        for name, extra, cctx in servers:
            port = free_port()
            p = start([PY, "-m", "gorgon", "ws_echo:app", "--bind", "%s:%d" % (HOST, port), "--workers", "1",
                       "--log-level", "warning", *extra], port)
            url = "%s://%s:%d/ws" % ("wss" if cctx else "ws", HOST, port)
            try:
                asyncio.run(client(url, cctx, 10, a.size))  # warm-up
                c0, t = cpu_ticks(p.pid), time.perf_counter()

                async def clients():
                    await asyncio.gather(*(client(url, cctx, a.messages, a.size) for _ in range(a.conns)))
                asyncio.run(asyncio.wait_for(clients(), 600))
                secs, c1 = time.perf_counter() - t, cpu_ticks(p.pid)
            finally:
                stop(p)
            results[name][0].append(n / secs)
            results[name][1].append((c1 - c0) / os.sysconf("SC_CLK_TCK") / n * 1e6)
    print("%d connections x %d messages of %d bytes, %d rounds" % (a.conns, a.messages, a.size, a.rounds))
    for name, (rates, cpu) in results.items():
        print("%-16s %8.0f echoes/s (%.0f-%.0f)  server CPU %5.1f us/echo" % (
            name, statistics.median(rates), min(rates), max(rates), statistics.median(cpu)))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
