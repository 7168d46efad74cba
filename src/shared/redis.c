#include "shared/redis.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#ifdef GN_HIREDIS_SSL
#include <arpa/inet.h>
#include <hiredis/hiredis_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#endif

#include "server/log.h"
#include "server/metrics.h"
#include "shared/backend.h"
#include "shared/channel.h"
#include "shared/redis_proto.h"

#define BACKOFF_MIN 0.05
#define BACKOFF_MAX 2.0
#define MAX_ARGS 8

/* Set once by gn_redis_configure, before any worker starts. */
static struct {
    gn_redis_url_t url;
    char where[160]; /* the address, for messages (no password) */
    char *prefix;
    size_t plen;
    double timeout;
#ifdef GN_HIREDIS_SSL
    SSL_CTX *tls; /* rediss:// */
#endif
} cfg;

/* 1 from the failure that was logged until a connection succeeds again:
 * an outage is logged once per process, not once per worker or call. */
static atomic_int outage;
/* Bumped by each gn_redis_configure: a connection to an earlier server or
 * database is dropped on its next use. */
static atomic_uint generation;
/* Set while gn_redis_check runs: its caller reports the failure. */
static atomic_int checking;

/*
 * Server-side scripts for what must be atomic and has no single command.
 * Values are compared as stored bytes (the canonical form, redis_proto.h).
 */
enum { S_CAS, S_SETDEFAULT, S_CHSEND, N_SCRIPTS };
static const char *const scripts[N_SCRIPTS] = {
    /* cas: KEYS[1]; ARGV: expected ("N" also matches a missing key), new, px */
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == false then if ARGV[1] ~= 'N' then return 0 end elseif v ~= ARGV[1] then return 0 end\n"
    "if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])\n"
    "else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end\n"
    "return 1\n",
    /* setdefault: KEYS[1]; ARGV: value, px. Returns what is stored. */
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then return v end\n"
    "if ARGV[2] == '0' then redis.call('SET', KEYS[1], ARGV[1])\n"
    "else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end\n"
    "return ARGV[1]\n",
    /* channel send: KEYS: the list, the channel's hash; ARGV: message,
     * default capacity. 1 sent, 0 full, -1 closed. */
    "local m = redis.call('HMGET', KEYS[2], 'cap', 'closed')\n"
    "if m[2] then return -1 end\n"
    "if redis.call('LLEN', KEYS[1]) >= tonumber(m[1] or ARGV[2]) then return 0 end\n"
    "redis.call('LPUSH', KEYS[1], ARGV[1])\n"
    "return 1\n",
};

/* One thread's connection. */
typedef struct {
    redisContext *ctx;
    pid_t pid;       /* the process that connected: a forked child reconnects */
    unsigned gen;    /* the configuration its connection and back-off are for */
    double retry_at; /* monotonic seconds; no connect before */
    double backoff;
    char sha[N_SCRIPTS][41];
    char msg[256];
} conn_t;

static pthread_key_t conn_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

typedef struct {
    int argc;
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
} cmd_t;

/* ---- connections -------------------------------------------------------- */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timeval tv_of(double s)
{
    struct timeval tv = {(time_t)s, (suseconds_t)((s - floor(s)) * 1e6)};
    return tv;
}

static void conn_free(void *p)
{
    conn_t *c = p;
    if (c->ctx)
        redisFree(c->ctx);
    free(c);
}

static void make_key(void)
{
    pthread_key_create(&conn_key, conn_free);
}

static conn_t *conn_state(void)
{
    pthread_once(&key_once, make_key);
    conn_t *c = pthread_getspecific(conn_key);
    if (c == NULL && (c = calloc(1, sizeof(*c))) != NULL)
        pthread_setspecific(conn_key, c);
    return c;
}

