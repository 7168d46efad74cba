#include "server/pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http/group.h"
#include "http/loop.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/watchdog.h"
#include "server/worker.h"

#define EXIT_APP_LOAD 1
#define EXIT_FORCED 130
/* Room for the workers that serve, as many replacements starting beside
 * them, and the retired ones still finishing their requests. */
#define SLOTS_PER_WORKER 4
#define SLOTS_SPARE 8

typedef struct {
    gn_plan_t *plan;
    const gn_pool_hooks_t *hooks;
    unsigned id_base;
    gn_worker_t **slots; /* cap entries, NULL where free; a worker's index is its slot */
    unsigned cap;
    unsigned next_id;    /* for a worker added by SIGTTIN */
    unsigned long long seq;
    unsigned long long rng;
    gn_group_t group; /* n = 0 with a single worker */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    int retiring_all;   /* a worker process retires: SIGHUP from its supervisor */
    int reload_wanted;  /* SIGHUP came: reload at the next look */
    int replace_asked;  /* a worker process asked its supervisor to be replaced */
    int abandoned;      /* interpreters that failed to load the application were left as they are */
    unsigned stuck;     /* workers stuck in C past --timeout, replaced and abandoned */
    double hurried_at; /* > 0: a second SIGTERM came; in-flight requests are not waited for */
} pool_t;

#define FOR_EACH_WORKER(p, i, w)                                                                                  \
    for (unsigned i = 0; i < (p)->cap; i++)                                                                        \
        for (gn_worker_t *w = (p)->slots[i]; w; w = NULL)

