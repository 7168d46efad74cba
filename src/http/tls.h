/*
 * TLS on a connection, with OpenSSL. One SSL_CTX per server, made by the
 * supervisor and shared read-only by every worker (OpenSSL allows that
 * across threads), replaced as a whole when SIGHUP reloads the certificate
 * (gn_tls_server_t); one SSL per connection, driven without blocking from
 * the worker's event loop. The connection code reads through gn_tls_read() and
 * its output queue is sent through gn_tls_write() when c->tls is set; the
 * plaintext path never reaches this file.
 *
 * ALPN offers h2 and http/1.1 (as --http says); the connection becomes
 * HTTP/2 when the client's preface arrives (http/h2.h).
 */
#ifndef GN_HTTP_TLS_H
#define GN_HTTP_TLS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct gn_conn gn_conn_t;
typedef struct ssl_ctx_st gn_tls_ctx_t; /* OpenSSL's SSL_CTX */
struct ssl_st;                         /* OpenSSL's SSL */

/* What the command line says (NULL or "" = not given). */
typedef struct {
    char *certfile;    /* PEM: the certificate, then any chain */
    char *keyfile;     /* PEM private key; NULL = in certfile */
    char *password;    /* for an encrypted keyfile */
    char *ca_certs;    /* PEM CA bundle to verify client certificates with */
    char *cert_reqs;   /* "none", "optional" or "required" */
    char *ciphers;     /* OpenSSL cipher list for TLS 1.2 */
    char *min_version; /* "1.2" or "1.3" */
    int http;          /* --http (http/h2.h): the protocols ALPN offers */
} gn_tls_opts_t;

/*
 * The server's context from the files named in o. NULL on error, with one
 * line in err saying what is wrong (a missing file, a wrong password, a key
 * that does not match the certificate, ...).
 */
gn_tls_ctx_t *gn_tls_ctx_new(const gn_tls_opts_t *o, char *err, size_t errlen);

/*
 * The server's context, which a reload replaces while connections are
 * served. New connections get the newest; a connection keeps the context it
 * started with to its end (its SSL holds a reference), so a reload cuts
 * nothing. Each loop holds its own reference too (gn_tls_view_t) and looks
 * for a newer context with one atomic load per accepted connection; the
 * mutex is taken only when there is one.
 */
typedef struct gn_tls_server {
    pthread_mutex_t mu;
    gn_tls_ctx_t *ctx;   /* the newest; changed under mu */
    atomic_uint gen;     /* bumped under mu with each new ctx */
} gn_tls_server_t;

/* A loop's reference to the context it hands to new connections. */
typedef struct {
    gn_tls_ctx_t *ctx; /* NULL until the first connection */
    unsigned gen;
} gn_tls_view_t;

/* The server from the files in o; NULL with one line in err (as gn_tls_ctx_new). */
gn_tls_server_t *gn_tls_server_new(const gn_tls_opts_t *o, char *err, size_t errlen);
/*
 * Reads the files in o again and makes the result the context of new
 * connections. 0; -1 with one line in err, and the old context kept, when
 * the new files are not usable.
 */
int gn_tls_server_reload(gn_tls_server_t *srv, const gn_tls_opts_t *o, char *err, size_t errlen);
void gn_tls_server_free(gn_tls_server_t *srv);
/* Lets go of a loop's reference (when the loop ends). */
void gn_tls_view_release(gn_tls_view_t *v);

/* A new server-side SSL on c->fd (c->tls) from srv's newest context, as
 * seen through the loop's view v; -1 when out of memory. */
int gn_tls_attach(gn_conn_t *c, gn_tls_server_t *srv, gn_tls_view_t *v);
/*
 * Handshake, then decrypted bytes into p. Returns > 0 bytes, 0 for "would
 * block" (c->tls_want says which way), -1 for end of stream or an error.
 * A handshake that fails is logged at debug level; a plain HTTP request
 * is answered with a 400 written in the clear, and -2 returned: the
 * connection should linger (drain the request, then close).
 */
ssize_t gn_tls_read(gn_conn_t *c, char *p, size_t n);
/* Encrypts and sends n bytes. Returns bytes taken, 0 for "would block"
 * (retry later with the same bytes), -1 on error. */
ssize_t gn_tls_write(gn_conn_t *c, const char *p, size_t n);
/* Decrypted bytes held inside the SSL, not yet read. */
int gn_tls_pending(const gn_conn_t *c);
/* Sends close_notify (once, best effort: never waits). */
void gn_tls_close_notify(gn_conn_t *c);
/* Frees c->tls. */
void gn_tls_free(gn_conn_t *c);
/* Frees an SSL that no connection holds (one taken from a sibling whose new
 * connection could not be made). */
void gn_tls_discard(struct ssl_st *s);

/* For the bridges (ASGI's "tls" extension). */
/* The protocol version (0x0303 for TLS 1.2, 0x0304 for 1.3), or 0. */
int gn_tls_version(const gn_conn_t *c);
/* The cipher suite's IANA number, or 0. */
int gn_tls_cipher(const gn_conn_t *c);
/*
 * The client's certificate chain as PEM texts, the client's own first:
 * calls each(pem, len, arg) per certificate; returns how many, or -1.
 */
/* The client certificate's subject as RFC 4514 text into buf; 0, or -1
 * when the client gave no certificate. */
int gn_tls_peer_name(const gn_conn_t *c, char *buf, size_t len);
int gn_tls_peer_chain(const gn_conn_t *c, int (*each)(const char *pem, size_t len, void *arg), void *arg);

#endif
