/* What the WSGI and ASGI bridges share. */
#ifndef GN_BRIDGES_COMMON_H
#define GN_BRIDGES_COMMON_H

#include <Python.h>

#include "bridges/fault.h"

/*
 * Writes exc's traceback to the error log as one block, after the caller's
 * gn_log line. *cache keeps traceback.format_exception for the interpreter.
 */
void gn_bridge_log_traceback(PyObject **cache, PyObject *exc);

/* A bridge's set-up failed: "cannot set up the WSGI bridge: MemoryError"
 * (the exception's type, and its message if it has one) into err; the
 * exception is cleared. */
void gn_bridge_setup_error(const char *bridge, char *err, size_t errlen);

/* The percent-decoded path as a str: latin-1 for WSGI (PEP 3333), UTF-8
 * with replacement for ASGI (as uvicorn does). */
PyObject *gn_bridge_decode_path(const char *path, size_t len, int utf8);

/*
 * ASGI: the scope's extensions, base itself (a new reference) on a
 * plaintext connection; on a TLS one a copy of base with "tls" added, as
 * the ASGI TLS extension describes it. NULL with an exception set.
 */
typedef struct gn_conn gn_conn_t;
PyObject *gn_bridge_extensions(PyObject *base, const gn_conn_t *c);
/* --timeout: the watchdog took this thread's call into the application
 * (http/loop.h) and may have raised gorgon.RequestTimeout in it; drops
 * one still pending, so that no later code meets it. GIL held. */
void gn_bridge_clear_interrupt(void);

#endif
