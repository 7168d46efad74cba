/*
 * HTTP/2 streams answered by a sibling loop (see h2_remote.h for the shape).
 *
 * Who owns what
 * -------------
 * The owner is the loop of the connection; S is the stream's gn_conn_t on it
 * (h2.c). The runner is the sibling that runs the application; R is its
 * runner_t, a gn_conn_t in the runner's own list of connections, so that its
 * graceful stop waits for it and its end closes it. The job is what they
 * share: plain C memory, never a Python object.
 *
 * - S and everything reached from it (the socket, nghttp2, TLS writes) is
 *   touched by the owner's thread only. R, its output queue (which may hold
 *   references to Python objects) and the bridge's state are touched by the
 *   runner's thread only. A Python object never leaves the runner: R's queue
 *   is copied into plain chunks (ship) before it goes to the job.
 * - Set by the owner before the job is pushed, and read-only afterwards:
 *   group, slots, the request (head, body, addresses, streaming). The runner
 *   moves head, body and the TLS reference out of the job once, in start().
 * - Under job->mu: refs, the response (out, out_bytes, out_done,
 *   out_aborted, trl), a streamed request body (in, in_end, in_wanted),
 *   cancelled, given_up, runner_gone, on_run_news, on_own_news, and the
 *   news links (which the slot locks guard as list members). trl is the
 *   runner's until out_done, then the owner's to read.
 * - job->sc is the owner thread's (S while it holds its reference, then
 *   NULL); job->r is the runner thread's (R while it lives, then NULL).
 * - References (job->refs): the owner's, from gn_h2r__send until
 *   owner_drop (the response taken whole, or S cancelled: a reset, the
 *   connection closing); the runner's, from the push until runner_drop (R
 *   retired or closed, or the job found cancelled, or orphaned, before it
 *   started); and one per news list the job is on (a slot's h2r_run or
 *   h2r_own). Whoever takes refs to 0 frees the job.
 * - News: a side that has something for the other puts the job on the other
 *   loop's list in the group slot (once: on_*_news), under that slot's lock,
 *   and wakes that loop while still holding the lock; a loop leaves its slot
 *   (slot->loop = NULL) under the same lock before it is torn down, so a
 *   wake never reaches a freed loop. A slot without a loop takes no news.
 * - The owner's TLS object reaches the runner as a reference of its own
 *   (SSL_up_ref), read only (the ASGI "tls" scope: certificates and cipher
 *   agreed at the handshake, which HTTP/2 never renegotiates), freed by R.
 * - Lock order: job->mu, then a slot's mu; never the other way round.
 *
 * Flow control: R's queue is shipped while the job holds less than the
 * high-water mark; beyond it R's queue fills, so R's producer sees
 * gn_conn_out_full() and waits (on_writable) as for a slow socket. The owner
 * takes chunks into S's queue as S drains (the client's window opens), and
 * wakes the runner when the job falls below the mark again. A stream is
 * thus bounded by about four times the mark: R's queue, the job, and S's
 * queue, which takes whole chunks of up to a mark each while below it.
 */
#include "http/h2_remote.h"

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "http/fault.h"
#include "http/forwarded.h"
#include "http/group.h"
#include "http/h2.h"
#include "http/loop.h"
#include "server/log.h"

void gn_conn__out_release_all(gn_conn_t *c);

char gn_h2r__tag;

typedef struct chunk {
    struct chunk *next;
    size_t len;
    char data[];
} chunk_t;

typedef struct runner {
    gn_conn_t conn; /* first: the loop frees it as a connection */
    gn_h2r_job_t *job;
    char *trl; /* response trailers as gn_h2__pack_trailer packs them, shipped at the end */
    size_t trl_len, trl_cap;
    unsigned done : 1, aborted : 1, body_given : 1, shipped_end : 1, serving : 1;
} runner_t;

