/*
 * The connection state machine. One request at a time: while a response is
 * being produced the connection is not read, so pipelined requests wait in
 * the kernel or in rbuf and are answered in order, and a client that does not
 * read its responses stops being read (backpressure both ways).
 */
#include "http/conn.h"
#include "http/fault.h"
#include "http/forwarded.h"
#include "http/h2.h"
#include "http/h2_remote.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/un.h>
#include <unistd.h>

#include "http/loop.h"
#include "http/response.h"
#include "http/tls.h"
#include "server/log.h"

#define LINGER_SECONDS 2.0

void gn_conn__out_release_all(gn_conn_t *c);
int gn_conn__ws_step(gn_conn_t *c);
void gn_conn__ws_timeout(gn_conn_t *c);
void gn_conn__ws_shutdown(gn_conn_t *c);
void gn_conn__ws_free(gn_conn_t *c);
ssize_t gn_conn__read_more(gn_conn_t *c);
static void drive(gn_conn_t *c);
static void dispatch(gn_conn_t *c);
static void begin_linger(gn_conn_t *c);

/* Where the loop's stats count a connection in each state (http/stats.h);
 * READ_HEAD is IDLE without a buffer, READING (IDLE + 1) with one. */
static const unsigned char gauge_of_state[] = {
    [GN_CONN_READ_HEAD] = GN_CG_IDLE,      [GN_CONN_READ_BODY] = GN_CG_READING,
    [GN_CONN_RESPOND] = GN_CG_RESPONDING,  [GN_CONN_DRAIN] = GN_CG_SENDING,
    [GN_CONN_WEBSOCKET] = GN_CG_WEBSOCKET, [GN_CONN_H2] = GN_CG_IDLE, [GN_CONN_LINGER] = GN_CG_CLOSING,
    [GN_CONN_CLOSED] = GN_CG_NONE,
};

/* After a change of state or of buffer: the connection gauges follow. */
static inline void gauge_sync(gn_conn_t *c)
{
    unsigned g = gauge_of_state[c->state] + (c->state == GN_CONN_READ_HEAD && c->buf != NULL);
    if (g == c->gauge)
        return;
    atomic_int *conns = c->loop->stats->conns;
    gn_stat_gauge(&conns[c->gauge], -1); /* conns[GN_CG_NONE] counts nothing that is read */
    gn_stat_gauge(&conns[g], 1);
    c->gauge = (unsigned char)g;
}

/* Every change of state goes through here, to keep the loop's count of
 * connections with a request being answered (read by http/group.c) and its
 * connection gauges. Inline in this file, where most changes happen. */
static inline void set_state(gn_conn_t *c, enum gn_conn_state state)
{
    int was = c->state == GN_CONN_RESPOND, is = state == GN_CONN_RESPOND;
    if (was != is) {
        atomic_int *n = &c->loop->inflight; /* written by this thread only */
        atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + (is ? 1 : -1),
                              memory_order_relaxed);
    }
    c->state = state;
    gauge_sync(c);
}

void gn_conn__set_state(gn_conn_t *c, enum gn_conn_state state)
{
    set_state(c, state);
}

/* Between requests with nothing buffered: a sibling loop may take it. */
static void mark_idle(gn_conn_t *c)
{
    /* A refused connection stays: it is not in the count a sibling's would be. */
    if (c->loop->group && !c->refused)
        atomic_store_explicit(&c->claim, GN_CLAIM_IDLE, memory_order_release);
}

/*
 * Whether this loop may act on c: an idle connection is claimed back first;
 * one that a sibling took is let go (and 0 returned).
 */
static int conn_mine(gn_conn_t *c)
{
    int claim = atomic_load_explicit(&c->claim, memory_order_relaxed);
    if (claim == GN_CLAIM_OWNED)
        return 1;
    if (claim == GN_CLAIM_IDLE && atomic_compare_exchange_strong(&c->claim, &claim, GN_CLAIM_OWNED))
        return 1;
    gn_conn_let_go(c);
    return 0;
}

/* Request buffers a loop keeps for its next requests; beyond, they are freed. */
#define FREE_BUFS_MAX 32

int gn_conn__take_buf(gn_conn_t *c)
{
    gn_loop_t *loop = c->loop;
    gn_conn_buf_t *b = loop->free_bufs;
    if (b) {
        loop->free_bufs = b->next_free;
        loop->n_free_bufs--;
    } else if ((b = GN_FAIL(NULL, malloc(sizeof(*b)))) == NULL) {
        return -1;
    } else {
        b->spare = NULL;
        b->spare_cap = 0;
        memset(&b->fwd, 0, sizeof(b->fwd));
    }
    c->buf = b;
    c->headers = b->headers;
    c->outq = b->outq;
    c->rbuf = b->rbuf;
    c->rcap = sizeof(b->rbuf);
    gauge_sync(c);
    return 0;
}

static void free_buf(gn_conn_buf_t *b)
{
    free(b->spare);
    free(b);
}

