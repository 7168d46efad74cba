/*
 * One epoll event loop per worker thread: its listening sockets, its
 * connections, a wake-up eventfd for the supervisor, and the timeout scan.
 * A worker's loop is touched only by that worker's thread, except
 * gn_loop_request_stop(), which any thread may call.
 */
#ifndef GN_HTTP_LOOP_H
#define GN_HTTP_LOOP_H

#include <pthread.h>
#include <stdatomic.h>

#include "http/conn.h"
#include "http/stats.h"
#include "http/tls.h"

/* Monotonic clock in seconds. */
double gn_now(void);
long long gn_loop__us(double t);

struct gn_loop {
    int epfd;
    int wake_fd; /* eventfd: the supervisor asks for a stop */
    int *listen_fds;
    unsigned n_listen;
    int accepting;   /* listening sockets registered in epoll */
    double listen_until; /* stopping: the listeners close then */
    int exclusive;   /* listeners shared with other workers (EPOLLEXCLUSIVE) */

    gn_conn_t *conns; /* all open connections, newest first */
    unsigned n_conns;
    gn_conn_t *dead;  /* closed this iteration, freed after it */
    struct gn_conn_buf *free_bufs; /* request buffers kept for reuse */
    unsigned n_free_bufs;
    struct gn_h2_stream *h2_spare; /* HTTP/2 stream records kept for reuse (http/h2.c) */
    unsigned n_h2_spare;
    double room_logged_at; /* when idle connections last made room (logged) */

    const gn_limits_t *limits;
    const gn_handler_t *handler;
    gn_tls_view_t tls_view; /* this loop's reference to the TLS context (http/tls.h) */
    double now;       /* monotonic seconds, refreshed once per iteration */
    double next_scan;

    atomic_int stop_requested;
    atomic_int hurry_requested; /* a second stop signal: stop waiting */
    atomic_int retire_requested; /* the stop is a retirement: others keep serving */
    int retiring;                /* the loop's own copy, once the stop began */
    int stopping;
    double stop_deadline;
    double graceful_timeout;

    /* Called around epoll_wait: the worker drops its GIL while it sleeps. */
    void (*before_wait)(void *arg);
    void (*after_wait)(void *arg);
    void *wait_arg;

    int worker_id;
    unsigned long long served; /* requests completed */
    /* Counters for the metrics endpoint: in memory of the server's that
     * outlives the worker (server/metrics.h), else own_stats. */
    gn_stats_t *stats;
    gn_stats_t own_stats;
    unsigned long long served_enough; /* served this many: ask to be replaced */
    atomic_int replace_wanted; /* served_enough reached; read by the supervisor */
    /* Called with the timeout scan, a few times a second, on the loop's
     * thread (the worker's --max-worker-memory check). */
    void (*on_scan)(void *arg);
    void *scan_arg;

    /* --timeout (server/watchdog.h): the loop's thread marks each call into
     * the application; the supervisor's watchdog takes a call that runs too
     * long. Cold path under app_mu; the marks are two uncontended stores. */
    int app_watch;              /* --timeout is on */
    atomic_llong app_since_us;  /* in the application since then; 0: not;
                                 * GN_APP_TAKEN: the watchdog took the call */
    gn_conn_t *app_conn;        /* the request the call is for (WSGI), or NULL */
    pthread_mutex_t app_mu;     /* the watchdog acts on app_conn under it */

    /* Work follows idle workers (http/group.h). Written by the loop's own
     * thread only, read by the supervisor's watch and by siblings. */
    struct gn_group *group;     /* NULL: no siblings in this process */
    unsigned slot;
    atomic_llong polled_us;     /* when the loop last looked at its events */
    atomic_int sleeping;        /* blocked in epoll_wait */
    atomic_int inflight;        /* connections with a request being answered */
    atomic_int stolen;          /* connections siblings took, not yet let go */
    atomic_int steal_wanted;    /* the watch asks this loop to take work */
    atomic_int accept_wanted;   /* a full sibling asks this loop to accept */
    atomic_int handed_wanted;   /* a retiring sibling gave this loop connections */
    atomic_uint n_conns_pub;    /* n_conns, for siblings */

    /* Other worker processes on the same socket (http/peers.h): what this
     * loop last counted in its process's slot. */
    int peer_room;              /* counted as having room; watches the eventfd */
    unsigned peer_conns;        /* connections counted */

