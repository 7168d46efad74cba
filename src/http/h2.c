/*
 * HTTP/2 connections and streams over nghttp2 (see h2.h for the shape).
 *
 * Everything runs on the connection's loop. nghttp2's callbacks only record
 * what happened (a head, body bytes, a stream's end); the bridges are
 * called afterwards, from serve(), never from inside nghttp2, because a
 * bridge may queue output and nghttp2 must not be asked to send while it
 * is reading. A stream ready to start goes to a sibling loop that runs
 * fewer requests (spread, http/h2_remote.h); the others are served on the
 * connection's loop: WSGI runs one stream's application at a time, ASGI
 * runs them as concurrent tasks.
 */
#include "http/h2.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>

#include "http/conn.h"
#include "http/fault.h"
#include "http/forwarded.h"
#include "http/h2_remote.h"
#include "http/loop.h"
#include "http/response.h"
#include "http/stats.h"
#include "http/tls.h"
#include "server/log.h"

ssize_t gn_conn__read_more(gn_conn_t *c);
ssize_t gn_conn__gather(gn_conn_t *c, char *dst, size_t n);
void gn_conn__advance(gn_conn_t *c, size_t n);
void gn_conn__out_release_all(gn_conn_t *c);
void gn_conn__access_log(gn_conn_t *c);

#define MAX_STREAMS 100      /* SETTINGS_MAX_CONCURRENT_STREAMS */
#define HEAD_MAX 65536       /* a response head the bridge wrote, at most */
#define RESET_BURST 1000     /* rapid reset (CVE-2023-44487): RST_STREAMs in a burst */
#define RESET_RATE 33        /* ... and per second after it */
#define MAX_CONTINUATIONS 8  /* CONTINUATION flood (2024): frames per header block */

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

typedef struct gn_h2_stream {
    gn_conn_t conn; /* what the bridge sees; first, so the two convert */
    gn_conn_t *parent;
    struct gn_h2_stream *prev, *next;
    int32_t id;
    /* The request's head: its bytes in conn.rbuf (conn.rlen of them), the
     * regular fields in conn.buf->headers[1..n_fields] (slot 0 is for a
     * Host made from :authority), the pseudo-fields here. */
    gn_slice_t method, path, authority;
    unsigned n_fields;
    char *cookie;   /* cookie fields joined with "; " (RFC 9113 8.2.3) */
    size_t cookie_len, cookie_cap;
    size_t list_size;   /* header list size as SETTINGS counts it */
    char *pend;         /* streamed body bytes the bridge has not taken */
    size_t pend_len, pend_cap;
    uint64_t body_seen;
    int64_t length;     /* content-length, or -1 */
    uint64_t data_seen; /* DATA bytes received, against length */
    int error;          /* a status to answer instead of the application */
    double stalled_at;  /* output waits for a window the client keeps shut, since */
    char *trl;          /* response trailers: "name\0value\0" each */
    size_t trl_len, trl_cap;
    unsigned n_trl;
    const gn_handler_t *hd; /* who answers: the loop's bridge, or a sibling's (h2_remote.h) */
    unsigned head_ready : 1, remote_done : 1, dispatched : 1, submitted : 1, done : 1, aborted : 1,
        deferred : 1, closed : 1, local_done : 1, reset_sent : 1, has_host : 1, too_big : 1, body_done : 1,
        many : 1, regular : 1, connect : 1, malformed : 1, pseudo : 4;
} gn_h2_stream_t;

typedef struct gn_h2 {
    nghttp2_session *s;
    gn_h2_stream_t *streams;
    gn_h2_stream_t *heading; /* the stream whose header block is being read */
    unsigned n_streams;
    int goaway;  /* GOAWAY submitted (stopping) */
    int failed;  /* a connection error: send what is queued, then close */
    int moved;   /* a stream's queue got room this round */
    double stalled_at; /* output waits for the connection's window, since */
    long long drained_in; /* the loop's round (polled_us) whose read emptied the socket */
    unsigned malformed; /* streams reset as malformed: the first is logged at info */
} gn_h2_t;

int gn_h2_preface(const char *p, size_t n)
{
    size_t k = n < sizeof(PREFACE) - 1 ? n : sizeof(PREFACE) - 1;
    if (memcmp(p, PREFACE, k) != 0)
        return -1;
    return k == sizeof(PREFACE) - 1 ? 1 : 0;
}

static gn_h2_stream_t *stream_of(gn_conn_t *sc)
{
    return (gn_h2_stream_t *)sc;
}

static int streaming(const gn_conn_t *c)
{
    return c->loop->handler->on_body != NULL;
}

static int append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (n == 0)
        return 0; /* an empty value: *buf may still be NULL */
    if (*len + n > *cap) {
        size_t want = *cap ? *cap : 256;
        while (want < *len + n)
            want *= 2;
        char *b = GN_FAIL(NULL, realloc(*buf, want));
        if (b == NULL)
            return -1;
        *buf = b;
        *cap = want;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return 0;
}

/* s points into from[0..len): the same bytes copied to `to`. */
static void move_slice(gn_slice_t *s, const char *from, size_t len, const char *to)
{
    uintptr_t b = (uintptr_t)s->base, f = (uintptr_t)from;
    if (s->base != NULL && b >= f && b <= f + len)
        s->base = to + (b - f);
}

/* ---- nghttp2's callbacks: record, never call a bridge ----------------- */

/* A new stream's record (a spare one of the loop's when it has one),
 * linked into the connection's list, with a request buffer for its head. */
static gn_h2_stream_t *stream_new(gn_conn_t *c, int32_t id)
{
    gn_loop_t *loop = c->loop;
    gn_h2_stream_t *st = loop->h2_spare;
    if (st) {
        loop->h2_spare = st->next;
        loop->n_h2_spare--;
        memset(st, 0, sizeof(*st));
    } else if ((st = GN_FAIL(NULL, calloc(1, sizeof(*st)))) == NULL) {
        return NULL;
    }
    gn_conn_t *sc = &st->conn;
    sc->fd = c->fd; /* for getsockname only: a stream never reads or writes it */
    sc->loop = loop;
    sc->peer = c->peer;
    sc->peer_len = c->peer_len;
    sc->peer_trust = c->peer_trust;
    sc->tls = c->tls; /* read for the scheme and the TLS details, never freed here */
    sc->h2s = st;
    gn_body_init(&sc->body);
    if (gn_conn__take_buf(sc) < 0)
        st->error = 503;
    st->hd = loop->handler;
    st->parent = c;
    st->id = id;
    st->length = -1;
    gn_h2_t *h = c->h2;
    st->next = h->streams;
    if (h->streams)
        h->streams->prev = st;
    h->streams = st;
    h->n_streams++;
    return st;
}

/* Spare stream records a loop keeps (a record per stream costs a malloc);
 * none under AddressSanitizer, so that a use after a stream's end is
 * still caught there. */
#if defined(__SANITIZE_ADDRESS__)
#define SPARE_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPARE_MAX 0
#endif
#endif
#ifndef SPARE_MAX
#define SPARE_MAX 64
#endif

void gn_h2__recycle(gn_loop_t *loop, gn_conn_t *sc)
{
    gn_h2_stream_t *st = stream_of(sc);
#if SPARE_MAX > 0
    if (loop->n_h2_spare < SPARE_MAX) {
        st->next = loop->h2_spare;
        loop->h2_spare = st;
        loop->n_h2_spare++;
        return;
    }
#else
    (void)loop;
#endif
    free(st);
}

