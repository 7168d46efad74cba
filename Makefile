# gorgon build. `make` builds the extension in place (gorgon/_gorgon*.so);
# `make test` runs every tier this machine can run (see README).
#
# The Python is found by scripts/find-python (PYTHON=, python3.13 on PATH,
# then the pyenv root); override with `make PYTHON=/path/to/python3.13`.

PYTHON ?= $(shell scripts/find-python)
ifeq ($(PYTHON),)
$(error no CPython >= 3.13 with headers found; set PYTHON=)
endif

PY_INCLUDE := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
EXT_SUFFIX := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')

CC ?= gcc
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-missing-field-initializers -Werror
CSTD := -std=c11 -D_GNU_SOURCE
OPT ?= -O2 -g
CFLAGS_EXT := $(CSTD) $(WARN) $(OPT) -fPIC -fvisibility=hidden -I$(PY_INCLUDE) -Isrc $(EXTRA_CFLAGS)
LDFLAGS_EXT := -shared -pthread -lz -lssl -lcrypto -lnghttp2 -lhiredis $(EXTRA_LDFLAGS)
# rediss:// (--shared-url over TLS) when hiredis has its TLS library
# (libhiredis_ssl, hiredis 1.0 or later); without it, rediss:// is refused
# with that reason. HIREDIS_SSL=no builds without it on purpose.
HIREDIS_SSL ?= $(shell printf '\043include <hiredis/hiredis_ssl.h>\n' | $(CC) -E -x c - >/dev/null 2>&1 && echo yes)
ifeq ($(HIREDIS_SSL),yes)
CFLAGS_EXT += -DGN_HIREDIS_SSL
LDFLAGS_EXT += -lhiredis_ssl
endif

HTTP_SRC := $(wildcard src/http/*.c)
PARSER_SRC := src/http/parser.c
EXT_SRC := $(HTTP_SRC) $(wildcard src/bridges/*.c) $(wildcard src/interp/*.c) \
           $(wildcard src/server/*.c) $(wildcard src/shared/*.c) $(wildcard src/*.c)
EXT_HDR := $(wildcard src/*.h src/*/*.h)

# BUILD selects where the extension goes: "" = in place, else build/$(BUILD)/
# holding a copy of the package (used by the sanitizer tiers).
BUILD ?=
ifeq ($(BUILD),)
PKG_DIR := gorgon
else
PKG_DIR := build/$(BUILD)/gorgon
endif
EXT := $(PKG_DIR)/_gorgon$(EXT_SUFFIX)

.PHONY: all ext clean coverage soak test test-tiers check-settings settings test-c test-proxy-c test-ws-c test-shared-c test-e2e test-stress test-autobahn test-install test-asan test-tsan fuzz test-debian test-clang \
        test-frameworks test-debian-frameworks \
        serve demo bench bench-quick bench-core bench-experiments env format

all: ext

ext: $(EXT)

