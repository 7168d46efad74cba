/*
 * Proxy headers (RFC 7239 Forwarded, X-Forwarded-For/-Proto/-Host/-Port)
 * from peers in --forwarded-allow-ips: see forwarded.c.
 */
#ifndef GN_HTTP_FORWARDED_H
#define GN_HTTP_FORWARDED_H

typedef struct gn_conn gn_conn_t;

/* Reads the current request's proxy headers into c->buf->fwd (cleared
 * first) when c's peer is trusted; an X-Forwarded-Host or Forwarded host=
 * becomes the request's Host. */
void gn_forwarded_apply(gn_conn_t *c);

#endif
