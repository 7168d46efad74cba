#include "http/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/fault.h"
#include "http/h2.h"
#include "http/conn.h"
#include "server/log.h"

/* ---- the server's context ----------------------------------------------- */

static int given(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* The newest OpenSSL error as text, and the queue emptied. */
static void ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, len, "unknown error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
}

/* OpenSSL's default callback would prompt on the terminal for a missing
 * password; this one answers with --keyfile-password, or fails. */
static int password_cb(char *buf, int size, int rwflag, void *arg)
{
    (void)rwflag;
    const char *pw = arg;
    if (pw == NULL)
        return -1;
    size_t n = strlen(pw);
    if (n > (size_t)size)
        return -1;
    memcpy(buf, pw, n);
    return (int)n;
}

/* ALPN: the protocols of --http, h2 first (arg: their wire list). The
 * connection turns to HTTP/2 when the client's preface comes. */
static int alpn_select(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    (void)s;
    const unsigned char *ours = arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, ours, (unsigned)strlen((const char *)ours), in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* go on without ALPN */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int readable(const char *flag, const char *path, char *err, size_t errlen)
{
    if (access(path, R_OK) == 0)
        return 0;
    snprintf(err, errlen, "%s %s: %s", flag, path, strerror(errno));
    return -1;
}

static int set_versions(SSL_CTX *ctx, const gn_tls_opts_t *o, char *err, size_t errlen)
{
    int min = TLS1_2_VERSION;
    if (given(o->min_version) && strcmp(o->min_version, "1.3") == 0)
        min = TLS1_3_VERSION;
    else if (given(o->min_version) && strcmp(o->min_version, "1.2") != 0) {
        snprintf(err, errlen, "--ssl-min-version %s: not 1.2 or 1.3", o->min_version);
        return -1;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, min)) {
        snprintf(err, errlen, "--ssl-min-version %s: not available in this OpenSSL", o->min_version);
        return -1;
    }
    if (given(o->ciphers) && !SSL_CTX_set_cipher_list(ctx, o->ciphers)) {
        char why[200];
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "--ssl-ciphers %s: no cipher in this list is usable (%s)", o->ciphers, why);
        return -1;
    }
    return 0;
}

static int load_pair(SSL_CTX *ctx, const gn_tls_opts_t *o, char *err, size_t errlen)
{
    const char *key = given(o->keyfile) ? o->keyfile : o->certfile;
    char why[200];
    if (readable("--certfile", o->certfile, err, errlen) < 0 || readable("--keyfile", key, err, errlen) < 0)
        return -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, o->certfile) != 1) {
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "--certfile %s: not a PEM certificate (%s)", o->certfile, why);
        return -1;
    }
    SSL_CTX_set_default_passwd_cb(ctx, password_cb);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, given(o->password) ? o->password : NULL);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
            (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH || ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH)) {
            ERR_clear_error();
            snprintf(err, errlen, "--keyfile %s does not match the certificate in --certfile %s", key, o->certfile);
            return -1;
        }
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "--keyfile %s: cannot read the private key (%s; a wrong or missing "
                 "--keyfile-password?)", key, why);
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "--keyfile %s does not match the certificate in --certfile %s", key, o->certfile);
        return -1;
    }
    return 0;
}

/* mTLS: --ca-certs to verify clients with, --cert-reqs how much to ask. */
static int set_verify(SSL_CTX *ctx, const gn_tls_opts_t *o, char *err, size_t errlen)
{
    const char *reqs = given(o->cert_reqs) ? o->cert_reqs : "none";
    int mode = SSL_VERIFY_NONE;
    if (strcmp(reqs, "optional") == 0)
        mode = SSL_VERIFY_PEER;
    else if (strcmp(reqs, "required") == 0)
        mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    else if (strcmp(reqs, "none") != 0) {
        snprintf(err, errlen, "--cert-reqs %s: not none, optional or required", reqs);
        return -1;
    }
    if (mode != SSL_VERIFY_NONE && !given(o->ca_certs)) {
        snprintf(err, errlen, "--cert-reqs %s needs --ca-certs (the CAs that sign client certificates)", reqs);
        return -1;
    }
    if (given(o->ca_certs)) {
        char why[200];
        if (readable("--ca-certs", o->ca_certs, err, errlen) < 0)
            return -1;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_certs);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, o->ca_certs, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            ssl_reason(why, sizeof(why));
            snprintf(err, errlen, "--ca-certs %s: no PEM certificate in it (%s)", o->ca_certs, why);
            return -1;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    SSL_CTX_set_verify(ctx, mode, NULL);
    return 0;
}