void gn_h2__free_spares(gn_loop_t *loop)
{
    while (loop->h2_spare) {
        gn_h2_stream_t *st = loop->h2_spare;
        loop->h2_spare = st->next;
        free(st);
    }
    loop->n_h2_spare = 0;
}

static void move_fields(gn_header_t *f, size_t n, const char *from, size_t len, const char *to)
{
    for (size_t i = 0; i < n; i++) {
        move_slice(&f[i].name, from, len, to);
        move_slice(&f[i].value, from, len, to);
    }
}

void gn_h2__move_head(gn_request_t *req, gn_header_t *f, size_t n, const char *from, size_t len, const char *to)
{
    gn_slice_t *one[] = {&req->method, &req->target, &req->path, &req->query, &req->authority};
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++)
        move_slice(one[i], from, len, to);
    move_fields(f, n, from, len, to);
}

/* The head's bytes in a buffer of at least need bytes: a larger heap block
 * once they outgrow the request buffer's, the slices taken moved along. */
static int grow_head(gn_h2_stream_t *st, size_t need)
{
    gn_conn_t *sc = &st->conn;
    size_t cap = sc->rcap * 2;
    while (cap < need)
        cap *= 2;
    char *b = GN_FAIL(NULL, malloc(cap));
    if (b == NULL)
        return -1;
    memcpy(b, sc->rbuf, sc->rlen);
    gn_slice_t *one[] = {&st->method, &st->path, &st->authority};
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++)
        move_slice(one[i], sc->rbuf, sc->rlen, b);
    move_fields(sc->buf->headers + 1, st->n_fields, sc->rbuf, sc->rlen, b);
    if (sc->rbuf != sc->buf->rbuf)
        free(sc->rbuf);
    sc->rbuf = b;
    sc->rcap = cap;
    return 0;
}

/* Copies a[0..an), then b[0..bn), to the end of the head's bytes (at once:
 * a growth moves only the slices already recorded); where a went, or NULL
 * when out of memory. */
static const char *keep(gn_h2_stream_t *st, const char *a, size_t an, const char *b, size_t bn)
{
    gn_conn_t *sc = &st->conn;
    if (sc->rlen + an + bn > sc->rcap && grow_head(st, sc->rlen + an + bn) < 0)
        return NULL;
    char *at = sc->rbuf + sc->rlen;
    if (an)
        memcpy(at, a, an);
    if (bn)
        memcpy(at + an, b, bn);
    sc->rlen += an + bn;
    return at;
}

/* A pseudo-field's value, kept for the head (finish_head). 0, or -1 when
 * out of memory. */
static int keep_pseudo(gn_h2_stream_t *st, gn_slice_t *slot, const char *value, size_t vlen)
{
    const char *v = keep(st, value, vlen, NULL, 0);
    *slot = (gn_slice_t){v, vlen};
    return v ? 0 : -1;
}

/* A regular field, kept for the head (finish_head). 0, or -1 when out of
 * memory. */
static int keep_field(gn_h2_stream_t *st, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (nlen == 6 && memcmp(name, "cookie", 6) == 0)
        return (st->cookie_len && append(&st->cookie, &st->cookie_len, &st->cookie_cap, "; ", 2)) ||
                       append(&st->cookie, &st->cookie_len, &st->cookie_cap, value, vlen)
                   ? -1
                   : 0;
    if (nlen == 4 && strncasecmp(name, "host", 4) == 0)
        st->has_host = 1;
    /* Slot 0 is Host's, and one more is kept for the cookies. */
    if (st->n_fields + 2 >= GN_MAX_HEADERS_CAP) {
        st->many = 1;
        return 0;
    }
    const char *n = keep(st, name, nlen, value, vlen);
    if (n == NULL)
        return -1;
    st->conn.buf->headers[++st->n_fields] = (gn_header_t){{n, nlen}, {n + nlen, vlen}};
    return 0;
}

/*
 * RFC 9113 8.2 and 8.3, checked here rather than by nghttp2 (whose HTTP
 * checks are off: the rest of them repeat gn_parse_fields'). A request
 * that breaks one is malformed: its stream is reset with PROTOCOL_ERROR at
 * the end of its header block (8.1.1). Field names and values with bytes
 * a field may not hold are gn_parse_fields' to answer (400).
 */
enum { P_METHOD = 1, P_PATH = 2, P_SCHEME = 4, P_AUTHORITY = 8 };

static int ows(char c)
{
    return c == ' ' || c == '\t';
}

static int blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!ows(p[i]))
            return 0;
    return 1;
}

/* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 3.1) */
static int scheme_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)(p[i] | 0x20);
        if (!((c >= 'a' && c <= 'z') || (i > 0 && ((p[i] >= '0' && p[i] <= '9') || p[i] == '+' || p[i] == '-' ||
                                                    p[i] == '.'))))
            return 0;
    }
    return n > 0;
}

/* An origin-form path or "*" (8.3.1): an absolute URI there would name
 * another host than :authority. No control byte nor space; the rest of
 * the target's rules are gn_parse_fields' (400). n > 0: a blank value
 * was refused before. */
static int path_ok(const char *p, size_t n)
{
    if (!(p[0] == '/' || (n == 1 && p[0] == '*')))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f)
            return 0;
    return 1;
}

static int pseudo_field(gn_h2_stream_t *st, const char *name, size_t nlen, const char *value, size_t vlen)
{
    gn_slice_t *slot = NULL;
    unsigned bit = 0;
    if (nlen == 5 && memcmp(name, ":path", 5) == 0)
        bit = P_PATH, slot = &st->path;
    else if (nlen == 7 && memcmp(name, ":method", 7) == 0)
        bit = P_METHOD, slot = &st->method;
    else if (nlen == 7 && memcmp(name, ":scheme", 7) == 0)
        bit = P_SCHEME;
    else if (nlen == 10 && memcmp(name, ":authority", 10) == 0)
        bit = P_AUTHORITY, slot = &st->authority;
    /* Unknown (:status, :protocol), repeated, after a regular field, or
     * blank. */
    if (bit == 0 || (st->pseudo & bit) || st->regular || blank(value, vlen)) {
        st->malformed = 1;
        return 0;
    }
    st->pseudo |= bit;
    if (bit == P_METHOD && vlen == 7 && memcmp(value, "CONNECT", 7) == 0)
        st->connect = 1;
    if ((st->connect && (st->pseudo & (P_PATH | P_SCHEME))) || (bit == P_METHOD && !gn_http_token((gn_slice_t){value, vlen})) ||
        (bit == P_PATH && !path_ok(value, vlen)) || (bit == P_SCHEME && !scheme_ok(value, vlen)) ||
        (bit == P_AUTHORITY && !gn_authority_ok((gn_slice_t){value, vlen}))) {
        st->malformed = 1;
        return 0;
    }
    return slot ? keep_pseudo(st, slot, value, vlen) : 0;
}

/* content-length = 1*DIGIT; -1 if not. */
static int64_t length_of(const char *p, size_t n)
{
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9' || v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return n ? v : -1;
}

/* Whether a field may be in an HTTP/2 header block at all: a lower-case
 * name (8.2.1), no connection-specific field, TE only as "trailers"
 * (8.2.2). */