/* Idle again (nothing buffered, nothing queued), or closed. */
static void give_back_buf(gn_conn_t *c)
{
    gn_conn_buf_t *b = c->buf;
    if (b == NULL)
        return;
    if (c->rbuf != b->rbuf)
        free(c->rbuf); /* a head that outgrew the buffer */
    c->buf = NULL;
    c->headers = NULL;
    c->outq = NULL;
    c->rbuf = NULL;
    c->rlen = c->rcap = 0;
    c->req.num_headers = 0;
    gauge_sync(c);
    gn_loop_t *loop = c->loop;
    if (loop->n_free_bufs >= FREE_BUFS_MAX) {
        free_buf(b);
        return;
    }
    b->next_free = loop->free_bufs;
    loop->free_bufs = b;
    loop->n_free_bufs++;
}

void gn_conn__idle_buf(gn_conn_t *c)
{
    if (c->buf && c->rlen == 0 && c->out_count == 0)
        give_back_buf(c);
}

void gn_conn__free_bufs(gn_loop_t *loop)
{
    while (loop->free_bufs) {
        gn_conn_buf_t *b = loop->free_bufs;
        loop->free_bufs = b->next_free;
        free_buf(b);
    }
    loop->n_free_bufs = 0;
}

void gn_conn_let_go(gn_conn_t *c)
{
    if (c->state == GN_CONN_CLOSED)
        return;
    /* Idle: no response, no output, no WebSocket. The descriptor is the
     * sibling's, and c->fd is not written (the sibling read it). */
    set_state(c, GN_CONN_CLOSED);
    give_back_buf(c);
    gn_body_reset(&c->body);
    gn_loop__retire(c->loop, c);
    atomic_fetch_sub(&c->loop->stolen, 1);
}

gn_conn_t *gn_conn_new(gn_loop_t *loop, int fd, const struct sockaddr *peer, socklen_t len)
{
    gn_conn_t *c = GN_FAIL(NULL, calloc(1, sizeof(*c)));
    if (c == NULL)
        return NULL;
    c->fd = fd;
    c->loop = loop;
    if (len > sizeof(c->peer))
        len = sizeof(c->peer);
    memcpy(&c->peer, peer, len);
    c->peer_len = len;
    gn_body_init(&c->body);
    /* --http 2 in the clear reads a head first: it may be Upgrade: h2c. */
    set_state(c, loop->limits->http == GN_HTTP_ONLY2 && loop->limits->tls ? GN_CONN_H2 : GN_CONN_READ_HEAD);
    /* A new client is expected to send a request: the head timer runs. */
    c->deadline = loop->now + loop->limits->header_timeout;
    gn_loop__link(loop, c);
    if (gn_loop__watch(loop, c, EPOLLIN | EPOLLRDHUP) < 0) {
        gn_loop__retire(loop, c);
        set_state(c, GN_CONN_CLOSED);
        return NULL; /* the caller closes fd */
    }
    return c;
}

static void log_peer(const gn_conn_t *c, char *buf, size_t len)
{
    int port = 0;
    gn_conn_peer(c, buf, len, &port);
}

void gn_conn_close(gn_conn_t *c)
{
    if (c->state == GN_CONN_CLOSED || !conn_mine(c))
        return;
    if (c->state == GN_CONN_RESPOND && c->bridge != NULL)
        c->loop->handler->on_abort(c, c->loop->handler->ctx);
    if (c->h2s == GN_H2_RUNNER) /* a stream run here for a sibling's connection */
        gn_h2r__closed(c);
    gn_conn__ws_free(c); /* reports a lost WebSocket to its bridge */
    set_state(c, GN_CONN_CLOSED);
    if (c->h2)
        gn_h2__free(c); /* after CLOSED: a stream's bridge may call back */
    gn_conn__out_release_all(c);
    gn_loop__watch(c->loop, c, 0);
    if (c->tls)
        gn_tls_free(c);
    close(c->fd);
    c->fd = -1;
    if (c->loop->limits->conns_total && !c->refused)
        atomic_fetch_sub_explicit(c->loop->limits->conns_total, 1, memory_order_relaxed);
    give_back_buf(c);
    gn_body_reset(&c->body);
    gn_loop__retire(c->loop, c);
}

/* ---- error answers ---------------------------------------------------- */

static const char *error_detail(int status)
{
    switch (status) {
    case 400: return "malformed or ambiguous request";
    case 408: return "request head or body not received in time";
    case 413: return "request body larger than the limit";
    case 414: return "request line longer than the limit";
    case 431: return "request header fields too many or too large";
    case 501: return "not implemented";
    case 503: return "the server holds --max-connections-total connections";
    case 505: return "HTTP version not supported";
    default: return "error";
    }
}

void gn_conn_write_simple(gn_conn_t *c, int status, const char *body, size_t len, int close)
{
    /* A HEAD only counts once its head was parsed: after a parse error the
     * method slice is not this request's. */
    int head = c->head_len > 0 && gn_conn_is_head(c);
    gn_framing_t f;
    gn_http_framing(&f, status, head, c->req.minor_version, -1, (int64_t)len,
                    !close && c->keepalive && !c->loop->stopping);
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n", status,
                     gn_http_reason(status));
    n += (int)gn_http_head_tail(buf + n, sizeof(buf) - (size_t)n, &f, 1, 1, c->req.minor_version);
    if (f.close)
        c->keepalive = 0;
    gn_conn_write(c, buf, (size_t)n);
    if (!f.no_body)
        gn_conn_write(c, body, len);
    c->status = status;
    c->sent_body = f.no_body ? 0 : len;
}