/* Waits up to `seconds` for a signal; returns its number or 0. */
static int wait_signal(pool_t *p, double seconds)
{
    struct timespec ts = {.tv_sec = (time_t)seconds,
                          .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    int sig = sigtimedwait(&p->plan->sigs, NULL, &ts);
    return sig > 0 ? sig : 0;
}

/* A worker process that retires never stops its loops the usual way: that
 * would make the sockets it shares with the other processes refuse new
 * connections. */
static void request_stop_all(pool_t *p)
{
    FOR_EACH_WORKER(p, i, w)
    {
        if (p->retiring_all)
            gn_worker_retire(w);
        else
            gn_worker_request_stop(w);
    }
}

/* Serving, and not being replaced. */
static int current(gn_worker_t *w)
{
    int st = atomic_load(&w->state);
    return !w->retiring && (st == GN_WORKER_READY || st == GN_WORKER_STARTING);
}

static unsigned count_current(pool_t *p)
{
    unsigned n = 0;
    FOR_EACH_WORKER(p, i, w)
        n += current(w);
    return n;
}

/* xorshift64: --max-requests-jitter needs no better. */
static unsigned long long next_random(pool_t *p)
{
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    return p->rng;
}

static unsigned long long max_requests(pool_t *p)
{
    const gn_config_t *cfg = &p->plan->cfg;
    if (cfg->max_requests == 0)
        return 0;
    unsigned long long jitter = cfg->max_requests_jitter ? next_random(p) % (cfg->max_requests_jitter + 1) : 0;
    return cfg->max_requests + jitter;
}

static void init_worker(pool_t *p, gn_worker_t *w, unsigned slot, unsigned id)
{
    gn_plan_t *plan = p->plan;
    w->id = id;
    w->index = slot;
    w->seq = ++p->seq;
    w->cfg = &plan->cfg;
    w->kind = plan->kind;
    w->mode = plan->mode;
    /* Threads share one interpreter, whose gorgon.worker_id cannot be each
     * thread's own: None there. */
    w->facts_id = strcmp(plan->mode, "threads") == 0 ? -1 : (int)w->id;
    w->count = plan->total;
    w->main_interp = PyInterpreterState_Main();
    w->max_requests = max_requests(p);
    /* In one interpreter shared by every thread (--mode threads in one
     * process), replacing a thread frees nothing: not watched there. */
    w->memory_of_process = p->hooks != NULL;
    if (w->memory_of_process || plan->kind == GN_INTERP_SUB)
        w->memory_bound = plan->cfg.max_worker_memory;
    w->mu = &p->mu;
    w->cv = &p->cv;
    w->exclusive = plan->listeners.exclusive;
    w->group = p->group.n ? &p->group : NULL;
    w->listen_fds = gn_listen_for_worker(&plan->listeners, w->id, &w->n_listen);
}

/* Starts a worker with the given id in a free slot; NULL after logging why. */
static gn_worker_t *start_worker(pool_t *p, unsigned id, int forget_app_modules)
{
    unsigned slot = 0;
    while (slot < p->cap && p->slots[slot])
        slot++;
    gn_worker_t *w = slot < p->cap ? calloc(1, sizeof(*w)) : NULL;
    if (w == NULL) {
        gn_log(GN_LOG_ERROR, "cannot start worker %u: %s", id, slot < p->cap ? "out of memory" : "no free slot");
        return NULL;
    }
    init_worker(p, w, slot, id);
    w->forget_app_modules = forget_app_modules;
    w->mslot = gn_metrics_slot_take(id);
    if (w->listen_fds == NULL || gn_worker_start(w) < 0) {
        gn_log(GN_LOG_ERROR, "cannot start worker %u: %s", id, strerror(errno));
        gn_metrics_slot_release(w->mslot);
        free(w->listen_fds);
        free(w);
        return NULL;
    }
    p->slots[slot] = w;
    return w;
}

/* A worker whose thread was joined. */
static void free_worker(pool_t *p, gn_worker_t *w)
{
    if (w->listen_fds) { /* it failed before its loop owned them */
        for (unsigned i = 0; i < w->n_listen; i++) {
            if (w->listen_fds[i] >= 0)
                close(w->listen_fds[i]);
        }
        free(w->listen_fds);
    }
    pthread_mutex_destroy(&w->end_order.mu);
    pthread_cond_destroy(&w->end_order.cv);
    gn_metrics_slot_release(w->mslot); /* its thread was joined: it counts no more */
    p->slots[w->index] = NULL;
    free(w);
}

static void handle_signal(pool_t *p, int sig);

/* SIGTERM/SIGINT start a graceful stop; a second SIGINT (or SIGQUIT) ends
 * the process at once, as users of gunicorn and uvicorn expect; a second
 * SIGTERM stops waiting for in-flight requests and still exits 0. */
static void handle_stop_signal(pool_t *p, int sig)
{
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
        FOR_EACH_WORKER(p, i, w)
            gn_worker_hurry(w);
        return;
    }
    if (!p->stopping)
        gn_log(GN_LOG_INFO, "%s received: finishing in-flight requests (up to %gs)",
               sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "SIGQUIT", p->plan->cfg.graceful_timeout);
    /* From this moment no new connection is queued anywhere; the
     * workers take what is queued and close their own copies. A worker
     * process that retires leaves that to its supervisor, which serves on. */
    if (!p->retiring_all)
        gn_listen_refuse(&p->plan->listeners);
    gn_listen_close(&p->plan->listeners);
    p->stopping = 1;
    request_stop_all(p);
}

/* In a worker process: its supervisor has a replacement serving. The other
 * processes share the sockets, so they are left as they are. */
static void retire_all(pool_t *p)
{
    if (p->stopping)
        return;
    p->stopping = p->retiring_all = 1;
    gn_listen_close(&p->plan->listeners); /* this process's copies */
    FOR_EACH_WORKER(p, i, w)
        gn_worker_retire(w);
}

/* SIGTTIN: one more worker, with the next id. */
static void add_worker(pool_t *p)
{
    unsigned id = p->next_id;
    if (start_worker(p, id, 0) == NULL)
        return;
    p->next_id++;
    gn_log(GN_LOG_INFO, "SIGTTIN received: starting worker %u", id);
}

/* With --reuse-port the kernel hands each socket its share of new clients
 * whether or not a worker still accepts from it: a worker that is the only
 * one on its sockets cannot leave them (its clients would wait forever). */