static void set_msg(conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_msg(conn_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
}

static void drop(conn_t *c)
{
    if (c->ctx)
        redisFree(c->ctx);
    c->ctx = NULL;
}

/* A failed connect or call: drop the connection, back off, log once. */
static int outage_begin(conn_t *c, gn_store_err_t *err)
{
    drop(c);
    gn_metrics_redis(GN_REDIS_ERRORS, 1);
    c->backoff = c->backoff ? fmin(c->backoff * 2, BACKOFF_MAX) : BACKOFF_MIN;
    c->retry_at = mono() + c->backoff;
    int was = 0;
    if (!atomic_load(&checking) && atomic_compare_exchange_strong(&outage, &was, 1))
        gn_log(GN_LOG_WARNING, "gorgon.shared: %s (calls raise gorgon.Unavailable until it answers again)",
               c->msg);
    if (err)
        err->code = EIO;
    return -1;
}

static void outage_end(conn_t *c)
{
    c->backoff = 0;
    c->retry_at = 0;
    int was = 1;
    if (atomic_compare_exchange_strong(&outage, &was, 0))
        gn_log(GN_LOG_INFO, "gorgon.shared: Redis at %s answers again", cfg.where);
}

static void io_error(conn_t *c)
{
    redisContext *ctx = c->ctx;
    if (ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
        set_msg(c, "Redis at %s did not answer within %gs (--shared-timeout)", cfg.where, cfg.timeout);
    else if (ctx->err == REDIS_ERR_EOF)
        set_msg(c, "Redis at %s closed the connection", cfg.where);
    else
        set_msg(c, "Redis at %s: %s", cfg.where, ctx->errstr);
}

#ifdef GN_HIREDIS_SSL
/* The client side of rediss://: the server's certificate is checked against
 * the CAs (?ca= or the system's) and the URL's host name or address; a
 * client certificate goes with ?cert= and ?key=. */
static SSL_CTX *tls_context(const gn_redis_url_t *u, char *err, size_t errlen)
{
    redisInitOpenSSL();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    const char *what = "cannot make a TLS context";
    if (ctx == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    what = u->ca ? "cannot read the CA file (?ca=)" : "cannot read the system's CA certificates";
    if ((u->ca ? SSL_CTX_load_verify_locations(ctx, u->ca, NULL) : SSL_CTX_set_default_verify_paths(ctx)) != 1)
        goto fail;
    what = "cannot use the client certificate and key (?cert=, ?key=)";
    if (u->cert && (SSL_CTX_use_certificate_chain_file(ctx, u->cert) != 1 ||
                    SSL_CTX_use_PrivateKey_file(ctx, u->key, SSL_FILETYPE_PEM) != 1 ||
                    SSL_CTX_check_private_key(ctx) != 1))
        goto fail;
    return ctx;
fail:;
    unsigned long e = ERR_peek_last_error();
    snprintf(err, errlen, "rediss://: %s: %s", what, e ? ERR_reason_error_string(e) : "unknown error");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

/* The TLS handshake on c's fresh connection, bounded by its timeout. */
static int tls_start(conn_t *c)
{
    const char *host = cfg.url.host;
    SSL *ssl = SSL_new(cfg.tls);
    if (ssl == NULL) {
        set_msg(c, "TLS to Redis at %s: out of memory", cfg.where);
        return -1;
    }
    unsigned char addr[16];
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    } else {
        SSL_set_tlsext_host_name(ssl, host);
        SSL_set1_host(ssl, host);
    }
    if (redisInitiateSSL(c->ctx, ssl) == REDIS_OK)
        return 0; /* the context owns ssl now */
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK)
        set_msg(c, "TLS to Redis at %s: the server's certificate: %s", cfg.where, X509_verify_cert_error_string(v));
    else
        set_msg(c, "TLS to Redis at %s: %s", cfg.where, c->ctx->errstr);
    SSL_free(ssl);
    ERR_clear_error();
    return -1;
}
#endif

/* AUTH, SELECT and SCRIPT LOAD, pipelined: one round trip. */
static int hello(conn_t *c)
{
    int n = 0;
    if (cfg.url.password) {
        const char *argv[3] = {"AUTH", cfg.url.user ? cfg.url.user : cfg.url.password, cfg.url.password};
        redisAppendCommandArgv(c->ctx, cfg.url.user ? 3 : 2, argv, NULL);
        n++;
    }
    if (cfg.url.db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", cfg.url.db);
        const char *argv[2] = {"SELECT", db};
        redisAppendCommandArgv(c->ctx, 2, argv, NULL);
        n++;
    }
    for (int i = 0; i < N_SCRIPTS; i++) {
        const char *argv[3] = {"SCRIPT", "LOAD", scripts[i]};
        redisAppendCommandArgv(c->ctx, 3, argv, NULL);
    }
    int rc = 0;
    for (int i = 0; i < n + N_SCRIPTS; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c->ctx, (void **)&r) != REDIS_OK) {
            io_error(c);
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR && rc == 0) {
            set_msg(c, "Redis at %s refused %s: %s", cfg.where, i < n ? "AUTH or SELECT" : "SCRIPT LOAD", r->str);
            rc = -1;
        } else if (i >= n && r->type == REDIS_REPLY_STRING && r->len == 40) {
            memcpy(c->sha[i - n], r->str, 40);
            c->sha[i - n][40] = '\0';
        }
        freeReplyObject(r);
    }
    return rc;
}

