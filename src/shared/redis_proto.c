#include "shared/redis_proto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A copy of s[0..n) with %XX decoded; NULL for a bad escape or no memory. */
static char *unescape(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = i + 2 < n ? hexval(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi | lo) == 0) { /* %00 would cut the C string */
            free(out);
            return NULL;
        }
        *o++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

/* A decimal number in s[0..n) within [lo, hi]; -1 if not. */
static long number(const char *s, size_t n, long lo, long hi)
{
    long v = 0;
    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < lo || v > hi ? -1 : v;
}

static int parse_userinfo(const char *s, size_t n, gn_redis_url_t *out, char *err, size_t errlen)
{
    const char *colon = memchr(s, ':', n);
    if (colon == NULL) /* redis://password@host, as redis-cli reads it */
        colon = s - 1;
    else if (colon > s && (out->user = unescape(s, (size_t)(colon - s))) == NULL)
        return fail(err, errlen, "bad %%-escape in the user name");
    const char *pw = colon + 1;
    if ((out->password = unescape(pw, (size_t)(s + n - pw))) == NULL)
        return fail(err, errlen, "bad %%-escape in the password");
    return 0;
}

static int parse_hostport(const char *s, size_t n, gn_redis_url_t *out, char *err, size_t errlen)
{
    const char *end = s + n, *port = NULL, *host = s, *hend;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return fail(err, errlen, "unclosed '[' in the host");
        host = s + 1;
        hend = close;
        if (close + 1 < end) {
            if (close[1] != ':')
                return fail(err, errlen, "junk after ']' in the host");
            port = close + 2;
        }
    } else {
        hend = memchr(s, ':', n);
        if (hend)
            port = hend + 1;
        else
            hend = end;
    }
    if (hend == host)
        return fail(err, errlen, "no host");
    out->port = GN_REDIS_DEFAULT_PORT;
    if (port) {
        long p = number(port, (size_t)(end - port), 1, 65535);
        if (p < 0)
            return fail(err, errlen, "the port must be a number from 1 to 65535");
        out->port = (int)p;
    }
    out->host = strndup(host, (size_t)(hend - host));
    return out->host ? 0 : fail(err, errlen, "out of memory");
}

static int parse_db(const char *s, size_t n, gn_redis_url_t *out, char *err, size_t errlen)
{
    long db = n ? number(s, n, 0, 1000000) : 0;
    if (db < 0)
        return fail(err, errlen, "the database must be a number (redis://host:port/0)");
    out->db = (int)db;
    return 0;
}

/* rediss:// query: ca=, cert=, key= joined by '&'. */
static int parse_tls_query(const char *q, gn_redis_url_t *out, char *err, size_t errlen)
{
    while (*q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        char **slot = NULL;
        if (eq && eq - q == 2 && strncmp(q, "ca", 2) == 0)
            slot = &out->ca;
        else if (eq && eq - q == 4 && strncmp(q, "cert", 4) == 0)
            slot = &out->cert;
        else if (eq && eq - q == 3 && strncmp(q, "key", 3) == 0)
            slot = &out->key;
        if (slot == NULL || *slot != NULL)
            return fail(err, errlen, "rediss:// takes the query ?ca=FILE&cert=FILE&key=FILE, each once");
        if (eq + 1 == q + n || (*slot = unescape(eq + 1, (size_t)(q + n - eq - 1))) == NULL)
            return fail(err, errlen, "rediss://: an empty file name or a bad %%-escape in the query");
        q += n + (q[n] == '&');
    }
    if ((out->cert == NULL) != (out->key == NULL))
        return fail(err, errlen, "rediss://: cert= and key= go together");
    return 0;
}