static int field_ok(const char *name, size_t nlen, const char *value, size_t vlen)
{
    for (size_t i = 0; i < nlen; i++)
        if ((unsigned char)(name[i] - 'A') < 26)
            return 0;
    if (nlen == 2 && memcmp(name, "te", 2) == 0)
        return vlen == 8 && strncasecmp(value, "trailers", 8) == 0;
    return !gn_http_connection_field(name, nlen);
}

/* Whether a regular field may be in an HTTP/2 request's head: field_ok;
 * one Host, an authority (the application sees it; :authority stands in
 * for a missing one: finish_head); one content-length, a number. */
static int regular_ok(gn_h2_stream_t *st, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (!field_ok(name, nlen, value, vlen))
        return 0;
    if (nlen == 4 && memcmp(name, "host", 4) == 0)
        return !st->has_host && gn_authority_ok((gn_slice_t){value, vlen});
    if (nlen == 14 && memcmp(name, "content-length", 14) == 0) {
        if (st->length >= 0)
            return 0;
        st->length = length_of(value, vlen);
        return st->length >= 0;
    }
    return 1;
}

/* One field of a request's header block: checked, then kept. 0, or -1
 * when out of memory. */
static int field(gn_h2_stream_t *st, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (nlen > 0 && name[0] == ':')
        return pseudo_field(st, name, nlen, value, vlen);
    st->regular = 1;
    if (!regular_ok(st, name, nlen, value, vlen)) {
        st->malformed = 1;
        return 0;
    }
    /* A value may not start or end with whitespace (8.2.1): a 400, as a
     * field the parser refuses. */
    if (vlen && (ows(value[0]) || ows(value[vlen - 1]))) {
        st->error = 400;
        return 0;
    }
    return keep_field(st, name, nlen, value, vlen);
}

/* Whether the header block had what a request needs (8.3.1, 8.5). */
static int complete(const gn_h2_stream_t *st)
{
    if (st->connect)
        return (st->pseudo & P_AUTHORITY) != 0;
    return (st->pseudo & (P_METHOD | P_PATH | P_SCHEME)) == (P_METHOD | P_PATH | P_SCHEME) &&
           ((st->pseudo & P_AUTHORITY) || st->has_host);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    gn_h2_stream_t *st = stream_new(user, f->hd.stream_id);
    if (st == NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    ((gn_conn_t *)user)->h2->heading = st; /* its fields come next: no lookup for each */
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
    (void)flags;
    gn_conn_t *c = user;
    gn_h2_stream_t *st;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (f->headers.cat != NGHTTP2_HCAT_REQUEST) {
        /* Trailers: RFC 9110 lets a server drop them, but a pseudo-field
         * there (8.1), or a field no header block may hold, makes the
         * request malformed. */
        if (((namelen && name[0] == ':') ||
             !field_ok((const char *)name, namelen, (const char *)value, valuelen)) &&
            (st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id)))
            st->malformed = 1;
        return 0;
    }
    st = c->h2->heading;
    if (st == NULL || st->id != f->hd.stream_id)
        st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st == NULL || st->error || st->malformed)
        return 0;
    st->list_size += namelen + valuelen + 32;
    if (st->list_size > c->loop->limits->max_head_size) {
        st->error = 431;
        return 0;
    }
    return field(st, (const char *)name, namelen, (const char *)value, valuelen) < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE
                                                                                     : 0;
}

/* The stream's fields as the request's head (no HTTP/1.1 text made and
 * parsed again): the HTTP/1.1 parser's checks, one set of rules for what a
 * request may hold, with the answers the same head as text would get. The
 * fields are in the order that text had: Host (from :authority when the
 * client sent none), the others as they came, the cookies last. */
static void finish_head(gn_h2_stream_t *st)
{
    gn_conn_t *sc = &st->conn;
    gn_header_t *f = sc->buf->headers + 1;
    size_t n = st->n_fields;
    if (st->cookie_len) {
        const char *name = keep(st, "cookie", 6, st->cookie, st->cookie_len);
        if (name == NULL) {
            st->error = 503;
            return;
        }
        f[n++] = (gn_header_t){{name, 6}, {name + 6, st->cookie_len}};
        st->n_fields = n; /* counted: the Host's keep may move it */
    }
    if (!st->has_host && st->authority.base) {
        const char *name = keep(st, "host", 4, NULL, 0);
        if (name == NULL) {
            st->error = 503;
            return;
        }
        *--f = (gn_header_t){{name, 4}, st->authority};
        n++;
    }
    sc->headers = f;
    sc->req.method = st->method;
    sc->req.target = st->path.base ? st->path : st->authority;
    size_t max = sc->loop->limits->max_fields;
    if (max > GN_MAX_HEADERS_CAP)
        max = GN_MAX_HEADERS_CAP;
    /* As the parser: fields in error before the limit say so, else 431. */
    int r = gn_parse_fields(&sc->req, f, n < max ? n : max);
    if (r == 0 && (n > max || st->many))
        r = GN_PARSE_ERR_431;
    if (r != 0) {
        st->error = -r;
        return;
    }
    sc->head_len = sc->rlen;
    sc->req.minor_version = GN_HTTP2_VERSION;
    /* The buffer may have served an HTTP/1.1 request: its forwarded facts
     * are that request's until this one's replace them. */
    if (sc->loop->limits->proxy_headers)
        gn_forwarded_apply(sc);
    else
        memset(&sc->buf->fwd, 0, sizeof(sc->buf->fwd));
    uint64_t max_body = sc->loop->limits->max_body;
    if (max_body && sc->req.content_length > 0 && (uint64_t)sc->req.content_length > max_body)
        st->error = 413;
}

static void reset(gn_conn_t *c, gn_h2_stream_t *st, uint32_t code);

/* A malformed request (RFC 9113 8.1.1): its stream is reset, never
 * served; the connection goes on. */
