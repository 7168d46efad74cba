#include "server/worker.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bridges/asgi.h"
#include "bridges/wsgi.h"
#include "http/group.h"
#include "module.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/watchdog.h"
#include "shared/shared.h"

static void set_state(gn_worker_t *w, int state)
{
    pthread_mutex_lock(w->mu);
    atomic_store(&w->state, state);
    gn_metrics_slot_state(w->mslot, state);
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

static PyObject *load_app(gn_worker_t *w)
{
    if (gn_interp_configure(w->cfg, w->error, sizeof(w->error)) < 0)
        return NULL;
    if (w->forget_app_modules && gn_interp_forget_app_modules(w->error, sizeof(w->error)) < 0)
        return NULL;
    /* Before the application's import, so its module level sees them. */
    if (gn_shared_set_worker_facts(w->facts_id, w->count, w->mode, w->error, sizeof(w->error)) < 0)
        return NULL;
    if (w->kind == GN_INTERP_SUB && w->cfg->pure_fallback &&
        gn_interp_install_pure_fallback(w->error, sizeof(w->error)) < 0)
        return NULL;
    PyObject *app = gn_interp_import_app(w->cfg->app, w->error, sizeof(w->error));
    if (app == NULL)
        w->fatal = 1;
    char names[1024];
    int n = w->id == 0 && app ? gn_interp_pure_fallback_report(names, sizeof(names)) : 0;
    if (n > 0) /* once per server: only worker 0 says it */
        gn_log(GN_LOG_INFO, "pure-Python fallback: %d compiled module(s) refuse sub-interpreters, loaded from "
               "their .py source instead: %s (--no-pure-fallback turns this off)", n, names);
    return app;
}

/* The bridge the application speaks: WSGI or ASGI. */
typedef struct {
    gn_wsgi_t *wsgi;
    gn_asgi_t *asgi;
} bridge_t;

static int make_bridge(gn_worker_t *w, PyObject *app, bridge_t *b)
{
    const char *iface = w->cfg->interface;
    int asgi = strcmp(iface, "asgi") == 0 || (strcmp(iface, "auto") == 0 && gn_interp_is_asgi(app));
    if (asgi)
        b->asgi = gn_asgi_new(app, w->cfg, w->id, w->error, sizeof(w->error));
    else {
        /* PEP 3333: may another thread of this interpreter, or another
         * interpreter or process, run the app at the same time? */
        int threads = strcmp(w->mode, "threads") == 0;
        int multithread = threads && w->cfg->workers > 1;
        int multiprocess = w->count > 1 && !(threads && w->count == w->cfg->workers);
        b->wsgi = gn_wsgi_new(app, w->id, multithread, multiprocess, w->error, sizeof(w->error));
    }
    if (w->id == 0 && (b->asgi || b->wsgi))
        gn_log(GN_LOG_INFO, "interface: %s%s", asgi ? "ASGI" : "WSGI",
               strcmp(iface, "auto") == 0 ? " (detected from the application)" : "");
    return b->asgi || b->wsgi ? 0 : -1;
}

static void free_bridge(bridge_t *b)
{
    gn_wsgi_free(b->wsgi);
    gn_asgi_free(b->asgi);
    b->wsgi = NULL;
    b->asgi = NULL;
}

/* --max-worker-memory: the worker measures itself about once a second. */
#define MEMORY_CHECK_INTERVAL 1.0

static long long process_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    long long size = 0, resident = -1;
    if (f == NULL)
        return -1;
    if (fscanf(f, "%lld %lld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static long long memory_used(const gn_worker_t *w)
{
    long long used = w->memory_of_process ? process_rss() : gn_interp_heap_bytes();
    if (used < 0)
        gn_log(GN_LOG_WARNING, "worker %u: --max-worker-memory cannot measure %s here; not watched", w->id,
               w->memory_of_process ? "the process's memory" : "the interpreter's heap");
    return used;
}

/* Before the worker serves, its application imported: a worker already above
 * the bound would be replaced by one just as large, again and again. Such a
 * worker is not watched, and says so once. */
static int memory_watchable(const gn_worker_t *w)
{
    long long used = memory_used(w);
    if (used < 0)
        return 0;
    if ((size_t)used <= w->memory_bound)
        return 1;
    gn_log(GN_LOG_WARNING,
           "worker %u starts at %.1f MiB of %s, above --max-worker-memory (%.1f MiB): not watched; "
           "raise the bound", w->id, (double)used / 1048576, w->memory_of_process ? "resident memory" : "heap",
           (double)w->memory_bound / 1048576);
    return 0;
}

/* On the worker's thread, its GIL held (the loop's timeout scan). */
static void check_memory(void *arg)
{
    gn_worker_t *w = arg;
    if (w->loop.now < w->memory_next || atomic_load(&w->loop.replace_wanted))
        return;
    w->memory_next = w->loop.now + MEMORY_CHECK_INTERVAL;
    long long used = memory_used(w);
    if (used < 0) {
        w->loop.on_scan = NULL;
        return;
    }
    if ((size_t)used <= w->memory_bound)
        return;
    w->memory_used = (size_t)used;
    atomic_store(&w->loop.replace_wanted, 1);
}

/* After lifespan startup: the baseline includes what the application holds. */
static void watch_memory(gn_worker_t *w)
{
    if (w->memory_bound && memory_watchable(w)) {
        w->loop.on_scan = check_memory;
        w->loop.scan_arg = w;
    }
}

static int start_loop(gn_worker_t *w, bridge_t *b)
{
    gn_loop_t *loop = &w->loop;
    const gn_handler_t *h = b->asgi ? gn_asgi_handler(b->asgi) : gn_wsgi_handler(b->wsgi);
    if (gn_loop_init(loop, w->listen_fds, w->n_listen, w->exclusive, &w->cfg->limits, h) < 0) {
        snprintf(w->error, sizeof(w->error), "cannot set up the event loop: %s", strerror(errno));
        return -1;
    }
    w->listen_fds = NULL; /* owned by the loop now */
    loop->worker_id = (int)w->id;
    if (w->mslot)
        loop->stats = gn_metrics_slot_stats(w->mslot);
    if (w->max_requests)
        loop->served_enough = w->max_requests;
    loop->graceful_timeout = w->cfg->graceful_timeout;
    if (b->wsgi) { /* under ASGI, asyncio's selector releases the GIL instead */
        loop->before_wait = release_gil;
        loop->after_wait = acquire_gil;
        loop->wait_arg = w;
    }
    w->loop_ready = 1;
    if (w->cfg->timeout > 0) {
        gn_modstate_t *st = gn_modstate_current();
        if (st == NULL) {
            PyErr_Clear();
            snprintf(w->error, sizeof(w->error), "cannot set up --timeout");
            return -1;
        }
        w->timeout_exc = st->request_timeout;
        w->py_interp = PyInterpreterState_Get();
        w->py_thread = PyThread_get_thread_ident();
        loop->app_watch = 1;
    }
    return 0;
}

/* Lifespan startup runs before the worker serves anything (ASGI only). */
static int startup(gn_worker_t *w, bridge_t *b)
{
    if (b->asgi == NULL || gn_asgi_startup(b->asgi, w->error, sizeof(w->error)) == 0)
        return 0;
    w->fatal = 1;
    w->exit_code = 3;
    return -1;
}

static void serve(gn_worker_t *w, bridge_t *b)
{
    if (w->kind == GN_INTERP_MAIN)
        gn_log(GN_LOG_INFO, "worker %u ready (main interpreter, mode %s, thread %d)", w->id, w->mode,
               (int)gettid());
    else
        gn_log(GN_LOG_INFO, "worker %u ready (sub-interpreter %lld, own GIL, thread %d)", w->id,
               (long long)w->interp.id, (int)gettid());
    if (w->group)
        gn_group_join(w->group, w->index, &w->loop);
    pthread_mutex_lock(w->mu);
    atomic_store(&w->state, GN_WORKER_READY);
    gn_metrics_slot_state(w->mslot, GN_WORKER_READY);
    if (w->retiring) /* replaced while it was starting */
        gn_loop_retire(&w->loop);
    pthread_cond_broadcast(w->cv);
    pthread_mutex_unlock(w->mu);
    if (b->asgi)
        gn_asgi_run(b->asgi, &w->loop);
    else
        gn_loop_run(&w->loop);
}

static void *worker_main(void *arg)
{
    gn_worker_t *w = arg;
    bridge_t b = {NULL, NULL};
    PyObject *app = NULL;
    int rc = w->kind == GN_INTERP_MAIN
                 ? gn_interp_attach_main(&w->interp, w->main_interp, w->error, sizeof(w->error))
                 : gn_interp_create(&w->interp, w->main_interp, w->error, sizeof(w->error));
    if (rc < 0)
        goto failed;
    app = load_app(w);
    if (app == NULL || make_bridge(w, app, &b) < 0 || start_loop(w, &b) < 0 || startup(w, &b) < 0)
        goto failed;
    watch_memory(w);
    Py_CLEAR(app);
    serve(w, &b);
    gn_watchdog_wait_probe(w);
    /* STOPPED before the loop's wake fd closes: no more wake-ups after it. */
    set_state(w, GN_WORKER_STOPPED);
    gn_loop_destroy(&w->loop);
    free_bridge(&b);
    gn_interp_end_ordered(&w->interp, &w->end_order, 0);
    set_state(w, GN_WORKER_DONE);
    return NULL;

failed:
    if (w->loop_ready)
        gn_loop_destroy(&w->loop);
    if (w->fatal && gn_interp_keep_failed()) {
        /* Workaround 3 (interp.h): an interpreter that failed to load the
         * application is never ended; the supervisor leaves with _exit(). */
        if (w->interp.ts)
            PyEval_SaveThread();
        set_state(w, GN_WORKER_FAILED);
        return NULL;
    }
    Py_XDECREF(app);
    free_bridge(&b);
    set_state(w, GN_WORKER_FAILED);
    gn_interp_end_ordered(&w->interp, &w->end_order, 0);
    return NULL;
}

int gn_worker_start(gn_worker_t *w)
{
    atomic_store(&w->state, GN_WORKER_STARTING);
    pthread_mutex_init(&w->end_order.mu, NULL);
    pthread_cond_init(&w->end_order.cv, NULL);
    w->end_order.turn = -1;
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
    gn_metrics_slot_stopping(w->mslot);
    if (atomic_load(&w->state) == GN_WORKER_READY)
        gn_loop_request_stop(&w->loop);
    pthread_mutex_unlock(w->mu);
}

void gn_worker_hurry(gn_worker_t *w)
{
    pthread_mutex_lock(w->mu);
    if (atomic_load(&w->state) == GN_WORKER_READY)
        gn_loop_hurry(&w->loop);
    pthread_mutex_unlock(w->mu);
}

void gn_worker_retire(gn_worker_t *w)
{
    pthread_mutex_lock(w->mu);
    w->retiring = 1;
    gn_metrics_slot_stopping(w->mslot);
    if (atomic_load(&w->state) == GN_WORKER_READY)
        gn_loop_retire(&w->loop);
    pthread_mutex_unlock(w->mu);
    gn_worker_allow_end(w);
}

void gn_worker_allow_end(gn_worker_t *w)
{
    pthread_mutex_lock(&w->end_order.mu);
    w->end_order.turn = 0;
    pthread_cond_broadcast(&w->end_order.cv);
    pthread_mutex_unlock(&w->end_order.mu);
}

int gn_worker_wants_replacing(gn_worker_t *w)
{
    int yes = 0;
    pthread_mutex_lock(w->mu);
    if (atomic_load(&w->state) == GN_WORKER_READY && !w->retiring)
        yes = atomic_load(&w->loop.replace_wanted);
    pthread_mutex_unlock(w->mu);
    return yes;
}
