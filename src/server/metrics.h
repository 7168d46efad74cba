/*
 * The Prometheus endpoint (--metrics-bind): counters that outlive workers,
 * and the small HTTP listener that serves them from C.
 *
 * Memory: one shared mapping (MAP_SHARED, made before any worker process is
 * forked) holds a slot per running worker, with that worker's loop counters
 * (http/stats.h), and the totals of the workers that ended. A worker's loop
 * counts into its slot with plain stores; when the worker ends, its slot is
 * folded into the totals and freed. So counters never go back while the
 * server runs: not across --max-requests, SIGHUP reloads, nor worker
 * processes that are replaced or crash (the supervisor folds a dead child's
 * slots). The scrape sums the totals and the live slots, retrying if a fold
 * ran meanwhile.
 *
 * Serving: a thread of its own in the supervisor's process (modes
 * interpreters and threads), or the supervisor's own poll loop with worker
 * processes; either way no worker, and no Python, is involved.
 */
#ifndef GN_SERVER_METRICS_H
#define GN_SERVER_METRICS_H

#include <sys/types.h>

#include "http/stats.h"
#include "server/pool.h"

typedef struct gn_mslot gn_mslot_t;

/* Why workers were replaced (gorgon_worker_restarts_total{reason}). */
enum gn_restart_reason {
    GN_RESTART_MAX_REQUESTS,
    GN_RESTART_RELOAD,
    GN_RESTART_CRASH,
    GN_RESTART_MEMORY,  /* --max-worker-memory */
    GN_RESTART_TIMEOUT, /* --timeout: a worker stuck in C code */
    GN_RESTART_REASONS
};

/*
 * With --metrics-bind: makes the shared counters and binds the listener
 * (before privileges are dropped and before any fork). Returns 0 (also when
 * metrics are off), or -1 after logging why.
 */
int gn_metrics_open(const gn_plan_t *plan);
/* Serving from a thread of its own (no worker processes). Returns 0 or -1. */
int gn_metrics_start_thread(void);
/* Stops the thread if any, closes the listener and its connections. */
void gn_metrics_close(void);
/* With worker processes, the supervisor's poll loop serves: the descriptor
 * to watch (-1: none), and the call that handles what is ready without
 * blocking. */
int gn_metrics_fd(void);
void gn_metrics_serve_ready(void);
/* In a forked worker process: close its copies of the listener's
 * descriptors (the counters stay shared). */
void gn_metrics_forget_listener(void);

/* A slot for a starting worker, or NULL when metrics are off or the slots
 * are all taken (then the worker counts only for itself). */
gn_mslot_t *gn_metrics_slot_take(unsigned worker_id);
gn_stats_t *gn_metrics_slot_stats(gn_mslot_t *s);
/* The worker's state (enum gn_worker_state), and that it was asked to stop
 * or retire. NULL slots are ignored. */
void gn_metrics_slot_state(gn_mslot_t *s, int worker_state);
void gn_metrics_slot_stopping(gn_mslot_t *s);
/* The worker's thread has ended: its counters go into the totals. */
void gn_metrics_slot_release(gn_mslot_t *s);
/* The supervisor reaped worker process pid: fold what it left behind. */
void gn_metrics_reap_process(pid_t pid);
/* A worker process publishes its gorgon.shared figures (its pool calls this
 * a few times a second). */
void gn_metrics_publish_process(void);
/* n workers were replaced for this reason. */
void gn_metrics_restarted(enum gn_restart_reason why, unsigned n);
/* gorgon.shared over Redis (--shared-url): what its connections did. */
enum gn_redis_count {
    GN_REDIS_ROUND_TRIPS, /* commands sent and answered together (a pipeline is one) */
    GN_REDIS_ERRORS,      /* a connect or round trip that failed, or an error reply */
    GN_REDIS_RECONNECTS,  /* connections made again after a failure */
    GN_REDIS_COUNTS
};
/* Counts n of what (from any thread or worker process; nothing when metrics
 * are off). */
void gn_metrics_redis(enum gn_redis_count what, unsigned long long n);
/* Whether metrics are on. */
int gn_metrics_enabled(void);

/* For metrics_serve.c: the exposition text, malloc'd, its length in *len;
 * NULL when out of memory. */
char *gn_metrics__render(size_t *len);

#endif