/* The calling thread's connection, made if needed; NULL with err (EIO). */
static conn_t *conn_get(gn_store_err_t *err)
{
    conn_t *c = conn_state();
    if (c == NULL) {
        err->code = ENOMEM;
        return NULL;
    }
    unsigned gen = atomic_load(&generation);
    if (c->gen != gen) { /* configured anew: another server, none of the old one's back-off */
        drop(c);
        c->backoff = c->retry_at = 0;
        c->gen = gen;
    }
    if (c->ctx && c->pid != getpid())
        drop(c); /* inherited across fork: the parent keeps using it */
    if (c->ctx)
        return c;
    if (mono() < c->retry_at) {
        err->code = EIO; /* within the backoff: c->msg still says why */
        return NULL;
    }
    struct timeval tv = tv_of(cfg.timeout);
    c->ctx = cfg.url.path ? redisConnectUnixWithTimeout(cfg.url.path, tv)
                          : redisConnectWithTimeout(cfg.url.host, cfg.url.port, tv);
    if (c->ctx == NULL || c->ctx->err) {
        set_msg(c, "cannot connect to Redis at %s: %s", cfg.where, c->ctx ? c->ctx->errstr : "out of memory");
        return outage_begin(c, err), NULL;
    }
    c->pid = getpid();
    if (redisSetTimeout(c->ctx, tv) != REDIS_OK) {
        io_error(c);
        return outage_begin(c, err), NULL;
    }
#ifdef GN_HIREDIS_SSL
    if (cfg.url.tls && tls_start(c) < 0)
        return outage_begin(c, err), NULL;
#endif
    if (hello(c) < 0) /* it said why in c->msg */
        return outage_begin(c, err), NULL;
    if (c->backoff > 0)
        gn_metrics_redis(GN_REDIS_RECONNECTS, 1);
    outage_end(c);
    return c;
}

/* Sends n commands in one write and reads their n replies. 0, or -1 with
 * err (EIO) and no replies left to free. */
static int pipeline(conn_t *c, int n, cmd_t *cmds, redisReply **r, gn_store_err_t *err)
{
    for (int i = 0; i < n; i++)
        r[i] = NULL;
    for (int i = 0; i < n; i++)
        redisAppendCommandArgv(c->ctx, cmds[i].argc, cmds[i].argv, cmds[i].lens);
    gn_metrics_redis(GN_REDIS_ROUND_TRIPS, 1);
    for (int i = 0; i < n; i++) {
        if (redisGetReply(c->ctx, (void **)&r[i]) != REDIS_OK) {
            io_error(c);
            for (int j = 0; j < i; j++)
                freeReplyObject(r[j]);
            return outage_begin(c, err);
        }
    }
    return 0;
}

static redisReply *run(conn_t *c, cmd_t *cmd, gn_store_err_t *err)
{
    redisReply *r;
    return pipeline(c, 1, cmd, &r, err) < 0 ? NULL : r;
}

/* An error reply as a failure: ENOSPC for maxmemory, else EIO. */
static int refused(conn_t *c, redisReply *r, gn_store_err_t *err)
{
    gn_metrics_redis(GN_REDIS_ERRORS, 1);
    if (strncmp(r->str, "OOM", 3) == 0) {
        err->code = ENOSPC;
        set_msg(c, "Redis at %s is full (its maxmemory): %s", cfg.where, r->str);
    } else {
        err->code = EIO;
        set_msg(c, "Redis at %s refused the call: %s", cfg.where, r->str);
    }
    freeReplyObject(r);
    return -1;
}

/* EVALSHA, or EVAL when the server lost its scripts (SCRIPT FLUSH). */
static redisReply *eval(conn_t *c, int script, cmd_t *cmd, gn_store_err_t *err)
{
    cmd->argv[0] = "EVALSHA";
    cmd->lens[0] = 7;
    cmd->argv[1] = c->sha[script];
    cmd->lens[1] = strlen(c->sha[script]);
    redisReply *r = run(c, cmd, err);
    if (r == NULL || r->type != REDIS_REPLY_ERROR || strncmp(r->str, "NOSCRIPT", 8) != 0)
        return r;
    freeReplyObject(r);
    cmd->argv[0] = "EVAL";
    cmd->lens[0] = 4;
    cmd->argv[1] = scripts[script];
    cmd->lens[1] = strlen(scripts[script]);
    return run(c, cmd, err);
}

static void arg(cmd_t *cmd, const void *p, size_t n)
{
    cmd->argv[cmd->argc] = p;
    cmd->lens[cmd->argc++] = n;
}

static void arg_s(cmd_t *cmd, const char *s)
{
    arg(cmd, s, strlen(s));
}

/* <prefix><kind>:<name> */
static int name_of(gn_wbuf_t *w, char kind, const void *p, size_t n)
{
    char tag[2] = {kind, ':'};
    gn_wbuf_init(w, SIZE_MAX);
    return gn_wbuf_put(w, cfg.prefix, cfg.plen) || gn_wbuf_put(w, tag, 2) || gn_wbuf_put(w, p, n) ? -1 : 0;
}

/* Milliseconds for PX ("0": no expiry). */
static void px(double ttl, char out[24])
{
    if (!(ttl > 0) || ttl > 1e12)
        snprintf(out, 24, "0");
    else
        snprintf(out, 24, "%lld", (long long)ceil(ttl * 1000));
}

