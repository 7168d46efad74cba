#include "server/supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/config.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/worker.h"
#include "shared/shared.h"

#define EXIT_APP_LOAD 1
#define EXIT_FORCED 130

typedef struct {
    gn_config_t cfg;
    gn_listeners_t listeners;
    gn_worker_t *workers;
    unsigned n_started;
    gn_end_order_t end_order;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sigset_t sigs;
    int stopping;
} gn_supervisor_t;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits up to `seconds` for a signal; returns its number or 0. */
static int wait_signal(gn_supervisor_t *s, double seconds)
{
    struct timespec ts = {.tv_sec = (time_t)seconds,
                          .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    int sig = sigtimedwait(&s->sigs, NULL, &ts);
    return sig > 0 ? sig : 0;
}

static void request_stop_all(gn_supervisor_t *s)
{
    for (unsigned i = 0; i < s->n_started; i++)
        gn_worker_request_stop(&s->workers[i]);
}

/* SIGTERM/SIGINT start a graceful stop; a second SIGINT (or SIGQUIT) ends
 * the process at once, as users of gunicorn and uvicorn expect. */
static void handle_signal(gn_supervisor_t *s, int sig)
{
    if (sig == 0)
        return;
    if (s->stopping && (sig == SIGINT || sig == SIGQUIT)) {
        gn_log(GN_LOG_WARNING, "second %s: stopping at once", sig == SIGINT ? "SIGINT" : "SIGQUIT");
        gn_listen_close(&s->listeners);
        gn_interp_abandon_process(EXIT_FORCED);
    }
    if (sig == SIGINT || sig == SIGTERM || sig == SIGQUIT) {
        if (!s->stopping)
            gn_log(GN_LOG_INFO, "%s received: finishing in-flight requests (up to %gs)",
                   sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "SIGQUIT",
                   s->cfg.graceful_timeout);
        s->stopping = 1;
        request_stop_all(s);
    }
}

static void init_worker(gn_supervisor_t *s, unsigned i)
{
    gn_worker_t *w = &s->workers[i];
    w->id = i;
    w->cfg = &s->cfg;
    w->main_interp = PyInterpreterState_Main();
    w->end_order = &s->end_order;
    w->mu = &s->mu;
    w->cv = &s->cv;
    w->exclusive = s->listeners.exclusive;
    w->listen_fds = gn_listen_for_worker(&s->listeners, i, &w->n_listen);
}

/* Waits until worker i has left STARTING, handling signals meanwhile. */
static int wait_started(gn_supervisor_t *s, unsigned i)
{
    for (;;) {
        int st = atomic_load(&s->workers[i].state);
        if (st != GN_WORKER_STARTING)
            return st;
        handle_signal(s, wait_signal(s, 0.02));
    }
}

static int start_workers(gn_supervisor_t *s, unsigned from, unsigned to)
{
    for (unsigned i = from; i < to; i++) {
        init_worker(s, i);
        if (s->workers[i].listen_fds == NULL || gn_worker_start(&s->workers[i]) < 0) {
            gn_log(GN_LOG_ERROR, "cannot start worker %u: %s", i, strerror(errno));
            return -1;
        }
        s->n_started = i + 1;
    }
    for (unsigned i = from; i < to; i++) {
        if (wait_started(s, i) == GN_WORKER_FAILED)
            return -1;
    }
    return 0;
}

/* Workaround 3 lives in interp/: report the first failure and leave. */
static void fail_startup(gn_supervisor_t *s)
{
    int code = EXIT_APP_LOAD;
    for (unsigned i = 0; i < s->n_started; i++) {
        gn_worker_t *w = &s->workers[i];
        if (atomic_load(&w->state) == GN_WORKER_FAILED) {
            gn_log(GN_LOG_CRITICAL, "worker %u: %s", i, w->error);
            if (w->exit_code)
                code = w->exit_code;
            break;
        }
    }
    gn_listen_close(&s->listeners);
    gn_interp_abandon_process(code);
}

static int all_stopped(gn_supervisor_t *s)
{
    for (unsigned i = 0; i < s->n_started; i++) {
        int st = atomic_load(&s->workers[i].state);
        if (st == GN_WORKER_READY || st == GN_WORKER_STARTING)
            return 0;
    }
    return 1;
}

/* A worker stuck in application code past the graceful timeout cannot be
 * interrupted from outside its interpreter; like gunicorn's arbiter killing
 * such workers, the server then leaves without waiting for it. */
static void check_graceful_deadline(gn_supervisor_t *s, double stop_started)
{
    if (mono_now() < stop_started + s->cfg.graceful_timeout + 1.0)
        return;
    unsigned busy = 0;
    for (unsigned i = 0; i < s->n_started; i++)
        busy += atomic_load(&s->workers[i].state) == GN_WORKER_READY;
    gn_log(GN_LOG_WARNING, "graceful timeout (%gs) expired with %u worker(s) still in a request: exiting",
           s->cfg.graceful_timeout, busy);
    gn_listen_close(&s->listeners);
    gn_interp_abandon_process(0);
}

static void run_until_stopped(gn_supervisor_t *s)
{
    double stop_started = 0;
    while (!all_stopped(s)) {
        handle_signal(s, wait_signal(s, 0.1));
        if (!s->stopping)
            continue;
        if (stop_started == 0)
            stop_started = mono_now();
        request_stop_all(s); /* idempotent; covers a worker that was starting */
        check_graceful_deadline(s, stop_started);
    }
}

/* Workaround 2 lives in interp/: interpreters end newest-first. */
static void end_workers(gn_supervisor_t *s)
{
    if (s->n_started == 0)
        return;
    pthread_mutex_lock(&s->end_order.mu);
    s->end_order.turn = (int)s->n_started - 1;
    pthread_cond_broadcast(&s->end_order.cv);
    pthread_mutex_unlock(&s->end_order.mu);
    for (unsigned i = s->n_started; i-- > 0;)
        pthread_join(s->workers[i].thread, NULL);
}

static void log_listening(gn_supervisor_t *s)
{
    for (unsigned i = 0; i < s->listeners.n_binds; i++)
        gn_log(GN_LOG_INFO, "Listening at: %s (%u workers)", s->listeners.binds[i].url, s->cfg.workers);
}

/* Runs with the main interpreter's GIL released. */
static int serve_unlocked(gn_supervisor_t *s)
{
    double t0 = mono_now();
    /* The first worker imports the application alone, so an application that
     * cannot load fails fast with one clear message. */
    if (start_workers(s, 0, 1) < 0 || start_workers(s, 1, s->cfg.workers) < 0) {
        if (s->n_started && atomic_load(&s->workers[0].state) == GN_WORKER_FAILED && s->workers[0].fatal)
            fail_startup(s);
        for (unsigned i = 0; i < s->n_started; i++) {
            if (s->workers[i].fatal)
                fail_startup(s);
        }
        s->stopping = 1;
        request_stop_all(s);
        run_until_stopped(s);
        end_workers(s);
        return 1;
    }
    gn_log(GN_LOG_INFO, "%u workers ready in %.0f ms", s->cfg.workers, (mono_now() - t0) * 1000);
    log_listening(s);
    run_until_stopped(s);
    end_workers(s);
    gn_log(GN_LOG_INFO, "stopped");
    return 0;
}

static void setup(gn_supervisor_t *s)
{
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->end_order.mu, NULL);
    pthread_cond_init(&s->end_order.cv, NULL);
    s->end_order.turn = -1;
    sigemptyset(&s->sigs);
    sigaddset(&s->sigs, SIGINT);
    sigaddset(&s->sigs, SIGTERM);
    sigaddset(&s->sigs, SIGQUIT);
    sigaddset(&s->sigs, SIGHUP);
}