static int parse_tcp(const char *rest, gn_redis_url_t *out, char *err, size_t errlen)
{
    size_t auth_len = strcspn(rest, "/?#");
    const char *at = NULL;
    for (const char *p = rest; p < rest + auth_len; p++)
        if (*p == '@')
            at = p; /* the last one: a password may hold '@' only escaped, but be kind */
    const char *hp = rest;
    if (at) {
        if (parse_userinfo(rest, (size_t)(at - rest), out, err, errlen) < 0)
            return -1;
        hp = at + 1;
    }
    if (parse_hostport(hp, (size_t)(rest + auth_len - hp), out, err, errlen) < 0)
        return -1;
    const char *tail = rest + auth_len;
    if (*tail == '/') {
        tail++;
        size_t n = strcspn(tail, "?#");
        if (parse_db(tail, n, out, err, errlen) < 0)
            return -1;
        tail += n;
    }
    if (*tail == '?' && out->tls)
        return parse_tls_query(tail + 1, out, err, errlen);
    if (*tail)
        return fail(err, errlen, "unexpected '%s' after the address", tail);
    return 0;
}

static int parse_unix(const char *rest, gn_redis_url_t *out, char *err, size_t errlen)
{
    if (rest[0] != '/')
        return fail(err, errlen, "unix:// needs an absolute path (unix:///run/redis.sock)");
    size_t n = strcspn(rest, "?");
    if (rest[n] == '?') {
        const char *q = rest + n + 1;
        if (strncmp(q, "db=", 3) != 0 || parse_db(q + 3, strlen(q + 3), out, err, errlen) < 0)
            return fail(err, errlen, "the only query unix:// takes is ?db=N");
    }
    out->path = strndup(rest, n);
    return out->path ? 0 : fail(err, errlen, "out of memory");
}

int gn_redis_url_parse(const char *url, gn_redis_url_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    int rc;
    if (strncmp(url, "redis://", 8) == 0)
        rc = parse_tcp(url + 8, out, err, errlen);
    else if (strncmp(url, "unix://", 7) == 0)
        rc = parse_unix(url + 7, out, err, errlen);
    else if (strncmp(url, "rediss://", 9) == 0) {
        out->tls = 1;
        rc = parse_tcp(url + 9, out, err, errlen);
    } else {
        rc = fail(err, errlen, "expected redis://[user:password@]host:port/db, rediss://... or unix:///path");
    }
    if (rc < 0)
        gn_redis_url_free(out);
    return rc;
}

void gn_redis_url_free(gn_redis_url_t *u)
{
    free(u->host);
    free(u->path);
    free(u->user);
    free(u->password);
    free(u->ca);
    free(u->cert);
    free(u->key);
    memset(u, 0, sizeof(*u));
}

size_t gn_redis_wire(const uint8_t *val, size_t len, char tmp[24], const uint8_t **out)
{
    if (len == 9 && val[0] == GN_TAG_INT) {
        int64_t v;
        memcpy(&v, val + 1, sizeof(v));
        *out = (const uint8_t *)tmp;
        return (size_t)snprintf(tmp, 24, "%" PRId64, v);
    }
    *out = val;
    return len;
}

int gn_redis_parse_int(const uint8_t *s, size_t len, int64_t *v)
{
    size_t i = len && s[0] == '-';
    if (len == i || len - i > 19 || (s[i] == '0' && (len - i > 1 || i)))
        return 0; /* empty, too long, a leading zero, or "-0" */
    uint64_t mag = 0;
    for (size_t j = i; j < len; j++) {
        if (s[j] < '0' || s[j] > '9')
            return 0;
        mag = mag * 10 + (uint64_t)(s[j] - '0');
    }
    if (mag > (uint64_t)INT64_MAX + (i ? 1u : 0u))
        return 0;
    *v = i ? (int64_t)(0 - mag) : (int64_t)mag;
    return 1;
}

int gn_redis_unwire(const uint8_t *s, size_t len, gn_wbuf_t *out)
{
    if (len && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) {
        int64_t v;
        if (!gn_redis_parse_int(s, len, &v))
            return -2;
        return gn_codec_put_int64(out, v);
    }
    /* An 'i' in codec form would be a second form of the same int. */
    if (!gn_codec_valid(s, len) || s[0] == GN_TAG_INT)
        return -2;
    return gn_wbuf_put(out, s, len);
}
