#include "server/supervisor.h"

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "interp/interp.h"
#include "server/config.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/pool.h"
#include "server/probe.h"
#include "server/processes.h"
#include "shared/shared.h"

#define EXIT_APP_LOAD 1
#define DECIDED 0
#define STOP (-1)   /* a stop signal came while deciding */
#define BROKEN (-2) /* the application cannot load anywhere */

/* The shape of a server in the given mode. */
static void shape(gn_plan_t *plan, const char *mode)
{
    gn_config_t *cfg = &plan->cfg;
    plan->mode = mode;
    if (strcmp(mode, "processes") == 0) {
        /* One worker per child; --processes P asked for P x N workers. */
        plan->kind = GN_INTERP_MAIN;
        plan->n_procs = cfg->workers * (cfg->processes ? cfg->processes : 1);
        plan->per_proc = 1;
    } else {
        plan->kind = strcmp(mode, "threads") == 0 ? GN_INTERP_MAIN : GN_INTERP_SUB;
        plan->n_procs = cfg->processes;
        plan->per_proc = cfg->workers;
    }
    plan->total = plan->per_proc * (plan->n_procs ? plan->n_procs : 1);
}

/* An import that failed in a sub-interpreter for another reason than a
 * refusal: tried again in a main interpreter (another throwaway child). If it
 * fails there too the application is broken, and the server says so at once. */
static int decide_after_failure(gn_plan_t *plan, const gn_probe_t *sub, char *why, size_t len)
{
    gn_probe_t main_probe;
    gn_probe_app(&plan->cfg, 0, plan->cfg.workers, &plan->sigs, &main_probe);
    if (main_probe.verdict == GN_PROBE_STOPPED)
        return STOP;
    if (main_probe.verdict == GN_PROBE_FAILS || main_probe.verdict == GN_PROBE_REFUSED) {
        gn_log(GN_LOG_CRITICAL, "%s", main_probe.error);
        return BROKEN;
    }
    shape(plan, "processes");
    if (main_probe.verdict == GN_PROBE_LOADS)
        snprintf(why, len, "the application fails to import in a sub-interpreter, not in a main one: %s",
                 sub->error);
    else
        snprintf(why, len, "the application fails to import in a sub-interpreter (%.700s), and %.700s", sub->error,
                 main_probe.error);
    return DECIDED;
}

/* --mode auto: interpreters if the application imports in a sub-interpreter,
 * else processes, with the reason in `why`. */
static int decide_auto(gn_plan_t *plan, char *why, size_t len)
{
    gn_probe_t p;
    gn_probe_app(&plan->cfg, 1, plan->cfg.workers, &plan->sigs, &p);
    switch (p.verdict) {
    case GN_PROBE_STOPPED:
        return STOP;
    case GN_PROBE_LOADS:
        shape(plan, "interpreters");
        snprintf(why, len, "the application imports in a sub-interpreter (tried in a throwaway process)");
        return DECIDED;
    case GN_PROBE_REFUSED:
        shape(plan, "processes");
        snprintf(why, len, "module %s refuses sub-interpreters: %s", p.module, p.error);
        return DECIDED;
    case GN_PROBE_FAILS:
        return decide_after_failure(plan, &p, why, len);
    default:
        shape(plan, "processes");
        snprintf(why, len, "cannot tell whether the application imports in a sub-interpreter: %s", p.error);
        return DECIDED;
    }
}

static int decide(gn_plan_t *plan, char *why, size_t len)
{
    const char *mode = plan->cfg.mode;
    if (strcmp(mode, "auto") == 0)
        return decide_auto(plan, why, len);
    shape(plan, mode);
    snprintf(why, len, "--mode %s", mode);
    return DECIDED;
}

static void log_mode(const gn_plan_t *plan, const char *why)
{
    char shape_text[200];
    const char *what = plan->kind == GN_INTERP_SUB ? "own-GIL sub-interpreter workers" : "threads in the main interpreter";
    if (strcmp(plan->mode, "processes") == 0)
        snprintf(shape_text, sizeof(shape_text), "%u worker processes, the application in each one's main interpreter",
                 plan->n_procs);
    else if (plan->n_procs)
        snprintf(shape_text, sizeof(shape_text), "%u worker processes x %u %s", plan->n_procs, plan->per_proc, what);
    else
        snprintf(shape_text, sizeof(shape_text), "%u %s", plan->per_proc, what);
    int automatic = strcmp(plan->cfg.mode, "auto") == 0;
    int fallback = automatic && strcmp(plan->mode, "interpreters") != 0;
    gn_log(fallback ? GN_LOG_WARNING : GN_LOG_INFO, automatic ? "mode %s: %s; auto: %s" : "mode %s: %s (%s)",
           plan->mode, shape_text, why);
    if (strcmp(plan->mode, "threads") != 0)
        return;
#ifdef Py_GIL_DISABLED
    if (!gn_interp_gil_enabled())
        gn_log(GN_LOG_INFO, "free-threaded build, GIL off: the threads run Python in parallel");
    else
        gn_log(GN_LOG_WARNING, "free-threaded build, but the GIL is on (an extension module re-enabled it, or "
               "PYTHON_GIL=1): the threads take turns running Python");
#else
    gn_log(GN_LOG_INFO, "this Python has a GIL: the threads take turns running Python (a free-threaded "
           "build, 3.13t, would run them in parallel)");
#endif
}