gn_tls_ctx_t *gn_tls_ctx_new(const gn_tls_opts_t *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = GN_FAIL(NULL, SSL_CTX_new(TLS_server_method()));
    if (ctx == NULL) {
        snprintf(err, errlen, "TLS: cannot create an OpenSSL context");
        return NULL;
    }
    /* No renegotiation (a client could make the server work for nothing),
     * no compression (CRIME); a peer that closes without close_notify is an
     * ordinary end of stream, as for HTTP/1.1 it is. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Buffers are released while a connection has nothing in flight (an idle
     * keep-alive connection then holds only the SSL's own state); a write
     * may complete in parts, and its retry may come from another buffer
     * holding the same bytes (the output queue is copied per call). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Resumption works with client verification only inside one context. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"gorgon", 6);
    /* TLS 1.3 resumes with stateless tickets; TLS 1.2 clients' sessions are
     * kept in the context, shared by the workers: bounded well below
     * OpenSSL's 20,480, each holding a KB or two. */
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_sess_set_cache_size(ctx, 1024);
    static const char both[] = "\x02h2\x08http/1.1", h1[] = "\x08http/1.1", h2[] = "\x02h2";
    const char *alpn = o->http == GN_HTTP_ONLY1 ? h1 : o->http == GN_HTTP_ONLY2 ? h2 : both;
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, (void *)alpn);
    if (set_versions(ctx, o, err, errlen) < 0 || load_pair(ctx, o, err, errlen) < 0 ||
        set_verify(ctx, o, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* The password is needed only while the key is read. */
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    return ctx;
}

/* ---- the context of new connections, and its reload ------------------------ */

gn_tls_server_t *gn_tls_server_new(const gn_tls_opts_t *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = gn_tls_ctx_new(o, err, errlen);
    if (ctx == NULL)
        return NULL;
    gn_tls_server_t *srv = GN_FAIL(NULL, calloc(1, sizeof(*srv)));
    if (srv == NULL) {
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "TLS: out of memory");
        return NULL;
    }
    pthread_mutex_init(&srv->mu, NULL);
    srv->ctx = ctx;
    atomic_init(&srv->gen, 1); /* a view starts at 0: it takes the context at once */
    return srv;
}

int gn_tls_server_reload(gn_tls_server_t *srv, const gn_tls_opts_t *o, char *err, size_t errlen)
{
    SSL_CTX *fresh = gn_tls_ctx_new(o, err, errlen);
    if (fresh == NULL)
        return -1;
    pthread_mutex_lock(&srv->mu);
    SSL_CTX *old = srv->ctx;
    srv->ctx = fresh;
    atomic_fetch_add(&srv->gen, 1);
    pthread_mutex_unlock(&srv->mu);
    /* The loops and the connections that still use it hold references of
     * their own: it goes when the last of them lets go. */
    SSL_CTX_free(old);
    return 0;
}

void gn_tls_server_free(gn_tls_server_t *srv)
{
    if (srv == NULL)
        return;
    SSL_CTX_free(srv->ctx);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}

/* The loop's context for a new connection: its own reference, renewed when
 * a reload made a newer one (the test is one relaxed load; a stale answer
 * only means the next connection sees the new certificate). */
