#!/usr/bin/env python3
"""Threads vs own-GIL sub-interpreters vs processes: the experiments (docs/experiments.md).

Run as `bench/experiments/run [--quick]` (that wrapper picks .venv-experiments's python, a
CPython 3.13 with `_interpreters`). The measurements use the standard library
only; matplotlib (from .venv-experiments) is imported at the end, for the plots.

Sections:
  startup   100 units created, started and ended: threads, own-GIL
            sub-interpreters (`_interpreters.create("isolated")`, run "pass",
            destroy), the same with `import json, socket, asyncio` inside,
            os.fork (the child _exits at once), multiprocessing "spawn".
            Per-unit ms = wall time for all 100 / 100, best and median of rounds.
            Memory per unit = PSS (and RSS) growth of the whole process tree
            with all 100 alive (blocked), / 100. Each model runs in a fresh
            child process so that one model's heap does not feed the next.
  parallel  a fixed workload of JOBS x pi(DIGITS) (Gibbons' spigot, the same
            function as bench/apps/cpu.py) split evenly over 1, 2 and 4 units:
            threads, sub-interpreters (each on its own thread, created and
            destroyed inside the timing), forked processes. Speed-up = time of
            1 unit / time of k units, per model; serial = one thread running
            it all directly. Median of the runs that other processes left
            undisturbed (< CLEAN cores), or of the 3 least disturbed.
  cutoff    2 x pi(d) for d from 50 to 4000 digits: serial (both in one
            thread) vs 2 threads vs 2 sub-interpreters (creation included) vs
            2 forked processes (fork included) vs 2 pre-created ("warm")
            sub-interpreters, as a gorgon worker pool has them. The cut-off is
            where a model's time drops below serial (log-interpolated), from
            the best run among the undisturbed rounds.

The parallel and cut-off runs happen in two worker processes that the main
process steers (see "worker processes" below for why). Every unit's answer is
checked against a Machin-formula reference. Results go
to bench/results/experiments-<timestamp>.json (+ .md) and the tables to stdout; plots
to bench/results/experiments-{startup,parallel,cutoff}.png, and with --docs-img also
to docs/img/. The machine's load from other processes during each section is
recorded (foreign_cpu: cores busy with work that is not ours), as this machine
is shared. No network; every wait has a time-out.
"""

import argparse
import datetime
import gc
import inspect
import json
import math
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time

import _interpreters

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.append(os.path.join(ROOT, "bench", "apps"))  # the workload the servers run too
from pi import pi_digits  # noqa: E402
RESULTS = os.path.join(ROOT, "bench", "results")
DOCS_IMG = os.path.join(ROOT, "docs", "img")

N_UNITS = 100
IMPORTS = "import json, socket, asyncio"
CHILD_TIMEOUT = 300  # seconds for one start-up model in its child process
JOIN_TIMEOUT = 120  # seconds for one parallel run

QUICK = dict(startup_rounds={"thread": 5, "interp": 3, "interp_imports": 1, "fork": 3, "spawn": 1},
             par_digits=2000, par_jobs=8, par_reps=2, par_budget_s=0, quiet_round_s=0,
             cut_digits=[50, 100, 200, 400, 700, 1000, 1500, 2000],
             cut_reps=2, cut_min_s=0.5, cut_budget_s=4, quiet_wait_s=0, deadline_s=90)
FULL = dict(startup_rounds={"thread": 21, "interp": 9, "interp_imports": 3, "fork": 15, "spawn": 3},
            par_digits=2000, par_jobs=8, par_reps=7, par_budget_s=100, quiet_round_s=5,
            cut_digits=[50, 100, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 4000],
            cut_reps=5, cut_min_s=3.0, cut_budget_s=50, quiet_wait_s=10, deadline_s=480)


# --- the workload -----------------------------------------------------------

