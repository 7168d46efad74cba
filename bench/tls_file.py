#!/usr/bin/env python3
"""A large file through wsgi.file_wrapper, in the clear and over TLS, in one run.

gorgon (1 worker, bench/apps/file_app.py) serves a --mib MiB file; curl
downloads it --downloads times per round on a new connection each time,
--rounds rounds with the servers interleaved. In the clear the file goes out
with sendfile; over TLS it is read and encrypted (SSL_write), unless kernel TLS
is on and the kernel offers it. Printed per server: the median download time,
MB/s, and the server's CPU time per download (user + system, from /proc).
First it says whether this kernel offers kernel TLS at all (the "tls" TCP
upper-layer protocol that OpenSSL's SSL_OP_ENABLE_KTLS needs).

    .venv/bin/python bench/tls_file.py [--mib 10] [--downloads 10] [--rounds 3]
    .venv/bin/python bench/tls_file.py --other-build DIR   # a TLS row for another build too
"""
import argparse
import errno
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from warm_pool import HOST, PY, REPO, free_port, start, stop  # noqa: E402

TCP_ULP = 31  # linux/tcp.h


def ktls_offered():
    """Whether setsockopt(TCP_ULP, "tls") works on a connected socket."""
    with socket.socket() as srv:
        srv.bind((HOST, 0))
        srv.listen()
        with socket.create_connection(srv.getsockname()) as c:
            a, _ = srv.accept()
            with a:
                try:
                    c.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
                    return True, "the tls ULP is there"
                except OSError as e:
                    why = "no tls module in this kernel" if e.errno == errno.ENOENT else os.strerror(e.errno)
                    return False, "setsockopt(TCP_ULP, \"tls\"): %s (%s)" % (os.strerror(e.errno), why)


def cpu_ticks(pgid):
    t = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == pgid:  # pgrp
            t += int(fields[11]) + int(fields[12])
    return t


def download(url, size):
    r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", url],
                       check=True, capture_output=True, text=True)
    secs, got = r.stdout.split()
    assert int(got) == size, "got %s bytes of %d" % (got, size)
    return float(secs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=10)
    ap.add_argument("--downloads", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--other-build", help="a directory with another build of the gorgon package")
    a = ap.parse_args()
    if shutil.which("curl") is None:
        sys.exit("needs curl")
    offered, why = ktls_offered()
    print("kernel TLS: %s: %s" % ("offered" if offered else "not offered", why))
    tmp = tempfile.mkdtemp(prefix="tls-file-")
    path = os.path.join(tmp, "big.bin")
    size = a.mib << 20
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    tls = ["--certfile", cert, "--keyfile", key]
    servers = [("gorgon, clear (sendfile)", REPO, []), ("gorgon, TLS (read + SSL_write)", REPO, tls)]
    if a.other_build:
        servers.append(("other build, TLS", os.path.abspath(a.other_build), tls))
    results = {name: ([], []) for name, _, _ in servers}
    for _ in range(a.rounds):
        for name, root, extra in servers:
            port = free_port()
            p = start([PY, "-m", "gorgon", "file_app:app", "--bind", "%s:%d" % (HOST, port), "--workers", "1",
                       "--log-level", "warning", *extra], port,
                      env={"PYTHONPATH": os.pathsep.join([root, os.path.join(REPO, "bench", "apps")])})
            try:
                url = "%s://%s:%d/?path=%s" % ("https" if extra else "http", HOST, port, path)
                download(url, size)  # warm-up
                c0 = cpu_ticks(p.pid)
                times = [download(url, size) for _ in range(a.downloads)]
                c1 = cpu_ticks(p.pid)
            finally:
                stop(p)
            results[name][0].extend(times)
            results[name][1].append((c1 - c0) / os.sysconf("SC_CLK_TCK") / a.downloads)
    print("%d MiB file, %d downloads x %d rounds, one connection each (curl)" % (a.mib, a.downloads, a.rounds))
    for name, (times, cpu) in results.items():
        med = statistics.median(times)
        print("%-34s median %6.1f ms  %7.0f MB/s  server CPU %5.1f ms/download" % (
            name, med * 1000, size / med / 1e6, statistics.median(cpu) * 1000))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
