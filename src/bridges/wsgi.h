/*
 * The WSGI (PEP 3333) bridge: turns a parsed request into environ, calls the
 * application in the worker's interpreter, and turns its answer into bytes
 * on the connection. No sockets here: output goes through gn_conn_*.
 */
#ifndef GN_BRIDGES_WSGI_H
#define GN_BRIDGES_WSGI_H

#include <Python.h>

#include "http/conn.h"
#include "module.h"
#include "server/config.h"

typedef struct gn_wsgi gn_wsgi_t;

/* Per worker, in its interpreter. Returns NULL with err filled. */
gn_wsgi_t *gn_wsgi_new(PyObject *app, unsigned worker_id, int multithread,
                       int multiprocess, char *err, size_t errlen);
const gn_handler_t *gn_wsgi_handler(gn_wsgi_t *w);
void gn_wsgi_free(gn_wsgi_t *w);

/* Module exec: creates the bridge's heap types into the module state. */
int gn_wsgi_add_types(PyObject *module, gn_modstate_t *st);

/* ---- shared by wsgi.c, wsgi_input.c and wsgi_file.c ---- */

/* wsgi.input over a request body; detached (reads give b"") once the
 * request is over, since the body's storage belongs to the connection. */
PyObject *gn_wsgi_input_new(gn_modstate_t *st, const gn_body_t *body);
void gn_wsgi_input_detach(PyObject *input);
PyTypeObject *gn_wsgi_input_type_new(PyObject *module);

/* wsgi.file_wrapper; the bridge sends real files with sendfile. */
PyTypeObject *gn_wsgi_file_wrapper_type_new(PyObject *module);
/* If obj is a FileWrapper over a regular file: its fd and the byte range
 * from the current position to the end; returns 1, else 0. */
int gn_wsgi_file_wrapper_range(PyObject *obj, gn_modstate_t *st, int *fd, off_t *off, size_t *len);

#endif