/* out refers to a heap copy of the value Redis returned. */
static int ref_from(conn_t *c, const char *s, size_t len, gn_ref_t *out, gn_store_err_t *err)
{
    gn_wbuf_t w;
    gn_wbuf_init(&w, SIZE_MAX);
    int rc = gn_redis_unwire((const uint8_t *)s, len, &w);
    void *copy = rc == 0 ? malloc(w.len) : NULL;
    if (copy)
        memcpy(copy, w.buf, w.len);
    size_t n = w.len;
    gn_wbuf_free(&w);
    if (rc == -2) {
        set_msg(c, "the key holds a value gorgon did not write");
        err->code = EPROTO;
        return -1;
    }
    if (copy == NULL) {
        err->code = ENOMEM;
        return -1;
    }
    *out = (gn_ref_t){.entry = NULL, .val = copy, .len = n, .owned = copy};
    return 0;
}

/* ---- the store ---------------------------------------------------------- */

#define PREPARE(c, w, key, klen, err)                                                                              \
    conn_t *c = conn_get(err);                                                                                     \
    gn_wbuf_t w;                                                                                                   \
    if (c == NULL)                                                                                                 \
        return -1;                                                                                                 \
    if (name_of(&w, 'k', key, klen) < 0) {                                                                         \
        gn_wbuf_free(&w);                                                                                          \
        err->code = ENOMEM;                                                                                        \
        return -1;                                                                                                 \
    }

static int r_get(const uint8_t *key, size_t klen, gn_ref_t *out, gn_store_err_t *err)
{
    PREPARE(c, k, key, klen, err);
    cmd_t cmd = {0};
    arg_s(&cmd, "GET");
    arg(&cmd, k.buf, k.len);
    redisReply *r = run(c, &cmd, err);
    gn_wbuf_free(&k);
    if (r == NULL)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR)
        return refused(c, r, err);
    if (r->type == REDIS_REPLY_STRING)
        rc = ref_from(c, r->str, r->len, out, err) < 0 ? -1 : 1;
    freeReplyObject(r);
    return rc;
}

/* A command on one key whose answer is an integer (EXISTS, DEL). */
static int int_command(const char *verb, const uint8_t *key, size_t klen, gn_store_err_t *err)
{
    PREPARE(c, k, key, klen, err);
    cmd_t cmd = {0};
    arg_s(&cmd, verb);
    arg(&cmd, k.buf, k.len);
    redisReply *r = run(c, &cmd, err);
    gn_wbuf_free(&k);
    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_INTEGER)
        return r->type == REDIS_REPLY_ERROR ? refused(c, r, err) : (freeReplyObject(r), err->code = EIO, -1);
    int rc = r->integer > 0;
    freeReplyObject(r);
    return rc;
}

static int r_contains(const uint8_t *key, size_t klen, gn_store_err_t *err)
{
    return int_command("EXISTS", key, klen, err);
}

static int r_del(const uint8_t *key, size_t klen, gn_store_err_t *err)
{
    return int_command("DEL", key, klen, err);
}

static int r_set(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen, double ttl, gn_store_err_t *err)
{
    PREPARE(c, k, key, klen, err);
    char tmp[24], ms[24];
    const uint8_t *wire;
    size_t wlen = gn_redis_wire(val, vlen, tmp, &wire);
    px(ttl, ms);
    cmd_t cmd = {0};
    arg_s(&cmd, "SET");
    arg(&cmd, k.buf, k.len);
    arg(&cmd, wire, wlen);
    if (strcmp(ms, "0") != 0) {
        arg_s(&cmd, "PX");
        arg_s(&cmd, ms);
    }
    redisReply *r = run(c, &cmd, err);
    gn_wbuf_free(&k);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ERROR)
        return refused(c, r, err);
    freeReplyObject(r);
    return 0;
}

/* Runs a script on a store key with n encoded values (sent in their wire
 * form) and the ttl's PX, and returns its answer if it has type want;
 * NULL with err otherwise. *cp is the connection, for messages. */
static redisReply *script_on_key(int script, const uint8_t *key, size_t klen, int n, const uint8_t *const *vals,
                                 const size_t *lens, double ttl, int want, conn_t **cp, gn_store_err_t *err)
{
    conn_t *c = *cp = conn_get(err);
    if (c == NULL)
        return NULL;
    gn_wbuf_t k;
    if (name_of(&k, 'k', key, klen) < 0) {
        gn_wbuf_free(&k);
        err->code = ENOMEM;
        return NULL;
    }
    char tmp[2][24], ms[24]; /* n is at most 2 */
    cmd_t cmd = {.argc = 2};
    arg_s(&cmd, "1");
    arg(&cmd, k.buf, k.len);
    for (int i = 0; i < n; i++) {
        const uint8_t *wire;
        size_t wlen = gn_redis_wire(vals[i], lens[i], tmp[i], &wire);
        arg(&cmd, wire, wlen);
    }
    px(ttl, ms);
    arg_s(&cmd, ms);
    redisReply *r = eval(c, script, &cmd, err);
    gn_wbuf_free(&k);
    if (r == NULL || r->type == want)
        return r;
    if (r->type == REDIS_REPLY_ERROR)
        refused(c, r, err);
    else
        freeReplyObject(r), err->code = EIO;
    return NULL;
}