static int sockets_shared(pool_t *p, const gn_worker_t *leaving)
{
    FOR_EACH_WORKER(p, i, w)
    {
        if (w != leaving && current(w) && gn_listen_same_sockets(&p->plan->listeners, w->id, leaving->id))
            return 1;
    }
    return 0;
}

/* SIGTTOU: the newest worker retires, unless it is the last one. */
static void remove_worker(pool_t *p)
{
    gn_worker_t *newest = NULL;
    FOR_EACH_WORKER(p, i, w)
    {
        if (current(w) && (newest == NULL || w->seq > newest->seq))
            newest = w;
    }
    if (newest == NULL || count_current(p) <= 1) {
        gn_log(GN_LOG_WARNING, "SIGTTOU received: one worker left, keeping it");
        return;
    }
    if (!sockets_shared(p, newest)) {
        gn_log(GN_LOG_WARNING, "SIGTTOU received: with --reuse-port worker %u is the only one accepting from "
               "its listening sockets, which the kernel goes on sending clients to: keeping it", newest->id);
        return;
    }
    gn_log(GN_LOG_INFO, "SIGTTOU received: worker %u finishes its requests and ends", newest->id);
    gn_worker_retire(newest);
}

static void handle_signal(pool_t *p, int sig)
{
    switch (sig) {
    case 0:
        return;
    case SIGHUP:
        if (p->hooks) /* from the supervisor: a new process replaces this one */
            retire_all(p);
        else if (!p->stopping) {
            gn_plan_reload_tls(p->plan);
            p->reload_wanted = 1;
        }
        return;
    case SIGUSR1:
        gn_log(GN_LOG_INFO, "SIGUSR1 received: the logs go to stderr and stdout, there is no log file to reopen");
        return;
    case SIGTTIN:
    case SIGTTOU:
        if (p->hooks || p->stopping)
            return; /* worker processes: the supervisor's to decide */
        if (sig == SIGTTIN)
            add_worker(p);
        else
            remove_worker(p);
        return;
    default:
        handle_stop_signal(p, sig);
    }
}

/* Waits until the worker has left STARTING, serving meanwhile: signals, and
 * the watch that moves work towards idle workers. */
static int wait_started(pool_t *p, gn_worker_t *w)
{
    for (;;) {
        int st = atomic_load(&w->state);
        if (st != GN_WORKER_STARTING)
            return st;
        handle_signal(p, wait_signal(p, 0.01));
        if (p->group.n && !p->stopping)
            gn_group_watch(&p->group);
    }
}

static int start_workers(pool_t *p, unsigned from, unsigned to)
{
    gn_worker_t *started[to > from ? to - from : 1];
    for (unsigned i = from; i < to; i++) {
        started[i - from] = start_worker(p, p->id_base + i, 0);
        if (started[i - from] == NULL)
            return -1;
    }
    for (unsigned i = from; i < to; i++) {
        if (wait_started(p, started[i - from]) == GN_WORKER_FAILED)
            return -1;
    }
    return 0;
}

/* The first failed worker, or NULL. */
static gn_worker_t *first_failed(pool_t *p)
{
    gn_worker_t *first = NULL;
    FOR_EACH_WORKER(p, i, w)
    {
        if (atomic_load(&w->state) == GN_WORKER_FAILED && (first == NULL || w->seq < first->seq))
            first = w;
    }
    return first;
}

/* Reports a worker that could not load the application; returns the exit
 * code. Workaround 3 lives in interp/: where it applies, leaves at once. */
static int fail_startup(pool_t *p, gn_worker_t *w)
{
    int code = w->exit_code ? w->exit_code : EXIT_APP_LOAD;
    if (p->hooks && p->hooks->failed)
        p->hooks->failed(p->hooks->arg, w->error, code); /* the supervisor logs it */
    else
        gn_log(GN_LOG_CRITICAL, "worker %u: %s", w->id, w->error);
    if (gn_interp_keep_failed()) {
        gn_listen_close(&p->plan->listeners);
        gn_interp_abandon_process(code);
    }
    return code;
}