static void malformed(gn_conn_t *c, gn_h2_stream_t *st)
{
    if (st->reset_sent || st->closed)
        return;
    char host[64];
    int port;
    gn_conn_peer(c, host, sizeof(host), &port);
    /* One line at info per connection: a client cannot fill the log. */
    gn_log(c->h2->malformed++ ? GN_LOG_DEBUG : GN_LOG_INFO, "malformed request from %s (HTTP/2 stream %d): reset",
           host, (int)st->id);
    reset(c, st, NGHTTP2_PROTOCOL_ERROR);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    gn_conn_t *c = user;
    gn_h2_stream_t *st = f->hd.stream_id ? nghttp2_session_get_stream_user_data(s, f->hd.stream_id) : NULL;
    if (st == NULL)
        return 0;
    int end = (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM);
    if (st->reset_sent) { /* its answer is given: nothing more to check */
        if (end)
            st->remote_done = 1;
        return 0;
    }
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST && !st->head_ready) {
        if (st->malformed || (!st->error && !complete(st))) {
            malformed(c, st);
            return 0;
        }
        st->head_ready = 1;
        if (!st->error)
            finish_head(st);
    } else if (f->hd.type == NGHTTP2_HEADERS && (st->malformed || !end)) {
        malformed(c, st); /* trailers: without END_STREAM, or with a pseudo-field */
        return 0;
    }
    if (end) {
        if (st->length >= 0 && st->data_seen != (uint64_t)st->length) {
            malformed(c, st); /* a body shorter than its content-length (8.1.1) */
            return 0;
        }
        st->remote_done = 1;
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *user)
{
    (void)flags;
    gn_conn_t *c = user;
    gn_h2_stream_t *st = nghttp2_session_get_stream_user_data(s, id);
    uint64_t max = c->loop->limits->max_body;
    if (st && st->length >= 0 && (st->data_seen += len) > (uint64_t)st->length)
        malformed(c, st); /* a body longer than its content-length (8.1.1) */
    if (st == NULL || st->error || st->too_big || st->done || st->reset_sent) {
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    st->body_seen += len;
    if (max && st->body_seen > max) {
        st->too_big = 1;
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    if (streaming(c)) {
        /* Taken (and its window given back) when the bridge asks: the
         * stream's window bounds what waits here. */
        if (append(&st->pend, &st->pend_len, &st->pend_cap, (const char *)data, len) < 0) {
            /* Dropping the bytes would hand the application a body with a
             * hole: the stream is reset (its application hears on_abort). */
            gn_log(GN_LOG_ERROR, "HTTP/2 stream %d: out of memory for its body: reset", (int)id);
            nghttp2_session_consume(s, id, len);
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
            st->reset_sent = 1;
        }
        return 0;
    }
    if (gn_body_append(&st->conn.body, (const char *)data, len) < 0) {
        st->error = 503;
    }
    nghttp2_session_consume(s, id, len);
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    (void)user;
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        gn_h2_stream_t *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        if (st)
            st->local_done = 1;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
    (void)code;
    gn_h2_stream_t *st = nghttp2_session_get_stream_user_data(s, id);
    if (st == NULL)
        return 0;
    st->closed = 1;
    if (st->pend_len) /* the connection's window gets back what was never taken */
        nghttp2_session_consume_connection(s, st->pend_len);
    st->pend_len = 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    ((gn_conn_t *)user)->h2->moved = 1; /* serve() frees it next round */
    return 0;
}

static int on_error(nghttp2_session *s, int code, const char *msg, size_t len, void *user)
{
    (void)s;
    (void)code;
    gn_conn_t *c = user;
    char host[64];
    int port;
    gn_conn_peer(c, host, sizeof(host), &port);
    gn_log(GN_LOG_DEBUG, "HTTP/2 from %s: %.*s", host, (int)len, msg);
    return 0;
}

static int lower_eq(const char *a, size_t n, const char *b)
{
    return strlen(b) == n && strncasecmp(a, b, n) == 0;
}

/* ---- response trailers -------------------------------------------------- */

/* At the end of the stream's DATA: its trailers as the HEADERS frame that
 * ends it (nghttp2 lets a data source do this). 1 if submitted. */
static int submit_trailers(nghttp2_session *s, gn_h2_stream_t *st)
{
    if (st->n_trl == 0)
        return 0;
    nghttp2_nv *nv = GN_FAIL(NULL, malloc(st->n_trl * sizeof(*nv)));
    int r = NGHTTP2_ERR_NOMEM;
    if (nv != NULL) {
        char *p = st->trl;
        for (unsigned i = 0; i < st->n_trl; i++) {
            size_t nl = strlen(p), vl = strlen(p + nl + 1);
            nv[i] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)p + nl + 1, nl, vl, NGHTTP2_NV_FLAG_NONE};
            p += nl + vl + 2;
        }
        r = GN_FAIL(NGHTTP2_ERR_NOMEM, nghttp2_submit_trailer(s, st->id, nv, st->n_trl));
        free(nv);
    }
    if (r != 0) /* the stream ends without them */
        gn_log(GN_LOG_ERROR, "HTTP/2 stream %d: trailers not sent: %s", (int)st->id, nghttp2_strerror(r));
    return r == 0;
}

