/*
 * A worker: one OS thread that owns one own-GIL sub-interpreter (or, in modes
 * processes and threads, a thread state of the main interpreter), imports the
 * application in it, and runs its own epoll loop on its listening sockets.
 */
#ifndef GN_SERVER_WORKER_H
#define GN_SERVER_WORKER_H

#include <pthread.h>
#include <stdatomic.h>

#include "http/loop.h"
#include "interp/interp.h"
#include "server/config.h"

enum gn_worker_state {
    GN_WORKER_STARTING,
    GN_WORKER_READY,    /* serving */
    GN_WORKER_FAILED,   /* could not start; error[] says why */
    GN_WORKER_STOPPED,  /* loop ended, waiting to end its interpreter */
    GN_WORKER_DONE,     /* interpreter ended; the thread is exiting */
};

typedef struct gn_worker {
    unsigned id;           /* across all processes */
    unsigned index;        /* in this process: its slot in the group */
    unsigned long long seq; /* in this process: order of creation */
    pthread_t thread;
    int started;
    const gn_config_t *cfg;
    int kind;              /* enum gn_interp_kind */
    const char *mode;      /* gorgon.mode: "interpreters", "processes", "threads" */
    int facts_id;          /* gorgon.worker_id (-1: None) */
    unsigned count;        /* gorgon.worker_count: workers in all processes */
    PyInterpreterState *main_interp;
    gn_end_order_t end_order; /* turn 0: its interpreter may end (interp.h, workaround 2) */
    unsigned long long max_requests; /* 0: never replaced for the requests it served */
    size_t memory_bound;   /* --max-worker-memory in bytes; 0: not watched */
    int memory_of_process; /* measure the process's resident memory, not the interpreter's heap */
    double memory_next;    /* the worker's thread: when it measures next */
    size_t memory_used;    /* what it measured above the bound (set before replace_wanted) */
    int forget_app_modules; /* a reload in --mode threads: import the app afresh */
    int *listen_fds;
    unsigned n_listen;
    int exclusive;
    struct gn_group *group; /* the process's loops, or NULL with one worker */

    atomic_int state;
    int retiring;       /* the pool's: being replaced; never serves again */
    int fatal;          /* failure means the application cannot load */
    int exit_code;      /* for a fatal failure: 1 (import), 3 (lifespan) */
    char error[1024];
    gn_interp_t interp;
    gn_loop_t loop;
    int loop_ready;
    struct gn_mslot *mslot; /* its metrics counters (server/metrics.h), or NULL */

    /* --timeout (server/watchdog.h). Set by the worker's thread before it
     * serves; the rest belongs to the supervisor's watchdog. */
    PyInterpreterState *py_interp; /* what the application runs in */
    unsigned long py_thread;       /* the thread's id, for PyThreadState_SetAsyncExc */
    PyObject *timeout_exc;         /* gorgon.RequestTimeout of py_interp (borrowed) */
    double taken_at;    /* the watchdog took a call then; 0: none under way */
    int probing;        /* a probe thread is at work (under *mu): the
                         * interpreter does not end meanwhile */
    atomic_int probe_has_gil; /* the probe got the interpreter's GIL */
    int stuck;          /* not back from a taken call: replaced, abandoned */

    /* Wakes the supervisor when state changes. */
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
} gn_worker_t;

/* Starts the worker's thread. Returns 0, or -1 with errno set. */
int gn_worker_start(gn_worker_t *w);
/* Thread-safe: ask the worker's loop to stop gracefully. */
void gn_worker_request_stop(gn_worker_t *w);
/* Thread-safe: stop waiting for in-flight requests (a second SIGTERM). */
void gn_worker_hurry(gn_worker_t *w);
/* Thread-safe: a graceful stop while other workers go on serving the same
 * sockets (http/loop.h: gn_loop_retire); its interpreter may end as soon as
 * it has stopped. */
void gn_worker_retire(gn_worker_t *w);
/* Thread-safe: let the worker end its interpreter once it has stopped. */
void gn_worker_allow_end(gn_worker_t *w);
/* Thread-safe: the worker served its --max-requests. */
int gn_worker_wants_replacing(gn_worker_t *w);

#endif