/* Answer an error before any response started, then close; why: what the
 * log says (the status's usual reason when NULL). */
static void send_error_why(gn_conn_t *c, int status, const char *why)
{
    char host[64], body[64];
    log_peer(c, host, sizeof(host));
    gn_log(GN_LOG_INFO, "%d %s from %s: %s", status, gn_http_reason(status), host,
           why ? why : error_detail(status));
    int n = snprintf(body, sizeof(body), "%s\n", gn_http_reason(status));
    gn_conn_write_simple(c, status, body, (size_t)n, 1);
    set_state(c, GN_CONN_DRAIN);
}

static void send_error(gn_conn_t *c, int status)
{
    send_error_why(c, status, NULL);
}

/* ---- reading ---------------------------------------------------------- */

static size_t max_fields(const gn_conn_t *c)
{
    size_t n = c->loop->limits->max_fields;
    return n < GN_MAX_HEADERS_CAP ? n : GN_MAX_HEADERS_CAP;
}

static int grow_rbuf(gn_conn_t *c)
{
    int inline_buf = c->rbuf == c->buf->rbuf;
    char *p = GN_FAIL(NULL, inline_buf ? malloc(c->rcap * 2) : realloc(c->rbuf, c->rcap * 2));
    if (p == NULL)
        return -1;
    if (inline_buf)
        memcpy(p, c->rbuf, c->rlen);
    c->rbuf = p;
    c->rcap *= 2;
    /* The request's slices pointed into the old buffer: parse it again. */
    if (c->head_len > 0)
        gn_parse_request(c->rbuf, c->head_len, 0, &c->req, c->headers, max_fields(c));
    return 0;
}

ssize_t gn_conn__read_more(gn_conn_t *c);

/* The connection cannot go on without memory for what: said once, then
 * the caller closes it (-1). */
static ssize_t out_of_memory(gn_conn_t *c, const char *what)
{
    char host[64];
    log_peer(c, host, sizeof(host));
    gn_log(GN_LOG_ERROR, "worker %d: out of memory for %s from %s: connection closed", c->loop->worker_id, what,
           host);
    return -1;
}

/* Returns >0 bytes read, 0 for "would block", -1 for EOF or error. */
static ssize_t read_more(gn_conn_t *c)
{
    if (c->buf == NULL && gn_conn__take_buf(c) < 0)
        return out_of_memory(c, "a request buffer");
    if (c->rlen == c->rcap && grow_rbuf(c) < 0)
        return out_of_memory(c, "a request head");
    if (c->tls) {
        if (c->proxy_wait)
            return gn_conn__proxy_read(c);
        ssize_t n = gn_tls_read(c, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n > 0)
            c->rlen += (size_t)n;
        if (n == -2) { /* plain HTTP answered in the clear: drain, then close */
            begin_linger(c);
            return 0;
        }
        return n;
    }
    for (;;) {
        ssize_t n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n > 0) {
            c->rlen += (size_t)n;
            gn_stat_add(&c->loop->stats->bytes_in, (unsigned long long)n);
            return n;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        return -1;
    }
}

const gn_header_t *gn_conn_header(const gn_conn_t *c, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < c->req.num_headers; i++) {
        const gn_header_t *h = &c->headers[i];
        if (h->name.len == n && strncasecmp(h->name.base, name, n) == 0)
            return h;
    }
    return NULL;
}

/* Limits that the parser leaves to us: request line and field sizes. */
static int check_head_limits(gn_conn_t *c, int complete)
{
    const gn_limits_t *lim = c->loop->limits;
    size_t scan = c->rlen < lim->max_request_line + 2 ? c->rlen : lim->max_request_line + 2;
    const char *nl = memchr(c->rbuf, '\n', scan);
    if (nl == NULL && c->rlen > lim->max_request_line + 1)
        return 414;
    if (!complete)
        return c->rlen > lim->max_head_size ? 431 : 0;
    if (c->head_len > lim->max_head_size)
        return 431;
    for (size_t i = 0; i < c->req.num_headers; i++) {
        const gn_header_t *h = &c->headers[i];
        if (h->name.len + h->value.len + 4 > lim->max_field_size)
            return 431;
    }
    return 0;
}

static void start_body(gn_conn_t *c)
{
    const gn_limits_t *lim = c->loop->limits;
    gn_body_reset(&c->body);
    c->continue_sent = 0;
    if (c->req.flags & GN_REQ_CHUNKED) {
        gn_chunked_init(&c->chunked);
        c->body_expected = UINT64_MAX;
    } else {
        c->body_expected = c->req.content_length > 0 ? (uint64_t)c->req.content_length : 0;
    }
    if (lim->max_body && c->body_expected != UINT64_MAX && c->body_expected > lim->max_body) {
        send_error(c, 413);
        return;
    }
    c->body_seen = 0;
    c->body_complete = c->body_expected == 0;
    c->want_body = 0;
    if (c->loop->handler->on_body != NULL) {
        /* Streaming: the application starts now and pulls the body. */
        c->streaming = 1;
        dispatch(c);
        return;
    }
    set_state(c, GN_CONN_READ_BODY);
    c->deadline = c->loop->now + lim->io_timeout;
}