int gn_h2__pack_trailer(char **buf, size_t *len, size_t *cap, const char *name, size_t nlen, const char *value,
                        size_t vlen)
{
    size_t at = *len;
    if (append(buf, len, cap, name, nlen) || append(buf, len, cap, "", 1) || append(buf, len, cap, value, vlen) ||
        append(buf, len, cap, "", 1)) {
        *len = at;
        return -1;
    }
    for (char *p = *buf + at; p < *buf + at + nlen; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    return 0;
}

int gn_h2_trailer(gn_conn_t *sc, const char *name, size_t nlen, const char *value, size_t vlen)
{
    gn_h2_stream_t *st = sc->h2s;
    if (st == NULL || gn_http_connection_field(name, nlen))
        return 0; /* dropped: RFC 9110 6.5.1 allows it, RFC 9113 8.2.2 wants it */
    if (st == GN_H2_RUNNER)
        return gn_h2r__trailer(sc, name, nlen, value, vlen); /* sent by the owner */
    if (gn_h2__pack_trailer(&st->trl, &st->trl_len, &st->trl_cap, name, nlen, value, vlen) < 0)
        return -1;
    st->n_trl++;
    return 0;
}

void gn_h2__take_trailers(gn_conn_t *sc, char *trl, size_t len)
{
    gn_h2_stream_t *st = stream_of(sc);
    free(st->trl); /* none: only the runner gives trailers to a remote stream */
    st->trl = trl;
    st->trl_len = st->trl_cap = len;
    st->n_trl = 0;
    for (size_t i = 0; i < len; i++)
        st->n_trl += trl[i] == 0;
    st->n_trl /= 2;
}

static ssize_t data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    (void)s;
    (void)id;
    gn_h2_stream_t *st = src->ptr;
    gn_conn_t *sc = &st->conn;
    gn_h2_t *h = ((gn_conn_t *)user)->h2;
    size_t n = sc->out_bytes < length ? sc->out_bytes : length;
    if (n == 0 && !st->done) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    ssize_t got = n ? gn_conn__gather(sc, (char *)buf, n) : 0;
    if (got < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* a file shorter than promised: reset */
    gn_conn__advance(sc, (size_t)got); /* sent_body: the bridge counted it */
    st->stalled_at = h->stalled_at = 0; /* progress */
    if (st->done && sc->out_bytes == 0)
        *flags |= NGHTTP2_DATA_FLAG_EOF | (submit_trailers(s, st) ? NGHTTP2_DATA_FLAG_NO_END_STREAM : 0);
    h->moved = 1;
    return got;
}

/* ---- streams ---------------------------------------------------------- */

static void free_stream(gn_conn_t *c, gn_h2_stream_t *st)
{
    gn_h2_t *h = c->h2;
    gn_conn_t *sc = &st->conn;
    if (st->prev)
        st->prev->next = st->next;
    else
        h->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    h->n_streams--;
    if (h->heading == st)
        h->heading = NULL;
    if (sc->status > 0) {
        if (c->loop->limits->access_log)
            gn_conn__access_log(sc);
        gn_stat_request(c->loop->stats, gn_stat_method(sc->req.method.base, sc->req.method.len), sc->status,
                        c->loop->now - sc->buf->started);
        c->loop->served++;
        c->requests++;
    }
    /* Only closed streams come here: nghttp2 has let go of this one. */
    gn_conn__out_release_all(sc);
    gn_body_reset(&sc->body);
    sc->rlen = 0;
    gn_conn__idle_buf(sc);
    gn_conn__set_state(sc, GN_CONN_CLOSED);
    free(st->cookie);
    free(st->pend);
    free(st->trl);
    /* Freed with the loop's closed connections, after the current batch:
     * the bridge call that ended the stream may still be on the stack. */
    sc->prev = NULL;
    sc->next = c->loop->dead;
    c->loop->dead = sc;
}

static void dispatch(gn_h2_stream_t *st)
{
    gn_conn_t *sc = &st->conn;
    st->dispatched = 1;
    gn_conn__set_state(sc, GN_CONN_RESPOND);
    sc->keepalive = 1;
    sc->streaming = streaming(sc);
    sc->buf->started = sc->loop->now;
    st->hd->on_request(sc, st->hd->ctx);
    sc->loop->now = gn_now();
    if (st->hd == sc->loop->handler)
        gn_h2r__ran(sc->loop, sc->loop->now - sc->buf->started);
}

/* Whether serve() would start the stream now (here, or on a sibling, to
 * which a streamed body goes on as it comes); whole: its body is complete. */
static int startable(const gn_h2_stream_t *st, int *whole)
{
    *whole = st->remote_done;
    return !st->dispatched && st->head_ready && !st->error && !st->too_big && !st->closed && !st->reset_sent &&
           (st->remote_done || streaming(&st->conn));
}

/* Streams ready to start go to sibling loops that run fewer requests than
 * this one (http/h2_remote.h), before serve() starts the others here: a
 * WSGI application called here would hold the loop before the rest were
 * shared out. */
static void spread(gn_conn_t *c)
{
    unsigned here = 0;
    for (gn_h2_stream_t *st = c->h2->streams; st; st = st->next) {
        int whole;
        if (!startable(st, &whole))
            continue;
        int to = gn_h2r__pick(c->loop, here);
        if (to < 0 || gn_h2r__send(&st->conn, to, st->pend, st->pend_len, whole) < 0) {
            here++;
            continue;
        }
        if (st->pend_len) /* taken with the request: the window opens */
            nghttp2_session_consume(c->h2->s, st->id, st->pend_len);
        st->pend_len = 0;
        st->body_done = whole;
        st->hd = &gn_h2r__owner;
        dispatch(st);
    }
}

/* The server's own answer (4xx, 503) instead of the application's. */
static void answer(gn_h2_stream_t *st, int status)
{
    gn_conn_t *sc = &st->conn;
    char body[64];
    int n = snprintf(body, sizeof(body), "%s\n", gn_http_reason(status));
    char host[64];
    int port;
    gn_conn_peer(st->parent, host, sizeof(host), &port);
    gn_log(GN_LOG_INFO, "%d %s from %s (HTTP/2 stream %d)", status, gn_http_reason(status), host, (int)st->id);
    if (sc->buf == NULL && gn_conn__take_buf(sc) < 0) {
        st->aborted = st->done = 1;
        return;
    }
    st->dispatched = 1;
    gn_conn_write_simple(sc, status, body, (size_t)n, 0);
    if (sc->buf->started == 0)
        sc->buf->started = sc->loop->now;
    st->done = 1;
}

/* The head buf[0..end + 4) ("HTTP/1.1 200 OK\r\n...\r\n\r\n") as the
 * stream's HEADERS, then taken off its queue. 0, or -1 to reset. */
static int submit_fields(gn_conn_t *c, gn_h2_stream_t *st, char *buf, char *end)
{
    gn_conn_t *sc = &st->conn;
    size_t head_len = (size_t)(end - buf) + 4;
    nghttp2_nv nv[GN_MAX_HEADERS_CAP + 1];
    size_t nvlen = 1;
    char *line = memchr(buf, '\n', head_len);
    if (head_len < 13 || memcmp(buf, "HTTP/1.", 7) != 0 || line == NULL)
        return -1;
    int status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)buf + 9, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (char *p = line + 1; p < end && nvlen < GN_MAX_HEADERS_CAP + 1;) {
        char *eol = memchr(p, '\r', (size_t)(end + 2 - p));
        char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon == NULL)
            break;
        size_t nlen = (size_t)(colon - p);
        char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        /* Connection-specific fields have no place in HTTP/2 (RFC 9113 8.2.2). */
        if (!gn_http_connection_field(p, nlen)) /* nghttp2 lower-cases names as it copies them */
            nv[nvlen++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, nlen, (size_t)(eol - v), NGHTTP2_NV_FLAG_NONE};
        p = eol + 2;
    }
    sc->status = status;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = data_read};
    int no_body = st->done && sc->out_bytes == head_len && st->n_trl == 0;
    /* nghttp2 copies the fields: the head may leave the queue after. */
    int r = GN_FAIL(NGHTTP2_ERR_NOMEM, nghttp2_submit_response(c->h2->s, st->id, nv, nvlen, no_body ? NULL : &prd));
    gn_conn__advance(sc, head_len);
    st->submitted = 1;
    return r == 0 ? 0 : -1;
}

/* Where a head's blank line starts ("\r\n\r\n" in buf[0..n)), or NULL. A
 * head is a few lines: memchr from line end to line end is several times
 * cheaper than memmem here. */
static char *head_end(char *buf, size_t n)
{
    for (char *p = buf, *e = buf + n; (p = memchr(p, '\r', (size_t)(e - p))) != NULL; p++)
        if (e - p >= 4 && memcmp(p, "\r\n\r\n", 4) == 0)
            return p;
    return NULL;
}

/* The head the bridge queued becomes the stream's HEADERS: read where it
 * is when one block of the queue holds it whole (a head is written at
 * once), else copied out first. Returns 0 (submitted, or wait), -1 to
 * reset. */
static int submit_head(gn_conn_t *c, gn_h2_stream_t *st)
{
    gn_conn_t *sc = &st->conn;
    size_t n;
    char *buf = gn_conn__front_own(sc, &n);
    char *end = buf ? head_end(buf, n) : NULL;
    if (end != NULL)
        return submit_fields(c, st, buf, end);
    n = sc->out_bytes < HEAD_MAX ? sc->out_bytes : HEAD_MAX;
    char small[2048];
    buf = n < sizeof(small) ? small : GN_FAIL(NULL, malloc(n + 1));
    if (buf == NULL)
        return -1;
    ssize_t got = gn_conn__gather(sc, buf, n);
    end = got > 0 ? head_end(buf, (size_t)got) : NULL;
    int r = end ? submit_fields(c, st, buf, end) : st->done || n == HEAD_MAX ? -1 : 0;
    if (buf != small)
        free(buf);
    return r;
}

static void reset(gn_conn_t *c, gn_h2_stream_t *st, uint32_t code)
{
    if (st->reset_sent || st->closed)
        return;
    st->reset_sent = 1;
    nghttp2_submit_rst_stream(c->h2->s, NGHTTP2_FLAG_NONE, st->id, code);
}

