/*
 * HTTP/2 streams answered by a sibling loop (the loops of one process,
 * http/group.h). The loop that owns an HTTP/2 connection (the owner) alone
 * touches its socket, its nghttp2 session and its TLS state; when one of its
 * streams is ready to start while the owner already runs more requests than
 * a sibling, the sibling (the runner) runs the application for it in its own
 * interpreter. Only plain C bytes cross: the request's head and body one
 * way, the response's bytes the other, through a job under its own lock and
 * the loops' wake-up fds. See the top of h2_remote.c for who owns what.
 */
#ifndef GN_HTTP_H2_REMOTE_H
#define GN_HTTP_H2_REMOTE_H

#include <stddef.h>

#include "http/conn.h"

typedef struct gn_h2r_job gn_h2r_job_t;

/* c->h2s of a runner's gn_conn_t: a stream whose connection is another
 * loop's. Compared, never dereferenced. */
extern char gn_h2r__tag;
#define GN_H2_RUNNER ((struct gn_h2_stream *)(void *)&gn_h2r__tag)

/* ---- the owner's side (h2.c) ---- */
/* A hand-off costs tens of microseconds on two threads: worth it only for
 * applications slower than this (seconds in on_request, an average of the
 * recent streams started here). A loop assumes GN_H2R_COST_FIRST until it
 * has seen its own. */
#define GN_H2R_COST_MIN 0.001
#define GN_H2R_COST_FIRST 0.004
/* The application took `seconds` to start a stream here (on_request). */
void gn_h2r__ran(gn_loop_t *loop, double seconds);
/* The sibling slot to run a stream that is ready to start, or -1 to run it
 * here: a sibling that serves on and runs fewer requests than this loop,
 * counting `here` streams this loop is about to start, when its streams
 * cost enough to be worth it. No lock while this loop runs nothing or
 * answers fast. */
int gn_h2r__pick(gn_loop_t *loop, unsigned here);
/* Hands the request of stream sc (head parsed; its body: complete in
 * sc->body, or for a streaming bridge the bytes come so far, pend[0..n),
 * and `whole` when that is all of it) to the loop in slot `to`. Returns 0
 * (sc->bridge is the job, and sc must be answered through gn_h2r__owner
 * from now on: the rest of a streamed body goes to it through on_body,
 * once the runner asks), or -1: nothing changed, run it here. */
int gn_h2r__send(gn_conn_t *sc, int to, const char *pend, size_t n, int whole);
/* The handler of a stream answered by a sibling: on_writable takes its
 * response bytes, on_abort (a reset, the connection closing) cancels it. */
extern const gn_handler_t gn_h2r__owner;

/* ---- the runner's side (h2.c, conn.c) ---- */
/* The bridge queued output, wants body bytes, or waits for room. */
void gn_h2r__kick(gn_conn_t *rc);
/* The response is complete (or cannot be: aborted). */
void gn_h2r__done(gn_conn_t *rc, int aborted);
/* gn_h2_trailer() of a runner's gn_conn_t: kept, and shipped with the
 * response's end. 0, or -1 when out of memory. */
int gn_h2r__trailer(gn_conn_t *rc, const char *name, size_t nlen, const char *value, size_t vlen);
/* The watchdog (another thread, under the loop's app_mu) gave up on the
 * call that runs rc's application: stuck past --timeout, it may never come
 * back. The owner answers the stream instead (504, or a reset if the
 * response began); what the runner produces later is dropped. */
void gn_h2r__abandon(gn_conn_t *rc);
/* gn_conn_close() of a runner's gn_conn_t (a hurried stop, the loop's end). */
void gn_h2r__closed(gn_conn_t *rc);

/* ---- both (loop.c, group.c) ---- */
/* Takes the news siblings left in this loop's slot (h2r_wanted). */
void gn_h2r__poll(gn_loop_t *loop);
/* The loop left its slot: news that came after its last look go nowhere. */
void gn_h2r__orphans(gn_h2r_job_t *run, gn_h2r_job_t *own);

#endif