def pi_reference(n):
    """Pi to n digits by Machin's formula (big ints, fast): checks the units' answers."""
    def arctan_inv(x, one):
        s = t = one // x
        x2, k, sign = x * x, 1, -1
        while t:
            t //= x2
            k += 2
            s += sign * (t // k)
            sign = -sign
        return s
    one = 10 ** (n + 10)
    return str(4 * (4 * arctan_inv(5, one) - arctan_inv(239, one)))[:n]


def fingerprint(s):
    return f"{len(s)}:{s[-12:]}"


PI_SRC = inspect.getsource(pi_digits)
# Runs inside a sub-interpreter; shared: fd, digits, jobs.
INTERP_JOB = PI_SRC + """
import os
for _ in range(jobs):
    s = pi_digits(digits)
os.write(fd, (f"{len(s)}:{s[-12:]}" + "\\n").encode())
"""
INTERP_WARM_JOB = """
for _ in range(jobs):
    s = pi_digits(digits)
os.write(fd, (f"{len(s)}:{s[-12:]}" + "\\n").encode())
"""


def isolated_config():
    cfg = _interpreters.new_config("isolated")
    assert cfg.gil == "own" and not cfg.use_main_obmalloc, cfg
    return cfg


def interp_run(iid, code, shared=None):
    exc = _interpreters.run_string(iid, code, shared)
    if exc is not None:
        raise RuntimeError(f"in sub-interpreter {iid}: {exc.formatted}\n{exc.errdisplay}")


# --- machine facts and load -------------------------------------------------

def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def machine():
    cpu = next((ln.split(":", 1)[1].strip() for ln in read("/proc/cpuinfo").splitlines()
                if ln.startswith("model name")), platform.processor() or "?")
    mem_kb = next((int(ln.split()[1]) for ln in read("/proc/meminfo").splitlines()
                   if ln.startswith("MemTotal:")), 0)
    return {"nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "cpu": cpu,
            "kernel": platform.release(), "mem_gib": round(mem_kb / 2**20, 1),
            "python": sys.version.split()[0], "python_full": sys.version,
            "executable": sys.executable, "loadavg": read("/proc/loadavg").split()[:3]}


DEADLINE = [float("inf")]  # time.monotonic() after which no optional round or wait is added


def late():
    return time.monotonic() > DEADLINE[0]


def wait_quiet(max_s, threshold=0.25, need=3):
    """Wait (up to max_s) until other processes have used < threshold cores for
    `need` consecutive seconds; we are idle meanwhile. Returns seconds waited."""
    t0, quiet = time.monotonic(), 0
    while quiet < need and time.monotonic() - t0 < max_s and not late():
        b0 = LoadMeter._busy()
        time.sleep(1.0)
        quiet = quiet + 1 if LoadMeter._busy() - b0 < threshold else 0
    return round(time.monotonic() - t0, 1)


class LoadMeter:
    """Cores kept busy by other processes during a section: the machine's busy
    time (/proc/stat) minus our own CPU time (self + waited-for children)."""

    @staticmethod
    def _busy():
        f = [int(v) for v in read("/proc/stat").splitlines()[0].split()[1:]]
        idle = f[3] + (f[4] if len(f) > 4 else 0)
        return (sum(f[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _ours():
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime + sum(w.cpu() for w in Worker.live)

    def __enter__(self):
        self.t, self.busy, self.ours = time.monotonic(), self._busy(), self._ours()
        return self

    def __exit__(self, *exc):
        wall = time.monotonic() - self.t
        foreign = (self._busy() - self.busy) - (self._ours() - self.ours)
        self.result = {"wall_s": round(wall, 1), "foreign_cpu": round(max(0.0, foreign) / wall, 2)}


# --- memory -----------------------------------------------------------------

def smaps(pid="self"):
    """(rss_kb, pss_kb) of one process, or (0, 0) if it is gone."""
    rss = pss = 0
    for ln in read(f"/proc/{pid}/smaps_rollup").splitlines():
        if ln.startswith("Rss:"):
            rss = int(ln.split()[1])
        elif ln.startswith("Pss:"):
            pss = int(ln.split()[1])
    return rss, pss


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in os.listdir(f"/proc/{p}/task") if os.path.isdir(f"/proc/{p}/task") else ():
            for c in read(f"/proc/{p}/task/{task}/children").split():
                out.append(int(c))
                todo.append(int(c))
    return out


def tree_mem():
    """(rss_kb, pss_kb) summed over this process and all its descendants."""
    rss, pss = smaps()
    for c in descendants(os.getpid()):
        r, p = smaps(c)
        rss, pss = rss + r, pss + p
    return rss, pss


# --- start-up: one model in a fresh child process -----------------------------

def _noop():
    pass


def _spawn_hold(ready, hold):
    ready.release()
    hold.wait(60)


def start_interps(model, n):
    """n isolated interpreters, each having run "pass" (or IMPORTS for interp_imports)."""
    code = IMPORTS if model == "interp_imports" else "pass"
    cfg = isolated_config()
    ids = [_interpreters.create(cfg) for _ in range(n)]
    for i in ids:
        interp_run(i, code)
    return ids


def startup_time(model, n):
    """Seconds to create, start and end n units (all n started, then all ended)."""
    gc.collect()
    t0 = time.perf_counter()
    if model == "thread":
        ts = [threading.Thread(target=_noop) for _ in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    elif model in ("interp", "interp_imports"):
        ids = start_interps(model, n)
        for i in ids:
            _interpreters.destroy(i)
    elif model == "fork":
        pids = []
        for _ in range(n):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            _, st = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(st) == 0
    elif model == "spawn":
        ctx = multiprocessing.get_context("spawn")
        ps = [ctx.Process(target=_noop) for _ in range(n)]
        for p in ps:
            p.start()
        for p in ps:
            p.join(60)
            assert p.exitcode == 0, p.exitcode
    return time.perf_counter() - t0


def startup_memory(model, n):
    """(rss_kb, pss_kb) growth of the process tree with n units alive."""
    gc.collect()
    time.sleep(0.05)
    rss0, pss0 = tree_mem()
    if model == "thread":
        ev = threading.Event()
        ts = [threading.Thread(target=ev.wait, args=(60,)) for _ in range(n)]
        for t in ts:
            t.start()
        mem = tree_mem()
        ev.set()
        for t in ts:
            t.join()
    elif model in ("interp", "interp_imports"):
        ids = start_interps(model, n)
        gc.collect()
        mem = tree_mem()
        for i in ids:
            _interpreters.destroy(i)
    elif model == "fork":
        hold_r, hold_w = os.pipe()
        ready_r, ready_w = os.pipe()
        pids = []
        for _ in range(n):
            pid = os.fork()
            if pid == 0:
                os.close(hold_w)
                os.write(ready_w, b".")
                os.read(hold_r, 1)  # EOF when the parent closes hold_w
                os._exit(0)
            pids.append(pid)
        got = 0
        while got < n:
            got += len(os.read(ready_r, n))
        mem = tree_mem()
        os.close(hold_w)
        for pid in pids:
            os.waitpid(pid, 0)
        for fd in (hold_r, ready_r, ready_w):
            os.close(fd)
    elif model == "spawn":
        ctx = multiprocessing.get_context("spawn")
        ready, hold = ctx.Semaphore(0), ctx.Event()
        ps = [ctx.Process(target=_spawn_hold, args=(ready, hold)) for _ in range(n)]
        for p in ps:
            p.start()
        for _ in range(n):
            assert ready.acquire(timeout=120)
        mem = tree_mem()
        hold.set()
        for p in ps:
            p.join(60)
    return mem[0] - rss0, mem[1] - pss0


def startup_child(model, n, rounds):
    """Entry point of the child process for one start-up model: prints JSON."""
    rss, pss = startup_memory(model, n)  # first, on a fresh heap
    startup_time(model, min(n, 10))  # warm-up (imports, caches)
    gc.collect()
    rss0 = smaps()[0]
    times = [startup_time(model, n) for _ in range(rounds)]
    gc.collect()
    # RSS that stays after units have ended (sub-interpreters: memory not given back by destroy)
    kept = (smaps()[0] - rss0) / (rounds * n)
    json.dump({"model": model, "n": n, "per_unit_ms": [t * 1000 / n for t in times],
               "rss_kb_per_unit": rss / n, "pss_kb_per_unit": pss / n, "rss_kb_kept_per_ended_unit": kept},
              sys.stdout)


STARTUP_MODELS = ["thread", "interp", "interp_imports", "fork", "spawn"]
LABELS = {"thread": "threads", "interp": "sub-interpreters (own GIL)",
          "interp_imports": "sub-interpreters + import json, socket, asyncio",
          "fork": "processes (os.fork)", "spawn": "processes (multiprocessing spawn)",
          "serial": "serial (main thread)", "interp_warm": "sub-interpreters, pre-created"}


def run_startup(cfg):
    out = []
    for model in STARTUP_MODELS:
        wait_quiet(cfg["quiet_round_s"], need=1)
        rounds = cfg["startup_rounds"][model]
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child-startup", model,
                            str(N_UNITS), str(rounds)],
                           capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        if p.returncode != 0:
            raise RuntimeError(f"start-up child {model} failed ({p.returncode}):\n{p.stderr}")
        r = json.loads(p.stdout)
        ms = r["per_unit_ms"]
        r.update(median_ms=statistics.median(ms), min_ms=min(ms), max_ms=max(ms), rounds=rounds)
        out.append(r)
        print(f"  startup {model:15s} {r['min_ms']:8.3f} ms/unit (best)  "
              f"PSS {r['pss_kb_per_unit']:8.1f} KiB/unit", file=sys.stderr)
    return out


# --- parallel runs ------------------------------------------------------------

def run_units(model, k, digits, jobs, warm_ids=None):
    """Run k units, each computing pi(digits) `jobs` times; return (seconds, answers)."""
    answers = []
    r, w = os.pipe()
    try:
        t0 = time.perf_counter()
        if model == "serial":
            for _ in range(k * jobs):
                s = pi_digits(digits)
            answers = [fingerprint(s)] * k
        elif model == "thread":
            def work():
                for _ in range(jobs):
                    s = pi_digits(digits)
                answers.append(fingerprint(s))
            ts = [threading.Thread(target=work) for _ in range(k)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(JOIN_TIMEOUT)
        elif model in ("interp", "interp_warm"):
            errors = []
            shared = {"fd": w, "digits": digits, "jobs": jobs}

            def unit(i):
                try:
                    if model == "interp":
                        iid = _interpreters.create(isolated_config())
                        try:
                            interp_run(iid, INTERP_JOB, shared)
                        finally:
                            _interpreters.destroy(iid)
                    else:
                        interp_run(warm_ids[i], INTERP_WARM_JOB, shared)
                except BaseException as e:  # reported below, in the main thread
                    errors.append(e)
            ts = [threading.Thread(target=unit, args=(i,)) for i in range(k)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(JOIN_TIMEOUT)
            if errors:
                raise errors[0]
            answers = read_lines(r, k)
        elif model == "fork":
            pids = []
            for _ in range(k):
                pid = os.fork()
                if pid == 0:
                    try:
                        for _ in range(jobs):
                            s = pi_digits(digits)
                        os.write(w, (fingerprint(s) + "\n").encode())
                    finally:
                        os._exit(0)
                pids.append(pid)
            for pid in pids:
                os.waitpid(pid, 0)
            answers = read_lines(r, k)
        dt = time.perf_counter() - t0
    finally:
        os.close(r)
        os.close(w)
    return dt, answers


def read_lines(fd, k):
    buf = b""
    os.set_blocking(fd, False)
    try:
        buf = os.read(fd, 1 << 16)
    except BlockingIOError:
        pass
    return buf.decode().split()


# --- worker processes ---------------------------------------------------------
# The parallel and cut-off runs happen in two long-lived worker processes, the
# main process only steers them (and stays idle while they measure):
#   "plain"   serial, threads, fork: never creates a sub-interpreter, because
#             CPython 3.13.0 keeps ~1.7 MiB of RSS per destroyed isolated
#             interpreter, and fork time grows with the parent's RSS (page
#             tables); and because a fork while sub-interpreters exist kills the
#             child ("PyThreadState_Get: ... the GIL is released").
#   "interp"  sub-interpreters, created per run or pre-created ("warm"); it is
#             replaced (outside any timing) when its RSS passes WORKER_MAX_RSS_KB.
# So all models can be interleaved round by round.

WORKER_MAX_RSS_KB = 600 * 1024


def worker_main():
    """Loop of a worker: one JSON command per stdin line, one JSON answer per line."""
    warm = []
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["model"] == "interp_warm" and not warm:
                warm = [_interpreters.create(isolated_config()) for _ in range(cmd["k"])]
                for i in warm:
                    interp_run(i, PI_SRC + "\nimport os\n")
            dt, answers = run_units(cmd["model"], cmd["k"], cmd["digits"], cmd["jobs"], warm)
            out = {"dt": dt, "answers": answers, "rss_kb": smaps()[0]}
        except Exception as e:
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    for i in warm:
        _interpreters.destroy(i)


class Worker:
    live = []

    def __init__(self, kind):
        self.kind = kind
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        Worker.live.append(self)
        self.restarts = 0

    def cpu(self):
        """CPU seconds of the worker so far (its threads and waited-for children too)."""
        f = read(f"/proc/{self.p.pid}/stat").rsplit(")", 1)[-1].split()
        return sum(int(v) for v in f[11:15]) / os.sysconf("SC_CLK_TCK") if len(f) > 15 else 0.0

    def call(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        import select
        r, _, _ = select.select([self.p.stdout], [], [], JOIN_TIMEOUT)
        line = self.p.stdout.readline() if r else ""
        if not line:
            raise RuntimeError(f"worker {self.kind}: no answer to {cmd} within {JOIN_TIMEOUT} s")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"worker {self.kind}, {cmd}: {out['error']}")
        if out["rss_kb"] > WORKER_MAX_RSS_KB:
            restarts = self.restarts + 1
            self.close()
            self.__init__(self.kind)
            self.restarts = restarts
        return out

    def close(self):
        self.p.stdin.close()
        self.p.wait(30)
        Worker.live.remove(self)


class Workers:
    """The two workers of a section; each measured run also reports the cores
    that other processes used meanwhile."""

    def __enter__(self):
        self.plain, self.interp = Worker("plain"), Worker("interp")
        self.restarts = 0
        return self

    def __exit__(self, *exc):
        self.restarts = self.plain.restarts + self.interp.restarts
        for w in (self.plain, self.interp):
            if w in Worker.live:
                w.close()

    def run(self, model, k, digits, jobs, expect):
        w = self.interp if model.startswith("interp") else self.plain
        b0, o0, w0 = LoadMeter._busy(), LoadMeter._ours(), time.monotonic()
        out = w.call(model=model, k=k, digits=digits, jobs=jobs)
        wall = time.monotonic() - w0
        foreign = (LoadMeter._busy() - b0) - (LoadMeter._ours() - o0)
        if out["answers"] != [expect] * k:
            raise RuntimeError(f"{model} x{k} pi({digits}): got {out['answers']}, want {expect}")
        return out["dt"], round(max(0.0, foreign) / wall, 3)


CLEAN = 0.25  # a run counts as clean if other processes used fewer cores than this meanwhile


def least_disturbed(samples, at_least=3):
    """The clean ones of [(value, foreign cores)], or if fewer than at_least are
    clean, the at_least with the least foreign load."""
    clean = [x for x in samples if x[1] < CLEAN]
    return clean if len(clean) >= at_least else sorted(samples, key=lambda x: x[1])[:at_least]


def run_parallel(cfg):
    """Rounds of all cases, interleaved so that drifting load hits every case
    alike; each round waits (a little) for a quiet machine first. Runs during
    which other processes used >= CLEAN cores are set aside when enough clean
    ones exist; more rounds are added (within par_budget_s) to get them."""
    digits, jobs, reps = cfg["par_digits"], cfg["par_jobs"], cfg["par_reps"]
    expect = fingerprint(pi_reference(digits))
    cases = [("serial", 1)] + [(m, k) for m in ("thread", "interp", "fork") for k in (1, 2, 4)]
    samples = {c: [] for c in cases}
    with Workers() as ws:
        ws.run("serial", 1, digits, 1, expect)  # warm-up
        ws.run("interp", 1, digits, 1, expect)
        t0, rounds = time.monotonic(), 0
        while rounds < 4 * reps:
            clean = min(sum(f < CLEAN for _, f in v) for v in samples.values())
            if rounds >= reps and (clean >= reps or time.monotonic() - t0 > cfg["par_budget_s"] or late()):
                break
            wait_quiet(cfg["quiet_round_s"], need=1)
            for model, k in cases:
                samples[(model, k)].append(ws.run(model, k, digits, jobs // k, expect))
            rounds += 1
    times = {c: [t for t, _ in least_disturbed(v)] for c, v in samples.items()}
    rows = []
    for model in ("serial", "thread", "interp", "fork"):
        row = {"model": model}
        for k in ((1,) if model == "serial" else (1, 2, 4)):
            row[f"s_{k}"] = statistics.median(times[(model, k)])
            row[f"used_{k}"] = times[(model, k)]
            row[f"samples_{k}"] = samples[(model, k)]
        for k in (2, 4):
            if f"s_{k}" in row:
                row[f"speedup_{k}"] = row["s_1"] / row[f"s_{k}"]
                row[f"speedup_{k}_best"] = min(times[(model, 1)]) / min(times[(model, k)])
                row[f"speedup_{k}_range"] = [min(times[(model, 1)]) / max(times[(model, k)]),
                                             max(times[(model, 1)]) / min(times[(model, k)])]
        row["runs"] = f"{min(len(row[k]) for k in row if k.startswith('used_'))}/{rounds}"
        rows.append(row)
        print(f"  parallel {model:7s} " + "  ".join(f"{k}:{row[f's_{k}']:.3f}s" for k in (1, 2, 4)
                                                   if f"s_{k}" in row) + f"  runs used {row['runs']}",
              file=sys.stderr)
    return {"digits": digits, "jobs": jobs, "reps": reps, "rounds": rounds, "clean_below_cores": CLEAN,
            "worker_restarts": ws.restarts, "rows": rows}


# --- cut-off curve ------------------------------------------------------------

CUT_MODELS = ["serial", "thread", "interp", "fork", "interp_warm"]


def run_cutoff(cfg):
    """Per size, rounds of the five models, interleaved. Each round's foreign
    load is measured; the statistic is the best run among the clean rounds
    (or the 3 least disturbed ones; among all rounds if they are short). Small
    sizes are cheap and noisy: they get cut_min_s of rounds (<= 300), spread
    over time; longer ones get rounds until cut_reps are clean or cut_budget_s
    is spent."""
    reps, min_s, budget = cfg["cut_reps"], cfg["cut_min_s"], cfg["cut_budget_s"]
    points = []
    with Workers() as ws:
        for d in cfg["cut_digits"]:
            expect = fingerprint(pi_reference(d))
            for m in CUT_MODELS:  # warm-up (and the warm interpreters' creation)
                ws.run(m, *((1, d, 2) if m == "serial" else (2, d, 1)), expect)
            rounds, walls, t0, last = [], [], time.monotonic(), 0.0
            while len(rounds) < 300:
                elapsed, clean = time.monotonic() - t0, sum(f < CLEAN for _, f in rounds)
                short = bool(walls) and statistics.median(walls) < 0.2
                if len(rounds) >= reps and (elapsed >= budget or late()
                                            or elapsed >= min_s and (short or clean >= reps)):
                    break
                if last > 0.3:  # long rounds: worth waiting for a quiet machine, the longer if the last was not
                    wait_quiet(cfg["quiet_round_s"] * (1 if rounds[-1][1] < CLEAN else 3), need=1)
                b0, o0, w0 = LoadMeter._busy(), LoadMeter._ours(), time.monotonic()
                times = {}
                for m in CUT_MODELS:
                    k, jobs = (1, 2) if m == "serial" else (2, 1)
                    times[m] = ws.run(m, k, d, jobs, expect)[0]
                last = time.monotonic() - w0
                foreign = (LoadMeter._busy() - b0) - (LoadMeter._ours() - o0)
                rounds.append((times, round(max(0.0, foreign) / last, 3)))
                walls.append(last)
            # A round shorter than ~0.2 s spans too few clock ticks (10 ms) for its
            # foreign load to mean much: there, the best of all rounds is taken.
            used = least_disturbed(rounds) if statistics.median(walls) >= 0.2 else rounds
            pt = {"digits": d, "rounds": len(rounds), "clean": sum(f < CLEAN for _, f in rounds),
                  "used": len(used), "foreign": [f for _, f in rounds],
                  "times": {m: [r[m] for r, _ in rounds] for m in CUT_MODELS}}
            pt["best_ms"] = {m: min(r[m] for r, _ in used) * 1000 for m in CUT_MODELS}
            pt["median_ms"] = {m: statistics.median(r[m] for r, _ in used) * 1000 for m in CUT_MODELS}
            points.append(pt)
            print(f"  cutoff {d:5d} " + " ".join(f"{m}:{v:9.2f}ms" for m, v in pt["best_ms"].items())
                  + f"  rounds {pt['rounds']} clean {pt['clean']}", file=sys.stderr)
    cuts = {m: crossing(points, m) for m in ("interp", "fork", "interp_warm")}
    best_thread = max(pt["best_ms"]["serial"] / pt["best_ms"]["thread"] for pt in points)
    return {"reps": reps, "points": points, "crossings": cuts, "thread_best_speedup": best_thread,
            "worker_restarts": ws.restarts}


def crossing(points, model):
    """Size from which `model` beats serial at every larger size (the last
    break-even), log-interpolated between the two bracketing points: digits, and
    the serial time of the whole workload there (ms). None if it never does."""
    logs = [(math.log(pt["digits"]), math.log(pt["best_ms"]["serial"] / pt["best_ms"][model]),
             math.log(pt["best_ms"]["serial"])) for pt in points]  # ratio > 0: model wins
    if logs[-1][1] <= 0:
        return None
    i = len(logs) - 1
    while i > 0 and logs[i - 1][1] > 0:
        i -= 1
    if i == 0:
        return {"digits": points[0]["digits"], "serial_ms": points[0]["best_ms"]["serial"], "below_range": True}
    (d0, r0, s0), (d1, r1, s1) = logs[i - 1], logs[i]
    f = -r0 / (r1 - r0)
    return {"digits": round(math.exp(d0 + f * (d1 - d0))), "serial_ms": round(math.exp(s0 + f * (s1 - s0)), 2)}


# --- report -------------------------------------------------------------------

def markdown(res):
    m = res["machine"]
    out = [f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}; "
           f"load from other processes (cores): " +
           ", ".join(f"{k} {v['foreign_cpu']}" for k, v in res["load"].items()), ""]
    if "startup" in res:
        out += [f"Start-up of {N_UNITS} units (create + start + end, all {N_UNITS} at once; ms per unit, best and "
                f"median of the rounds) and memory per unit (growth of the process tree with all {N_UNITS} alive):",
                "", "| model | ms per unit, best | median | max | PSS KiB per unit | RSS KiB per unit "
                "| RSS KiB kept per ended unit | rounds |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["startup"]:
            out.append(f"| {LABELS[r['model']]} | {r['min_ms']:.3f} | {r['median_ms']:.3f} | {r['max_ms']:.3f} "
                       f"| {r['pss_kb_per_unit']:.0f} | {r['rss_kb_per_unit']:.0f} | {r['rss_kb_kept_per_ended_unit']:.0f} "
                       f"| {r['rounds']} |")
        out.append("")
    if "parallel" in res:
        p = res["parallel"]
        out += [f"{p['jobs']} x pi({p['digits']}) split over 1, 2, 4 units (seconds, median of the runs used: "
                f"those with other processes using < {p['clean_below_cores']} cores, or else the 3 least disturbed; "
                "speed-up vs 1 unit of the same model from the medians, then from the best runs, "
                "then min-max over the runs used):", "",
                "| model | 1 unit s | 2 units s | 4 units s | speed-up 2 (best; range) | speed-up 4 (best; range) "
                "| runs used |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for r in p["rows"]:
            if r["model"] == "serial":
                out.append(f"| {LABELS['serial']} | {r['s_1']:.3f} | | | | | {r['runs']} |")
                continue
            sp = [f"{r[f'speedup_{k}']:.2f}x ({r[f'speedup_{k}_best']:.2f}x; "
                  f"{r[f'speedup_{k}_range'][0]:.2f}-{r[f'speedup_{k}_range'][1]:.2f})"
                  for k in (2, 4)]
            out.append(f"| {LABELS[r['model']]} | {r['s_1']:.3f} | {r['s_2']:.3f} | {r['s_4']:.3f} "
                       f"| {sp[0]} | {sp[1]} | {r['runs']} |")
        out.append("")
    if "cutoff" in res:
        c = res["cutoff"]
        out += [f"Cut-off: 2 x pi(d), milliseconds, best run among the clean rounds (other processes using "
                f"< {CLEAN} cores; or the 3 least disturbed rounds; among all rounds when a round takes "
                f"< 0.2 s); in brackets the speed-up vs serial:", "",
                "| digits | serial | 2 threads | 2 interpreters (incl. create) | 2 processes (incl. fork) "
                "| 2 pre-created interpreters | rounds (clean) |",
                "|---:|---:|---:|---:|---:|---:|---:|"]
        for pt in c["points"]:
            md, s = pt["best_ms"], pt["best_ms"]["serial"]
            cells = [f"{md[x]:.2f} ({s / md[x]:.2f}x)" for x in ("thread", "interp", "fork", "interp_warm")]
            out.append(f"| {pt['digits']} | {s:.2f} | " + " | ".join(cells) + f" | {pt['rounds']} ({pt['clean']}) |")
        out.append("")
        for m in ("interp", "fork", "interp_warm"):
            x = c["crossings"].get(m)
            txt = ("never, in this range" if x is None else
                   f"at <= {x['digits']} digits (already at the smallest size)" if x.get("below_range") else
                   f"from ~{x['digits']} digits, i.e. a serial workload of ~{x['serial_ms']:.1f} ms")
            out.append(f"- {LABELS[m]} beat serial {txt}")
        out.append(f"- threads: best speed-up vs serial at any size {c['thread_best_speedup']:.2f}x")
        out.append("")
    return "\n".join(out)


def plots(res, stamp, docs_img):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("experiments: matplotlib missing (run bench/experiments/setup-venv): no plots", file=sys.stderr)
        return []
    colors = {"serial": "#444444", "thread": "#d62728", "interp": "#1f77b4", "interp_warm": "#17becf",
              "interp_imports": "#9ecae1", "fork": "#2ca02c", "spawn": "#98df8a"}
    mach = res["machine"]
    foot = f"{mach['nproc']} CPUs, {mach['cpu']}, Python {mach['python']}"
    files = []

    if "startup" in res:
        st = res["startup"]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.6))
        names = ["threads", "interpreters", "interpreters\n+ imports", "fork", "spawn"]
        for ax, key, title, fmt in ((a1, "min_ms", "create + start + end, ms per unit (best round)", "{:.3g}"),
                                    (a2, "pss_kb_per_unit", "memory per unit alive, PSS KiB", "{:.0f}")):
            vals = [r[key] for r in st]
            bars = ax.bar(names, vals, color=[colors[r["model"]] for r in st])
            ax.set_yscale("log")
            ax.set_title(title)
            ax.set_ylim(min(v for v in vals if v > 0) / 3, max(vals) * 4)
            for b, v in zip(bars, vals):
                ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                            xytext=(0, 2), textcoords="offset points", fontsize=9)
            ax.grid(axis="y", alpha=0.3, which="both")
            ax.tick_params(axis="x", labelsize=9)
        fig.suptitle(f"Start-up of {N_UNITS} units (log scale)  -  {foot}", fontsize=10)
        fig.tight_layout()
        files.append(save(fig, "experiments-startup.png"))
        plt.close(fig)

    if "parallel" in res:
        p = res["parallel"]
        fig, ax = plt.subplots(figsize=(7.5, 4.4))
        ks = [1, 2, 4]
        rows = [r for r in p["rows"] if r["model"] != "serial"]
        w = 0.26
        for i, r in enumerate(rows):
            sp = [1.0] + [r[f"speedup_{k}"] for k in (2, 4)]
            bars = ax.bar([j + (i - 1) * w for j in range(3)], sp, w, label=LABELS[r["model"]],
                          color=colors[r["model"]])
            for b, v in zip(bars, sp):
                ax.annotate(f"{v:.2f}x", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                            xytext=(0, 2), textcoords="offset points", fontsize=8)
        ax.axhline(1, color="#888", lw=0.8)
        ax.axhline(mach["nproc"], color="#888", lw=0.8, ls=":")
        ax.annotate(f"{mach['nproc']} CPUs", (-0.45, mach["nproc"]), ha="left", va="bottom", fontsize=8,
                    color="#666")
        ax.set_xticks(range(3), [f"{k} unit{'s' if k > 1 else ''}" for k in ks])
        ax.set_ylabel("speed-up vs 1 unit of the same model")
        ax.set_ylim(0, mach["nproc"] * 1.35)
        ax.set_title(f"{p['jobs']} x pi({p['digits']}) split over units  -  {foot}", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        files.append(save(fig, "experiments-parallel.png"))
        plt.close(fig)

    if "cutoff" in res:
        c = res["cutoff"]
        pts = c["points"]
        ds = [pt["digits"] for pt in pts]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8))
        names = {"serial": "serial (2 jobs, main thread)", "thread": "2 threads",
                 "interp": "2 interpreters, incl. create/destroy", "fork": "2 processes, incl. fork",
                 "interp_warm": "2 pre-created interpreters"}
        for m in CUT_MODELS:
            ys = [pt["best_ms"][m] for pt in pts]
            a1.plot(ds, ys, "o-", ms=3.5, color=colors[m], label=names[m])
            if m != "serial":
                a2.plot(ds, [pt["best_ms"]["serial"] / y for pt, y in zip(pts, ys)], "o-", ms=3.5,
                        color=colors[m], label=names[m])
        a1.set_xscale("log")
        a1.set_yscale("log")
        a1.set_xlabel("workload size: pi digits (each of 2 jobs)")
        a1.set_ylabel("wall time, ms (best of rounds)")
        a1.set_title("Execution time of 2 x pi(d)")
        a1.legend(fontsize=8)
        a1.grid(alpha=0.3, which="both")
        a2.set_xscale("log")
        a2.axhline(1, color="#444", lw=1)
        a2.set_xlabel("workload size: pi digits (each of 2 jobs)")
        a2.set_ylabel("speed-up vs serial (>1: parallel pays)")
        a2.set_title("Where parallelism starts to pay")
        a2.grid(alpha=0.3, which="both")
        a2.set_ylim(0, max(2.2, mach["nproc"] * 1.1))
        for m in ("interp", "fork", "interp_warm"):
            x = c["crossings"].get(m)
            if x and not x.get("below_range"):
                a2.axvline(x["digits"], color=colors[m], ls=":", lw=1)
                y = {"interp_warm": 0.08, "interp": 0.38, "fork": 0.68}[m]
                a2.annotate(f"{x['digits']} digits\n({x['serial_ms']:.1f} ms serial)", (x["digits"], y),
                            color=colors[m], fontsize=8, ha="left", xytext=(3, 0), textcoords="offset points")
        a2.legend(fontsize=8, loc="upper left")
        fig.suptitle(foot, fontsize=9)
        fig.tight_layout()
        files.append(save(fig, "experiments-cutoff.png"))
        plt.close(fig)

    if docs_img:
        os.makedirs(DOCS_IMG, exist_ok=True)
        for f in files:
            shutil.copy(f, os.path.join(DOCS_IMG, os.path.basename(f)))
    return files


def save(fig, name):
    path = os.path.join(RESULTS, name)
    fig.savefig(path, dpi=110)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and sizes (< 2 min)")
    ap.add_argument("--only", choices=["startup", "parallel", "cutoff"], action="append",
                    help="run only this section (repeatable)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--docs-img", action="store_true", help="also copy the plots to docs/img/")
    ap.add_argument("--plot", metavar="JSON", help="only redraw the plots from a results file")
    ap.add_argument("--child-startup", nargs=3, metavar=("MODEL", "N", "ROUNDS"), help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.worker:
        worker_main()
        return
    if a.child_startup:
        startup_child(a.child_startup[0], int(a.child_startup[1]), int(a.child_startup[2]))
        return
    os.makedirs(RESULTS, exist_ok=True)
    if a.plot:
        with open(a.plot) as f:
            res = json.load(f)
        for p in plots(res, None, a.docs_img):
            print(p)
        return

    cfg = QUICK if a.quick else FULL
    sections = a.only or ["startup", "parallel", "cutoff"]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    res = {"when": stamp, "mode": "quick" if a.quick else "full", "machine": machine(),
           "interp_config": vars(isolated_config()), "workload": "pi_digits (Gibbons spigot), see bench/experiments",
           "config": cfg, "load": {}}
    t_start = time.monotonic()
    DEADLINE[0] = t_start + cfg["deadline_s"]
    for name, fn in (("startup", run_startup), ("parallel", run_parallel), ("cutoff", run_cutoff)):
        if name in sections:
            waited = wait_quiet(cfg["quiet_wait_s"])
            print(f"experiments: {name} ... (waited {waited} s for a quiet machine)", file=sys.stderr)
            with LoadMeter() as lm:
                res[name] = fn(cfg)
            res["load"][name] = dict(lm.result, waited_for_quiet_s=waited)
    res["total_s"] = round(time.monotonic() - t_start, 1)
    res["machine"]["loadavg_end"] = read("/proc/loadavg").split()[:3]
    base = os.path.join(RESULTS, f"experiments-{stamp}")
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    with open(base + ".md", "w") as f:
        f.write(md + "\n")
    print(md)
    print(f"results: {os.path.relpath(base, ROOT)}.json (.md), {res['total_s']} s", file=sys.stderr)
    if not a.no_plots:
        for p in plots(res, stamp, a.docs_img):
            print(f"plot: {os.path.relpath(p, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