/*
 * --http 2 and Upgrade: h2c on a request with a body: RFC 7540 3.2 would
 * have the whole body read before the switch, and HTTP/1.1 is not served
 * here. 426 (RFC 9110 15.5.22) names the protocol to use; the body says
 * how, and the connection closes.
 */
static void refuse_upgrade_with_body(gn_conn_t *c)
{
    static const char body[] = "This server speaks HTTP/2 only: send the request over HTTP/2 (prior knowledge), "
                               "or upgrade with a request that has no body.\n";
    char host[64], head[512];
    log_peer(c, host, sizeof(host));
    gn_log(GN_LOG_INFO, "426 Upgrade Required from %s: Upgrade: h2c on a request with a body (--http 2 serves "
           "no HTTP/1.1)", host);
    size_t dlen;
    const char *ds = gn_http_date_server(1, &dlen);
    int is_head = gn_conn_is_head(c);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 426 Upgrade Required\r\nUpgrade: h2c\r\nConnection: Upgrade, close\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n%.*s\r\n",
                     sizeof(body) - 1, (int)dlen, ds);
    gn_conn_write(c, head, (size_t)n);
    if (!is_head)
        gn_conn_write(c, body, sizeof(body) - 1);
    c->keepalive = 0;
    c->status = 426;
    c->sent_body = is_head ? 0 : sizeof(body) - 1;
    set_state(c, GN_CONN_DRAIN);
}

/* Upgrade: h2c, or with --http 2 anything but it: 1 when the connection
 * is HTTP/2's now (or answered), 0 to serve the request over HTTP/1.1. */
static int to_h2(gn_conn_t *c)
{
    int r = (c->req.flags & GN_REQ_CONN_UPGRADE) ? gn_h2__upgrade(c) : 0;
    if (r == 426) {
        refuse_upgrade_with_body(c);
        return 1;
    }
    if (r > 1) {
        send_error_why(c, r, r == 503 ? "out of memory for an HTTP/2 session" : NULL);
        return 1;
    }
    if (r == 1) {
        /* What follows the head (the client's preface) is HTTP/2's. */
        memmove(c->rbuf, c->rbuf + c->head_len, c->rlen - c->head_len);
        c->rlen -= c->head_len;
        c->head_len = c->parsed_len = 0;
    }
    if (r == 1 || c->loop->limits->http == GN_HTTP_ONLY2) {
        set_state(c, GN_CONN_H2); /* not a preface: nghttp2 answers GOAWAY */
        return 1;
    }
    return 0;
}

static void head_complete(gn_conn_t *c, int parsed)
{
    c->head_len = (size_t)parsed;
    int err = check_head_limits(c, 1);
    if (err || c->refused) {
        send_error(c, err ? err : 503);
        return;
    }
    if (to_h2(c))
        return;
    int v11 = c->req.minor_version == 1;
    unsigned f = c->req.flags;
    c->keepalive = v11 ? !(f & GN_REQ_CONN_CLOSE) : (f & GN_REQ_CONN_KEEPALIVE) && !(f & GN_REQ_CONN_CLOSE);
    c->status = 0;
    c->sent_body = 0;
    c->buf->started = c->loop->now;
    start_body(c);
}

static void try_parse_head(gn_conn_t *c)
{
    int r = gn_parse_request(c->rbuf, c->rlen, c->parsed_len, &c->req, c->headers, max_fields(c));
    if (r > 0) {
        head_complete(c, r);
        return;
    }
    if (r != GN_PARSE_INCOMPLETE) {
        /* Not HTTP/1.1: the HTTP/2 preface, on a connection's first bytes? */
        int h2 = c->requests == 0 && c->loop->limits->http != GN_HTTP_ONLY1 ? gn_h2_preface(c->rbuf, c->rlen) : -1;
        if (h2 == 0)
            return; /* a part of it: wait for the rest */
        if (h2 > 0 || c->loop->limits->http == GN_HTTP_ONLY2) {
            set_state(c, GN_CONN_H2);
            return;
        }
        send_error(c, -r);
        return;
    }
    c->parsed_len = c->rlen;
    int err = check_head_limits(c, 0);
    if (err)
        send_error(c, err);
}

/* Move body bytes that follow the head in rbuf into the body store. */
static int consume_body(gn_conn_t *c)
{
    char *p = c->rbuf + c->head_len;
    size_t avail = c->rlen - c->head_len;
    size_t used = 0;
    const gn_limits_t *lim = c->loop->limits;
    if (c->req.flags & GN_REQ_CHUNKED) {
        while (used < avail && !c->chunked.done) {
            gn_slice_t data;
            ssize_t n = gn_chunked_step(&c->chunked, p + used, avail - used, &data);
            if (n < 0)
                return 400;
            if (lim->max_body && c->body.len + data.len > lim->max_body)
                return 413;
            if (gn_body_append(&c->body, data.base, data.len) < 0)
                return 503;
            used += (size_t)n;
        }
    } else {
        size_t want = (size_t)(c->body_expected - c->body.len);
        used = avail < want ? avail : want;
        if (gn_body_append(&c->body, p, used) < 0)
            return 503;
    }
    memmove(p, p + used, avail - used);
    c->rlen -= used;
    return 0;
}

