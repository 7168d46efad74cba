/*
 * --timeout: the supervisor's watch over calls into the application.
 *
 * A worker's loop marks each call into the application (http/loop.h:
 * gn_loop_app_enter/leave). When one runs past the timeout, the watchdog
 * takes it (the loop's thread cannot leave the call without noticing):
 *
 *  1. It answers the request itself, from C on the supervisor's thread: a
 *     504 if no byte of the response was queued, else the connection is
 *     closed (WSGI; an ASGI event loop's calls are not one request's, and
 *     the bridge answers once the call ends).
 *  2. A probe thread makes a thread state in the worker's interpreter and
 *     waits for its GIL. Python code drops the GIL at its next switch
 *     interval; the probe then logs the stuck thread's Python stack and
 *     raises gorgon.RequestTimeout in it (PyThreadState_SetAsyncExc), which
 *     Python code meets at its next bytecode: the worker is back at once.
 *  3. A worker not back within STUCK_GRACE is in C code: holding its GIL
 *     (the probe never gets it), or in a call that does not return to
 *     Python (time.sleep, a blocking read). The pool replaces it; the stuck
 *     one is abandoned (it ends if it ever comes back). A worker process
 *     with one is replaced whole.
 */
#ifndef GN_SERVER_WATCHDOG_H
#define GN_SERVER_WATCHDOG_H

#include "server/worker.h"

/* Seconds a taken call has to come back before its worker counts as stuck. */
#define GN_STUCK_GRACE 1.0

/*
 * The supervisor's thread, every look: takes a call of w that ran past
 * timeout seconds. Returns 1 when w is stuck (the caller replaces it), 0
 * otherwise.
 */
int gn_watchdog_look(gn_worker_t *w, double timeout, double now);

/* The worker's thread, once it stopped serving, before its interpreter
 * ends (GIL held): no call is taken any more, and a probe still at work on
 * it is waited for. */
void gn_watchdog_wait_probe(gn_worker_t *w);

#endif