static int r_setdefault(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen, double ttl,
                        gn_ref_t *out, gn_store_err_t *err)
{
    conn_t *c;
    redisReply *r = script_on_key(S_SETDEFAULT, key, klen, 1, &val, &vlen, ttl, REDIS_REPLY_STRING, &c, err);
    if (r == NULL)
        return -1;
    int rc = ref_from(c, r->str, r->len, out, err);
    freeReplyObject(r);
    return rc;
}

static int r_cas(const uint8_t *key, size_t klen, const uint8_t *expected, size_t elen, const uint8_t *val,
                 size_t vlen, double ttl, gn_store_err_t *err)
{
    const uint8_t *vals[2] = {expected, val};
    size_t lens[2] = {elen, vlen};
    conn_t *c;
    redisReply *r = script_on_key(S_CAS, key, klen, 2, vals, lens, ttl, REDIS_REPLY_INTEGER, &c, err);
    if (r == NULL)
        return -1;
    int rc = r->integer == 1;
    freeReplyObject(r);
    return rc;
}

/* INCRBY refused: say why (the value is not an int, or not an int64). */
static int incr_refused(conn_t *c, gn_wbuf_t *k, redisReply *r, gn_ref_t *out, gn_store_err_t *err)
{
    if (strstr(r->str, "overflow")) {
        freeReplyObject(r);
        err->code = EOVERFLOW;
        return -1;
    }
    if (strstr(r->str, "not an integer") == NULL)
        return refused(c, r, err);
    freeReplyObject(r);
    /* The stored value, for the error's type name. */
    gn_ref_t ref;
    int found = r_get(k->buf + cfg.plen + 2, k->len - cfg.plen - 2, &ref, err);
    if (found < 0)
        return -1;
    if (found == 0) { /* gone meanwhile: a retry would see 0 */
        err->code = EIO;
        set_msg(c, "the value changed during incr(); try again");
        return -1;
    }
    if (ref.val[0] == GN_TAG_BIGINT) {
        gn_store_unref(&ref);
        err->code = EOVERFLOW;
        return -1;
    }
    *out = ref;
    err->code = EINVAL;
    return -1;
}

static int r_incr(const uint8_t *key, size_t klen, const uint8_t *delta, size_t dlen, double ttl, gn_ref_t *out,
                  gn_store_err_t *err)
{
    if (dlen != 9 || delta[0] != GN_TAG_INT) {
        err->code = EOVERFLOW;
        return -1;
    }
    PREPARE(c, k, key, klen, err);
    char d[24], ms[24];
    const uint8_t *dwire;
    size_t dwlen = gn_redis_wire(delta, dlen, d, &dwire);
    px(ttl, ms);
    cmd_t incr = {0};
    arg_s(&incr, "INCRBY");
    arg(&incr, k.buf, k.len);
    arg(&incr, dwire, dwlen);
    redisReply *r = NULL, *rs[4];
    if (strcmp(ms, "0") == 0) {
        r = run(c, &incr, err);
    } else {
        /* A missing key is created with the ttl, an existing one keeps its
         * expiry: SET NX PX then INCRBY, in one transaction, one round trip. */
        cmd_t cmds[4] = {{0}};
        arg_s(&cmds[0], "MULTI");
        arg_s(&cmds[1], "SET");
        arg(&cmds[1], k.buf, k.len);
        arg_s(&cmds[1], "0");
        arg_s(&cmds[1], "NX");
        arg_s(&cmds[1], "PX");
        arg_s(&cmds[1], ms);
        cmds[2] = incr;
        arg_s(&cmds[3], "EXEC");
        if (pipeline(c, 4, cmds, rs, err) == 0) {
            for (int i = 0; i < 3; i++)
                freeReplyObject(rs[i]);
            r = rs[3];
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
                /* Keep the INCRBY's answer, free the rest. */
                redisReply *inner = r->element[1];
                r->element[1] = NULL;
                freeReplyObject(r);
                r = inner;
            }
        }
    }
    int rc = -1;
    if (r == NULL)
        ;
    else if (r->type == REDIS_REPLY_INTEGER) {
        gn_wbuf_t w;
        gn_wbuf_init(&w, SIZE_MAX);
        gn_codec_put_int64(&w, r->integer);
        void *copy = malloc(w.len);
        if (copy) {
            memcpy(copy, w.buf, w.len);
            *out = (gn_ref_t){.entry = NULL, .val = copy, .len = w.len, .owned = copy};
            rc = 0;
        } else {
            err->code = ENOMEM;
        }
        gn_wbuf_free(&w);
        freeReplyObject(r);
    } else if (r->type == REDIS_REPLY_ERROR) {
        rc = incr_refused(c, &k, r, out, err);
    } else {
        freeReplyObject(r);
        err->code = EIO;
        set_msg(c, "Redis at %s gave an unexpected answer to INCRBY", cfg.where);
    }
    gn_wbuf_free(&k);
    return rc;
}