/* Descriptors a process keeps for other things than connections: listening
 * sockets, epoll sets, wake-up descriptors, the application's own files. */
#define FD_RESERVE 256

/*
 * --max-connections-total: one counter for the loops of a process. Made
 * before any child is forked, so each worker process starts from its own
 * copy at 0 (the supervisor serves nothing) and holds an equal share.
 */
static void bound_total(gn_plan_t *plan)
{
    gn_limits_t *lim = &plan->cfg.limits;
    if (lim->max_connections_total == 0)
        return;
    unsigned procs = plan->n_procs ? plan->n_procs : 1;
    lim->max_connections_total = (lim->max_connections_total + procs - 1) / procs;
    lim->conns_total = calloc(1, sizeof(*lim->conns_total));
    if (lim->conns_total == NULL) {
        gn_log(GN_LOG_CRITICAL, "out of memory");
        abort();
    }
    atomic_init(lim->conns_total, 0);
    if (plan->n_procs)
        gn_log(GN_LOG_INFO, "connections: up to %u per process (--max-connections-total over %u processes), "
               "503 beyond", lim->max_connections_total, procs);
    else
        gn_log(GN_LOG_INFO, "connections: up to %u in all (--max-connections-total), 503 beyond",
               lim->max_connections_total);
}

/*
 * The open-file limit bounds the connections a process can hold. Its soft
 * limit is raised to the hard one (before any child is forked, so children
 * inherit it), and without --max-connections each worker of a process may
 * hold an equal share of what is left after the reserve.
 */
static void size_connections(gn_plan_t *plan)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    unsigned long long files = rl.rlim_cur == RLIM_INFINITY ? 1ull << 20 : (unsigned long long)rl.rlim_cur;
    unsigned long long room = files > 2 * FD_RESERVE ? files - FD_RESERVE : files / 2;
    gn_limits_t *lim = &plan->cfg.limits;
    if (lim->max_connections == 0) {
        unsigned long long share = room / plan->per_proc;
        lim->max_connections = share < 1 ? 1 : share > (1u << 20) ? (1u << 20) : (unsigned)share;
        gn_log(GN_LOG_INFO, "connections: up to %u per worker (open-file limit %llu per process)",
               lim->max_connections, files);
    } else if ((unsigned long long)lim->max_connections * plan->per_proc > room) {
        gn_log(GN_LOG_WARNING, "--max-connections %u x %u workers is more than the open-file limit (%llu per "
               "process) leaves room for: accepting fails beyond it", lim->max_connections, plan->per_proc, files);
    }
    bound_total(plan);
}

/*
 * --user / --group: once every socket is bound (a port below 1024 needs
 * root), the process becomes that user and group for good, before any
 * worker runs application code. Unix socket files are handed over first, so
 * the server can still remove them when it stops.
 */
static int drop_privileges(gn_plan_t *plan)
{
    const gn_config_t *cfg = &plan->cfg;
    if (cfg->uid < 0 && cfg->gid < 0)
        return 0;
    for (unsigned i = 0; i < plan->listeners.n_binds; i++) {
        const gn_bind_t *b = &plan->listeners.binds[i];
        if (b->is_unix && chown(b->spec + 5, (uid_t)cfg->uid, (gid_t)cfg->gid) < 0)
            gn_log(GN_LOG_WARNING, "cannot hand %s over to --user/--group: %s", b->spec, strerror(errno));
    }
    if (cfg->gid >= 0) {
        gid_t g = (gid_t)cfg->gid;
        if ((geteuid() == 0 && setgroups(1, &g) < 0) || setgid(g) < 0) {
            gn_log(GN_LOG_CRITICAL, "cannot switch to group %lld: %s", cfg->gid, strerror(errno));
            return -1;
        }
    }
    if (cfg->uid >= 0 && setuid((uid_t)cfg->uid) < 0) {
        gn_log(GN_LOG_CRITICAL, "cannot switch to user %lld: %s", cfg->uid, strerror(errno));
        return -1;
    }
    gn_log(GN_LOG_INFO, "running as uid %u, gid %u", (unsigned)getuid(), (unsigned)getgid());
    return 0;
}

/* Worker processes are forked from this thread: refuse if any other exists,
 * since a child would inherit locks that thread held. */
static int can_fork(const gn_plan_t *plan)
{
    int threads = gn_interp_threads_running();
    if (plan->n_procs == 0 || threads <= 1)
        return 1;
    gn_log(GN_LOG_CRITICAL, "cannot fork worker processes: %d threads are running in the supervisor", threads);
    return 0;
}