static int body_done(const gn_conn_t *c)
{
    if (c->req.flags & GN_REQ_CHUNKED)
        return c->chunked.done;
    return c->body.len == c->body_expected;
}

static void maybe_send_continue(gn_conn_t *c)
{
    if (c->continue_sent || !(c->req.flags & GN_REQ_EXPECT_CONTINUE) || c->req.minor_version == 0)
        return;
    static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
    c->continue_sent = 1;
    gn_conn_write(c, msg, sizeof(msg) - 1);
    gn_conn_flush(c);
}

static void dispatch(gn_conn_t *c)
{
    if (c->loop->limits->proxy_headers)
        gn_forwarded_apply(c);
    set_state(c, GN_CONN_RESPOND);
    c->deadline = 0;
    c->loop->handler->on_request(c, c->loop->handler->ctx);
    c->loop->now = gn_now(); /* the app may have run long: deadlines count from now */
}

/* Reads and handles the body; returns 1 to go on, 0 to wait for input. */
static int step_body(gn_conn_t *c)
{
    int err = consume_body(c);
    if (err) {
        send_error_why(c, err, err == 503 ? "cannot store the request body (out of memory or disk space)" : NULL);
        return 1;
    }
    if (body_done(c)) {
        dispatch(c);
        return 1;
    }
    maybe_send_continue(c);
    ssize_t n = read_more(c);
    if (n < 0) {
        gn_conn_close(c);
        return 0;
    }
    if (n > 0) {
        c->deadline = c->loop->now + c->loop->limits->io_timeout;
        return 1;
    }
    gn_loop__watch(c->loop, c, EPOLLIN | EPOLLRDHUP);
    return 0;
}

static int step_head(gn_conn_t *c)
{
    /* Decrypted bytes waiting inside the SSL raise no epoll event. */
    if (c->yield && c->tls && gn_tls_pending(c))
        c->yield = 0;
    if (c->yield) {
        c->yield = 0;
        c->redrive = 0; /* the next round starts from epoll */
        gn_loop__watch(c->loop, c, EPOLLIN | EPOLLRDHUP);
        /* Nothing read yet: still free to move. Last, for from here on a
         * sibling may take it, descriptor and all. */
        mark_idle(c);
        return 0;
    }
    if (c->rlen > 0 && c->proxy_wait && gn_conn__proxy_header(c) < 0)
        return 0;
    if (c->rlen > 0 && !c->proxy_wait) {
        try_parse_head(c);
        if (c->state != GN_CONN_READ_HEAD)
            return 1;
    }
    size_t before = c->rlen;
    ssize_t n = read_more(c);
    if (n < 0) {
        gn_conn_close(c);
        return 0;
    }
    if (n == 0 && c->loop->stopping && c->rlen == 0 && c->requests > 0) {
        /* Stopping, and idle between requests: end it now. A request that
         * crosses our FIN then meets end-of-stream, never a reset. A new
         * connection instead is owed the answer to its first request. */
        begin_linger(c);
        return 0;
    }
    if (n == 0) {
        gn_loop__watch(c->loop, c, EPOLLIN | EPOLLRDHUP);
        /* Between requests with nothing read (a connection just taken from
         * a sibling, or woken for nothing): free to move again. */
        if (c->rlen == 0 && c->requests > 0)
            mark_idle(c);
        return 0;
    }
    if (before == 0) /* the first byte of a request starts the head timer */
        c->deadline = c->loop->now + c->loop->limits->header_timeout;
    return 1;
}

/* ---- after a response ------------------------------------------------- */

static void begin_linger(gn_conn_t *c)
{
    /* Closing with unread input makes the kernel send RST, which can destroy
     * the response still in flight; shut down writing and drain first. */
    if (c->tls)
        gn_tls_close_notify(c);
    shutdown(c->fd, SHUT_WR);
    set_state(c, GN_CONN_LINGER);
    c->deadline = c->loop->now + LINGER_SECONDS;
    gn_loop__watch(c->loop, c, EPOLLIN | EPOLLRDHUP);
}

static void next_request(gn_conn_t *c)
{
    if (c->status > 0 && c->loop->limits->access_log)
        gn_conn__access_log(c);
    /* A request refused before its head was whole has no method of its
     * own (the slice is not this request's) and took no time to answer. */
    int parsed = c->head_len > 0;
    gn_stat_request(c->loop->stats, parsed ? gn_stat_method(c->req.method.base, c->req.method.len) : GN_M_OTHER,
                    c->status, parsed ? c->loop->now - c->buf->started : 0);
    c->loop->served++;
    c->requests++;
    /* A streamed body the application did not read leaves the connection
     * mid-request: it cannot carry another one. */
    if (c->streaming && !c->body_complete)
        c->keepalive = 0;
    c->streaming = c->want_body = c->watch_hangup = c->out_blocked = 0;
    if (!c->keepalive || c->loop->stopping) {
        begin_linger(c);
        return;
    }
    /* Pipelined bytes after this request move to the front. */
    memmove(c->rbuf, c->rbuf + c->head_len, c->rlen - c->head_len);
    c->rlen -= c->head_len;
    c->head_len = c->parsed_len = 0;
    gn_body_reset(&c->body);
    set_state(c, GN_CONN_READ_HEAD);
    c->deadline = c->loop->now + (c->rlen ? c->loop->limits->header_timeout
                                          : c->loop->limits->keepalive_timeout);
    if (c->rlen == 0) {
        give_back_buf(c); /* idle: it holds no buffer while it waits */
        /* Fairness: the client's next request waits for the next epoll round
         * with everyone else's, rather than being read here at once (a fast
         * client would otherwise be served many times in a row while other
         * connections wait). This also saves the read that mostly finds
         * nothing yet. Pipelined bytes already here are answered at once. */
        c->yield = 1; /* step_head, next, marks it idle */
    }
}

