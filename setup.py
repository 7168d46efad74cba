"""Builds gorgon._gorgon for `pip install .` (the Makefile builds it in place)."""

from glob import glob

from setuptools import Extension, setup

sources = sorted(glob("src/*.c") + glob("src/*/*.c"))

setup(
    ext_modules=[
        Extension(
            "gorgon._gorgon",
            sources=sources,
            include_dirs=["src"],
            define_macros=[("_GNU_SOURCE", None)],
            extra_compile_args=["-std=c11", "-O2", "-fvisibility=hidden"],
        )
    ]
)