struct gn_h2r_job {
    pthread_mutex_t mu;
    int refs;
    gn_group_t *group;
    unsigned owner_slot, runner_slot;
    size_t high_water;
    /* The request (the owner's until the push, then the runner's to take):
     * its head's bytes, and the head parsed, its slices into them. */
    char *head;
    size_t head_len;
    gn_request_t req;
    gn_header_t *fields; /* one block with head */
    gn_body_t body;
    gn_addr_t peer, local;
    socklen_t peer_len;
    int peer_trust, local_known;
    struct ssl_st *tls;
    /* Under mu. */
    chunk_t *out, *out_last;
    size_t out_bytes;
    char *trl; /* the response's trailers (the runner's, moved with out_done) */
    size_t trl_len;
    /* A streamed body: bytes handed over that the runner's bridge has not
     * taken (in), the request's end (in_end), the runner waits (in_wanted). */
    chunk_t *in, *in_last;
    unsigned out_done : 1, out_aborted : 1, cancelled : 1, runner_gone : 1, on_run_news : 1, on_own_news : 1,
        given_up : 1, in_end : 1, in_wanted : 1;
    gn_h2r_job_t *run_next, *own_next;
    /* One thread's each. */
    gn_conn_t *sc; /* the owner's */
    runner_t *r;   /* the runner's */
};

static void chunks_free(chunk_t *k)
{
    for (chunk_t *next; k; k = next) {
        next = k->next;
        free(k);
    }
}

static chunk_t *chunk_new(const char *p, size_t n)
{
    chunk_t *k = GN_FAIL(NULL, malloc(sizeof(*k) + n));
    if (k) {
        k->next = NULL;
        k->len = n;
        memcpy(k->data, p, n);
    }
    return k;
}

/* Appends k to a list of chunks. */
static void chunk_add(chunk_t **first, chunk_t **last, chunk_t *k)
{
    if (*last)
        (*last)->next = k;
    else
        *first = k;
    *last = k;
}