/* Flush; returns 1 when all output is sent, 0 to wait, -1 after closing. */
static int flush_or_wait(gn_conn_t *c)
{
    if (gn_conn_flush(c) < 0) {
        gn_conn_close(c);
        return -1;
    }
    if (c->out_count == 0)
        return 1;
    if (!(c->events & EPOLLOUT))
        c->deadline = c->loop->now + c->loop->limits->io_timeout;
    gn_loop__watch(c->loop, c, EPOLLOUT);
    return 0;
}

/* Hands the body bytes in rbuf to the bridge (streaming mode). */
static int deliver_body(gn_conn_t *c)
{
    const gn_handler_t *h = c->loop->handler;
    char *p = c->rbuf + c->head_len;
    size_t avail = c->rlen - c->head_len, used = 0;
    uint64_t max = c->loop->limits->max_body;
    int delivered = 0;
    while (used < avail && !c->body_complete) {
        gn_slice_t data = {p + used, 0};
        if (c->req.flags & GN_REQ_CHUNKED) {
            ssize_t n = gn_chunked_step(&c->chunked, p + used, avail - used, &data);
            if (n < 0)
                return -400;
            used += (size_t)n;
            c->body_complete = c->chunked.done;
        } else {
            uint64_t want = c->body_expected - c->body_seen;
            data.len = avail - used < want ? avail - used : (size_t)want;
            used += data.len;
            c->body_complete = c->body_seen + data.len == c->body_expected;
        }
        c->body_seen += data.len;
        if (max && c->body_seen > max)
            return -413;
        if (data.len > 0 || c->body_complete) {
            h->on_body(c, data.base, data.len, c->body_complete, h->ctx);
            delivered = 1;
        }
    }
    memmove(p, p + used, avail - used);
    c->rlen -= used;
    return delivered;
}

/* Streaming mode: deliver what is buffered, else read. 1 = go on, 0 = wait. */
static int step_stream_body(gn_conn_t *c)
{
    if (c->body_complete) {
        /* An empty body: one final, empty delivery. */
        c->want_body = 0;
        c->loop->handler->on_body(c, "", 0, 1, c->loop->handler->ctx);
        return 1;
    }
    maybe_send_continue(c);
    int r = deliver_body(c);
    if (r < 0 && c->status == 0 && c->bridge != NULL) {
        /* No response started yet: answer it (413 or 400, then close), as
         * the buffered path does; the application hears a disconnect. */
        c->loop->handler->on_abort(c, c->loop->handler->ctx);
        send_error(c, -r);
        return 1;
    }
    if (r < 0) {
        char host[64];
        log_peer(c, host, sizeof(host));
        gn_log(GN_LOG_INFO, "%d from %s while streaming a body: %s", -r, host, error_detail(-r));
        gn_conn_close(c);
        return 0;
    }
    if (r > 0) {
        c->want_body = 0; /* one delivery per request for more: backpressure */
        return 1;
    }
    ssize_t n = read_more(c);
    if (n < 0) {
        gn_conn_close(c);
        return 0;
    }
    if (n > 0)
        c->deadline = c->loop->now + c->loop->limits->io_timeout;
    return n > 0;
}

static uint32_t respond_events(const gn_conn_t *c)
{
    uint32_t ev = 0;
    if (c->out_count > 0)
        ev |= EPOLLOUT;
    if (c->want_body && !c->body_complete)
        ev |= EPOLLIN | EPOLLRDHUP;
    if (c->watch_hangup)
        ev |= EPOLLRDHUP;
    return ev;
}

static int step_respond(gn_conn_t *c)
{
    if (gn_conn_flush(c) < 0) {
        gn_conn_close(c);
        return 0;
    }
    if (c->want_body && step_stream_body(c))
        return 1;
    if (c->state != GN_CONN_RESPOND)
        return c->state != GN_CONN_CLOSED;
    if (c->out_count > 0) {
        if (!(c->events & EPOLLOUT))
            c->deadline = c->loop->now + c->loop->limits->io_timeout;
        c->out_blocked = 1;
        gn_loop__watch(c->loop, c, respond_events(c));
        return 0;
    }
    if (c->streaming) /* WSGI keeps its registration: no epoll_ctl per request */
        gn_loop__watch(c->loop, c, respond_events(c));
    if (c->want_body)
        c->deadline = c->loop->now + c->loop->limits->io_timeout;
    else
        c->deadline = 0;
    /* WSGI produces whenever there is room; a streaming bridge writes on its
     * own and only wants to hear when a blocked queue drained. */
    if (c->streaming && !c->out_blocked)
        return 0;
    c->out_blocked = 0;
    c->loop->handler->on_writable(c, c->loop->handler->ctx);
    c->loop->now = gn_now();
    return !c->streaming;
}