$(EXT): $(EXT_SRC) $(EXT_HDR) Makefile
	@mkdir -p $(PKG_DIR)
	@if [ "$(PKG_DIR)" != gorgon ]; then cp gorgon/*.py $(PKG_DIR)/; fi
	$(CC) $(CFLAGS_EXT) $(EXT_SRC) -o $@ $(LDFLAGS_EXT)

# ---- tests -----------------------------------------------------------------

VENV := .venv
VPY := $(VENV)/bin/python
SAN_CFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

STAMP := $(VENV)/.gorgon-stamp
env: $(STAMP)
$(STAMP): scripts/dev-env requirements-dev.txt
	PYTHON=$(PYTHON) scripts/dev-env

# Parser and chunked-decoder unit tests, always under ASan+UBSan.
build/test_parser: tests/c/test_parser.c tests/c/test.h $(PARSER_SRC) src/http/parser.h
	@mkdir -p build
	$(CC) $(CSTD) $(WARN) -O1 -g $(SAN_CFLAGS) -Isrc tests/c/test_parser.c $(PARSER_SRC) -o $@

test-c: build/test_parser
	build/test_parser

# PROXY protocol header parser and trust list unit tests, under ASan+UBSan.
PROXY_SRC := src/http/proxy.c
build/test_proxy: tests/c/test_proxy.c tests/c/test.h $(PROXY_SRC) src/http/proxy.h
	@mkdir -p build
	$(CC) $(CSTD) $(WARN) -O1 -g $(SAN_CFLAGS) -Isrc tests/c/test_proxy.c $(PROXY_SRC) -o $@

test-proxy-c: build/test_proxy
	build/test_proxy

# WebSocket frame, unmasking and UTF-8 unit tests, always under ASan+UBSan.
WS_SRC := src/http/ws.c src/http/ws_deflate.c
build/test_ws: tests/c/test_ws.c tests/c/test.h $(WS_SRC) src/http/ws.h src/http/ws_deflate.h
	@mkdir -p build
	$(CC) $(CSTD) $(WARN) -O1 -g $(SAN_CFLAGS) -Isrc tests/c/test_ws.c $(WS_SRC) -o $@ -lz

test-ws-c: build/test_ws
	build/test_ws

# The plain C under gorgon.shared and channels (no Python), under ASan+UBSan.
SHARED_C_SRC := src/shared/codec.c src/shared/store.c src/shared/channel.c src/shared/redis_proto.c
build/test_shared: tests/c/test_shared.c tests/c/test.h $(SHARED_C_SRC) $(wildcard src/shared/*.h)
	@mkdir -p build
	$(CC) $(CSTD) $(WARN) -O1 -g $(SAN_CFLAGS) -pthread -Isrc tests/c/test_shared.c $(SHARED_C_SRC) -o $@

test-shared-c: build/test_shared
	build/test_shared

# The end-to-end suite's tests mostly wait on the servers they start, so
# they run over PYTEST_JOBS pytest processes (pytest-xdist): on 2 cores, 2
# take about 0.6 of the time of one. PYTEST_JOBS=0 runs them in one process.
PYTEST_JOBS ?= 2
XDIST := -n $(PYTEST_JOBS)
test-e2e: ext $(STAMP)
	scripts/python-line "$$($(VPY) -c 'import platform; print(platform.python_version())')" "tests/e2e, here" \
		$(VPY) -m pytest -q $(XDIST) tests/e2e

# The Autobahn WebSocket conformance suite, every case OK, compression
# included (scripts/test-autobahn; a Python 2.7 tool in .venv-autobahn, made
# by scripts/autobahn-env; skipped when the machine has no Python 2.7).
test-autobahn: ext
	PYTHON=$(PYTHON) scripts/test-autobahn

# The stress tests (pytest -m stress; about a minute here): many start/stop
# cycles of a datetime/sqlite3 app, with and without the CPython workarounds.
# Time-boxed: the tier fails if it takes over STRESS_SECONDS.
STRESS_SECONDS ?= 300
test-stress: ext $(STAMP)
	timeout --signal=INT --kill-after=30 $(STRESS_SECONDS) $(VPY) -m pytest -q -m stress tests/e2e

# As a user installs it: `pip install` of the checkout into a fresh venv, the
# gorgon command serving a WSGI and an ASGI app; `python -m build` (sdist and
# wheel). Needs PyPI for the build's setuptools.
test-install: $(STAMP)
	$(VPY) -m pytest -q -p no:cacheprovider tests/install

# The extension built with ASan+UBSan, loaded into the ordinary python with
# the runtime preloaded; leak checking is off because CPython itself does not
# free everything at exit. The build also counts coverage (gcc --coverage,
# as `make coverage` below, at -O1 with the sanitizers), the C unit tests run
# against it too, and coverage.py follows the package: the tier fails when a
# figure drops below its ASAN_FLOOR_* (its own: -O1, and the tests marked
# nosan left out; docs/testing.md).
ASAN_DIR := $(CURDIR)/build/asan
ASAN_RT := $(shell gcc -print-file-name=libasan.so)
UBSAN_RT := $(shell gcc -print-file-name=libubsan.so)
ASAN_FLOOR_LINES ?= 94
ASAN_FLOOR_BRANCHES ?= 80
ASAN_FLOOR_PY ?= 94
ASAN_TESTS ?= tests/e2e
test-asan: SHELL := /bin/bash
test-asan: $(STAMP)
	rm -rf $(ASAN_DIR)
	$(MAKE) BUILD=asan CC=gcc OPT="-O1 -g" EXTRA_CFLAGS="$(SAN_CFLAGS) $(COV_CFLAGS)" EXTRA_LDFLAGS="$(SAN_CFLAGS) --coverage" ext
	$(call cov_unit_tests,$(ASAN_DIR),-O1 -g $(SAN_CFLAGS))
	cp scripts/coverage-sitecustomize.py $(ASAN_DIR)/sitecustomize.py
	mkdir -p $(ASAN_DIR)/py
	GORGON_BUILD_DIR=$(ASAN_DIR) COVERAGE_PROCESS_START=$(CURDIR)/.coveragerc \
	COVERAGE_DATA_DIR=$(ASAN_DIR)/py COVERAGE_CORE=sysmon \
	LD_PRELOAD="$(ASAN_RT) $(UBSAN_RT)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(VPY) -m pytest -q -p no:cacheprovider $(XDIST) $(ASAN_TESTS) -m "not nosan"; \
	PY=$(VPY) scripts/coverage-report $(ASAN_DIR) $$? $(ASAN_FLOOR_LINES) $(ASAN_FLOOR_BRANCHES) $(ASAN_FLOOR_PY)

TSAN_RT := $(shell $(CC) -print-file-name=libtsan.so)
test-tsan: $(STAMP)
	$(MAKE) BUILD=tsan OPT="-O1 -g" EXTRA_CFLAGS="-fsanitize=thread" EXTRA_LDFLAGS="-fsanitize=thread" ext
	GORGON_BUILD_DIR=$(CURDIR)/build/tsan \
	GORGON_TSAN=1 \
	LD_PRELOAD="$(TSAN_RT)" \
	TSAN_OPTIONS="halt_on_error=1 handle_segv=0 suppressions=$(CURDIR)/tests/tsan.supp" \
	$(VPY) -m pytest -q tests/e2e -m tsan

# Coverage (README, Tests): the extension and the C unit tests built with
# gcc --coverage -O0 (GN_COVERAGE: a process leaving with _exit() writes its
# counters first), the C unit tests and the end-to-end suite run against them,
# then gcovr (C lines and branches, per file; build/coverage/c.txt) and
# coverage.py (the package, in every interpreter the servers start). Fails
# when a figure drops below its floor; raise the floors as coverage grows.
COV_DIR := $(CURDIR)/build/coverage
COV_CFLAGS := --coverage -fprofile-update=atomic -DGN_COVERAGE -DGN_FAULT
COV_FLOOR_LINES ?= 93
COV_FLOOR_BRANCHES ?= 84
COV_FLOOR_PY ?= 95
# $(call cov_unit_tests,DIR,FLAGS): the C unit tests built with gcc
# --coverage and FLAGS into DIR, and run there.
define cov_unit_tests
	gcc $(CSTD) $(WARN) $(2) $(COV_CFLAGS) -Isrc tests/c/test_parser.c $(PARSER_SRC) -o $(1)/test_parser
	gcc $(CSTD) $(WARN) $(2) $(COV_CFLAGS) -Isrc tests/c/test_proxy.c $(PROXY_SRC) -o $(1)/test_proxy
	gcc $(CSTD) $(WARN) $(2) $(COV_CFLAGS) -Isrc tests/c/test_ws.c $(WS_SRC) src/http/fault.c -o $(1)/test_ws -lz
	gcc $(CSTD) $(WARN) $(2) $(COV_CFLAGS) -pthread -Isrc tests/c/test_shared.c $(SHARED_C_SRC) -o $(1)/test_shared
	cd $(1) && ./test_parser && ./test_proxy && ./test_ws && ./test_shared
endef
coverage: SHELL := /bin/bash
coverage: $(STAMP)
	rm -rf $(COV_DIR)
	$(MAKE) BUILD=coverage CC=gcc OPT="-O0 -g" EXTRA_CFLAGS="$(COV_CFLAGS)" EXTRA_LDFLAGS="--coverage" ext
	$(call cov_unit_tests,$(COV_DIR),-O0 -g)
	cp scripts/coverage-sitecustomize.py $(COV_DIR)/sitecustomize.py
	mkdir -p $(COV_DIR)/py
	GORGON_BUILD_DIR=$(COV_DIR) COVERAGE_PROCESS_START=$(CURDIR)/.coveragerc \
	COVERAGE_DATA_DIR=$(COV_DIR)/py COVERAGE_CORE=sysmon \
	$(VPY) -m pytest -q -p no:cacheprovider $(XDIST) tests/e2e; \
	PY=$(VPY) scripts/coverage-report $(COV_DIR) $$? $(COV_FLOOR_LINES) $(COV_FLOOR_BRANCHES) $(COV_FLOOR_PY)

# Flaky-test hunt, not part of `make test`: SOAK_RUNS runs of the end-to-end
# tests SOAK_ARGS names (default all of them) beside one busy-looping process
# per CPU; lists each test that failed, in how many runs (scripts/soak).
SOAK_RUNS ?= 3
SOAK_ARGS ?= tests/e2e
soak: ext $(STAMP)
	$(PYTHON) scripts/soak --runs $(SOAK_RUNS) $(SOAK_ARGS)

FUZZ_SECONDS ?= 30
fuzz:
	scripts/fuzz $(FUZZ_SECONDS)

test-debian:
	scripts/test-debian

# The framework tier (tests/frameworks): Flask, Django, Starlette, Quart,
# Falcon, Bottle and FastAPI from PyPI in .venv-frameworks, with $(PYTHON);
# then the same tier on Debian 13's Python in the root of scripts/debian-root.
FW_VENV := .venv-frameworks
FW_STAMP := $(FW_VENV)/.gorgon-stamp
$(FW_STAMP): scripts/frameworks-env requirements-frameworks.txt
	PYTHON=$(PYTHON) scripts/frameworks-env $(FW_VENV)

test-frameworks: ext $(FW_STAMP)
	$(FW_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/frameworks \
		--ignore tests/frameworks/test_debian_falcon.py  # Debian's falcon: test-debian-frameworks runs it

test-debian-frameworks:
	scripts/test-debian frameworks

# CPython 3.14 and 3.15 from Debian unstable, in a second debootstrap root
# (.cache/debian-sid): a -Werror build and tests/e2e on each, one pass line
# per version, and the free-threaded 3.14t or the reason it is skipped.
.PHONY: test-sid test-ft check-ft-abi
test-sid:
	scripts/test-debian sid

# The free-threaded ABI (Py_GIL_DISABLED, PEP 703) checked at compile time,
# with this Python's headers: every file, -Werror, no object written. A build
# that loads needs a free-threaded CPython: test-ft.
check-ft-abi:
	$(CC) $(CFLAGS_EXT) -DPy_GIL_DISABLED=1 -fsyntax-only $(EXT_SRC)

# The end-to-end suite on a free-threaded CPython (FT_PYTHON=, or built from
# CPYTHON_SRC= by scripts/build-cpython-ft); one skip line without either.
test-ft:
	scripts/test-ft

# docs/settings.md is written from the command line's definitions
# (gorgon/_cli.py): `make settings` rewrites it, check-settings fails on drift,
# and when a README claim or option has no existing test in docs/testing.md
# (scripts/check-claims).
settings:
	$(PYTHON) scripts/gen-settings

check-settings:
	$(PYTHON) scripts/gen-settings --check
	$(PYTHON) scripts/check-claims

# The extension must also build warning-free with clang.
test-clang:
	$(MAKE) BUILD=clang CC=clang ext

# `make test` is the whole set-up on a fresh machine: scripts/bootstrap
# installs what is missing (apt packages, .venv; under a second when all is
# there), then every tier runs, in this order.
TIERS := check-settings test-c test-proxy-c test-ws-c test-shared-c test-clang check-ft-abi test-e2e test-stress test-autobahn test-install \
         test-frameworks test-asan test-tsan fuzz test-debian test-debian-frameworks test-sid test-ft

test:
	scripts/bootstrap
	scripts/test-tiers $(TIERS)

test-tiers: $(TIERS)

# ---- running ---------------------------------------------------------------

# Serving needs only a C compiler (scripts/bootstrap serve installs gcc if
# there is none) and the CPython 3.13 with headers that PYTHON names.
serve demo:
	scripts/bootstrap serve
	$(MAKE) ext
	$(PYTHON) -m gorgon demo.app:app --bind 127.0.0.1:8000

# The full peers suite: every server, every workload, worker counts 1 and 2,
# 3 interleaved repetitions (about an hour); bench-quick: 2 workers, one 2 s
# run per cell (under 3 minutes). bench-core: gorgon's own measurements
# (accept modes, per-worker split, memory, start-up). bench-experiments: the
# threads / interpreters / processes experiments (docs/experiments.md).
bench: ext $(STAMP)
	$(VPY) bench/run.py

bench-quick: ext $(STAMP)
	$(VPY) bench/run.py --quick

bench-core: ext $(STAMP)
	$(VPY) bench/run.py --only core

bench-experiments: ext
	bench/experiments/run

format:
	clang-format -i src/*/*.c src/*/*.h src/*.c src/*.h tests/c/*.c

clean:
	rm -rf build gorgon/_gorgon*.so *.egg-info
