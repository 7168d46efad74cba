"""Builds gorgon._gorgon for `pip install .` (the Makefile builds it in place)."""

import sys
from glob import glob

from setuptools import Extension, setup

# Say it here rather than as a compile error deep in the C (epoll.h missing).
if not sys.platform.startswith("linux"):
    sys.exit("gorgon runs on Linux only (it is built on epoll, sendfile, PR_SET_PDEATHSIG); "
             "this is %s" % sys.platform)

sources = sorted(glob("src/*.c") + glob("src/*/*.c"))

setup(
    ext_modules=[
        Extension(
            "gorgon._gorgon",
            sources=sources,
            include_dirs=["src"],
            define_macros=[("_GNU_SOURCE", None)],
            # zlib: WebSocket permessage-deflate; OpenSSL: TLS; nghttp2:
            # HTTP/2; hiredis: --shared-url (Debian: zlib1g-dev, libssl-dev,
            # libnghttp2-dev, libhiredis-dev)
            libraries=["z", "ssl", "crypto", "nghttp2", "hiredis"],
            extra_compile_args=["-std=c11", "-O2", "-fvisibility=hidden"],
        )
    ]
)