/*
 * --certfile: the one TLS context every worker shares, made before the
 * application is imported, so that a missing file, a wrong password or a key
 * that does not match its certificate is one line and exit code 1 at once.
 */
static int setup_tls(gn_plan_t *plan)
{
    const gn_tls_opts_t *o = &plan->cfg.tls;
    if (o->certfile == NULL)
        return 0;
    char err[1024];
    gn_tls_server_t *tls = gn_tls_server_new(o, err, sizeof(err));
    if (tls == NULL) {
        gn_log(GN_LOG_CRITICAL, "%s", err);
        return -1;
    }
    plan->cfg.limits.tls = tls;
    gn_log(GN_LOG_INFO, "TLS on TCP binds: %s, TLS %s or newer, client certificates %s", o->certfile,
           o->min_version && o->min_version[0] ? o->min_version : "1.2",
           o->cert_reqs && o->cert_reqs[0] ? o->cert_reqs : "none");
    return 0;
}

void gn_plan_reload_tls(gn_plan_t *plan)
{
    const gn_tls_opts_t *o = &plan->cfg.tls;
    if (plan->cfg.limits.tls == NULL)
        return;
    char err[1024];
    if (gn_tls_server_reload(plan->cfg.limits.tls, o, err, sizeof(err)) < 0) {
        gn_log(GN_LOG_ERROR, "TLS certificate not reloaded, the one in use stays: %s", err);
        return;
    }
    gn_log(GN_LOG_INFO, "TLS certificate reloaded from %s: new connections get it, open ones keep theirs",
           o->certfile);
}

static int run(gn_plan_t *plan)
{
    char why[1600];
    if (setup_tls(plan) < 0)
        return 1;
    int d = decide(plan, why, sizeof(why));
    if (d == STOP)
        return 0;
    if (d == BROKEN)
        return EXIT_APP_LOAD;
    log_mode(plan, why);
    size_connections(plan);
    if (!can_fork(plan) || gn_listen_open(&plan->listeners, &plan->cfg, plan->total) < 0 ||
        gn_metrics_open(plan) < 0 || drop_privileges(plan) < 0 || gn_interp_prepare_main(&plan->cfg) < 0)
        return 1;
    plan->cfg.limits.inherited_listeners = gn_listen_inherited(&plan->listeners);
    if (plan->n_procs) /* the supervisor's poll loop answers the metrics */
        return gn_processes_serve(plan);
    if (gn_metrics_start_thread() < 0)
        return 1;
    return gn_pool_serve(plan, 0, NULL);
}

int gn_supervisor_serve(PyObject *config)
{
    gn_plan_t plan;
    memset(&plan, 0, sizeof(plan));
    if (gn_config_from_dict(&plan.cfg, config) < 0) {
        gn_config_free(&plan.cfg);
        return -1;
    }
    gn_log_set_level(plan.cfg.log_level);
    if (gn_shared_serve_start(&plan.cfg) < 0) { /* --shared-*, main interpreter's facts */
        gn_config_free(&plan.cfg);
        return 1;
    }
    PyObject *version = PyDict_GetItemString(config, "version");
    const char *v = version && PyUnicode_Check(version) ? PyUnicode_AsUTF8(version) : "?";
    const char *py = Py_GetVersion();
    gn_log(GN_LOG_INFO, "gorgon %s (Python %.*s)", v ? v : "?", (int)strcspn(py, " "), py);
    sigemptyset(&plan.sigs);
    sigaddset(&plan.sigs, SIGINT);
    sigaddset(&plan.sigs, SIGTERM);
    sigaddset(&plan.sigs, SIGQUIT);
    sigaddset(&plan.sigs, SIGHUP);
    sigaddset(&plan.sigs, SIGUSR1);
    sigaddset(&plan.sigs, SIGTTIN);
    sigaddset(&plan.sigs, SIGTTOU);
    /* Worker threads and children inherit this mask, so only the pools'
     * sigtimedwait (or the supervisor's signalfd) sees these signals. */
    sigset_t old;
    pthread_sigmask(SIG_BLOCK, &plan.sigs, &old);
    int rc = run(&plan);
    /* A stop signal that came late (a second SIGTERM as the last worker
     * ended) is spent here: unblocked, it would kill the process on its way
     * out instead of letting it exit with rc. The signals stay blocked while
     * the process leaves. */
    struct timespec zero = {0, 0};
    while (sigtimedwait(&plan.sigs, NULL, &zero) > 0) {
    }
    sigaddset(&old, SIGINT);
    sigaddset(&old, SIGTERM);
    sigaddset(&old, SIGQUIT);
    sigaddset(&old, SIGHUP); /* a late reload must not end the process either */
    sigaddset(&old, SIGUSR1);
    sigaddset(&old, SIGTTIN);
    sigaddset(&old, SIGTTOU);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    gn_listen_close(&plan.listeners);
    gn_metrics_close();
    gn_config_free(&plan.cfg);
    return rc;
}
