#include "server/pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http/group.h"
#include "http/loop.h"
#include "server/log.h"
#include "server/worker.h"

#define EXIT_APP_LOAD 1
#define EXIT_FORCED 130

typedef struct {
    gn_plan_t *plan;
    const gn_pool_hooks_t *hooks;
    unsigned id_base;
    gn_worker_t *workers;
    unsigned n_started;
    gn_end_order_t end_order;
    gn_group_t group; /* n = 0 with a single worker */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    double hurried_at; /* > 0: a second SIGTERM came; in-flight requests are not waited for */
} pool_t;

/* Waits up to `seconds` for a signal; returns its number or 0. */
static int wait_signal(pool_t *p, double seconds)
{
    struct timespec ts = {.tv_sec = (time_t)seconds,
                          .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    int sig = sigtimedwait(&p->plan->sigs, NULL, &ts);
    return sig > 0 ? sig : 0;
}

static void request_stop_all(pool_t *p)
{
    for (unsigned i = 0; i < p->n_started; i++)
        gn_worker_request_stop(&p->workers[i]);
}

/* SIGTERM/SIGINT start a graceful stop; a second SIGINT (or SIGQUIT) ends
 * the process at once, as users of gunicorn and uvicorn expect; a second
 * SIGTERM stops waiting for in-flight requests and still exits 0. */
static void handle_signal(pool_t *p, int sig)
{
    if (sig == 0)
        return;
    if (p->stopping && (sig == SIGINT || sig == SIGQUIT)) {
        gn_log(GN_LOG_WARNING, "second %s: stopping at once", sig == SIGINT ? "SIGINT" : "SIGQUIT");
        gn_listen_close(&p->plan->listeners);
        gn_interp_abandon_process(EXIT_FORCED);
    }
    if (p->stopping && sig == SIGTERM) {
        if (p->hurried_at == 0) {
            gn_log(GN_LOG_WARNING, "second SIGTERM: closing the connections still open");
            p->hurried_at = gn_now();
        }
        for (unsigned i = 0; i < p->n_started; i++)
            gn_worker_hurry(&p->workers[i]);
        return;
    }
    if (sig == SIGINT || sig == SIGTERM || sig == SIGQUIT) {
        if (!p->stopping)
            gn_log(GN_LOG_INFO, "%s received: finishing in-flight requests (up to %gs)",
                   sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "SIGQUIT",
                   p->plan->cfg.graceful_timeout);
        /* From this moment no new connection is queued anywhere; the
         * workers take what is queued and close their own copies. */
        gn_listen_refuse(&p->plan->listeners);
        gn_listen_close(&p->plan->listeners);
        p->stopping = 1;
        request_stop_all(p);
    }
}

static void init_worker(pool_t *p, unsigned i)
{
    gn_plan_t *plan = p->plan;
    gn_worker_t *w = &p->workers[i];
    w->id = p->id_base + i;
    w->index = i;
    w->cfg = &plan->cfg;
    w->kind = plan->kind;
    w->mode = plan->mode;
    /* Threads share one interpreter, whose gorgon.worker_id cannot be each
     * thread's own: None there. */
    w->facts_id = strcmp(plan->mode, "threads") == 0 ? -1 : (int)w->id;
    w->count = plan->total;
    w->main_interp = PyInterpreterState_Main();
    w->end_order = &p->end_order;
    w->mu = &p->mu;
    w->cv = &p->cv;
    w->exclusive = plan->listeners.exclusive;
    w->group = p->group.n ? &p->group : NULL;
    w->listen_fds = gn_listen_for_worker(&plan->listeners, w->id, &w->n_listen);
}

/* Waits until worker i has left STARTING, handling signals meanwhile. */
static int wait_started(pool_t *p, unsigned i)
{
    for (;;) {
        int st = atomic_load(&p->workers[i].state);
        if (st != GN_WORKER_STARTING)
            return st;
        handle_signal(p, wait_signal(p, 0.02));
    }
}

static int start_workers(pool_t *p, unsigned from, unsigned to)
{
    for (unsigned i = from; i < to; i++) {
        init_worker(p, i);
        if (p->workers[i].listen_fds == NULL || gn_worker_start(&p->workers[i]) < 0) {
            gn_log(GN_LOG_ERROR, "cannot start worker %u: %s", p->id_base + i, strerror(errno));
            return -1;
        }
        p->n_started = i + 1;
    }
    for (unsigned i = from; i < to; i++) {
        if (wait_started(p, i) == GN_WORKER_FAILED)
            return -1;
    }
    return 0;
}

/* The first failed worker, or NULL. */
static gn_worker_t *first_failed(pool_t *p)
{
    for (unsigned i = 0; i < p->n_started; i++) {
        if (atomic_load(&p->workers[i].state) == GN_WORKER_FAILED)
            return &p->workers[i];
    }
    return NULL;
}

/* Workaround 3 lives in interp/: report the failure and leave. */
static void fail_startup(pool_t *p, gn_worker_t *w)
{
    int code = w->exit_code ? w->exit_code : EXIT_APP_LOAD;
    if (p->hooks && p->hooks->failed)
        p->hooks->failed(p->hooks->arg, w->error, code); /* the supervisor logs it */
    else
        gn_log(GN_LOG_CRITICAL, "worker %u: %s", w->id, w->error);
    gn_listen_close(&p->plan->listeners);
    gn_interp_abandon_process(code);
}

static int all_stopped(pool_t *p)
{
    for (unsigned i = 0; i < p->n_started; i++) {
        int st = atomic_load(&p->workers[i].state);
        if (st == GN_WORKER_READY || st == GN_WORKER_STARTING)
            return 0;
    }
    return 1;
}

/* A worker stuck in application code past the graceful timeout cannot be
 * interrupted from outside its interpreter; like gunicorn's arbiter killing
 * such workers, the process then leaves without waiting for it. */
static void check_graceful_deadline(pool_t *p, double stop_started)
{
    double deadline = p->hurried_at ? p->hurried_at : stop_started + p->plan->cfg.graceful_timeout;
    if (gn_now() < deadline + 1.0)
        return;
    unsigned busy = 0;
    for (unsigned i = 0; i < p->n_started; i++)
        busy += atomic_load(&p->workers[i].state) == GN_WORKER_READY;
    if (p->hurried_at)
        gn_log(GN_LOG_WARNING, "%u worker(s) still in a request after a second SIGTERM: exiting", busy);
    else
        gn_log(GN_LOG_WARNING, "graceful timeout (%gs) expired with %u worker(s) still in a request: exiting",
               p->plan->cfg.graceful_timeout, busy);
    gn_listen_close(&p->plan->listeners);
    gn_interp_abandon_process(0);
}

/* How often the supervisor looks for requests that wait on a busy worker
 * while another is idle (http/group.h): often while a worker is busy in the
 * application, less often otherwise, since every look wakes this thread on
 * cores the workers need. A request that waits is taken within about
 * WATCH_IDLE + the group's busy threshold. */
#define WATCH_BUSY 0.004
#define WATCH_IDLE 0.02

static void run_until_stopped(pool_t *p)
{
    double stop_started = 0;
    int n_busy = 0;
    while (!all_stopped(p)) {
        double wait = !p->group.n || p->stopping ? 0.1 : n_busy ? WATCH_BUSY : WATCH_IDLE;
        handle_signal(p, wait_signal(p, wait));
        if (p->group.n && !p->stopping) /* a stopping loop takes no work */
            n_busy = gn_group_watch(&p->group);
        if (!p->stopping)
            continue;
        if (stop_started == 0)
            stop_started = gn_now();
        request_stop_all(p); /* idempotent; covers a worker that was starting */
        check_graceful_deadline(p, stop_started);
    }
}

/* Workaround 2 lives in interp/: interpreters end newest-first. */
static void end_workers(pool_t *p)
{
    if (p->n_started == 0)
        return;
    pthread_mutex_lock(&p->end_order.mu);
    p->end_order.turn = (int)p->n_started - 1;
    pthread_cond_broadcast(&p->end_order.cv);
    pthread_mutex_unlock(&p->end_order.mu);
    for (unsigned i = p->n_started; i-- > 0;)
        pthread_join(p->workers[i].thread, NULL);
}

static void log_listening(pool_t *p)
{
    const gn_listeners_t *ls = &p->plan->listeners;
    for (unsigned i = 0; i < ls->n_binds; i++)
        gn_log(GN_LOG_INFO, "Listening at: %s (%u workers)", ls->binds[i].url, p->plan->total);
}

/* Runs with the main interpreter's GIL released. */
static int serve_unlocked(pool_t *p)
{
    unsigned n = p->plan->per_proc;
    double t0 = gn_now();
    /* The first worker imports the application alone, so an application that
     * cannot load fails fast with one clear message. It answers from the
     * moment it is ready: the address is logged then, and the other workers
     * log themselves as they join. In a worker process the supervisor logs
     * the address. */
    int failed = start_workers(p, 0, 1) < 0;
    if (!failed && p->hooks == NULL && !p->stopping)
        log_listening(p);
    if (failed || start_workers(p, 1, n) < 0) {
        gn_worker_t *w = first_failed(p);
        for (unsigned i = 0; i < p->n_started; i++) {
            if (p->workers[i].fatal)
                fail_startup(p, &p->workers[i]);
        }
        if (w && p->hooks && p->hooks->failed)
            p->hooks->failed(p->hooks->arg, w->error, 1);
        else if (w)
            gn_log(GN_LOG_ERROR, "worker %u: %s", w->id, w->error);
        p->stopping = 1;
        request_stop_all(p);
        run_until_stopped(p);
        end_workers(p);
        return 1;
    }
    if (p->hooks && p->hooks->ready) {
        p->hooks->ready(p->hooks->arg);
    } else {
        gn_log(GN_LOG_INFO, "%u workers ready in %.0f ms", n, (gn_now() - t0) * 1000);
    }
    run_until_stopped(p);
    end_workers(p);
    if (p->hooks == NULL)
        gn_log(GN_LOG_INFO, "stopped");
    return 0;
}

int gn_pool_serve(gn_plan_t *plan, unsigned id_base, const gn_pool_hooks_t *hooks)
{
    pool_t pool;
    pool_t *p = &pool;
    memset(p, 0, sizeof(*p));
    p->plan = plan;
    p->hooks = hooks;
    p->id_base = id_base;
    p->workers = calloc(plan->per_proc, sizeof(gn_worker_t));
    if (p->workers == NULL) {
        gn_log(GN_LOG_ERROR, "out of memory");
        return 1;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_mutex_init(&p->end_order.mu, NULL);
    pthread_cond_init(&p->end_order.cv, NULL);
    p->end_order.turn = -1;
    if (plan->per_proc > 1 && gn_group_init(&p->group, plan->per_proc) < 0) {
        gn_log(GN_LOG_ERROR, "out of memory");
        free(p->workers);
        return 1;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = serve_unlocked(p);
    Py_END_ALLOW_THREADS
    free(p->workers);
    if (p->group.n)
        gn_group_destroy(&p->group);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->end_order.mu);
    pthread_cond_destroy(&p->end_order.cv);
    return rc;
}