/* Replacements that could not start: they retire, and are reaped. A worker
 * that failed to load the application keeps its interpreter (workaround 3). */
static void drop_replacements(pool_t *p, gn_worker_t **fresh, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (atomic_load(&fresh[i]->state) == GN_WORKER_FAILED && fresh[i]->fatal && gn_interp_keep_failed())
            p->abandoned = 1;
        gn_worker_retire(fresh[i]);
    }
}

/*
 * Starts a replacement for each of the n workers in old (the first alone,
 * so that an application that no longer loads costs one interpreter), and
 * once all of them serve, retires the old ones. Returns 0; -1 when a
 * replacement failed (the old workers go on serving) or a stop came.
 */
static int replace(pool_t *p, gn_worker_t **old, unsigned n, const char *what, int afresh)
{
    gn_worker_t *fresh[p->cap];
    unsigned k = 0;
    gn_worker_t *bad = NULL;
    for (unsigned i = 0; i < n && bad == NULL && !p->stopping; i++) {
        /* In one shared interpreter (--mode threads), the first replacement
         * drops the application's modules and imports them again; the
         * others find them imported. */
        fresh[k] = start_worker(p, old[i]->id, afresh && i == 0 && p->plan->kind == GN_INTERP_MAIN);
        if (fresh[k] == NULL)
            break;
        k++;
        if (i > 0 && i + 1 < n)
            continue;
        for (unsigned j = 0; j < k; j++) {
            if (wait_started(p, fresh[j]) != GN_WORKER_READY && bad == NULL)
                bad = fresh[j];
        }
    }
    if (p->stopping) /* the stop ends the replacements too */
        return -1;
    if (k < n || bad) {
        gn_log(GN_LOG_ERROR, "%s failed, the old workers go on serving: worker %u: %s", what,
               bad ? bad->id : old[k]->id, bad ? bad->error : "could not be started");
        drop_replacements(p, fresh, k);
        return -1;
    }
    for (unsigned i = 0; i < n; i++)
        gn_worker_retire(old[i]);
    return 0;
}

/* SIGHUP: every worker is replaced by one that imports the application
 * afresh from disk (a new interpreter starts from nothing). */
static void reload(pool_t *p)
{
    p->reload_wanted = 0;
    gn_worker_t *old[p->cap];
    unsigned n = 0;
    FOR_EACH_WORKER(p, i, w)
    {
        if (current(w))
            old[n++] = w;
    }
    if (n == 0)
        return;
    gn_log(GN_LOG_INFO, "SIGHUP received: reloading the application in %u new worker%s", n, n == 1 ? "" : "s");
    double t0 = gn_now();
    if (replace(p, old, n, "reload", 1) < 0)
        return;
    gn_metrics_restarted(GN_RESTART_RELOAD, n);
    gn_log(GN_LOG_INFO, "reloaded in %.0f ms: %u new worker%s serving, the old ones finish their requests",
           (gn_now() - t0) * 1000, n, n == 1 ? "" : "s");
}

/* --max-requests and --max-worker-memory: a worker that served its share
 * or grew too big is replaced, one at a time; in a worker process, the
 * supervisor replaces the whole process. */
static void replace_worn_out(pool_t *p)
{
    if (p->replace_asked)
        return; /* a worker process: its replacement is on its way */
    FOR_EACH_WORKER(p, i, w)
    {
        if ((w->max_requests == 0 && w->memory_bound == 0) || !gn_worker_wants_replacing(w))
            continue;
        if (w->memory_used)
            gn_log(GN_LOG_INFO, "worker %u uses %.1f MiB of %s, above --max-worker-memory (%.1f MiB): replacing %s",
                   w->id, (double)w->memory_used / 1048576, w->memory_of_process ? "resident memory" : "heap",
                   (double)w->memory_bound / 1048576, p->hooks ? "its process" : "it");
        else
            gn_log(GN_LOG_INFO, "worker %u served %llu requests (--max-requests): replacing %s", w->id,
                   w->max_requests, p->hooks ? "its process" : "it");
        int reason = w->memory_used ? GN_RESTART_MEMORY : GN_RESTART_MAX_REQUESTS;
        if (p->hooks) {
            if (p->hooks->replace_me)
                p->hooks->replace_me(p->hooks->arg, reason);
            p->replace_asked = 1;
            return;
        }
        gn_worker_t *old[1] = {w};
        if (replace(p, old, 1, "replacing a worker", 0) < 0)
            w->max_requests = w->memory_bound = 0; /* it serves on; not tried again */
        else
            gn_metrics_restarted((enum gn_restart_reason)reason, 1);
        return; /* one a round: the slots changed */
    }
}

