/*
 * HTTP/2 (RFC 9113) on a connection, with nghttp2 for framing, HPACK, flow
 * control and the protocol's own checks. A connection becomes HTTP/2 when
 * it starts with the client preface (h2 over TLS after ALPN, or h2c by
 * prior knowledge) or after Upgrade: h2c, and from then on its state is
 * GN_CONN_H2.
 *
 * Each stream is a request for the bridges as it is over HTTP/1.1: a
 * gn_conn_t of its own (c->h2s set, no socket) whose head is the stream's
 * header block (its fields checked by the HTTP/1.1 parser's rules,
 * gn_parse_fields), and whose output queue the bridge fills with the gn_conn_* functions. The head the
 * bridge writes becomes a HEADERS frame, the bytes after it DATA frames,
 * sent as the peer's flow-control windows allow; a queue past the
 * high-water mark makes the bridge wait (on_writable), as a slow socket
 * does. The request's version is GN_HTTP2_VERSION in req.minor_version.
 */
#ifndef GN_HTTP_H2_H
#define GN_HTTP_H2_H

#include <stddef.h>

#include "http/parser.h"

typedef struct gn_conn gn_conn_t;
typedef struct gn_loop gn_loop_t;

/* --http: which protocols a listener speaks (gn_limits_t.http). */
enum { GN_HTTP_AUTO, GN_HTTP_ONLY1, GN_HTTP_ONLY2 };

/* req.minor_version of a request that came as an HTTP/2 stream. */
#define GN_HTTP2_VERSION 2

/* Whether p[0..n) is the HTTP/2 client preface: 1 (all of it), 0 (a
 * prefix of it: wait for more), -1 (not). */
int gn_h2_preface(const char *p, size_t n);

/* The streams of HTTP/2 connection c, for a walk over a loop's requests
 * (--timeout): the first when sc is NULL, else the one after sc. A stream
 * may end during the walk: its memory lasts until the loop's next round. */
gn_conn_t *gn_h2_stream_next(gn_conn_t *c, gn_conn_t *sc);

/* ---- for the connection (conn.c) ---- */
/* One round of an HTTP/2 connection: read, hand frames to nghttp2, serve
 * the streams, send. Returns 1 to go round again, 0 to wait for events. */
int gn_h2__step(gn_conn_t *c);
/* An HTTP/1.1 request with Upgrade: h2c (RFC 7540 3.2), its head parsed
 * and limits checked: 1 when the connection is taken up (101 queued, the
 * session started, the request is stream 1: switch to GN_CONN_H2 with the
 * bytes after the head), 0 to answer it over HTTP/1.1, or a status to
 * answer with instead (400: a malformed HTTP2-Settings; 426: a request
 * with a body under --http 2). */
int gn_h2__upgrade(gn_conn_t *c);
/* The connection's deadline passed. */
void gn_h2__timeout(gn_conn_t *c);
/* Frees the session and every stream (bridges still answering hear
 * on_abort); from gn_conn_close. */
void gn_h2__free(gn_conn_t *c);

/* ---- for a stream's gn_conn_t (the bridge's gn_conn_* calls) ---- */
/* Queued output is sent as the windows allow: never blocks. */
int gn_h2__flush(gn_conn_t *sc);
/* WSGI's write(): sends the stream's output as the client's windows allow,
 * reading its frames meanwhile (and serving no stream), until at most keep
 * bytes stay queued. 0, or -1 with errno: EPIPE (the stream was reset or
 * the connection failed), ETIMEDOUT (--io-timeout without progress). */
int gn_h2__flush_blocking(gn_conn_t *sc, size_t keep);
/* Something changed (output queued, body wanted, a wait for room). */
void gn_h2__kick(gn_conn_t *sc);
/* A trailer field for the stream's response (ASGI's
 * http.response.trailers): sent, lower-cased, in a HEADERS frame that ends
 * the stream after the last DATA. The bridge checked name and value.
 * 0, or -1 when out of memory. */
int gn_h2_trailer(gn_conn_t *sc, const char *name, size_t nlen, const char *value, size_t vlen);
/* The response is complete (aborted: it cannot be, the stream is reset). */
void gn_h2__done(gn_conn_t *sc, int aborted);
/* The connection a stream of this loop's belongs to. */
gn_conn_t *gn_h2__parent(gn_conn_t *sc);

/* ---- for the loop and h2_remote.c ---- */
/* Appends a trailer field to buf as a stream keeps them ("name\0value\0",
 * the name lower-cased). 0, or -1 when out of memory (nothing added). */
int gn_h2__pack_trailer(char **buf, size_t *len, size_t *cap, const char *name, size_t nlen, const char *value,
                        size_t vlen);
/* A remote stream's trailers, packed so by its runner: the stream takes
 * buf[0..len) (malloc'd) whole. */
void gn_h2__take_trailers(gn_conn_t *sc, char *buf, size_t len);
/* A stream's record, once the loop frees its closed connections: kept as a
 * spare for the loop's next stream (a few), or freed. */
void gn_h2__recycle(gn_loop_t *loop, gn_conn_t *sc);
/* Frees the loop's spare stream records (when it ends). */
void gn_h2__free_spares(gn_loop_t *loop);
/* A head's slices (req's, and f[0..n)'s) that point into from[0..len)
 * made to point at the same bytes copied to `to`. */
void gn_h2__move_head(gn_request_t *req, gn_header_t *f, size_t n, const char *from, size_t len, const char *to);

#endif
