/*
 * libFuzzer driver for src/http/parser.c. Built and run by scripts/fuzz.
 *
 * Each input is given to gn_parse_request (whole, then byte by byte with
 * last_len, which must agree) and to the chunked decoder (whole, then one
 * byte at a time, which must agree). Any broken invariant aborts, which
 * libFuzzer reports as a crash with the input saved.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/parser.h"

#define MAX_H 16

#include "check.h"

static int is_parse_code(int r)
{
    return r == GN_PARSE_INCOMPLETE || r == GN_PARSE_ERR_400 || r == GN_PARSE_ERR_431 ||
           r == GN_PARSE_ERR_501 || r == GN_PARSE_ERR_505;
}

/* An independent statement of the grammar, to check accepted heads against. */
static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void check_token(gn_slice_t s)
{
    CHECK(s.len > 0);
    for (size_t i = 0; i < s.len; i++)
        CHECK(is_tchar((unsigned char)s.base[i]));
}

static void check_value(gn_slice_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.base[i];
        CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
    }
    if (s.len) {
        CHECK(s.base[0] != ' ' && s.base[0] != '\t');
        CHECK(s.base[s.len - 1] != ' ' && s.base[s.len - 1] != '\t');
    }
}

/* Every line of an accepted head ends in CRLF, and CR appears nowhere else. */
static void check_line_endings(const char *buf, size_t r)
{
    CHECK(r >= 4 && memcmp(buf + r - 4, "\r\n\r\n", 4) == 0);
    for (size_t i = 0; i < r; i++) {
        if (buf[i] == '\n')
            CHECK(i > 0 && buf[i - 1] == '\r');
        if (buf[i] == '\r')
            CHECK(i + 1 < r && buf[i + 1] == '\n');
    }
}

static void check_slice(gn_slice_t s, const char *buf, size_t len)
{
    CHECK(s.base >= buf && s.len <= len && (size_t)(s.base - buf) <= len - s.len);
}

static int slice_is(gn_slice_t s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.base, lit, s.len) == 0;
}

static int slice_icase_prefix(gn_slice_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len >= n && strncasecmp(s.base, lit, n) == 0;
}

/* The form of an accepted target (RFC 9112 3.2), restated independently. */
static void check_target_form(const gn_request_t *req, const gn_header_t *h)
{
    gn_slice_t t = req->target;
    CHECK(!slice_is(req->method, "CONNECT"));
    if (t.base[0] == '/') {
        CHECK(req->authority.len == 0);
        CHECK(req->path.base == t.base);
    } else if (t.base[0] == '*') {
        CHECK(t.len == 1 && slice_is(req->method, "OPTIONS"));
        CHECK(req->path.base == t.base && req->path.len == 1);
    } else {
        CHECK(slice_icase_prefix(t, "http://") || slice_icase_prefix(t, "https://"));
        CHECK(req->authority.len > 0 && !memchr(req->authority.base, '@', req->authority.len));
        CHECK(req->path.len > 0 && req->path.base[0] == '/');
        for (size_t i = 0; i < req->num_headers; i++)
            if (h[i].name.len == 4 && strncasecmp(h[i].name.base, "host", 4) == 0)
                CHECK(h[i].value.base == req->authority.base && h[i].value.len == req->authority.len);
    }
    /* The query is what follows the path's '?', or empty at the target's end. */
    CHECK(req->query.base >= t.base && req->query.base + req->query.len == t.base + t.len);
}

/* Invariants of one gn_parse_request result on buf[0..len). */
static void check_request(int r, const char *buf, size_t len, const gn_request_t *req,
                          const gn_header_t *h, size_t max)
{
    CHECK(r > 0 || is_parse_code(r));
    if (r <= 0)
        return;
    CHECK((size_t)r <= len);
    CHECK(req->num_headers <= max);
    CHECK(req->minor_version == 0 || req->minor_version == 1);
    CHECK(req->content_length >= -1);
    CHECK(req->method.len > 0 && req->target.len > 0);
    check_slice(req->method, buf, (size_t)r);
    check_slice(req->target, buf, (size_t)r);
    check_slice(req->path, buf, (size_t)r);
    check_slice(req->query, buf, (size_t)r);
    check_slice(req->authority, buf, (size_t)r);
    check_target_form(req, h);
    for (size_t i = 0; i < req->num_headers; i++) {
        check_slice(h[i].name, buf, (size_t)r);
        check_slice(h[i].value, buf, (size_t)r);
        check_token(h[i].name);
        check_value(h[i].value);
    }
    check_token(req->method);
    for (size_t i = 0; i < req->target.len; i++)
        CHECK(req->target.base[i] > 0x20 && req->target.base[i] < 0x7f &&
              req->target.base[i] != '#');
    check_line_endings(buf, (size_t)r);
    /* Framing rules the parser promises. */
    CHECK(!((req->flags & GN_REQ_CHUNKED) && req->content_length >= 0));
    CHECK(!(req->minor_version == 1 && !(req->flags & GN_REQ_HAS_HOST)));
}