/* Walks <prefix>k:* with SCAN; appends the keys to out (if not NULL) and
 * UNLINKs them (if unlink). Returns how many, or -1. */
static long scan(gn_wbuf_t *out, int unlink, gn_store_err_t *err)
{
    conn_t *c = conn_get(err);
    if (c == NULL)
        return -1;
    gn_wbuf_t pat;
    gn_wbuf_init(&pat, SIZE_MAX);
    for (size_t i = 0; i < cfg.plen; i++) {
        if (strchr("*?[]\\", cfg.prefix[i]) && gn_wbuf_put(&pat, "\\", 1) < 0)
            break;
        gn_wbuf_put(&pat, cfg.prefix + i, 1);
    }
    gn_wbuf_put(&pat, "k:*", 3);
    char cursor[32] = "0";
    long n = 0;
    do {
        cmd_t cmd = {0};
        arg_s(&cmd, "SCAN");
        arg_s(&cmd, cursor);
        arg_s(&cmd, "MATCH");
        arg(&cmd, pat.buf, pat.len);
        arg_s(&cmd, "COUNT");
        arg_s(&cmd, "1000");
        redisReply *r = run(c, &cmd, err);
        if (r == NULL) {
            n = -1;
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[1]->type != REDIS_REPLY_ARRAY) {
            n = r->type == REDIS_REPLY_ERROR ? refused(c, r, err) : (freeReplyObject(r), err->code = EIO, -1);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%.*s", (int)r->element[0]->len, r->element[0]->str);
        redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const uint8_t *p = (const uint8_t *)keys->element[i]->str + cfg.plen + 2;
            size_t len = keys->element[i]->len - cfg.plen - 2;
            if (!gn_codec_valid(p, len))
                continue; /* not a key gorgon wrote */
            n++;
            if (out && gn_wbuf_put(out, p, len) < 0) {
                err->code = ENOMEM;
                n = -1;
                break;
            }
        }
        if (n >= 0 && unlink && keys->elements) {
            const char **argv = malloc((keys->elements + 1) * sizeof(*argv));
            size_t *lens = malloc((keys->elements + 1) * sizeof(*lens));
            redisReply *u = NULL;
            if (argv && lens) {
                argv[0] = "UNLINK";
                lens[0] = 6;
                for (size_t i = 0; i < keys->elements; i++) {
                    argv[i + 1] = keys->element[i]->str;
                    lens[i + 1] = keys->element[i]->len;
                }
                gn_metrics_redis(GN_REDIS_ROUND_TRIPS, 1);
                u = redisCommandArgv(c->ctx, (int)keys->elements + 1, argv, lens);
                if (u == NULL) {
                    io_error(c);
                    outage_begin(c, err);
                }
            } else {
                err->code = ENOMEM;
            }
            free(argv);
            free(lens);
            if (u == NULL)
                n = -1;
            else
                freeReplyObject(u);
        }
        freeReplyObject(r);
    } while (n >= 0 && strcmp(cursor, "0") != 0);
    gn_wbuf_free(&pat);
    return n;
}

static long r_keys(gn_wbuf_t *out, gn_store_err_t *err)
{
    return scan(out, 0, err);
}

static long r_len(gn_store_err_t *err)
{
    return scan(NULL, 0, err);
}

static int r_clear(gn_store_err_t *err)
{
    return scan(NULL, 1, err) < 0 ? -1 : 0;
}

static size_t info_field(const char *info, const char *name)
{
    const char *p = strstr(info, name);
    return p ? (size_t)strtoull(p + strlen(name), NULL, 10) : 0;
}

static int r_stats(gn_backend_stats_t *out, gn_store_err_t *err)
{
    long n = scan(NULL, 0, err);
    if (n < 0)
        return -1;
    conn_t *c = conn_get(err);
    if (c == NULL)
        return -1;
    cmd_t cmd = {0};
    arg_s(&cmd, "INFO");
    arg_s(&cmd, "memory");
    redisReply *r = run(c, &cmd, err);
    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)
        return r->type == REDIS_REPLY_ERROR ? refused(c, r, err) : (freeReplyObject(r), err->code = EIO, -1);
    out->keys = (size_t)n;
    out->used_bytes = info_field(r->str, "\nused_memory:");
    out->max_bytes = info_field(r->str, "\nmaxmemory:");
    freeReplyObject(r);
    return 0;
}

const gn_backend_t gn_backend_redis = {
    .name = "redis",
    .get = r_get,
    .contains = r_contains,
    .set = r_set,
    .del = r_del,
    .setdefault = r_setdefault,
    .cas = r_cas,
    .incr = r_incr,
    .keys = r_keys,
    .len = r_len,
    .clear = r_clear,
    .stats = r_stats,
};

/* ---- configuration ------------------------------------------------------ */