/* --timeout (server/watchdog.h): calls that run too long are taken, and a
 * worker stuck in C code is replaced, one a round. In a worker process the
 * supervisor replaces the whole process, which leaves once its other
 * workers have finished (the stuck thread cannot be ended otherwise). */
static void watch_timeouts(pool_t *p)
{
    double now = gn_now();
    FOR_EACH_WORKER(p, i, w)
    {
        if (!gn_watchdog_look(w, p->plan->cfg.timeout, now) || w->retiring)
            continue;
        p->stuck++;
        if (p->hooks) {
            if (!p->replace_asked && p->hooks->replace_me)
                p->hooks->replace_me(p->hooks->arg, GN_RESTART_TIMEOUT);
            p->replace_asked = 1;
            return;
        }
        gn_log(GN_LOG_WARNING, "replacing worker %u; %u stuck worker(s) abandoned in this process so far (their "
               "memory is not given back; --processes replaces whole processes instead)", w->id, p->stuck);
        gn_worker_t *old[1] = {w};
        if (replace(p, old, 1, "replacing a stuck worker", 0) == 0)
            gn_metrics_restarted(GN_RESTART_TIMEOUT, 1);
        return; /* the slots changed */
    }
}

/* Joins and frees the retired workers that have ended. */
static void reap_retired(pool_t *p)
{
    FOR_EACH_WORKER(p, i, w)
    {
        int st = atomic_load(&w->state);
        if (!w->retiring || (st != GN_WORKER_DONE && st != GN_WORKER_FAILED))
            continue;
        pthread_join(w->thread, NULL);
        free_worker(p, w);
    }
}