static void fuzz_request(const char *buf, size_t len)
{
    gn_request_t req, req2;
    gn_header_t h[MAX_H], h2[MAX_H];
    /* The header limit comes from the data so 431 paths are reached too. */
    size_t max = len ? (unsigned char)buf[len - 1] % (MAX_H + 1) : MAX_H;

    int r = gn_parse_request(buf, len, 0, &req, h, max);
    check_request(r, buf, len, &req, h, max);

    /* Fed one more byte each time, the parser must reach the same answer. */
    int r2 = GN_PARSE_INCOMPLETE;
    size_t last = 0;
    for (size_t n = 1; n <= len && r2 == GN_PARSE_INCOMPLETE; n++) {
        r2 = gn_parse_request(buf, n, last, &req2, h2, max);
        check_request(r2, buf, n, &req2, h2, max);
        last = n;
    }
    CHECK(r2 == r);
    if (r > 0) {
        CHECK(req2.num_headers == req.num_headers && req2.flags == req.flags);
        CHECK(req2.content_length == req.content_length);
        CHECK(req2.target.base == req.target.base && req2.target.len == req.target.len);
        CHECK(req2.path.base == req.path.base && req2.path.len == req.path.len);
        CHECK(req2.authority.base == req.authority.base && req2.authority.len == req.authority.len);
    }
}

typedef struct {
    int err;
    size_t consumed;
    int done;
    size_t ndata;
    uint64_t sum; /* order-sensitive checksum of the decoded bytes */
} decoded_t;

static void add_data(decoded_t *o, gn_slice_t data)
{
    for (size_t i = 0; i < data.len; i++)
        o->sum = o->sum * 1099511628211ull + (unsigned char)data.base[i];
    o->ndata += data.len;
}

static void decode_whole(const char *buf, size_t len, decoded_t *o)
{
    gn_chunked_t d;
    gn_chunked_init(&d);
    memset(o, 0, sizeof(*o));
    while (len && !d.done) {
        gn_slice_t data;
        ssize_t n = gn_chunked_step(&d, buf, len, &data);
        if (n < 0) {
            CHECK(n == GN_PARSE_ERR_400);
            o->err = 1;
            return;
        }
        CHECK(n > 0 && (size_t)n <= len);
        if (data.len)
            check_slice(data, buf, (size_t)n);
        add_data(o, data);
        o->consumed += (size_t)n;
        buf += n;
        len -= (size_t)n;
    }
    o->done = d.done;
}

static void decode_bytewise(const char *buf, size_t len, decoded_t *o)
{
    gn_chunked_t d;
    gn_chunked_init(&d);
    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < len && !d.done; i++) {
        gn_slice_t data;
        ssize_t n = gn_chunked_step(&d, buf + i, 1, &data);
        if (n < 0) {
            o->err = 1;
            return;
        }
        CHECK(n == 1);
        add_data(o, data);
        o->consumed++;
    }
    o->done = d.done;
}

static void fuzz_chunked(const char *buf, size_t len)
{
    decoded_t a, b;
    decode_whole(buf, len, &a);
    decode_bytewise(buf, len, &b);
    CHECK(a.err == b.err);
    if (!a.err) {
        CHECK(a.consumed == b.consumed && a.done == b.done);
        CHECK(a.ndata == b.ndata && a.sum == b.sum);
        CHECK(a.ndata <= a.consumed);
        /* A finished body ends with the CRLF of the last-chunk or trailers. */
        if (a.done)
            CHECK(a.consumed >= 5 && memcmp(buf + a.consumed - 2, "\r\n", 2) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libFuzzer's buffer is exactly `size` bytes on the heap, so ASan
     * reports any read past the end. */
    const char *buf = (const char *)data;
    fuzz_request(buf, size);
    fuzz_chunked(buf, size);
    return 0;
}