int gn_redis_configure(const char *url, const char *prefix, double timeout, char *err, size_t errlen)
{
    gn_redis_url_t u;
    if (gn_redis_url_parse(url, &u, err, errlen) < 0)
        return -1;
#ifdef GN_HIREDIS_SSL
    SSL_CTX *tls = NULL;
    if (u.tls && (tls = tls_context(&u, err, errlen)) == NULL) {
        gn_redis_url_free(&u);
        return -1;
    }
#else
    if (u.tls) {
        gn_redis_url_free(&u);
        snprintf(err, errlen, "rediss:// needs hiredis with TLS support (libhiredis_ssl, hiredis 1.0 or later), "
                              "which this build does not have: use redis:// or unix://");
        return -1;
    }
#endif
    char *p = strdup(prefix ? prefix : "");
    if (p == NULL) {
        gn_redis_url_free(&u);
#ifdef GN_HIREDIS_SSL
        SSL_CTX_free(tls);
#endif
        snprintf(err, errlen, "out of memory");
        return -1;
    }
#ifdef GN_HIREDIS_SSL
    SSL_CTX_free(cfg.tls); /* connections made with it keep their own reference */
    cfg.tls = tls;
#endif
    gn_redis_url_free(&cfg.url);
    free(cfg.prefix);
    cfg.url = u;
    cfg.prefix = p;
    cfg.plen = strlen(p);
    cfg.timeout = timeout > 0 ? timeout : 2.0;
    atomic_fetch_add(&generation, 1);
    if (u.path)
        snprintf(cfg.where, sizeof(cfg.where), "unix://%s", u.path);
    else
        snprintf(cfg.where, sizeof(cfg.where), strchr(u.host, ':') ? "[%s]:%d" : "%s:%d", u.host, u.port);
    return 0;
}

int gn_redis_check(char *err, size_t errlen)
{
    atomic_store(&checking, 1);
    gn_store_err_t e = {0};
    conn_t *c = conn_get(&e);
    int rc = -1;
    if (c) {
        cmd_t cmd = {0};
        arg_s(&cmd, "PING");
        redisReply *r = run(c, &cmd, &e);
        if (r && r->type != REDIS_REPLY_ERROR)
            rc = 0;
        else if (r)
            set_msg(c, "Redis at %s refused PING: %s", cfg.where, r->str);
        if (r)
            freeReplyObject(r);
    }
    c = conn_state();
    snprintf(err, errlen, "%s", c ? c->msg : "out of memory");
    if (c) {
        drop(c);
        c->backoff = c->retry_at = 0;
    }
    atomic_store(&checking, 0);
    return rc;
}

int gn_redis_tls_built(void)
{
#ifdef GN_HIREDIS_SSL
    return 1;
#else
    return 0;
#endif
}

const char *gn_redis_where(void)
{
    return cfg.where;
}

const char *gn_redis_error(void)
{
    pthread_once(&key_once, make_key);
    conn_t *c = pthread_getspecific(conn_key);
    return c ? c->msg : "";
}

/* ---- channels ----------------------------------------------------------- */

/* The list and hash names of a channel. */
static int channel_names(const char *name, size_t len, gn_wbuf_t *q, gn_wbuf_t *h)
{
    if (name_of(q, 'q', name, len) < 0 || name_of(h, 'c', name, len) < 0) {
        gn_wbuf_free(q);
        gn_wbuf_free(h);
        return -1;
    }
    return 0;
}

#define CH_PREPARE(c, q, h, name, len)                                                                             \
    gn_store_err_t e_ = {0};                                                                                       \
    conn_t *c = conn_get(&e_);                                                                                     \
    gn_wbuf_t q, h;                                                                                                \
    if (c == NULL || channel_names(name, len, &q, &h) < 0)                                                         \
        return GN_RCH_ERROR;

int gn_redis_ch_open(const char *name, size_t len, unsigned capacity, unsigned def, unsigned *cap)
{
    CH_PREPARE(c, q, h, name, len);
    char want[16];
    snprintf(want, sizeof(want), "%u", capacity ? capacity : def);
    cmd_t cmds[2] = {{0}};
    arg_s(&cmds[0], "HSETNX");
    arg(&cmds[0], h.buf, h.len);
    arg_s(&cmds[0], "cap");
    arg_s(&cmds[0], want);
    arg_s(&cmds[1], "HGET");
    arg(&cmds[1], h.buf, h.len);
    arg_s(&cmds[1], "cap");
    redisReply *r[2];
    int rc = pipeline(c, 2, cmds, r, &e_);
    gn_wbuf_free(&q);
    gn_wbuf_free(&h);
    if (rc < 0)
        return GN_RCH_ERROR;
    rc = GN_RCH_ERROR;
    if (r[1]->type == REDIS_REPLY_STRING) {
        *cap = (unsigned)strtoul(r[1]->str, NULL, 10);
        rc = capacity && *cap != capacity ? -2 : GN_RCH_OK;
    } else {
        gn_metrics_redis(GN_REDIS_ERRORS, 1);
        set_msg(c, "Redis at %s: %s", cfg.where, r[1]->type == REDIS_REPLY_ERROR ? r[1]->str : "no capacity");
    }
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    return rc;
}

