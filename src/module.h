/*
 * The gorgon._gorgon extension module. It is imported in the main
 * interpreter (which runs serve()) and again in every worker interpreter,
 * where its per-interpreter state holds the heap types the bridges use.
 */
#ifndef GN_MODULE_H
#define GN_MODULE_H

#include <Python.h>

/* The floor: own-GIL sub-interpreters crash before 3.13 (gorgon/_check.py
 * says so at run time; this says it to a build with older headers). */
#if PY_VERSION_HEX < 0x030D0000
#error "gorgon needs CPython 3.13 or newer (Python.h is older)"
#endif

typedef struct {
    PyTypeObject *input_type;          /* wsgi.input */
    PyTypeObject *start_response_type; /* start_response and write() */
    PyTypeObject *file_wrapper_type;   /* wsgi.file_wrapper */
    PyTypeObject *asgi_request_type;   /* ASGI receive/send of one request */
    PyTypeObject *asgi_ready_type;     /* an awaitable already complete */
    /* gorgon.shared and channels (src/shared/) */
    PyTypeObject *shared_type;
    PyTypeObject *channel_type;
    PyObject *empty;  /* gorgon.Empty, gorgon.Full, gorgon.Closed */
    PyObject *full;
    PyObject *closed;
    PyObject *unavailable; /* gorgon.Unavailable: the --shared-url server */
    PyObject *aio;    /* gorgon._shared_aio, imported on first async call */
    PyObject *request_timeout; /* gorgon.RequestTimeout, raised by --timeout */
} gn_modstate_t;

/* The state of the gorgon._gorgon module of the current interpreter,
 * importing it if needed; NULL with an exception set on failure. */
gn_modstate_t *gn_modstate_current(void);

#endif