static SSL_CTX *view_ctx(gn_tls_server_t *srv, gn_tls_view_t *v)
{
    if (v->ctx != NULL && atomic_load_explicit(&srv->gen, memory_order_relaxed) == v->gen)
        return v->ctx;
    pthread_mutex_lock(&srv->mu);
    SSL_CTX_up_ref(srv->ctx);
    SSL_CTX_free(v->ctx);
    v->ctx = srv->ctx;
    v->gen = atomic_load_explicit(&srv->gen, memory_order_relaxed);
    pthread_mutex_unlock(&srv->mu);
    return v->ctx;
}

void gn_tls_view_release(gn_tls_view_t *v)
{
    SSL_CTX_free(v->ctx);
    v->ctx = NULL;
    v->gen = 0;
}

/* ---- a connection --------------------------------------------------------- */

int gn_tls_attach(gn_conn_t *c, gn_tls_server_t *srv, gn_tls_view_t *v)
{
    SSL *s = GN_FAIL(NULL, SSL_new(view_ctx(srv, v)));
    if (s == NULL || SSL_set_fd(s, c->fd) != 1) {
        SSL_free(s);
        ERR_clear_error();
        return -1;
    }
    SSL_set_accept_state(s);
    c->tls = s;
    c->tls_ready = 0;
    return 0;
}

/* What nginx answers to plain HTTP on a TLS port, written in the clear. */
static void answer_plain_http(gn_conn_t *c)
{
    static const char msg[] = "HTTP/1.1 400 Bad Request\r\n"
                              "Content-Type: text/plain; charset=utf-8\r\n"
                              "Content-Length: 50\r\n"
                              "Connection: close\r\n\r\n"
                              "This port speaks HTTPS: a plain HTTP request came\n";
    if (write(c->fd, msg, sizeof(msg) - 1) < 0) {
        /* the client is gone: nothing to tell it */
    }
}

static void log_failure(gn_conn_t *c, int handshake)
{
    if (!gn_log_enabled(GN_LOG_DEBUG))
        return;
    char host[64], why[200];
    int port = 0;
    gn_conn_peer(c, host, sizeof(host), &port);
    ssl_reason(why, sizeof(why));
    gn_log(GN_LOG_DEBUG, "TLS %s with %s port %d failed: %s", handshake ? "handshake" : "connection", host, port,
           why);
}

/*
 * After an SSL call that returned r: 0 to wait, -1 to end. A read that must
 * wait for the socket to be readable (or a write for it to be writable)
 * waits as a plaintext one would; only the other way round (a handshake
 * step that must write, a write that must read) sets c->tls_want, so that
 * the loop watches that event as well.
 */
static int failed(gn_conn_t *c, int r, int handshake, int writing)
{
    switch (SSL_get_error(c->tls, r)) {
    case SSL_ERROR_WANT_READ:
        c->tls_want = writing ? EPOLLIN : 0;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        c->tls_want = writing ? 0 : EPOLLOUT;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return -1; /* the client's close_notify, or its end of stream */
    default:
        log_failure(c, handshake);
        break;
    }
    /* Nothing may stay in this thread's error queue: the next connection's
     * SSL_get_error would read it as its own. */
    ERR_clear_error();
    c->tls_ready = 0; /* no close_notify after a failure */
    return -1;
}

/*
 * Whether the client's first byte, not read yet, starts a plain HTTP request:
 * a TLS record starts with its type (0x16 for a handshake) and an SSLv2
 * ClientHello with the high bit set, a request with its method's first
 * letter. Looked at before OpenSSL reads anything, as nginx does, so every
 * method gets the same answer (OpenSSL itself recognises only a few).
 */
static int plain_http_first(gn_conn_t *c)
{
    unsigned char b;
    if (BIO_number_read(SSL_get_rbio(c->tls)) != 0 || recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) != 1)
        return 0;
    return b >= 'A' && b <= 'Z';
}

