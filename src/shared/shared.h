/*
 * The gorgon module as applications see it: gorgon.shared (the process-wide
 * store), gorgon.channel() and the worker facts. This header is what the
 * rest of the server calls; the types live in pyapi.c and pychannel.c, the
 * plain C underneath in store.c, channel.c and codec.c.
 */
#ifndef GN_SHARED_SHARED_H
#define GN_SHARED_SHARED_H

#include <Python.h>

#include "module.h"
#include "server/config.h"

/* Module exec: creates the Shared and Channel types, the exceptions Empty,
 * Full, Closed and Unavailable, the `shared` instance, channel() and the default worker
 * facts. Returns 0, or -1 with an exception set. */
int gn_shared_add_to_module(PyObject *module, gn_modstate_t *st);

/*
 * In the interpreter whose GIL the caller holds: imports gorgon._gorgon and
 * sets worker_id (None when worker_id < 0), worker_count and mode. Called by
 * a worker after its interpreter is configured and before the application is
 * imported. Returns 0, or -1 with a one-line reason in err (exception
 * cleared).
 */
int gn_shared_set_worker_facts(int worker_id, unsigned worker_count, const char *mode, char *err,
                               size_t errlen);

#define GN_SHARED_DEFAULT_PREFIX "gorgon:"
#define GN_SHARED_DEFAULT_TIMEOUT 2.0

/* Main interpreter, once when serve() starts: applies --shared-max-bytes,
 * sets the main interpreter's facts (worker_id None, mode "main") and, with
 * --shared-url, checks that Redis answers and switches gorgon.shared and
 * channels to it. Returns 0, or -1 after logging why (the server must not
 * start). */
int gn_shared_serve_start(const gn_config_t *cfg);

#endif