/* Calls the bridge for what the stream is owed; frees it once closed. */
static void serve(gn_conn_t *c, gn_h2_stream_t *st)
{
    gn_conn_t *sc = &st->conn;
    const gn_handler_t *hd = st->hd;
    int answering = sc->state == GN_CONN_RESPOND && sc->bridge != NULL;
    if (st->closed) {
        if (answering)
            hd->on_abort(sc, hd->ctx); /* RST_STREAM: ASGI's http.disconnect */
        free_stream(c, st);
        return;
    }
    if (!st->dispatched && st->head_ready && !st->reset_sent) {
        if (st->error)
            answer(st, st->error);
        else if (st->too_big)
            answer(st, 413);
        else if (streaming(sc) || st->remote_done)
            dispatch(st);
    }
    if (st->too_big && !st->done) {
        /* A streamed body past the limit: as over HTTP/1.1, the
         * application hears a disconnect, the client a 413 if it can. */
        if (answering)
            hd->on_abort(sc, hd->ctx);
        sc->bridge = NULL;
        if (!st->submitted) {
            gn_conn__out_release_all(sc);
            answer(st, 413);
        } else {
            st->done = 1;
            reset(c, st, NGHTTP2_CANCEL);
        }
    }
    answering = sc->state == GN_CONN_RESPOND && sc->bridge != NULL;
    if (answering && sc->want_body && !st->body_done && (st->pend_len > 0 || st->remote_done)) {
        size_t n = st->pend_len;
        sc->want_body = 0;
        st->pend_len = 0;
        st->body_done = st->remote_done;
        hd->on_body(sc, st->pend, n, st->remote_done, hd->ctx);
        if (n && !st->closed)
            nghttp2_session_consume(c->h2->s, st->id, n);
    }
    answering = sc->state == GN_CONN_RESPOND && sc->bridge != NULL;
    if (answering && !st->done && !gn_conn_out_full(sc) && (!sc->streaming || sc->out_blocked)) {
        /* WSGI produces whenever there is room; ASGI only hears that a
         * queue it waited on has drained. */
        sc->out_blocked = 0;
        hd->on_writable(sc, hd->ctx);
        c->loop->now = gn_now();
    }
    if (st->aborted) {
        reset(c, st, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    if (!st->submitted && (sc->out_bytes > 0 || st->done) && submit_head(c, st) < 0) {
        gn_log(GN_LOG_ERROR, "HTTP/2 stream %d: the response head cannot be sent (too large, or no memory): "
               "reset", (int)st->id);
        st->aborted = 1;
        reset(c, st, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    if (st->submitted && st->deferred && (sc->out_bytes > 0 || st->done)) {
        st->deferred = 0;
        nghttp2_session_resume_data(c->h2->s, st->id);
    }
    /* Answered before the request's end (a 413, an early response): the
     * rest of the body is not wanted (RFC 9113 8.1). */
    if (st->local_done && !st->remote_done)
        reset(c, st, NGHTTP2_NO_ERROR);
}

/* ---- the connection --------------------------------------------------- */

static int start(gn_conn_t *c)
{
    gn_h2_t *h = GN_FAIL(NULL, calloc(1, sizeof(*h)));
    if (h == NULL)
        return -1;
    c->h2 = h;
    nghttp2_session_callbacks *cb;
    if (GN_FAIL(NGHTTP2_ERR_NOMEM, nghttp2_session_callbacks_new(&cb)) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_error_callback2(cb, on_error);
    nghttp2_option *opt;
    if (GN_FAIL(NGHTTP2_ERR_NOMEM, nghttp2_option_new(&opt)) != 0) {
        nghttp2_session_callbacks_del(cb);
        return -1;
    }
    /* Body bytes are acknowledged when the application takes them, so a
     * slow reader of its request body holds the client back. */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* Its HTTP checks repeat gn_parse_fields': field() makes the rest. */
    nghttp2_option_set_no_http_messaging(opt, 1);
    nghttp2_option_set_stream_reset_rate_limit(opt, RESET_BURST, RESET_RATE);
    nghttp2_option_set_max_continuations(opt, MAX_CONTINUATIONS);
    int r = GN_FAIL(NGHTTP2_ERR_NOMEM, nghttp2_session_server_new2(&h->s, cb, c, opt));
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (r != 0)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)c->loop->limits->max_head_size},
    };
    size_t n = sizeof(iv) / sizeof(iv[0]);
    return GN_FAIL(NGHTTP2_ERR_NOMEM, nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, n)) == 0 ? 0 : -1;
}

void gn_h2__free(gn_conn_t *c)
{
    gn_h2_t *h = c->h2;
    if (h == NULL)
        return;
    while (h->streams) {
        gn_h2_stream_t *st = h->streams;
        if (st->conn.state == GN_CONN_RESPOND && st->conn.bridge != NULL)
            st->hd->on_abort(&st->conn, st->hd->ctx);
        st->closed = 1;
        free_stream(c, st);
    }
    if (h->s)
        nghttp2_session_del(h->s);
    free(h);
    c->h2 = NULL;
}

static void send_pending(gn_conn_t *c)
{
    gn_h2_t *h = c->h2;
    size_t hw = c->loop->limits->write_high_water;
    if (!nghttp2_session_want_write(h->s))
        return;
    while (c->out_bytes < hw) { /* until nghttp2 has nothing more (0) */
        const uint8_t *d;
        ssize_t n = GN_FAIL(NGHTTP2_ERR_NOMEM, nghttp2_session_mem_send(h->s, &d));
        if (n < 0) {
            char host[64];
            int port;
            gn_conn_peer(c, host, sizeof(host), &port);
            gn_log(GN_LOG_ERROR, "HTTP/2 to %s: %s: connection closed", host, nghttp2_strerror((int)n));
            h->failed = 2; /* nothing more can be sent */
            return;
        }
        if (n == 0)
            return;
        if (gn_conn_write(c, (const char *)d, (size_t)n) < 0) {
            gn_log(GN_LOG_ERROR, "HTTP/2: out of memory for a connection's output: closed");
            h->failed = 1;
            return;
        }
    }
}

/* ---- --io-timeout for output held back by flow control ---------------- */

/* Whether a stream's answer waits only for the client to open its window. */
static int window_shut(gn_conn_t *c, const gn_h2_stream_t *st)
{
    return st->submitted && !st->local_done && !st->closed && !st->reset_sent && st->conn.out_bytes > 0 &&
           nghttp2_session_get_stream_remote_window_size(c->h2->s, st->id) <= 0;
}

/*
 * A client that never opens a stream's window holds that stream's output
 * (and its application) for ever, though the connection moves: each such
 * stream gets --io-timeout from when it stalled. One whose connection
 * window stays shut holds them all: that is the connection's deadline.
 * Lowers c->deadline to the earliest of them.
 */
static void stall_deadline(gn_conn_t *c)
{
    gn_h2_t *h = c->h2;
    double now = c->loop->now, io = c->loop->limits->io_timeout, first = 0;
    int waiting = 0;
    for (gn_h2_stream_t *st = h->streams; st; st = st->next) {
        waiting |= st->submitted && !st->local_done && st->conn.out_bytes > 0;
        if (!window_shut(c, st)) {
            st->stalled_at = 0;
            continue;
        }
        if (st->stalled_at == 0)
            st->stalled_at = now;
        if (first == 0 || st->stalled_at < first)
            first = st->stalled_at;
    }
    if (waiting && nghttp2_session_get_remote_window_size(h->s) <= 0) {
        if (h->stalled_at == 0)
            h->stalled_at = now;
        if (first == 0 || h->stalled_at < first)
            first = h->stalled_at;
    } else {
        h->stalled_at = 0;
    }
    if (first > 0 && (c->deadline == 0 || first + io < c->deadline))
        c->deadline = first + io;
}

/* The deadline passed: resets each stream stalled past --io-timeout (its
 * application hears on_abort as from a client's RST_STREAM, the other
 * streams go on), or ends a connection whose own window stayed shut.
 * Returns how many streams it reset (-1: the connection is ending). */
static int reset_stalled(gn_conn_t *c)
{
    gn_h2_t *h = c->h2;
    double now = c->loop->now, io = c->loop->limits->io_timeout;
    char host[64];
    int port, n = 0;
    gn_conn_peer(c, host, sizeof(host), &port);
    if (h->stalled_at > 0 && now >= h->stalled_at + io) {
        gn_log(GN_LOG_INFO, "HTTP/2 from %s: connection window shut for --io-timeout (%gs): closed", host, io);
        return -1;
    }
    for (gn_h2_stream_t *st = h->streams; st; st = st->next) {
        if (st->stalled_at == 0 || now < st->stalled_at + io || !window_shut(c, st))
            continue;
        gn_log(GN_LOG_INFO, "HTTP/2 stream %d from %s: window shut for --io-timeout (%gs): reset", (int)st->id,
               host, io);
        reset(c, st, NGHTTP2_CANCEL);
        n++;
    }
    return n;
}

/* nghttp2_session_mem_recv failed: the connection ends with GOAWAY once
 * what is queued is sent. The client's error is logged at debug level (a
 * client can make as many as it likes); the server's own (no memory, a
 * callback that could not record what came) is an error. */
static void recv_failed(gn_conn_t *c, int r)
{
    char host[64];
    int port;
    gn_conn_peer(c, host, sizeof(host), &port);
    int ours = r == NGHTTP2_ERR_NOMEM || r == NGHTTP2_ERR_CALLBACK_FAILURE;
    gn_log(ours ? GN_LOG_ERROR : GN_LOG_DEBUG, "HTTP/2 from %s: %s: connection closed", host, nghttp2_strerror(r));
    /* nghttp2 queued the GOAWAY the error calls for (and then this does
     * nothing); a preface that is not one, or a flood, gets one here (RFC
     * 9113 3.4), and so does a failure of the server's own. */
    nghttp2_session_terminate_session(c->h2->s, ours ? NGHTTP2_INTERNAL_ERROR
                                      : r == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM
                                                                 : NGHTTP2_PROTOCOL_ERROR);
    c->h2->failed = 1;
}

int gn_h2__step(gn_conn_t *c)
{
    gn_loop_t *loop = c->loop;
    if (c->h2 == NULL && start(c) < 0) {
        gn_log(GN_LOG_ERROR, "HTTP/2: out of memory for a session");
        gn_conn_close(c);
        return 0;
    }
    gn_h2_t *h = c->h2;
    size_t hw = loop->limits->write_high_water;
    ssize_t got = 0;
    long long round = atomic_load_explicit(&loop->polled_us, memory_order_relaxed);
    /* Not read while the client does not read what we send, nor again in
     * the epoll round whose read emptied the socket: the streams served
     * in it resume the connection, and a read would find nothing (epoll is
     * level-triggered: what comes meanwhile is the next round's). */
    if (!h->failed && c->out_bytes < hw && c->rlen == 0 && h->drained_in != round) {
        got = gn_conn__read_more(c);
        if (got < 0 || c->state != GN_CONN_H2) {
            if (c->state == GN_CONN_H2)
                gn_conn_close(c);
            return 0;
        }
        /* OpenSSL may hold bytes that epoll does not see: over TLS, read on. */
        if (c->tls == NULL && c->rlen < c->rcap)
            h->drained_in = round;
    }
    if (c->rlen > 0 && !h->failed) {
        ssize_t r = GN_FAIL(NGHTTP2_ERR_NOMEM, nghttp2_session_mem_recv(h->s, (const uint8_t *)c->rbuf, c->rlen));
        c->rlen = 0;
        if (r < 0)
            recv_failed(c, (int)r);
    }
    if (loop->stopping && !h->goaway && !h->failed) {
        /* Graceful stop: streams begun are served, later ones refused. */
        nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s),
                              NGHTTP2_NO_ERROR, NULL, 0);
        h->goaway = 1;
    }
    h->moved = 0;
    if (loop->group && !h->failed)
        spread(c);
    for (gn_h2_stream_t *st = h->streams, *next; st && c->state == GN_CONN_H2; st = next) {
        next = st->next;
        serve(c, st);
    }
    if (c->state != GN_CONN_H2)
        return 0;
    send_pending(c);
    if (gn_conn_flush(c) < 0) {
        gn_conn_close(c);
        return 0;
    }
    if (h->failed && c->out_count == 0) {
        gn_conn_close(c);
        return 0;
    }
    if (!h->failed && !nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s) && c->out_count == 0) {
        gn_conn_close(c);
        return 0;
    }
    /* Idle: the keep-alive timeout (the head timeout before a first
     * request). Streams open: none, as for an HTTP/1.1 request being
     * answered, unless output waits for a client that does not read. */
    if (h->n_streams == 0)
        c->deadline = loop->now + (c->requests ? loop->limits->keepalive_timeout : loop->limits->header_timeout);
    else if (c->out_count == 0)
        c->deadline = 0;
    else if (c->deadline == 0 || got > 0 || h->moved)
        c->deadline = loop->now + loop->limits->io_timeout;
    stall_deadline(c);
    uint32_t ev = c->out_count ? EPOLLOUT : 0;
    if (!h->failed && c->out_bytes < hw)
        ev |= EPOLLIN | EPOLLRDHUP;
    gn_loop__watch(loop, c, ev);
    return got > 0 || (h->moved && c->out_bytes < hw);
}

