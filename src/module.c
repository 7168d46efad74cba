/*
 * gorgon._gorgon: multi-phase initialisation, module state instead of
 * globals, heap types only, and declared safe for interpreters with their
 * own GIL (PEP 684), so it loads in every worker, and safe without the GIL
 * on a free-threaded build (PEP 703).
 */
#include "module.h"

#include "bridges/asgi.h"
#include "bridges/fault.h"
#include "bridges/wsgi.h"
#include "http/fault.h"
#include "server/supervisor.h"
#include "shared/shared.h"

static PyObject *serve(PyObject *module, PyObject *config)
{
    (void)module;
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_RuntimeError, "gorgon._gorgon.serve() runs in the main interpreter only");
        return NULL;
    }
    int rc = gn_supervisor_serve(config);
    if (rc < 0)
        return NULL;
    return PyLong_FromLong(rc);
}

#ifdef GN_FAULT
/* _gorgon._fault_http(n): arms src/http's faults for the next accepted
 * connection (http/fault.h); returns the faults fired so far. */
static PyObject *fault_http(PyObject *module, PyObject *n)
{
    (void)module;
    long at = PyLong_AsLong(n);
    if (at == -1 && PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(gn_http_fault_arm(at));
}
#endif

static PyMethodDef methods[] = {
    {"serve", serve, METH_O, "serve(config) -> exit code. Runs the server until it stops."},
#ifdef GN_FAULT
    {"_fault", gn_fault_arm, METH_O, "_fault(n) -> faults fired so far (test builds only, bridges/fault.h)."},
    {"_fault_http", fault_http, METH_O,
     "_fault_http(n) -> src/http faults fired so far (test builds only, http/fault.h)."},
#endif
    {NULL, NULL, 0, NULL},
};

/* A BaseException, as KeyboardInterrupt is, so that the application's
 * `except Exception:` does not swallow the interrupt. */
static int add_request_timeout(PyObject *module, gn_modstate_t *st)
{
    st->request_timeout = PyErr_NewExceptionWithDoc(
        "gorgon.RequestTimeout",
        "Raised by the server inside a request that ran past --timeout; the client was already answered 504.",
        PyExc_BaseException, NULL);
    return st->request_timeout ? PyModule_AddObjectRef(module, "RequestTimeout", st->request_timeout) : -1;
}

static int exec_module(PyObject *module)
{
    gn_modstate_t *st = PyModule_GetState(module);
    if (add_request_timeout(module, st) < 0)
        return -1;
    if (gn_wsgi_add_types(module, st) < 0 || gn_asgi_add_types(module, st) < 0)
        return -1;
    if (gn_shared_add_to_module(module, st) < 0)
        return -1;
    return 0;
}

static int traverse(PyObject *module, visitproc visit, void *arg)
{
    gn_modstate_t *st = PyModule_GetState(module);
    Py_VISIT(st->input_type);
    Py_VISIT(st->start_response_type);
    Py_VISIT(st->file_wrapper_type);
    Py_VISIT(st->asgi_request_type);
    Py_VISIT(st->asgi_ready_type);
    Py_VISIT(st->shared_type);
    Py_VISIT(st->channel_type);
    Py_VISIT(st->empty);
    Py_VISIT(st->full);
    Py_VISIT(st->closed);
    Py_VISIT(st->unavailable);
    Py_VISIT(st->aio);
    Py_VISIT(st->request_timeout);
    return 0;
}

static int clear(PyObject *module)
{
    gn_modstate_t *st = PyModule_GetState(module);
    Py_CLEAR(st->input_type);
    Py_CLEAR(st->start_response_type);
    Py_CLEAR(st->file_wrapper_type);
    Py_CLEAR(st->asgi_request_type);
    Py_CLEAR(st->asgi_ready_type);
    Py_CLEAR(st->shared_type);
    Py_CLEAR(st->channel_type);
    Py_CLEAR(st->empty);
    Py_CLEAR(st->full);
    Py_CLEAR(st->closed);
    Py_CLEAR(st->unavailable);
    Py_CLEAR(st->aio);
    Py_CLEAR(st->request_timeout);
    return 0;
}

static void free_module(void *module)
{
    clear((PyObject *)module);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    /* Free-threaded builds: the GIL stays off when gorgon is imported. What
     * several threads of one interpreter can share is ordered without it:
     * the shared store and channels by their own locks (they already serve
     * interpreters running in parallel), the lazily imported module in the
     * module state and the WSGI request objects an application thread may
     * keep by critical sections; everything else is per worker. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "gorgon._gorgon",
    .m_doc = "gorgon's server core (C).",
    .m_size = sizeof(gn_modstate_t),
    .m_methods = methods,
    .m_slots = slots,
    .m_traverse = traverse,
    .m_clear = clear,
    .m_free = free_module,
};

gn_modstate_t *gn_modstate_current(void)
{
    PyObject *m = PyImport_ImportModule("gorgon._gorgon");
    if (m == NULL)
        return NULL;
    gn_modstate_t *st = PyModule_GetState(m);
    Py_DECREF(m); /* sys.modules keeps it alive for the interpreter's life */
    return st;
}

PyMODINIT_FUNC PyInit__gorgon(void)
{
    return PyModuleDef_Init(&moduledef);
}
