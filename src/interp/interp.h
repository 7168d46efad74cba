/*
 * Sub-interpreter lifecycle: create an own-GIL interpreter on a worker
 * thread, configure it, import the application, end it. Every workaround a
 * CPython version needs lives here and only here:
 *
 *  1. datetime: with two own-GIL interpreters alive, importing _datetime in
 *     workers crashed in Py_EndInterpreter in 40-75% of runs (3.13.0, 3.13.5).
 *     Importing it once in the main interpreter first avoids it
 *     (gn_interp_prepare_main; GORGON_NO_DATETIME_WORKAROUND=1 turns it off).
 *  2. Ending interpreters newest-first avoided the same class of crash
 *     (gn_interp_end_ordered). At a stop they end newest-first; a worker
 *     replaced while the server runs ends as soon as it has stopped, which
 *     workaround 1 alone made safe (test_lifecycle.py: either suffices).
 *     1 and 2 apply only where the crash was measured, 3.13
 *     (GN_DATETIME_HAZARD): with both off, 20 start/stop cycles of 2 workers
 *     importing datetime and sqlite3 all ended cleanly on 3.14.10 and 3.15.2
 *     (test_lifecycle.py::test_no_datetime_hazard_since_3_14).
 *  3. After a failed import of a module that refuses sub-interpreters,
 *     Py_FinalizeEx hit "double free or corruption" (10/10, 3.13.5, in an
 *     early version of the server): the interpreter that failed is kept, and
 *     a server whose application cannot load leaves with _exit() instead of
 *     finalizing (gn_interp_abandon_process). On 3.13 only
 *     (GN_FAILED_IMPORT_HAZARD; GORGON_NO_FAILED_IMPORT_WORKAROUND=1 turns
 *     it off): ending it and finalizing, single-phase and PyO3 modules, at
 *     start and at a reload, crashed in none of the runs of
 *     test_lifecycle.py::test_failed_import_without_the_workaround and
 *     test_failed_reload_of_a_refusing_module_then_stop on 3.13.0, 3.13.5,
 *     3.14.10 or 3.15.2.
 *  4. Creating and ending an interpreter leaks 1.7-6.3 MB a cycle (4.0-4.1
 *     MB over 50 cycles, 3.13.0): workers are re-created in-process only
 *     when asked (a reload, --max-requests), and on 3.13 the server says so
 *     (GN_INTERP_END_LEAKS). A reload's cost per interpreter on 3.14.10: 0.5
 *     MB; on 3.15.2: none (test_reload.py::test_what_a_reload_costs_in_memory_on_this_python).
 *  5. A worker thread that called threading.current_thread() (Django does)
 *     holds a _DummyThread whose clean-up ran after threading's teardown when
 *     its interpreter ended: "Exception ignored in _DeleteDummyThreadOnDel"
 *     with a TypeError traceback (3.13.0 and 3.13.5). It is dropped just
 *     before the interpreter ends (gn_interp_end_ordered). On 3.13 only
 *     (GN_DUMMY_THREAD_HAZARD; GORGON_NO_DUMMY_THREAD_WORKAROUND=1 turns it
 *     off): without it, the stop printed nothing on 3.13.0, 3.13.5, 3.14.10
 *     or 3.15.2 (test_lifecycle.py::test_dummy_thread_ends_quietly).
 */
#ifndef GN_INTERP_INTERP_H
#define GN_INTERP_INTERP_H

#include <Python.h>
#include <pthread.h>
#include <sys/types.h>

#include "server/config.h"

/* Whether this CPython has the datetime hazard of workarounds 1 and 2. */
#define GN_DATETIME_HAZARD (PY_VERSION_HEX < 0x030E0000)
/* Whether it keeps megabytes of each interpreter ended (workaround 4). */
#define GN_INTERP_END_LEAKS (PY_VERSION_HEX < 0x030E0000)
/* Whether an interpreter that failed to import the application is kept and
 * the process leaves without finalizing (workaround 3). */
#define GN_FAILED_IMPORT_HAZARD (PY_VERSION_HEX < 0x030E0000)
/* Whether a worker's _DummyThread is dropped before its end (workaround 5). */
#define GN_DUMMY_THREAD_HAZARD (PY_VERSION_HEX < 0x030E0000)

typedef struct {
    PyThreadState *main_ts; /* this thread's state in the main interpreter */
    PyThreadState *ts;      /* this thread's state in its own interpreter */
    int64_t id;             /* the interpreter's id */
    int is_main;            /* ts is a state of the main interpreter (no own one) */
} gn_interp_t;

/* What a worker runs the application in. */
enum gn_interp_kind {
    GN_INTERP_SUB,  /* its own own-GIL sub-interpreter */
    GN_INTERP_MAIN, /* the process's main interpreter (modes processes, threads) */
};