int gn_redis_ch_send(const char *name, size_t len, const uint8_t *msg, size_t mlen)
{
    CH_PREPARE(c, q, h, name, len);
    char def[16];
    snprintf(def, sizeof(def), "%u", GN_CHANNEL_DEFAULT_CAPACITY);
    cmd_t cmd = {.argc = 2};
    arg_s(&cmd, "2");
    arg(&cmd, q.buf, q.len);
    arg(&cmd, h.buf, h.len);
    arg(&cmd, msg, mlen);
    arg_s(&cmd, def);
    redisReply *r = eval(c, S_CHSEND, &cmd, &e_);
    gn_wbuf_free(&q);
    gn_wbuf_free(&h);
    if (r == NULL)
        return GN_RCH_ERROR;
    int rc = GN_RCH_ERROR;
    if (r->type == REDIS_REPLY_INTEGER)
        rc = r->integer == 1 ? GN_RCH_OK : r->integer == 0 ? GN_RCH_FULL : GN_RCH_CLOSED;
    else if (r->type == REDIS_REPLY_ERROR)
        return refused(c, r, &e_), GN_RCH_ERROR;
    freeReplyObject(r);
    return rc;
}

int gn_redis_ch_recv(const char *name, size_t len, double wait, uint8_t **out, size_t *olen)
{
    CH_PREPARE(c, q, h, name, len);
    char secs[32];
    snprintf(secs, sizeof(secs), "%.3f", wait < 0.001 ? 0.001 : wait);
    cmd_t cmds[2] = {{0}};
    if (wait > 0) {
        arg_s(&cmds[0], "BRPOP");
        arg(&cmds[0], q.buf, q.len);
        arg_s(&cmds[0], secs);
        /* The socket waits as long as the server may, plus the timeout. */
        redisSetTimeout(c->ctx, tv_of(wait + cfg.timeout));
    } else {
        arg_s(&cmds[0], "RPOP");
        arg(&cmds[0], q.buf, q.len);
    }
    arg_s(&cmds[1], "HEXISTS");
    arg(&cmds[1], h.buf, h.len);
    arg_s(&cmds[1], "closed");
    redisReply *r[2];
    int rc = pipeline(c, 2, cmds, r, &e_);
    if (rc == 0 && wait > 0)
        redisSetTimeout(c->ctx, tv_of(cfg.timeout));
    gn_wbuf_free(&q);
    gn_wbuf_free(&h);
    if (rc < 0)
        return GN_RCH_ERROR;
    redisReply *v = r[0];
    if (v->type == REDIS_REPLY_ARRAY && v->elements == 2)
        v = v->element[1]; /* BRPOP: [list, value] */
    if (v->type == REDIS_REPLY_STRING) {
        *out = malloc(v->len ? v->len : 1);
        if (*out) {
            memcpy(*out, v->str, v->len);
            *olen = v->len;
            rc = GN_RCH_OK;
        } else {
            set_msg(c, "out of memory");
            rc = GN_RCH_ERROR;
        }
    } else if (v->type == REDIS_REPLY_ERROR) {
        gn_metrics_redis(GN_REDIS_ERRORS, 1);
        set_msg(c, "Redis at %s refused the call: %s", cfg.where, v->str);
        rc = GN_RCH_ERROR;
    } else {
        rc = r[1]->type == REDIS_REPLY_INTEGER && r[1]->integer ? GN_RCH_CLOSED : GN_RCH_EMPTY;
    }
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    return rc;
}

/* A command on the channel's hash or list whose answer is an integer. */
static long ch_int(const char *verb, char kind, const char *field, const char *value, const char *name,
                   size_t len)
{
    CH_PREPARE(c, q, h, name, len);
    gn_wbuf_t *key = kind == 'q' ? &q : &h;
    cmd_t cmd = {0};
    arg_s(&cmd, verb);
    arg(&cmd, key->buf, key->len);
    if (field)
        arg_s(&cmd, field);
    if (value)
        arg_s(&cmd, value);
    redisReply *r = run(c, &cmd, &e_);
    gn_wbuf_free(&q);
    gn_wbuf_free(&h);
    if (r == NULL)
        return -1;
    long v = -1;
    if (r->type == REDIS_REPLY_INTEGER)
        v = (long)r->integer;
    else if (r->type == REDIS_REPLY_ERROR)
        return refused(c, r, &e_);
    freeReplyObject(r);
    return v;
}

int gn_redis_ch_close(const char *name, size_t len)
{
    return ch_int("HSET", 'c', "closed", "1", name, len) < 0 ? GN_RCH_ERROR : GN_RCH_OK;
}

long gn_redis_ch_len(const char *name, size_t len)
{
    return ch_int("LLEN", 'q', NULL, NULL, name, len);
}

int gn_redis_ch_closed(const char *name, size_t len)
{
    long v = ch_int("HEXISTS", 'c', "closed", NULL, name, len);
    return v < 0 ? -1 : v > 0;
}
