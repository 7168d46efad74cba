/*
 * The workers of one process: start them (the first alone, so an application
 * that cannot load fails fast), wait for signals, stop them gracefully and end
 * their interpreters in order. The supervisor runs a pool in its own process
 * (modes interpreters and threads); with worker processes, each forked child
 * runs one (processes.c).
 */
#ifndef GN_SERVER_POOL_H
#define GN_SERVER_POOL_H

#include <signal.h>

#include "server/config.h"
#include "server/listen.h"

/* What the supervisor decided: the mode in force and the shape of the server. */
typedef struct {
    gn_config_t cfg;
    gn_listeners_t listeners;
    int kind;           /* enum gn_interp_kind: what every worker runs the app in */
    const char *mode;   /* in force: "interpreters", "processes" or "threads" */
    unsigned n_procs;   /* forked worker processes; 0: the workers run in the supervisor */
    unsigned per_proc;  /* workers per process */
    unsigned total;     /* workers in all processes */
    sigset_t sigs;      /* SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGUSR1, SIGTTIN, SIGTTOU:
                         * blocked, taken synchronously */
} gn_plan_t;

/*
 * SIGHUP, before the workers are replaced: --certfile, --keyfile and
 * --ca-certs are read again, and new connections get the new context (open
 * ones keep theirs). Files that are not usable leave the old context in use,
 * with one log line. Nothing without TLS. Defined in supervisor.c.
 */
void gn_plan_reload_tls(gn_plan_t *plan);

/* How a pool in a forked child tells the supervisor about its start. */
typedef struct {
    void (*ready)(void *arg);                                /* every worker serves */
    void (*failed)(void *arg, const char *error, int code); /* it leaves with code next */
    /* a worker served --max-requests, grew past --max-worker-memory or is
     * stuck past --timeout: reason is an enum gn_restart_reason */
    void (*replace_me)(void *arg, int reason);
    void *arg;
} gn_pool_hooks_t;

/*
 * Signals, in the supervisor's pool: SIGHUP reloads (new workers import the
 * application afresh and start serving, then the old ones retire); SIGTTIN
 * and SIGTTOU add and remove a worker. In a worker process's pool, SIGHUP
 * retires every worker and the process leaves: the supervisor sends it once
 * a replacement process serves.
 *
 * Runs the plan's per_proc workers in this process, with worker ids from
 * id_base, until a signal stops them; hooks is NULL in the supervisor. Called
 * with the main GIL held, on the main thread, with plan->sigs blocked.
 * Returns the exit code (0 after a graceful stop); after a fatal start-up
 * failure (the application cannot load) it never returns: the process leaves
 * with _exit() (workaround 3 in interp.h).
 */
int gn_pool_serve(gn_plan_t *plan, unsigned id_base, const gn_pool_hooks_t *hooks);

#endif