ssize_t gn_tls_read(gn_conn_t *c, char *p, size_t n)
{
    SSL *s = c->tls;
    c->tls_want = 0;
    if (!c->tls_ready) {
        if (plain_http_first(c)) {
            answer_plain_http(c);
            if (gn_log_enabled(GN_LOG_DEBUG)) {
                char host[64];
                int port = 0;
                gn_conn_peer(c, host, sizeof(host), &port);
                gn_log(GN_LOG_DEBUG, "TLS handshake with %s port %d failed: a plain HTTP request, answered 400",
                       host, port);
            }
            return -2; /* the rest of the request is still to be drained */
        }
        int r = SSL_do_handshake(s);
        if (r != 1)
            return failed(c, r, 1, 0);
        c->tls_ready = 1;
    }
    size_t got = 0;
    int r = SSL_read_ex(s, p, n, &got);
    if (r == 1)
        return (ssize_t)got;
    return failed(c, r, 0, 0);
}

ssize_t gn_tls_write(gn_conn_t *c, const char *p, size_t n)
{
    size_t done = 0;
    c->tls_want = 0;
    int r = SSL_write_ex(c->tls, p, n, &done);
    if (r == 1) {
        c->tls_pend = 0;
        return (ssize_t)done;
    }
    if (failed(c, r, 0, 1) < 0)
        return -1;
    c->tls_pend = (unsigned)n; /* OpenSSL wants the same bytes again */
    return 0;
}

int gn_tls_pending(const gn_conn_t *c)
{
    return c->tls != NULL && SSL_pending(c->tls) > 0;
}

void gn_tls_close_notify(gn_conn_t *c)
{
    if (c->tls == NULL || !c->tls_ready)
        return;
    c->tls_ready = 0;
    if (SSL_shutdown(c->tls) < 0)
        ERR_clear_error(); /* the socket's buffer is full: close without it */
}

void gn_tls_free(gn_conn_t *c)
{
    SSL_free(c->tls);
    c->tls = NULL;
}

void gn_tls_discard(struct ssl_st *s)
{
    SSL_free(s);
}

/* ---- what the bridges ask ------------------------------------------------ */

int gn_tls_version(const gn_conn_t *c)
{
    return c->tls ? SSL_version(c->tls) : 0;
}

int gn_tls_cipher(const gn_conn_t *c)
{
    const SSL_CIPHER *ci = c->tls ? SSL_get_current_cipher(c->tls) : NULL;
    return ci ? SSL_CIPHER_get_protocol_id(ci) : 0;
}

static int emit_pem(X509 *x, int (*each)(const char *, size_t, void *), void *arg)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL;
    int rc = -1;
    if (b && PEM_write_bio_X509(b, x) == 1) {
        long n = BIO_get_mem_data(b, &pem);
        rc = each(pem, (size_t)n, arg);
    }
    BIO_free(b);
    ERR_clear_error();
    return rc;
}

int gn_tls_peer_name(const gn_conn_t *c, char *buf, size_t len)
{
    X509 *leaf = c->tls ? SSL_get0_peer_certificate(c->tls) : NULL;
    BIO *b = leaf ? BIO_new(BIO_s_mem()) : NULL;
    int rc = -1;
    if (b && X509_NAME_print_ex(b, X509_get_subject_name(leaf), 0, XN_FLAG_RFC2253) >= 0) {
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        snprintf(buf, len, "%.*s", (int)n, p ? p : "");
        rc = 0;
    }
    BIO_free(b);
    ERR_clear_error();
    return rc;
}

int gn_tls_peer_chain(const gn_conn_t *c, int (*each)(const char *pem, size_t len, void *arg), void *arg)
{
    if (c->tls == NULL)
        return 0;
    X509 *leaf = SSL_get0_peer_certificate(c->tls);
    if (leaf == NULL)
        return 0;
    if (emit_pem(leaf, each, arg) < 0)
        return -1;
    int n = 1;
    /* On the server side the chain leaves the client's own certificate out. */
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c->tls);
    for (int i = 0; chain && i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        if (X509_cmp(x, leaf) == 0)
            continue;
        if (emit_pem(x, each, arg) < 0)
            return -1;
        n++;
    }
    return n;
}
