/*
 * The ASGI 3.0 bridge: "http" and "lifespan" scopes. Each worker runs a
 * standard asyncio event loop; the worker's epoll loop is registered in it
 * (add_reader on the epoll fd), so sockets and HTTP stay in C while the
 * application's coroutines are ordinary asyncio tasks. Files match the WSGI
 * bridge: asgi.c (setup, scope, tasks), asgi_response.c (send: framing),
 * asgi_receive.c (receive: the streamed request body).
 */
#ifndef GN_BRIDGES_ASGI_H
#define GN_BRIDGES_ASGI_H

#include <Python.h>

#include "http/loop.h"
#include "module.h"
#include "server/config.h"

typedef struct gn_asgi gn_asgi_t;

/* Per worker, in its interpreter. Returns NULL with err filled. */
gn_asgi_t *gn_asgi_new(PyObject *app, const gn_config_t *cfg, unsigned worker_id, char *err, size_t errlen);
const gn_handler_t *gn_asgi_handler(gn_asgi_t *a);

/* Lifespan startup. Returns 0, or -1 with err filled (the app's message). */
int gn_asgi_startup(gn_asgi_t *a, char *err, size_t errlen);
/* Runs asyncio until the epoll loop has stopped and drained, then the
 * lifespan shutdown. */
void gn_asgi_run(gn_asgi_t *a, gn_loop_t *loop);
void gn_asgi_free(gn_asgi_t *a);

/* Module exec: the bridge's heap types. */
int gn_asgi_add_types(PyObject *module, gn_modstate_t *st);

#endif