static void job_free(gn_h2r_job_t *j)
{
    chunks_free(j->out);
    chunks_free(j->in);
    free(j->trl);
    free(j->fields);
    gn_body_reset(&j->body);
    if (j->tls)
        SSL_free(j->tls);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* Drops one reference, with j->mu held; unlocks. */
static void unref_unlock(gn_h2r_job_t *j)
{
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (last)
        job_free(j);
}

static void unref(gn_h2r_job_t *j)
{
    pthread_mutex_lock(&j->mu);
    unref_unlock(j);
}

/* ---- news between the loops ------------------------------------------- */

/* With j->mu held: puts j on the news list of the runner's slot (run) or
 * the owner's, and wakes that slot's loop; once until the loop takes it. */
static void tell(gn_h2r_job_t *j, int run)
{
    if (run ? j->on_run_news : j->on_own_news)
        return;
    gn_group_slot_t *s = &j->group->slots[run ? j->runner_slot : j->owner_slot];
    pthread_mutex_lock(&s->mu);
    gn_loop_t *l = s->loop;
    if (l != NULL) {
        j->refs++;
        if (run) {
            j->on_run_news = 1;
            j->run_next = s->h2r_run;
            s->h2r_run = j;
        } else {
            j->on_own_news = 1;
            j->own_next = s->h2r_own;
            s->h2r_own = j;
        }
        atomic_store(&l->h2r_wanted, 1);
        gn_loop__wake(l);
    }
    pthread_mutex_unlock(&s->mu);
}

static void tell_locked(gn_h2r_job_t *j, int run)
{
    pthread_mutex_lock(&j->mu);
    tell(j, run);
    pthread_mutex_unlock(&j->mu);
}

/* ---- the owner's side ------------------------------------------------- */

/* Requests this loop's interpreter runs (its streams answered elsewhere
 * are in inflight but not its work), with those handed to it not started. */
static int load(gn_loop_t *l)
{
    return atomic_load_explicit(&l->inflight, memory_order_relaxed) -
           atomic_load_explicit(&l->remote_out, memory_order_relaxed) +
           atomic_load_explicit(&l->remote_in, memory_order_relaxed);
}

static int serves_on(gn_loop_t *l)
{
    return l != NULL && !atomic_load_explicit(&l->stop_requested, memory_order_relaxed);
}

void gn_h2r__ran(gn_loop_t *loop, double seconds)
{
    loop->h2_cost += (seconds - loop->h2_cost) / 8;
}

int gn_h2r__pick(gn_loop_t *loop, unsigned here)
{
    gn_group_t *g = loop->group;
    int best = load(loop) + (int)here, to = -1;
    if (g == NULL || best <= 0 || loop->h2_cost < GN_H2R_COST_MIN)
        return -1;
    for (unsigned k = 1; k < g->n; k++) {
        unsigned i = (loop->slot + k) % g->n;
        gn_group_slot_t *s = &g->slots[i];
        pthread_mutex_lock(&s->mu);
        gn_loop_t *l = s->loop;
        int n = serves_on(l) ? load(l) : -1;
        pthread_mutex_unlock(&s->mu);
        if (n >= 0 && n < best) {
            best = n;
            to = (int)i;
        }
    }
    return to;
}

/* The request's plain C state, copied or moved out of S. */
static gn_h2r_job_t *job_new(gn_conn_t *sc, const char *pend, size_t n)
{
    gn_h2r_job_t *j = GN_FAIL(NULL, calloc(1, sizeof(*j)));
    size_t nf = sc->req.num_headers;
    if (j == NULL || (j->fields = GN_FAIL(NULL, malloc(nf * sizeof(gn_header_t) + sc->head_len))) == NULL) {
        free(j);
        return NULL;
    }
    gn_body_init(&j->body);
    if (n > 0 && (j->in = j->in_last = chunk_new(pend, n)) == NULL) {
        free(j->fields);
        free(j);
        return NULL;
    }
    pthread_mutex_init(&j->mu, NULL);
    j->head = (char *)(j->fields + nf);
    memcpy(j->head, sc->rbuf, sc->head_len);
    j->head_len = sc->head_len;
    j->req = sc->req;
    memcpy(j->fields, sc->headers, nf * sizeof(gn_header_t));
    gn_h2__move_head(&j->req, j->fields, nf, sc->rbuf, sc->head_len, j->head);
    char host[64];
    int port;
    gn_conn_local(sc, host, sizeof(host), &port); /* the socket is the owner's: asked here */
    j->local = sc->local;
    j->local_known = sc->local_known;
    j->peer = sc->peer;
    j->peer_len = sc->peer_len;
    j->peer_trust = sc->peer_trust;
    j->high_water = sc->loop->limits->write_high_water;
    return j;
}

int gn_h2r__send(gn_conn_t *sc, int to, const char *pend, size_t n, int whole)
{
    gn_loop_t *loop = sc->loop;
    gn_h2r_job_t *j = job_new(sc, pend, n);
    if (j == NULL)
        return -1;
    j->group = loop->group;
    j->owner_slot = loop->slot;
    j->runner_slot = (unsigned)to;
    j->refs = 2; /* the owner's and the runner's */
    j->in_end = whole != 0;
    /* A buffered body moves (a streamed one is handed over as it comes). */
    j->body = sc->body;
    gn_body_init(&sc->body);
    if (sc->tls && SSL_up_ref(sc->tls) == 1)
        j->tls = sc->tls;
    j->sc = sc;
    gn_group_slot_t *s = &j->group->slots[to];
    pthread_mutex_lock(&s->mu);
    gn_loop_t *l = s->loop;
    int go = serves_on(l);
    if (go) {
        j->refs++; /* on the runner's news */
        j->on_run_news = 1;
        j->run_next = s->h2r_run;
        s->h2r_run = j;
        atomic_fetch_add(&l->remote_in, 1);
        atomic_store(&l->h2r_wanted, 1);
        gn_loop__wake(l);
    }
    pthread_mutex_unlock(&s->mu);
    if (!go) {
        sc->body = j->body;
        gn_body_init(&j->body);
        job_free(j);
        return -1;
    }
    sc->bridge = j;
    atomic_store_explicit(&loop->remote_out, atomic_load_explicit(&loop->remote_out, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return 0;
}

/* The owner lets go of the job: its response is taken, or S is gone. */
static void owner_drop(gn_conn_t *sc, gn_h2r_job_t *j)
{
    gn_loop_t *loop = sc->loop;
    sc->bridge = NULL;
    j->sc = NULL;
    atomic_store_explicit(&loop->remote_out, atomic_load_explicit(&loop->remote_out, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    unref(j);
}

static void owner_request(gn_conn_t *sc, void *ctx)
{
    (void)ctx;
    sc->streaming = 0; /* taken whenever S has room, as WSGI produces */
}

/* Takes whole chunks while S is below the mark; a chunk is at most one
 * mark's worth, so S holds at most two. */
static chunk_t *take_chunks(gn_h2r_job_t *j, size_t room, int *wake_runner)
{
    chunk_t *first = j->out, *last = NULL;
    size_t took = 0;
    for (chunk_t *k = j->out; k && took < room; k = k->next) {
        took += k->len;
        last = k;
    }
    if (last == NULL)
        return NULL;
    j->out = last->next;
    if (j->out == NULL)
        j->out_last = NULL;
    last->next = NULL;
    *wake_runner = j->out_bytes >= j->high_water && j->out_bytes - took < j->high_water && !j->runner_gone;
    j->out_bytes -= took;
    return first;
}

static void owner_writable(gn_conn_t *sc, void *ctx)
{
    (void)ctx;
    gn_h2r_job_t *j = sc->bridge;
    size_t hw = sc->loop->limits->write_high_water;
    int wake = 0;
    pthread_mutex_lock(&j->mu);
    chunk_t *got = take_chunks(j, sc->out_bytes < hw ? hw - sc->out_bytes : 0, &wake);
    int end = j->out_done && j->out == NULL, aborted = j->out_aborted, given_up = j->given_up;
    if (wake)
        tell(j, 1);
    pthread_mutex_unlock(&j->mu);
    int lost = 0; /* no memory for what the runner sent: the stream is reset */
    for (chunk_t *k = got, *next; k; k = next) {
        next = k->next;
        if (!aborted && !lost && gn_conn_write(sc, k->data, k->len) < 0)
            lost = 1;
        free(k);
    }
    if (lost)
        gn_log(GN_LOG_ERROR, "worker %d: out of memory for an HTTP/2 stream's response: reset", sc->loop->worker_id);
    aborted |= lost;
    if (!end && !aborted)
        return;
    if (given_up && sc->status == 0 && sc->out_bytes == 0) {
        /* The runner is stuck past --timeout before its answer began. */
        static const char body[] = "Gateway Timeout\n";
        gn_conn_write_simple(sc, 504, body, sizeof(body) - 1, 0);
        aborted = 0;
    }
    if (!aborted && j->trl_len) {
        /* The response's trailers, packed by the runner as S keeps them,
         * go to S whole; the job is done with, so no lock. */
        gn_h2__take_trailers(sc, j->trl, j->trl_len);
        j->trl = NULL;
        j->trl_len = 0;
    }
    owner_drop(sc, j);
    if (aborted)
        gn_conn_response_abort(sc);
    else
        gn_conn_response_done(sc);
}

static void owner_abort(gn_conn_t *sc, void *ctx)
{
    (void)ctx;
    gn_h2r_job_t *j = sc->bridge;
    pthread_mutex_lock(&j->mu);
    j->cancelled = 1;
    if (!j->runner_gone)
        tell(j, 1);
    pthread_mutex_unlock(&j->mu);
    owner_drop(sc, j);
}

/* Body bytes of a streamed request, handed over once the runner's bridge
 * asked for them (own_news set S's want_body): h2.c gives the client's
 * window back for them now, so a runner that does not read holds the
 * client to what one window and one hand-over carry. */
static void owner_body(gn_conn_t *sc, const char *data, size_t len, int done, void *ctx)
{
    (void)ctx;
    gn_h2r_job_t *j = sc->bridge;
    chunk_t *k = len ? chunk_new(data, len) : NULL;
    if (len && k == NULL) {
        gn_log(GN_LOG_ERROR, "worker %d: out of memory for an HTTP/2 request body", sc->loop->worker_id);
        owner_abort(sc, ctx);
        gn_conn_response_abort(sc); /* the stream is reset */
        return;
    }
    pthread_mutex_lock(&j->mu);
    if (k)
        chunk_add(&j->in, &j->in_last, k);
    j->in_end = done != 0;
    if (!j->runner_gone)
        tell(j, 1);
    pthread_mutex_unlock(&j->mu);
}

static void owner_release(void *owner, void *ctx)
{
    (void)owner; /* S's queue holds only copies */
    (void)ctx;
}

const gn_handler_t gn_h2r__owner = {
    .on_request = owner_request,
    .on_writable = owner_writable,
    .on_abort = owner_abort,
    .on_body = owner_body,
    .release = owner_release,
};

/* ---- the runner's side ------------------------------------------------ */

static runner_t *runner_of(gn_conn_t *rc)
{
    return (runner_t *)rc;
}

static int answering(const gn_conn_t *rc)
{
    return rc->state == GN_CONN_RESPOND && rc->bridge != NULL;
}

/* The runner lets go of the job, with j->mu held; unlocks. */
static void runner_drop_unlock(gn_h2r_job_t *j)
{
    j->runner_gone = 1;
    j->r = NULL;
    unref_unlock(j);
}

/* Copies what R queued into a chunk for the owner, as far as the job has
 * room; at the response's end (all shipped) the owner hears it. */
static void ship(runner_t *r)
{
    gn_conn_t *rc = &r->conn;
    gn_h2r_job_t *j = r->job;
    if (r->shipped_end)
        return;
    pthread_mutex_lock(&j->mu);
    size_t room = j->out_bytes < j->high_water ? j->high_water - j->out_bytes : 0;
    int cancelled = j->cancelled || j->given_up;
    pthread_mutex_unlock(&j->mu);
    size_t n = rc->out_bytes < room ? rc->out_bytes : room;
    chunk_t *k = NULL;
    if (!cancelled && !r->aborted && n > 0 && (k = GN_FAIL(NULL, malloc(sizeof(*k) + n))) != NULL) {
        ssize_t got = gn_conn__gather(rc, k->data, n);
        if (got < 0) {
            r->aborted = r->done = 1; /* a file shorter than promised */
            free(k);
            k = NULL;
        } else {
            gn_conn__advance(rc, (size_t)got);
            k->len = (size_t)got;
            k->next = NULL;
        }
    } else if (!cancelled && !r->aborted && n > 0) {
        gn_log(GN_LOG_ERROR, "worker %d: out of memory for an HTTP/2 stream's response: reset", rc->loop->worker_id);
        r->aborted = r->done = 1;
    }
    if (r->aborted || cancelled)
        gn_conn__out_release_all(rc);
    int end = r->done && rc->out_bytes == 0;
    pthread_mutex_lock(&j->mu);
    if (k) {
        chunk_add(&j->out, &j->out_last, k);
        j->out_bytes += k->len;
    }
    if (end && !j->given_up) {
        j->out_done = 1;
        j->out_aborted = r->aborted;
        j->trl = r->trl;
        j->trl_len = r->trl_len;
        r->trl = NULL;
        r->trl_len = r->trl_cap = 0;
    }
    r->shipped_end |= end;
    if ((k || end) && !j->cancelled && !j->given_up)
        tell(j, 0);
    pthread_mutex_unlock(&j->mu);
}

/* R leaves the runner's loop (freed with its closed connections); a
 * bridge still answering (its response cut short here) hears on_abort. */
static void retire(runner_t *r)
{
    gn_conn_t *rc = &r->conn;
    gn_h2r_job_t *j = r->job;
    const gn_handler_t *hd = rc->loop->handler;
    if (answering(rc))
        hd->on_abort(rc, hd->ctx);
    rc->bridge = NULL;
    gn_conn__out_release_all(rc);
    gn_body_reset(&rc->body);
    free(r->trl);
    r->trl = NULL;
    rc->rlen = 0;
    gn_conn__idle_buf(rc);
    if (rc->tls)
        SSL_free(rc->tls);
    rc->tls = NULL;
    gn_conn__set_state(rc, GN_CONN_CLOSED);
    gn_loop__retire(rc->loop, rc);
    r->job = NULL;
    pthread_mutex_lock(&j->mu);
    runner_drop_unlock(j);
}

/* The request's head, copied to R's buffer, its slices with it. */
static int take_head(runner_t *r, gn_h2r_job_t *j)
{
    gn_conn_t *rc = &r->conn;
    if (gn_conn__take_buf(rc) < 0)
        return -1;
    memset(&rc->buf->fwd, 0, sizeof(rc->buf->fwd)); /* a reused buffer's is another request's */
    if (j->head_len > rc->rcap) {
        char *p = GN_FAIL(NULL, malloc(j->head_len)); /* freed as a head that outgrew the buffer */
        if (p == NULL)
            return -1;
        rc->rbuf = p;
        rc->rcap = j->head_len;
    }
    memcpy(rc->rbuf, j->head, j->head_len);
    rc->rlen = rc->head_len = j->head_len;
    rc->req = j->req;
    memcpy(rc->headers, j->fields, j->req.num_headers * sizeof(gn_header_t));
    gn_h2__move_head(&rc->req, rc->headers, rc->req.num_headers, j->head, j->head_len, rc->rbuf);
    if (rc->loop->limits->proxy_headers)
        gn_forwarded_apply(rc);
    return 0;
}

/* A gn_conn_t of this loop's for the job, in its list of connections. */
static runner_t *runner_new(gn_loop_t *loop, gn_h2r_job_t *j)
{
    runner_t *r = GN_FAIL(NULL, calloc(1, sizeof(*r)));
    if (r == NULL)
        return NULL;
    gn_conn_t *rc = &r->conn;
    rc->fd = -1; /* the socket is the owner's */
    rc->loop = loop;
    rc->refused = 1; /* not one of the process's connections (--max-connections-total) */
    rc->h2s = GN_H2_RUNNER;
    rc->peer = j->peer;
    rc->peer_len = j->peer_len;
    rc->peer_trust = j->peer_trust;
    rc->local = j->local;
    rc->local_known = j->local_known;
    rc->tls = j->tls;
    j->tls = NULL;
    gn_body_init(&rc->body);
    r->job = j;
    if (take_head(r, j) < 0) {
        rc->rlen = 0;
        gn_conn__idle_buf(rc);
        gn_conn__set_state(rc, GN_CONN_CLOSED);
        if (rc->tls)
            SSL_free(rc->tls);
        free(r);
        return NULL;
    }
    rc->body = j->body;
    gn_body_init(&j->body);
    gn_loop__link(loop, rc);
    return r;
}

static void runner_serve(runner_t *r);

/* The runner takes up a job: R is made and the application called. */
static void start(gn_loop_t *loop, gn_h2r_job_t *j)
{
    const gn_handler_t *hd = loop->handler;
    runner_t *r = runner_new(loop, j);
    atomic_fetch_sub(&loop->remote_in, 1);
    if (r == NULL) {
        gn_log(GN_LOG_ERROR, "worker %d: out of memory for an HTTP/2 stream", loop->worker_id);
        pthread_mutex_lock(&j->mu);
        j->out_done = j->out_aborted = 1;
        tell(j, 0);
        runner_drop_unlock(j);
        return;
    }
    j->r = r;
    gn_conn_t *rc = &r->conn;
    gn_conn__set_state(rc, GN_CONN_RESPOND);
    rc->keepalive = 1;
    rc->streaming = hd->on_body != NULL;
    rc->buf->started = loop->now;
    r->serving = 1;
    hd->on_request(rc, hd->ctx);
    loop->now = gn_now();
    runner_serve(r);
}

/* The bridge asked for body bytes: the next piece the owner handed over,
 * or, when none waits, a word to the owner, which hands over what has come
 * (and only then gives the client's window back for it). */
static void give_body(runner_t *r)
{
    gn_conn_t *rc = &r->conn;
    gn_h2r_job_t *j = r->job;
    const gn_handler_t *hd = rc->loop->handler;
    pthread_mutex_lock(&j->mu);
    chunk_t *k = j->in;
    if (k != NULL && (j->in = k->next) == NULL)
        j->in_last = NULL;
    int last = j->in_end && j->in == NULL;
    if (k == NULL && !last) {
        j->in_wanted = 1;
        tell(j, 0);
    }
    pthread_mutex_unlock(&j->mu);
    if (k == NULL && !last)
        return;
    rc->want_body = 0;
    r->body_given = last;
    hd->on_body(rc, k ? k->data : "", k ? k->len : 0, last, hd->ctx);
    free(k);
}

/* What R is owed: a cancel heard, its body, room to produce; retired once
 * its response is shipped whole. */
static void runner_serve(runner_t *r)
{
    gn_conn_t *rc = &r->conn;
    gn_h2r_job_t *j = r->job;
    const gn_handler_t *hd = rc->loop->handler;
    pthread_mutex_lock(&j->mu);
    int cancelled = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    r->serving = 1;
    if (cancelled) {
        retire(r); /* RST_STREAM: ASGI's http.disconnect */
        return;
    }
    if (answering(rc) && rc->want_body && !r->body_given)
        give_body(r);
    ship(r);
    if (answering(rc) && !gn_conn_out_full(rc) && (!rc->streaming || rc->out_blocked)) {
        rc->out_blocked = 0;
        hd->on_writable(rc, hd->ctx);
        rc->loop->now = gn_now();
        ship(r);
    }
    r->serving = 0;
    if (r->shipped_end)
        retire(r);
    else if (answering(rc) && rc->want_body && !r->body_given)
        give_body(r); /* asked for during the calls above */
}

void gn_h2r__kick(gn_conn_t *rc)
{
    runner_t *r = runner_of(rc);
    if (r->job == NULL) /* closed: the bridge heard on_abort */
        return;
    ship(r);
    /* From a bridge call of runner_serve's, it looks again itself. */
    if (!r->serving && (rc->want_body || rc->out_blocked || r->done))
        tell_locked(r->job, 1); /* runner_serve, from this loop's next round */
}

void gn_h2r__done(gn_conn_t *rc, int aborted)
{
    runner_t *r = runner_of(rc);
    rc->bridge = NULL;
    r->done = 1;
    r->aborted |= aborted != 0;
    gn_conn__set_state(rc, GN_CONN_DRAIN);
    gn_h2r__kick(rc);
}

void gn_h2r__abandon(gn_conn_t *rc)
{
    runner_t *r = runner_of(rc);
    gn_h2r_job_t *j = r->job;
    if (j == NULL || r->shipped_end)
        return;
    pthread_mutex_lock(&j->mu);
    if (!j->out_done) {
        j->given_up = j->out_done = j->out_aborted = 1;
        if (!j->cancelled)
            tell(j, 0);
    }
    pthread_mutex_unlock(&j->mu);
}

int gn_h2r__trailer(gn_conn_t *rc, const char *name, size_t nlen, const char *value, size_t vlen)
{
    runner_t *r = runner_of(rc);
    return gn_h2__pack_trailer(&r->trl, &r->trl_len, &r->trl_cap, name, nlen, value, vlen);
}

void gn_h2r__closed(gn_conn_t *rc)
{
    runner_t *r = runner_of(rc);
    gn_h2r_job_t *j = r->job;
    free(r->trl);
    r->trl = NULL;
    if (j == NULL)
        return;
    r->job = NULL;
    pthread_mutex_lock(&j->mu);
    if (!r->shipped_end) {
        j->out_done = j->out_aborted = 1;
        if (!j->cancelled)
            tell(j, 0);
    }
    runner_drop_unlock(j);
}

/* ---- taking the news -------------------------------------------------- */

/* A job on this loop's runner list: start it, or serve its R. */
static void run_news(gn_loop_t *loop, gn_h2r_job_t *j)
{
    pthread_mutex_lock(&j->mu);
    j->on_run_news = 0;
    runner_t *r = j->r;
    int fresh = r == NULL && !j->runner_gone, cancelled = j->cancelled;
    if (fresh && cancelled) {
        atomic_fetch_sub(&loop->remote_in, 1);
        j->refs--; /* the runner's; the news' below */
        j->runner_gone = 1;
    }
    pthread_mutex_unlock(&j->mu);
    if (fresh && !cancelled)
        start(loop, j);
    else if (r != NULL)
        runner_serve(r);
    unref(j);
}

#define RESUME_MAX 16

/* A job on this loop's owner list: its connection goes round. */
static void own_news(gn_h2r_job_t *j, gn_conn_t **done, unsigned *n)
{
    pthread_mutex_lock(&j->mu);
    j->on_own_news = 0;
    int wanted = j->in_wanted;
    j->in_wanted = 0;
    pthread_mutex_unlock(&j->mu);
    if (wanted && j->sc)
        j->sc->want_body = 1; /* serve() hands over what came (owner_body) */
    gn_conn_t *c = j->sc ? gn_h2__parent(j->sc) : NULL;
    unsigned i = 0;
    while (c && i < *n && done[i] != c)
        i++;
    if (c && i == *n) {
        if (*n < RESUME_MAX)
            done[(*n)++] = c;
        gn_conn_resume(c);
    }
    unref(j);
}

static gn_h2r_job_t *reversed(gn_h2r_job_t *j, int run)
{
    gn_h2r_job_t *out = NULL;
    while (j) {
        gn_h2r_job_t **link = run ? &j->run_next : &j->own_next;
        gn_h2r_job_t *next = *link;
        *link = out;
        out = j;
        j = next;
    }
    return out;
}

void gn_h2r__poll(gn_loop_t *loop)
{
    gn_group_slot_t *s = &loop->group->slots[loop->slot];
    pthread_mutex_lock(&s->mu);
    gn_h2r_job_t *run = s->h2r_run, *own = s->h2r_own;
    s->h2r_run = s->h2r_own = NULL;
    pthread_mutex_unlock(&s->mu);
    for (gn_h2r_job_t *j = reversed(run, 1), *next; j; j = next) {
        next = j->run_next;
        run_news(loop, j);
    }
    gn_conn_t *resumed[RESUME_MAX];
    unsigned n = 0;
    for (gn_h2r_job_t *j = reversed(own, 0), *next; j; j = next) {
        next = j->own_next;
        own_news(j, resumed, &n);
    }
}

void gn_h2r__orphans(gn_h2r_job_t *run, gn_h2r_job_t *own)
{
    for (gn_h2r_job_t *j = run, *next; j; j = next) {
        next = j->run_next;
        pthread_mutex_lock(&j->mu);
        j->on_run_news = 0;
        if (j->r == NULL && !j->runner_gone) {
            /* Never started: the owner resets the stream. */
            j->out_done = j->out_aborted = 1;
            if (!j->cancelled)
                tell(j, 0);
            j->runner_gone = 1;
            j->refs--;
        }
        unref_unlock(j);
    }
    for (gn_h2r_job_t *j = own, *next; j; j = next) {
        next = j->own_next;
        pthread_mutex_lock(&j->mu);
        j->on_own_news = 0;
        unref_unlock(j);
    }
}