static int step_linger(gn_conn_t *c)
{
    char sink[4096];
    for (;;) {
        ssize_t n = read(c->fd, sink, sizeof(sink));
        if (n > 0)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        gn_conn_close(c);
        return 0;
    }
}

static void drive(gn_conn_t *c)
{
    if (c->driving) {
        c->redrive = 1; /* the outer drive() goes round once more */
        return;
    }
    c->driving = 1;
    int go = 1;
    while (go || c->redrive) {
        /* A step sees what a drive() asked for before it: one asked for
         * during this step takes another. */
        c->redrive = 0;
        switch (c->state) {
        case GN_CONN_READ_HEAD: go = step_head(c); break;
        case GN_CONN_READ_BODY: go = step_body(c); break;
        case GN_CONN_RESPOND: go = step_respond(c); break;
        case GN_CONN_DRAIN:
            go = flush_or_wait(c) > 0;
            if (go)
                next_request(c);
            break;
        case GN_CONN_WEBSOCKET: go = gn_conn__ws_step(c); break;
        case GN_CONN_H2: go = gn_h2__step(c); break;
        case GN_CONN_LINGER: go = step_linger(c); break;
        case GN_CONN_CLOSED: go = 0; c->redrive = 0; break;
        }
    }
    c->driving = 0;
}

void gn_conn_on_event(gn_conn_t *c, uint32_t events)
{
    if (c->state == GN_CONN_CLOSED || !conn_mine(c))
        return;
    if ((events & EPOLLERR) || ((events & EPOLLHUP) && !(events & EPOLLIN))) {
        gn_conn_close(c);
        return;
    }
    /* A streaming response whose client went away: tell the bridge now,
     * not when the application next writes. */
    if (c->state == GN_CONN_RESPOND && c->watch_hangup && (events & (EPOLLRDHUP | EPOLLHUP)) &&
        !(c->want_body && !c->body_complete)) {
        gn_conn_close(c);
        return;
    }
    drive(c);
}

static int input_waiting(const gn_conn_t *c)
{
    char b;
    return recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1 || gn_tls_pending(c);
}

void gn_conn_on_timeout(gn_conn_t *c)
{
    if (c->state == GN_CONN_CLOSED || !conn_mine(c))
        return;
    if (c->state == GN_CONN_WEBSOCKET) {
        gn_conn__ws_timeout(c);
        return;
    }
    if (c->state == GN_CONN_H2) {
        gn_h2__timeout(c);
        return;
    }
    if (c->proxy_wait) {
        gn_conn__proxy_timeout(c);
        return;
    }
    if (c->tls && !c->tls_ready && c->state == GN_CONN_READ_HEAD) {
        /* A TLS handshake not finished in the header timeout: a slow or
         * stalled client, dropped like one that sends half a head. */
        char host[64];
        log_peer(c, host, sizeof(host));
        gn_log(GN_LOG_DEBUG, "TLS handshake with %s not done within the header timeout: closing", host);
        gn_conn_close(c);
        return;
    }
    int partial = c->state == GN_CONN_READ_BODY || (c->state == GN_CONN_READ_HEAD && c->rlen > 0);
    if (!partial && c->state == GN_CONN_READ_HEAD && input_waiting(c)) {
        /* The request came in time; this loop was held up in application
         * code and is late to it. Closing now would reset it. */
        c->deadline = c->loop->now + c->loop->limits->header_timeout;
        drive(c);
        return;
    }
    if (!partial) {
        gn_conn_close(c); /* idle keep-alive, a stalled reader, or lingering */
        return;
    }
    send_error(c, 408);
    drive(c);
}

/* A connection that has not sent its first request yet is not reusable:
 * its client may be sending it right now, and would not retry. */
int gn_conn_reusable(const gn_conn_t *c)
{
    return c->state == GN_CONN_READ_HEAD && c->requests > 0 && c->buf == NULL && !c->proxy_wait &&
           atomic_load_explicit(&c->claim, memory_order_relaxed) != GN_CLAIM_MOVED;
}

void gn_conn_end_idle(gn_conn_t *c)
{
    if (c->state == GN_CONN_CLOSED || !conn_mine(c))
        return;
    if (input_waiting(c)) {
        c->yield = 0;
        drive(c);
        return;
    }
    gn_conn_close(c);
}

void gn_conn_shutdown(gn_conn_t *c)
{
    if (c->state == GN_CONN_CLOSED || !conn_mine(c))
        return;
    if (c->state == GN_CONN_WEBSOCKET) {
        gn_conn__ws_shutdown(c);
        return;
    }
    if (c->state == GN_CONN_H2) {
        drive(c); /* GOAWAY; the streams begun are finished */
        return;
    }
    c->keepalive = 0;
    if (c->state == GN_CONN_READ_HEAD && c->rlen == 0) {
        c->yield = 0;
        drive(c); /* reads what already came, else ends an idle one */
    }
}

/* ---- for the bridge --------------------------------------------------- */

int gn_conn_is_head(const gn_conn_t *c)
{
    return c->req.method.len == 4 && memcmp(c->req.method.base, "HEAD", 4) == 0;
}

int gn_conn_stopping(const gn_conn_t *c)
{
    return c->loop->stopping;
}

