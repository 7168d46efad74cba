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
 *     (gn_interp_end_ordered).
 *  3. After a failed import of a module that refuses sub-interpreters,
 *     Py_FinalizeEx hit "double free or corruption" (10/10, 3.13.5): a
 *     server whose application cannot load leaves with _exit() instead of
 *     finalizing (gn_interp_abandon_process).
 *  4. Creating and ending an interpreter leaks 1.7-6.3 MB a cycle, so
 *     workers are never recycled by re-creating interpreters in-process.
 */
#ifndef GN_INTERP_INTERP_H
#define GN_INTERP_INTERP_H

#include <Python.h>
#include <pthread.h>

#include "server/config.h"

typedef struct {
    PyThreadState *main_ts; /* this thread's state in the main interpreter */
    PyThreadState *ts;      /* this thread's state in its own interpreter */
    int64_t id;             /* the interpreter's id */
} gn_interp_t;

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

/* Leaves the process without finalizing Python (workaround 3). */
_Noreturn void gn_interp_abandon_process(int code);

#endif