    /* HTTP/2 streams answered by another loop than their connection's
     * (http/h2_remote.h). remote_out: this loop's streams that siblings
     * answer (in inflight, but not run here), written by this loop only;
     * remote_in: streams siblings handed to it, not started yet;
     * h2r_wanted: news about them wait in this loop's slot. */
    atomic_int remote_out;
    atomic_int remote_in;
    atomic_int h2r_wanted;
    double h2_cost; /* seconds the application takes to start a stream here (recent average) */
};

/*
 * Sets up the loop on the given listening sockets (non-blocking, owned by
 * the loop from now on). Returns 0, or -1 with errno set.
 */
int gn_loop_init(gn_loop_t *loop, int *listen_fds, unsigned n_listen, int exclusive,
                 const gn_limits_t *limits, const gn_handler_t *handler);
/* Runs until a requested stop has drained every connection. */
void gn_loop_run(gn_loop_t *loop);
/*
 * For a loop driven by another event loop (asyncio, for ASGI): epfd becomes
 * readable when there is work; gn_loop_poll() then handles it without
 * blocking, and gn_loop_tick() runs the timeouts (call it a few times a
 * second). Both return 1 once a requested stop has drained everything.
 */
int gn_loop_poll(gn_loop_t *loop);
int gn_loop_tick(gn_loop_t *loop);
/* Thread-safe: ask the loop for a graceful stop. */
void gn_loop_request_stop(gn_loop_t *loop);
/*
 * Thread-safe: a graceful stop while other loops go on serving the same
 * listening sockets (a reload, a recycled worker). Unlike a stop, the
 * sockets are left taking new connections: the loop only stops watching
 * them, accepts what its wake-up may have been for, and closes its own
 * copies; idle keep-alive connections close, in-flight requests finish.
 */
void gn_loop_retire(gn_loop_t *loop);
/* Thread-safe: stop now, closing the connections still open (the loop
 * leaves as soon as its thread is back from the application). */
void gn_loop_hurry(gn_loop_t *loop);
/*
 * --timeout. gn_loop_app_enter: the loop's thread calls into the
 * application for c (NULL when what runs is not one request's, e.g. an
 * asyncio loop). While marked, the thread touches neither c nor its socket:
 * the watchdog may answer c itself. gn_loop_app_leave: back; returns 0, or
 * -1 when the watchdog took the call (it answered c with a 504 or closed
 * it, and may have interrupted the call): the caller drops the answer.
 */
#define GN_APP_TAKEN (-1LL)
static inline void gn_loop_app_enter(gn_loop_t *loop, gn_conn_t *c)
{
    if (!loop->app_watch)
        return;
    loop->app_conn = c;
    atomic_store_explicit(&loop->app_since_us, gn_loop__us(gn_now()), memory_order_release);
}
int gn_loop__app_taken(gn_loop_t *loop);
static inline int gn_loop_app_leave(gn_loop_t *loop)
{
    if (!loop->app_watch)
        return 0;
    if (atomic_exchange_explicit(&loop->app_since_us, 0, memory_order_acq_rel) != GN_APP_TAKEN)
        return 0;
    return gn_loop__app_taken(loop);
}

/* Closes everything the loop owns. Safe on a half-initialised loop. */
void gn_loop_destroy(gn_loop_t *loop);
/*
 * A stop begins: the listening socket fd stops taking new connections (a
 * TCP SYN is dropped, so the client's connect is refused once the socket
 * closes) while handshakes already under way still complete and can be
 * accepted. Any thread may call it; it is idempotent. Returns 0 or -1.
 */
int gn_listener_refuse_new(int fd);

/* Internal, for conn.c, group.c and h2_remote.c: register interest, link a
 * new connection into the loop's list, retire a closed one, wake the loop,
 * and the clock in microseconds. */
int gn_loop__watch(gn_loop_t *loop, gn_conn_t *c, uint32_t events);
void gn_loop__link(gn_loop_t *loop, gn_conn_t *c);
void gn_loop__retire(gn_loop_t *loop, gn_conn_t *c);
void gn_loop__wake(gn_loop_t *loop);
long long gn_loop__us(double t);
/* The connection an epoll event names, or NULL for the loop's own fds. */
gn_conn_t *gn_loop__conn_of(void *ptr);
/* A connection taken from a sibling: serve it here from now on (with its
 * TLS state, when it has one). */
void gn_loop__adopt(gn_loop_t *loop, int fd, const struct sockaddr *peer, socklen_t len, unsigned requests,
                    struct ssl_st *tls);

#endif