static void teardown(gn_supervisor_t *s)
{
    gn_listen_close(&s->listeners);
    free(s->workers);
    gn_config_free(&s->cfg);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->end_order.mu);
    pthread_cond_destroy(&s->end_order.cv);
}

int gn_supervisor_serve(PyObject *config)
{
    gn_supervisor_t sup;
    gn_supervisor_t *s = &sup;
    memset(s, 0, sizeof(*s));
    setup(s);
    int rc = 1;
    if (gn_config_from_dict(&s->cfg, config) < 0) {
        teardown(s);
        return -1;
    }
    gn_log_set_level(s->cfg.log_level);
    gn_shared_serve_start(&s->cfg); /* --shared-max-bytes, main interpreter's facts */
    PyObject *version = PyDict_GetItemString(config, "version");
    const char *v = version && PyUnicode_Check(version) ? PyUnicode_AsUTF8(version) : "?";
    const char *py = Py_GetVersion();
    gn_log(GN_LOG_INFO, "gorgon %s (Python %.*s), mode interpreters: %u own-GIL sub-interpreter workers",
           v ? v : "?", (int)strcspn(py, " "), py, s->cfg.workers);
    s->workers = calloc(s->cfg.workers, sizeof(gn_worker_t));
    if (s->workers == NULL || gn_listen_open(&s->listeners, &s->cfg) < 0 ||
        gn_interp_prepare_main(&s->cfg) < 0)
        goto done;
    /* Worker threads inherit this mask, so only sigtimedwait sees signals. */
    sigset_t old;
    pthread_sigmask(SIG_BLOCK, &s->sigs, &old);
    Py_BEGIN_ALLOW_THREADS
    rc = serve_unlocked(s);
    Py_END_ALLOW_THREADS
    pthread_sigmask(SIG_SETMASK, &old, NULL);
done:
    teardown(s);
    return rc;
}