/* Newest-first ending: each worker waits for its turn. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int turn;  /* index of the worker allowed to end now; -1 = nobody yet */
} gn_end_order_t;

/* Main interpreter, GIL held, before any worker exists. Returns 0 or -1. */
int gn_interp_prepare_main(const gn_config_t *cfg);

/*
 * On a worker thread holding no GIL: creates an isolated own-GIL interpreter
 * and returns with its GIL held. Returns 0, or -1 with err filled.
 */
int gn_interp_create(gn_interp_t *it, PyInterpreterState *main_interp, char *err, size_t errlen);

/*
 * On a worker thread holding no GIL: attaches to the main interpreter with a
 * new thread state of its own (PyThreadState_New, never PyGILState_*) and
 * returns with the main GIL held. Modes processes and threads.
 */
int gn_interp_attach_main(gn_interp_t *it, PyInterpreterState *main_interp, char *err, size_t errlen);

/*
 * On the main thread, main GIL held, in a throwaway child process (the auto
 * mode's probe): creates an own-GIL sub-interpreter configured as a worker's
 * and stays attached to it. Never ended: the probe leaves with _exit().
 */
int gn_interp_enter_probe(char *err, size_t errlen);

/*
 * Pure-Python fallback (sub-interpreters only): a sys.meta_path finder that,
 * when a compiled module refuses sub-interpreters and the same module's .py
 * source sits beside it, loads the source instead. Returns 0, or -1 with err.
 */
int gn_interp_install_pure_fallback(char *err, size_t errlen);
/* The modules loaded from source so far, comma-separated ("" if none);
 * returns how many. */
int gn_interp_pure_fallback_report(char *buf, size_t len);

/* Main interpreter, GIL held (a reload in --mode threads): drops the
 * application's own modules from sys.modules (gorgon/_reload.py), so the
 * next import reads them from disk. Returns 0, or -1 with err filled. */
int gn_interp_forget_app_modules(char *err, size_t errlen);

/* Sets sys.path from the configuration. Returns 0, or -1 with err filled. */
int gn_interp_configure(const gn_config_t *cfg, char *err, size_t errlen);

/*
 * Imports "module:attr" (or "module:factory()") and returns a new reference,
 * or NULL with a one-line reason in err (the module and the error, plus the
 * file and line where it was raised).
 */
PyObject *gn_interp_import_app(const char *spec, char *err, size_t errlen);

/* Whether obj is an ASGI application (a coroutine function, or an object
 * whose __call__ is one). */
int gn_interp_is_asgi(PyObject *app);

/* Ends the interpreter when it is worker `index`'s turn, then passes the
 * turn on. Called with the interpreter's GIL held (or it->ts NULL). */
void gn_interp_end_ordered(gn_interp_t *it, gn_end_order_t *order, int index);

/*
 * --max-worker-memory in one process: the bytes of the current
 * interpreter's small-object heap (its own obmalloc arenas: objects of up to
 * 512 bytes), with its GIL held; -1 where this Python cannot say (obmalloc
 * off, or CPython no longer has _PyObject_DebugMallocStats). CPython gives
 * no public per-interpreter figure: sys.getallocatedblocks() counts every
 * interpreter's blocks (3.13).
 */
long long gn_interp_heap_bytes(void);

/* Whether an interpreter that failed to load the application is kept and
 * the process leaves without finalizing (workaround 3): where the hazard was
 * measured, unless GORGON_NO_FAILED_IMPORT_WORKAROUND=1. */
int gn_interp_keep_failed(void);

/* Leaves the process without finalizing Python (workaround 3). */
_Noreturn void gn_interp_abandon_process(int code);

/*
 * Forking (modes processes, --processes, the auto probe). All on the main
 * thread with the main GIL held.
 *
 * gn_interp_threads_running: how many threads the process has (the kernel's
 * count, and Python's threading.active_count() if threading was imported);
 * fork is refused unless it is 1, so no child ever inherits a lock that a
 * thread of the parent held.
 */
int gn_interp_threads_running(void);
/* Whether this Python runs with a GIL now: always on a GIL build; on a
 * free-threaded one (3.13t), unless something re-enabled it. */
int gn_interp_gil_enabled(void);
/* fork() with CPython's before/after hooks (os.register_at_fork included).
 * Returns the pid, 0 in the child, or -1 with errno set. */
pid_t gn_interp_fork(void);
/* A forked child's way out: runs the main interpreter's atexit functions,
 * flushes sys.stdout/stderr, then _exit(code); never finalizes (workaround
 * 3, and the parent's state is not the child's to tear down). */
_Noreturn void gn_interp_leave_child(int code);

#endif