void gn_h2__timeout(gn_conn_t *c)
{
    gn_h2_t *h = c->h2;
    int n = h && h->s && !h->failed ? reset_stalled(c) : 0;
    if (n > 0) {
        gn_conn_resume(c); /* the RST_STREAMs go out; deadlines anew */
        return;
    }
    if (n == 0 && h && h->n_streams && c->out_count == 0) {
        c->deadline = 0;
        if (h->s)
            stall_deadline(c);
        return;
    }
    if (h && h->s && !h->failed) {
        nghttp2_session_terminate_session(h->s, NGHTTP2_NO_ERROR);
        send_pending(c);
        gn_conn_flush(c);
    }
    gn_conn_close(c);
}

/* ---- a stream's side -------------------------------------------------- */

gn_conn_t *gn_h2__parent(gn_conn_t *sc)
{
    return stream_of(sc)->parent;
}

void gn_h2__kick(gn_conn_t *sc)
{
    if (sc->h2s == GN_H2_RUNNER) {
        gn_h2r__kick(sc);
        return;
    }
    gn_conn_t *c = stream_of(sc)->parent;
    if (c->state == GN_CONN_H2)
        gn_conn_resume(c);
}

int gn_h2__flush(gn_conn_t *sc)
{
    gn_h2__kick(sc);
    return 0;
}

void gn_h2__done(gn_conn_t *sc, int aborted)
{
    if (sc->h2s == GN_H2_RUNNER) {
        gn_h2r__done(sc, aborted);
        return;
    }
    gn_h2_stream_t *st = stream_of(sc);
    sc->bridge = NULL;
    st->done = 1;
    st->aborted |= aborted;
    gn_conn__set_state(sc, GN_CONN_DRAIN);
    gn_h2__kick(sc);
}

/* ---- Upgrade: h2c (RFC 7540 3.2) ---------------------------------------- */

/* Whether a comma-separated field value lists token (any case). */
static int lists_token(const gn_header_t *h, const char *token)
{
    size_t n = strlen(token);
    const char *p = h ? h->value.base : NULL, *end = p + (h ? h->value.len : 0);
    while (p && p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *q = p;
        while (q < end && *q != ',')
            q++;
        const char *e = q;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - p) == n && strncasecmp(p, token, n) == 0)
            return 1;
        p = q;
    }
    return 0;
}

/* base64url without padding (RFC 4648 5), as HTTP2-Settings carries a
 * SETTINGS payload. Returns the decoded length, or -1. */