/* Stopped, or stuck past --timeout: nothing to wait for. */
static int all_stopped(pool_t *p)
{
    FOR_EACH_WORKER(p, i, w)
    {
        int st = atomic_load(&w->state);
        if ((st == GN_WORKER_READY && !w->stuck) || st == GN_WORKER_STARTING)
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
    FOR_EACH_WORKER(p, i, w)
        busy += atomic_load(&w->state) == GN_WORKER_READY;
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
/* Without a group, how often retired workers are reaped and worn-out ones
 * replaced. */
#define LOOK_AROUND 0.1

/* How often a worker process publishes its gorgon.shared figures for the
 * supervisor's metrics endpoint. */
#define PUBLISH_EVERY 0.25

static void run_until_stopped(pool_t *p)
{
    double stop_started = 0, published = 0;
    int n_busy = 0;
    while (!all_stopped(p)) {
        double wait = !p->group.n || p->stopping ? LOOK_AROUND : n_busy ? WATCH_BUSY : WATCH_IDLE;
        handle_signal(p, wait_signal(p, wait));
        if (p->hooks && gn_metrics_enabled() && gn_now() - published >= PUBLISH_EVERY) {
            gn_metrics_publish_process();
            published = gn_now();
        }
        if (p->group.n && !p->stopping) /* a stopping loop takes no work */
            n_busy = gn_group_watch(&p->group);
        reap_retired(p);
        if (p->plan->cfg.timeout > 0)
            watch_timeouts(p); /* stopping too: the in-flight requests are bounded */
        if (!p->stopping) {
            if (p->reload_wanted)
                reload(p);
            else if (p->plan->cfg.max_requests || p->plan->cfg.max_worker_memory)
                replace_worn_out(p);
            continue;
        }
        if (stop_started == 0)
            stop_started = gn_now();
        request_stop_all(p); /* idempotent; covers a worker that was starting */
        check_graceful_deadline(p, stop_started);
    }
}

/* Workaround 2 lives in interp/: interpreters end newest-first, each once
 * the one started after it has ended. A worker stuck past --timeout never
 * ends: the process leaves without finalizing, as after the graceful
 * timeout. */
static void end_workers(pool_t *p)
{
    FOR_EACH_WORKER(p, i, w)
    {
        if (w->stuck && atomic_load(&w->state) == GN_WORKER_READY) {
            gn_log(GN_LOG_WARNING, "worker %u is still stuck: leaving without waiting for it", w->id);
            gn_listen_close(&p->plan->listeners);
            gn_interp_abandon_process(0);
        }
    }
    for (;;) {
        gn_worker_t *newest = NULL;
        FOR_EACH_WORKER(p, i, w)
        {
            if (newest == NULL || w->seq > newest->seq)
                newest = w;
        }
        if (newest == NULL)
            return;
        gn_worker_allow_end(newest);
        pthread_join(newest->thread, NULL);
        free_worker(p, newest);
    }
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
        int code = 0;
        FOR_EACH_WORKER(p, i, x)
        {
            if (x->fatal && code == 0)
                code = fail_startup(p, x); /* returns only without workaround 3 */
        }
        if (code == 0 && w && p->hooks && p->hooks->failed)
            p->hooks->failed(p->hooks->arg, w->error, 1);
        else if (code == 0 && w)
            gn_log(GN_LOG_ERROR, "worker %u: %s", w->id, w->error);
        p->stopping = 1;
        request_stop_all(p);
        run_until_stopped(p);
        end_workers(p);
        return code ? code : 1;
    }
    if (p->hooks && p->hooks->ready) {
        p->hooks->ready(p->hooks->arg);
    } else {
        gn_log(GN_LOG_INFO, "%u workers ready in %.0f ms", n, (gn_now() - t0) * 1000);
        const gn_config_t *cfg = &p->plan->cfg;
        if (GN_INTERP_END_LEAKS && (cfg->max_requests || cfg->max_worker_memory) &&
            p->plan->kind == GN_INTERP_SUB) /* workaround 4 */
            gn_log(GN_LOG_INFO, "%s re-creates sub-interpreters in this process, and CPython does not "
                   "give back all of their memory (about 4 MB each on 3.13); --processes P replaces whole "
                   "processes instead", cfg->max_requests ? "--max-requests" : "--max-worker-memory");
        if (cfg->max_worker_memory && p->plan->kind == GN_INTERP_MAIN)
            gn_log(GN_LOG_WARNING, "--max-worker-memory is not watched in --mode threads in one process: its "
                   "workers share one interpreter, which a new thread would not make smaller (use --processes P)");
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
    p->next_id = id_base + plan->per_proc;
    p->rng = (unsigned long long)getpid() * 0x9E3779B97F4A7C15ULL ^ (unsigned long long)(gn_now() * 1e9);
    p->rng |= 1;
    p->cap = plan->per_proc * SLOTS_PER_WORKER + SLOTS_SPARE;
    p->slots = calloc(p->cap, sizeof(gn_worker_t *));
    if (p->slots == NULL) {
        gn_log(GN_LOG_ERROR, "out of memory");
        return 1;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (plan->per_proc > 1 && gn_group_init(&p->group, p->cap) < 0) {
        gn_log(GN_LOG_ERROR, "out of memory");
        free(p->slots);
        return 1;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = serve_unlocked(p);
    Py_END_ALLOW_THREADS
    free(p->slots);
    if (p->group.n)
        gn_group_destroy(&p->group);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    if (p->abandoned) {
        /* Workaround 3 (interp.h): an interpreter that failed to load the
         * application must not be finalized. */
        gn_listen_close(&plan->listeners);
        gn_interp_abandon_process(rc);
    }
    return rc;
}
