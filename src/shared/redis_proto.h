/*
 * The plain C under the Redis backend (redis.c), apart so that it can be
 * unit-tested without a server: the --shared-url parser and the form values
 * take in Redis.
 *
 * Values keep the codec's form (codec.h), with one exception: an int that
 * fits int64 is stored as its decimal text, so that Redis's INCRBY works on
 * it. No codec tag is a digit or '-', so the two forms never meet, and both
 * are canonical: equal bytes in Redis still mean equal values of equal types.
 */
#ifndef GN_SHARED_REDIS_PROTO_H
#define GN_SHARED_REDIS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "shared/codec.h"

#define GN_REDIS_DEFAULT_PORT 6379

/* A parsed --shared-url. Strings are owned (gn_redis_url_free). */
typedef struct {
    char *host; /* TCP host (brackets of an IPv6 literal removed); NULL for unix */
    int port;
    char *path; /* unix socket path; NULL for TCP */
    char *user; /* NULL: AUTH with the password alone (or no AUTH) */
    char *password;
    int db;
    int tls;    /* rediss:// */
    char *ca;   /* rediss:// ?ca=FILE: the CAs to verify the server with (NULL: the system's) */
    char *cert; /* ?cert=FILE&key=FILE: a client certificate (both or neither) */
    char *key;
} gn_redis_url_t;

/*
 * Parses redis://[[user]:password@]host[:port][/db] (host may be [v6]),
 * the same with rediss:// (TLS) and an optional query of ca=, cert= and
 * key= (files; %XX decoded), and unix:///path[?db=N]; %XX escapes are
 * decoded in user and password. Returns 0, or -1 with a one-line reason in
 * err.
 */
int gn_redis_url_parse(const char *url, gn_redis_url_t *out, char *err, size_t errlen);
void gn_redis_url_free(gn_redis_url_t *u);

/* The bytes Redis stores for an encoded value: a decimal int written to
 * tmp, or the value itself. Sets *out and returns its length. */
size_t gn_redis_wire(const uint8_t *val, size_t len, char tmp[24], const uint8_t **out);

/* Appends the encoded value of what Redis returned. Returns 0, -1 with
 * errno ENOMEM/E2BIG, or -2 when the bytes are not a value gorgon wrote. */
int gn_redis_unwire(const uint8_t *s, size_t len, gn_wbuf_t *out);

/* Whether s[0..len) is canonical decimal int64 text (what INCRBY writes);
 * the number goes to *v. */
int gn_redis_parse_int(const uint8_t *s, size_t len, int64_t *v);

#endif