static ssize_t base64url_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int v = ch >= 'A' && ch <= 'Z' ? ch - 'A' : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
              : ch >= '0' && ch <= '9' ? ch - '0' + 52 : ch == '-' ? 62 : ch == '_' ? 63 : -1;
        if (v < 0)
            return ch == '=' && i + 2 >= n ? (ssize_t)len : -1; /* tolerate padding */
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (len == cap)
                return -1;
            out[len++] = (uint8_t)(acc >> bits);
        }
    }
    return len;
}

/* Fields of the HTTP/1.1 request that do not go into stream 1's head:
 * connection-specific ones (RFC 9113 8.2.2) and the upgrade's own. */
static int hop_by_hop(const gn_header_t *f)
{
    static const char *const names[] = {"connection", "upgrade", "http2-settings", "keep-alive",
                                        "proxy-connection", "transfer-encoding", "te"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (lower_eq(f->name.base, f->name.len, names[i]))
            return 1;
    return 0;
}

/* Stream 1: the request that asked for the upgrade, complete (it had no
 * body), its head the HTTP/1.1 one's fields. */
static gn_h2_stream_t *upgrade_stream(gn_conn_t *c)
{
    gn_h2_stream_t *st = stream_new(c, 1);
    if (st == NULL)
        return NULL;
    /* Kept as they are: the HTTP/1.1 parser has checked them. */
    int bad = st->error || keep_pseudo(st, &st->method, c->req.method.base, c->req.method.len) < 0 ||
              keep_pseudo(st, &st->path, c->req.target.base, c->req.target.len) < 0;
    for (size_t i = 0; i < c->req.num_headers && !bad; i++) {
        const gn_header_t *f = &c->headers[i];
        if (!hop_by_hop(f))
            bad = keep_field(st, f->name.base, f->name.len, f->value.base, f->value.len) < 0;
    }
    if (bad)
        st->error = 503;
    st->head_ready = st->remote_done = 1;
    return st;
}

int gn_h2__upgrade(gn_conn_t *c)
{
    /* Not over TLS (ALPN says h2 there: RFC 7540 3.3), not with --http 1,
     * and only for a request without a body: one with a body is answered
     * over HTTP/1.1, as RFC 7540 3.2 allows, rather than holding it all
     * before switching. */
    const gn_header_t *up = gn_conn_header(c, "upgrade");
    if (c->tls || c->loop->limits->http == GN_HTTP_ONLY1 || !lists_token(up, "h2c"))
        return 0;
    if (c->req.content_length > 0 || (c->req.flags & GN_REQ_CHUNKED))
        return c->loop->limits->http == GN_HTTP_ONLY2 ? 426 : 0; /* --http 2: not over HTTP/1.1 either */
    const gn_header_t *set = NULL;
    int n_set = 0;
    for (size_t i = 0; i < c->req.num_headers; i++)
        if (lower_eq(c->headers[i].name.base, c->headers[i].name.len, "http2-settings"))
            set = &c->headers[i], n_set++;
    /* Exactly one HTTP2-Settings, named in Connection (RFC 7540 3.2.1). */
    if (n_set != 1 || !lists_token(gn_conn_header(c, "connection"), "http2-settings"))
        return 0;
    uint8_t payload[256];
    ssize_t plen = base64url_decode(set->value.base, set->value.len, payload, sizeof(payload));
    if (plen < 0 || plen % 6 != 0)
        return 400;
    if (start(c) < 0)
        return 503;
    gn_h2_stream_t *st = upgrade_stream(c);
    int head = lower_eq(c->req.method.base, c->req.method.len, "HEAD");
    int r = NGHTTP2_ERR_NOMEM;
    if (st != NULL)
        r = GN_FAIL(NGHTTP2_ERR_NOMEM, nghttp2_session_upgrade2(c->h2->s, payload, (size_t)plen, head, st));
    if (r != 0) {
        int status = r == NGHTTP2_ERR_NOMEM ? 503 : 400; /* no memory, or a SETTINGS value out of range */
        gn_h2__free(c);
        return status;
    }
    if (!st->error)
        finish_head(st);
    static const char ok[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    return gn_conn_write(c, ok, sizeof(ok) - 1) < 0 ? 503 : 1;
}

/* ---- walking a loop's requests ------------------------------------------ */

gn_conn_t *gn_h2_stream_next(gn_conn_t *c, gn_conn_t *sc)
{
    gn_h2_stream_t *st = sc ? stream_of(sc)->next : c->h2 ? c->h2->streams : NULL;
    return st ? &st->conn : NULL;
}

/* ---- WSGI's write(): waiting for the client's window ------------------- */

/* What a round does, for one stream's output: reads the client's frames
 * (its WINDOW_UPDATEs), serving no stream (nghttp2's callbacks only
 * record, so this is safe inside a bridge's call), then sends what the
 * windows allow. -1 once the connection failed or the stream is reset. */
static int pump(gn_conn_t *c, gn_h2_stream_t *st)
{
    gn_h2_t *h = c->h2;
    gn_conn_t *sc = &st->conn;
    if (!h->failed && c->out_bytes < c->loop->limits->write_high_water && c->rlen == 0) {
        if (gn_conn__read_more(c) < 0)
            h->failed = 2; /* the client is gone: the loop closes once back */
        ssize_t r = 0;
        if (c->rlen > 0)
            r = GN_FAIL(NGHTTP2_ERR_NOMEM, nghttp2_session_mem_recv(h->s, (const uint8_t *)c->rbuf, c->rlen));
        if (r < 0)
            recv_failed(c, (int)r);
        c->rlen = 0;
    }
    if (!st->submitted && sc->out_bytes > 0 && submit_head(c, st) < 0)
        return -1;
    if (st->submitted && st->deferred && sc->out_bytes > 0) {
        st->deferred = 0;
        nghttp2_session_resume_data(h->s, st->id);
    }
    send_pending(c);
    if (gn_conn_flush(c) < 0)
        h->failed = 2;
    return h->failed || st->closed || st->reset_sent ? -1 : 0;
}

int gn_h2__flush_blocking(gn_conn_t *sc, size_t keep)
{
    gn_h2_stream_t *st = stream_of(sc);
    gn_conn_t *c = st->parent;
    gn_loop_t *loop = c->loop;
    double io = loop->limits->io_timeout, deadline = gn_now() + io;
    for (;;) {
        size_t before = sc->out_bytes;
        if (c->state != GN_CONN_H2 || c->h2 == NULL || pump(c, st) < 0) {
            errno = EPIPE;
            return -1;
        }
        if (sc->out_bytes <= keep)
            return 0;
        double now = gn_now();
        if (sc->out_bytes < before)
            deadline = now + io; /* --io-timeout: without progress */
        else if (now >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (c->tls && gn_tls_pending(c))
            continue;
        short want = (short)((c->out_count ? POLLOUT : 0) |
                             (c->out_bytes < loop->limits->write_high_water ? POLLIN : 0));
        struct pollfd p = {.fd = c->fd, .events = want};
        if (loop->before_wait)
            loop->before_wait(loop->wait_arg);
        int r = poll(&p, 1, (int)((deadline - now) * 1000) + 1);
        if (loop->after_wait)
            loop->after_wait(loop->wait_arg);
        if (r < 0 && errno != EINTR)
            return -1;
        if (r > 0 && (p.revents & (POLLERR | POLLNVAL))) {
            errno = EPIPE;
            return -1;
        }
    }
}