void gn_conn_want_body(gn_conn_t *c)
{
    c->want_body = 1;
    if (c->h2s)
        gn_h2__kick(c);
    else
        drive(c);
}

void gn_conn_want_writable(gn_conn_t *c)
{
    c->out_blocked = 1; /* on_writable once the queue has drained */
    if (c->h2s)
        gn_h2__kick(c);
    else
        drive(c);
}

void gn_conn__linger(gn_conn_t *c)
{
    begin_linger(c);
}

void gn_conn_watch_hangup(gn_conn_t *c)
{
    c->watch_hangup = 1;
}

void gn_conn_resume(gn_conn_t *c)
{
    if (c->h2s)
        gn_h2__kick(c);
    else
        drive(c);
}

void gn_conn_response_done(gn_conn_t *c)
{
    if (c->h2s) {
        gn_h2__done(c, 0);
        return;
    }
    c->bridge = NULL;
    set_state(c, GN_CONN_DRAIN);
}

void gn_conn_response_abort(gn_conn_t *c)
{
    if (c->h2s) {
        gn_h2__done(c, 1);
        return;
    }
    c->bridge = NULL;
    c->keepalive = 0;
    set_state(c, GN_CONN_DRAIN);
}

/* As inet_ntop(AF_INET), which formats through sprintf: this runs for
 * every request (REMOTE_ADDR, the access log). */
static void ipv4_text(const struct in_addr *in, char *host, size_t hostlen)
{
    const unsigned char *b = (const unsigned char *)&in->s_addr;
    char text[16];
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        if (i)
            text[n++] = '.';
        n += gn_fmt_u64(text + n, b[i]);
    }
    if (hostlen == 0)
        return;
    if (n >= hostlen)
        n = hostlen - 1;
    memcpy(host, text, n);
    host[n] = '\0';
}

static void addr_text(const gn_addr_t *ss, char *host, size_t hostlen, int *port)
{
    *port = 0;
    if (ss->sa.sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        ipv4_text(&a->sin_addr, host, hostlen);
        *port = ntohs(a->sin_port);
    } else if (ss->sa.sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, (socklen_t)hostlen);
        *port = ntohs(a->sin6_port);
    } else {
        snprintf(host, hostlen, "%s", ss->sa.sa_family == AF_UNIX ? "unix" : "");
    }
}

void gn_conn_peer(const gn_conn_t *c, char *host, size_t hostlen, int *port)
{
    if (c->buf && c->buf->fwd.has_client) {
        addr_text(&c->buf->fwd.client, host, hostlen, port);
        *port = c->buf->fwd.client_port;
        return;
    }
    addr_text(&c->peer, host, hostlen, port);
}

int gn_conn_https(const gn_conn_t *c)
{
    return c->tls != NULL || (c->buf && c->buf->fwd.https);
}

int gn_conn_forwarded_port(const gn_conn_t *c)
{
    if (c->buf == NULL || c->buf->fwd.port.len == 0 || c->buf->fwd.port.len > 5)
        return 0;
    int n = 0;
    for (size_t i = 0; i < c->buf->fwd.port.len; i++) {
        char ch = c->buf->fwd.port.base[i];
        if (ch < '0' || ch > '9')
            return 0;
        n = n * 10 + (ch - '0');
    }
    return n <= 65535 ? n : 0;
}

void gn_conn_local(gn_conn_t *c, char *host, size_t hostlen, int *port)
{
    /* One getsockname per connection, not per request (ASGI asks each time). */
    if (!c->local_known) {
        socklen_t len = sizeof(c->local);
        memset(&c->local, 0, sizeof(c->local));
        if (getsockname(c->fd, (struct sockaddr *)&c->local, &len) < 0)
            c->local.sa.sa_family = AF_UNSPEC;
        c->local_known = 1;
    }
    addr_text(&c->local, host, hostlen, port);
}

static gn_slice_t header_value(const gn_conn_t *c, const char *name)
{
    const gn_header_t *h = gn_conn_header(c, name);
    return h ? h->value : (gn_slice_t){"-", 1};
}

/* Combined log format, like nginx's and gunicorn's default. */
void gn_conn__access_log(gn_conn_t *c)
{
    char host[64], when[64], line[4096];
    log_peer(c, host, sizeof(host));
    gn_http_log_time(when, sizeof(when));
    gn_slice_t ref = header_value(c, "referer"), ua = header_value(c, "user-agent");
    int n = snprintf(line, sizeof(line), "%s - - [%s] \"%.*s %.*s HTTP/%s\" %d %llu \"%.*s\" \"%.*s\"\n",
                     host, when, (int)c->req.method.len, c->req.method.base,
                     (int)(c->req.target.len > 2000 ? 2000 : c->req.target.len), c->req.target.base,
                     c->req.minor_version == GN_HTTP2_VERSION ? "2.0" : c->req.minor_version ? "1.1" : "1.0", c->status, (unsigned long long)c->sent_body,
                     (int)(ref.len > 500 ? 500 : ref.len), ref.base, (int)(ua.len > 500 ? 500 : ua.len),
                     ua.base);
    if (n > 0)
        gn_log_access(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

ssize_t gn_conn__read_more(gn_conn_t *c)
{
    return read_more(c);
}
