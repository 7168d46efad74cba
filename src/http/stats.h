/*
 * A loop's counters for the Prometheus endpoint (server/metrics.h): requests
 * by method and status, their durations, bytes both ways, and connections by
 * state. Only the loop's own thread writes them, so an update is a relaxed
 * load and store (a plain add, no lock prefix); the metrics thread reads them
 * with relaxed loads while they change, which is enough for counters that
 * only grow and for gauges read once.
 */
#ifndef GN_HTTP_STATS_H
#define GN_HTTP_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

/* Methods with a label of their own; any other is "other". */
enum {
    GN_M_GET,
    GN_M_HEAD,
    GN_M_POST,
    GN_M_PUT,
    GN_M_DELETE,
    GN_M_PATCH,
    GN_M_OPTIONS,
    GN_M_CONNECT,
    GN_M_TRACE,
    GN_M_OTHER,
    GN_M_METHODS
};

/*
 * Status codes with a label of their own (GN_STATUS_CODES, in this order);
 * any other code counts under its class, "1xx" to "5xx". Slot 0 is unused,
 * so a zero in the lookup table means "by class".
 */
#define GN_STATUS_CODES                                                                                           \
    X(100) X(101) X(200) X(201) X(202) X(204) X(206) X(301) X(302) X(303) X(304) X(307) X(308) X(400) X(401)     \
    X(403) X(404) X(405) X(406) X(408) X(409) X(410) X(411) X(412) X(413) X(414) X(415) X(416) X(417) X(421)     \
    X(422) X(426) X(429) X(431) X(500) X(501) X(502) X(503) X(504) X(505)
enum {
    GN_S_NONE,
#define X(code) GN_S_##code,
    GN_STATUS_CODES
#undef X
    GN_S_1XX,
    GN_S_2XX,
    GN_S_3XX,
    GN_S_4XX,
    GN_S_5XX,
    GN_S_CODES
};

/* Request duration histogram: upper bounds in seconds (GN_M_BUCKET_BOUNDS),
 * plus +Inf. */
#define GN_M_BUCKET_BOUNDS {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0}
#define GN_M_BUCKETS 14

/* Connections, by what they are doing. */
enum gn_conn_gauge {
    GN_CG_NONE,      /* closed (its gauge slot moves, nobody reads it) */
    GN_CG_IDLE,      /* keep-alive, waiting for its next request (no buffer) */
    GN_CG_READING,   /* receiving a request head or body (GN_CG_IDLE + 1) */
    GN_CG_RESPONDING,/* the application is answering */
    GN_CG_SENDING,   /* answered, the response still going out */
    GN_CG_WEBSOCKET,
    GN_CG_CLOSING,   /* lingering before close */
    GN_CG_STATES
};

typedef struct gn_stats {
    atomic_ullong requests[GN_M_METHODS][GN_S_CODES];
    atomic_ullong duration[GN_M_BUCKETS]; /* not cumulative: bucket i only */
    atomic_ullong duration_us;            /* sum of durations, microseconds */
    atomic_ullong served;                 /* requests answered */
    atomic_ullong bytes_in, bytes_out;    /* read from and written to clients */
    atomic_int conns[GN_CG_STATES];       /* gauges: now, not folded */
} gn_stats_t;

/* Adds to a counter only this thread writes. */
static inline void gn_stat_add(atomic_ullong *c, unsigned long long n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void gn_stat_gauge(atomic_int *g, int delta)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + delta, memory_order_relaxed);
}

/* The label slot of a method (a slice of the request line). */
static inline int gn_stat_method(const char *m, size_t n)
{
    switch (n) {
    case 3:
        return memcmp(m, "GET", 3) == 0 ? GN_M_GET : memcmp(m, "PUT", 3) == 0 ? GN_M_PUT : GN_M_OTHER;
    case 4:
        return memcmp(m, "POST", 4) == 0 ? GN_M_POST : memcmp(m, "HEAD", 4) == 0 ? GN_M_HEAD : GN_M_OTHER;
    case 5:
        return memcmp(m, "PATCH", 5) == 0 ? GN_M_PATCH : memcmp(m, "TRACE", 5) == 0 ? GN_M_TRACE : GN_M_OTHER;
    case 6:
        return memcmp(m, "DELETE", 6) == 0 ? GN_M_DELETE : GN_M_OTHER;
    case 7:
        return memcmp(m, "OPTIONS", 7) == 0 ? GN_M_OPTIONS : memcmp(m, "CONNECT", 7) == 0 ? GN_M_CONNECT : GN_M_OTHER;
    default:
        return GN_M_OTHER;
    }
}

/* The label slot of a status code: its own, else its class. */
int gn_stat_status(int status);

/* One request answered: status, method slot, seconds it took. */
void gn_stat_request(gn_stats_t *s, int method, int status, double seconds);

#endif
