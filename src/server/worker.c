#include "server/worker.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bridges/wsgi.h"
#include "server/log.h"

static void set_state(gn_worker_t *w, int state)
{
    pthread_mutex_lock(w->mu);
    atomic_store(&w->state, state);
    pthread_cond_broadcast(w->cv);
    pthread_mutex_unlock(w->mu);
}

/* The worker holds its interpreter's GIL except while epoll_wait sleeps. */
static void release_gil(void *arg)
{
    gn_worker_t *w = arg;
    w->interp.ts = PyEval_SaveThread();
}

static void acquire_gil(void *arg)
{
    gn_worker_t *w = arg;
    PyEval_RestoreThread(w->interp.ts);
}

static gn_wsgi_t *load_app(gn_worker_t *w)
{
    if (gn_interp_configure(w->cfg, w->error, sizeof(w->error)) < 0)
        return NULL;
    PyObject *app = gn_interp_import_app(w->cfg->app, w->error, sizeof(w->error));
    if (app == NULL) {
        w->fatal = 1;
        return NULL;
    }
    if (strcmp(w->cfg->interface, "wsgi") != 0 && gn_interp_is_asgi(app)) {
        snprintf(w->error, sizeof(w->error),
                 "'%s' is an ASGI application; this gorgon serves WSGI only (--interface wsgi)", w->cfg->app);
        w->fatal = 1;
        Py_DECREF(app);
        return NULL;
    }
    gn_wsgi_t *bridge = gn_wsgi_new(app, w->cfg, w->id, w->error, sizeof(w->error));
    Py_DECREF(app);
    return bridge;
}

static int start_loop(gn_worker_t *w, gn_wsgi_t *bridge)
{
    gn_loop_t *loop = &w->loop;
    if (gn_loop_init(loop, w->listen_fds, w->n_listen, w->exclusive, &w->cfg->limits,
                     gn_wsgi_handler(bridge)) < 0) {
        snprintf(w->error, sizeof(w->error), "cannot set up the event loop: %s", strerror(errno));
        return -1;
    }
    w->listen_fds = NULL; /* owned by the loop now */
    loop->worker_id = (int)w->id;
    loop->graceful_timeout = w->cfg->graceful_timeout;
    loop->before_wait = release_gil;
    loop->after_wait = acquire_gil;
    loop->wait_arg = w;
    w->loop_ready = 1;
    return 0;
}

static void *worker_main(void *arg)
{
    gn_worker_t *w = arg;
    gn_wsgi_t *bridge = NULL;
    if (gn_interp_create(&w->interp, w->main_interp, w->error, sizeof(w->error)) < 0)
        goto failed;
    bridge = load_app(w);
    if (bridge == NULL || start_loop(w, bridge) < 0)
        goto failed;
    gn_log(GN_LOG_INFO, "worker %u ready (sub-interpreter %lld, own GIL, thread %d)", w->id,
           (long long)w->interp.id, (int)gettid());
    set_state(w, GN_WORKER_READY);
    gn_loop_run(&w->loop);
    /* STOPPED before the loop's wake fd closes: no more wake-ups after it. */
    set_state(w, GN_WORKER_STOPPED);
    gn_loop_destroy(&w->loop);
    gn_wsgi_free(bridge);
    gn_interp_end_ordered(&w->interp, w->end_order, (int)w->id);
    set_state(w, GN_WORKER_DONE);
    return NULL;

failed:
    if (w->loop_ready)
        gn_loop_destroy(&w->loop);
    if (w->fatal) {
        /* Workaround 3 (interp.h): an interpreter that failed to import the
         * application is never ended; the supervisor leaves with _exit(). */
        if (w->interp.ts)
            PyEval_SaveThread();
        set_state(w, GN_WORKER_FAILED);
        return NULL;
    }
    if (bridge)
        gn_wsgi_free(bridge);
    set_state(w, GN_WORKER_FAILED);
    gn_interp_end_ordered(&w->interp, w->end_order, (int)w->id);
    return NULL;
}

int gn_worker_start(gn_worker_t *w)
{
    atomic_store(&w->state, GN_WORKER_STARTING);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* Python code in the worker needs a main-thread-sized C stack. */
    pthread_attr_setstacksize(&attr, 8u << 20);
    int rc = pthread_create(&w->thread, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    w->started = 1;
    return 0;
}

void gn_worker_request_stop(gn_worker_t *w)
{
    /* Under the lock, so the loop cannot be torn down meanwhile. */
    pthread_mutex_lock(w->mu);
    if (atomic_load(&w->state) == GN_WORKER_READY)
        gn_loop_request_stop(&w->loop);
    pthread_mutex_unlock(w->mu);
}
