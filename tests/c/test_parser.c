/*
 * Unit tests for src/http/parser.c (request parser and chunked decoder).
 *
 * Every input is run three ways and the results must agree (picohttpparser
 * style): (a) whole, (b) fed one byte at a time, each prefix in its own
 * exact-size heap block so ASan sees any read past len, and (c) copied so
 * that it ends exactly where an unreadable guard page begins.
 */
#include "http/parser.h"

#include <stdint.h>
#include <sys/mman.h>

#include "test.h"

#define MAX_H 64

/* ---- helpers: three ways of running the parser ---------------------------- */

typedef struct {
    int r;
    gn_request_t req;
    gn_header_t h[MAX_H];
} parsed_t;

/* Copies in[0..len) so that its last byte is just before a PROT_NONE page. */
static char *guard_copy(const char *in, size_t len, void **map, size_t *map_len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = len ? (len + pg - 1) / pg : 1;
    *map_len = (pages + 1) * pg;
    char *m = mmap(NULL, *map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (m == MAP_FAILED || mprotect(m + pages * pg, pg, PROT_NONE) != 0) {
        perror("mmap/mprotect");
        abort();
    }
    *map = m;
    char *p = m + pages * pg - len;
    if (len)
        memcpy(p, in, len);
    return p;
}

static size_t off(gn_slice_t s, const char *base)
{
    return (size_t)(s.base - base);
}

#define SAME_SLICE(a, abase, b, bbase, what, mode)                                   \
    do {                                                                             \
        if (off(a, abase) != off(b, bbase) || (a).len != (b).len)                    \
            TEST_FAIL_("%s: %s differs from the whole parse", mode, what);           \
    } while (0)

/* Checks that a run over another copy of the input gave the same result. */
static void check_same(const parsed_t *a, const char *abase, const parsed_t *b,
                       const char *bbase, const char *mode)
{
    if (a->r != b->r) {
        TEST_FAIL_("%s: returned %d, whole parse returned %d", mode, b->r, a->r);
        return;
    }
    if (a->r <= 0)
        return;
    SAME_SLICE(a->req.method, abase, b->req.method, bbase, "method", mode);
    SAME_SLICE(a->req.target, abase, b->req.target, bbase, "target", mode);
    SAME_SLICE(a->req.path, abase, b->req.path, bbase, "path", mode);
    SAME_SLICE(a->req.query, abase, b->req.query, bbase, "query", mode);
    SAME_SLICE(a->req.authority, abase, b->req.authority, bbase, "authority", mode);
    CHECK_EQ(a->req.minor_version, b->req.minor_version);
    CHECK_EQ(a->req.content_length, b->req.content_length);
    CHECK_EQ(a->req.flags, b->req.flags);
    CHECK_EQ(a->req.num_headers, b->req.num_headers);
    for (size_t i = 0; i < a->req.num_headers && i < b->req.num_headers; i++) {
        SAME_SLICE(a->h[i].name, abase, b->h[i].name, bbase, "header name", mode);
        SAME_SLICE(a->h[i].value, abase, b->h[i].value, bbase, "header value", mode);
    }
}

/* Checks that every output slice of a successful parse lies in the head. */
static void check_inside(const parsed_t *p, const char *buf)
{
    const char *end = buf + (p->r > 0 ? p->r : 0);
    const gn_slice_t *s[] = {&p->req.method, &p->req.target, &p->req.path,
                             &p->req.query, &p->req.authority};
    if (p->r <= 0)
        return;
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        if (s[i]->base < buf || s[i]->base + s[i]->len > end)
            TEST_FAIL_("request slice %zu outside the head", i);
    for (size_t i = 0; i < p->req.num_headers; i++)
        if (p->h[i].name.base < buf || p->h[i].value.base + p->h[i].value.len > end)
            TEST_FAIL_("header %zu outside the head", i);
}

static void parse_bytewise(const char *in, size_t len, size_t max, const parsed_t *whole)
{
    parsed_t b;
    size_t last = 0;
    if (len == 0)
        return;
    for (size_t n = 1; n <= len; n++) {
        char *copy = malloc(n);
        memcpy(copy, in, n);
        b.r = gn_parse_request(copy, n, last, &b.req, b.h, max);
        last = n;
        if (b.r != GN_PARSE_INCOMPLETE || n == len) {
            check_same(whole, in, &b, copy, "byte-by-byte");
            free(copy);
            return;
        }
        free(copy);
    }
}

static void parse_guarded(const char *in, size_t len, size_t max, const parsed_t *whole)
{
    parsed_t g;
    void *map;
    size_t map_len;
    char *copy = guard_copy(in, len, &map, &map_len);
    g.r = gn_parse_request(copy, len, 0, &g.req, g.h, max);
    check_same(whole, in, &g, copy, "guard-page");
    munmap(map, map_len);
}

/* Parses in[0..len) the three ways; *out holds the whole parse (slices into in). */
static void parse3(const char *in, size_t len, size_t max, parsed_t *out)
{
    out->r = gn_parse_request(in, len, 0, &out->req, out->h, max);
    if (out->r > (int)len)
        TEST_FAIL_("returned %d for len %zu", out->r, len);
    check_inside(out, in);
    parse_bytewise(in, len, max, out);
    parse_guarded(in, len, max, out);
}

#define PARSE(lit, out) parse3(lit, sizeof(lit) - 1, MAX_H, out)

/* A request must be rejected with `code` in all three modes. */
#define REJECT(lit, code)                                                            \
    do {                                                                             \
        parsed_t p_;                                                                 \
        parse3(lit, sizeof(lit) - 1, MAX_H, &p_);                                    \
        ASSERT_EQ(p_.r, code);                                                       \
    } while (0)

#define REJECT400(lit) REJECT(lit, GN_PARSE_ERR_400)

/* ---- request parser: accepted requests ------------------------------------ */

static void test_simple_get(void)
{
    static const char in[] = "GET /hello%20w?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\n\r\n";
    parsed_t p;
    PARSE(in, &p);
    ASSERT_EQ(p.r, sizeof(in) - 1);
    ASSERT_SLICE(p.req.method, "GET");
    ASSERT_SLICE(p.req.target, "/hello%20w?x=1&y=2");
    ASSERT_SLICE(p.req.path, "/hello%20w");
    ASSERT_SLICE(p.req.query, "x=1&y=2");
    ASSERT_EQ(p.req.minor_version, 1);
    ASSERT_EQ(p.req.content_length, -1);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST);
    ASSERT_EQ(p.req.num_headers, 1);
    ASSERT_SLICE(p.h[0].name, "Host");
    ASSERT_SLICE(p.h[0].value, "example.com");
}

static void test_path_and_query(void)
{
    parsed_t p;
    PARSE("GET /a/b HTTP/1.1\r\nHost: h\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.req.path, "/a/b");
    ASSERT_EQ(p.req.query.len, 0);
    PARSE("GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.req.path, "/a");
    ASSERT_EQ(p.req.query.len, 0);
    PARSE("GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.req.path, "/a");
    ASSERT_SLICE(p.req.query, "b?c");
    PARSE("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.req.method, "OPTIONS");
    ASSERT_SLICE(p.req.target, "*");
}

static void test_many_headers(void)
{
    char in[4096];
    size_t n = (size_t)snprintf(in, sizeof(in), "POST /upload HTTP/1.1\r\n");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(in + n, sizeof(in) - n, "X-Header-%d: value number %d\r\n", i, i);
    n += (size_t)snprintf(in + n, sizeof(in) - n,
                          "host: example.org\r\ncontent-LENGTH: 12\r\n"
                          "User-Agent: Mozilla/5.0 (X11; Linux x86_64) \xc3\xa9t\xc3\xa9\r\n\r\n");
    parsed_t p;
    parse3(in, n, MAX_H, &p);
    ASSERT_EQ(p.r, n);
    ASSERT_EQ(p.req.num_headers, 43);
    ASSERT_SLICE(p.h[7].name, "X-Header-7");
    ASSERT_SLICE(p.h[7].value, "value number 7");
    ASSERT_SLICE(p.h[39].value, "value number 39");
    ASSERT_SLICE(p.h[42].value, "Mozilla/5.0 (X11; Linux x86_64) \xc3\xa9t\xc3\xa9");
    ASSERT_EQ(p.req.content_length, 12);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST);
}

static void test_max_headers_exact(void)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nB: b\r\nC: c\r\n\r\n";
    parsed_t p;
    parse3(in, sizeof(in) - 1, 3, &p);
    ASSERT_EQ(p.r, sizeof(in) - 1);
    ASSERT_EQ(p.req.num_headers, 3);
    parse3(in, sizeof(in) - 1, 0, &p);
    ASSERT_EQ(p.r, GN_PARSE_ERR_431);
    PARSE("GET / HTTP/1.0\r\n\r\n", &p);
    ASSERT_EQ(p.req.num_headers, 0);
    parse3("GET / HTTP/1.0\r\n\r\n", 18, 0, &p);
    ASSERT_EQ(p.r, 18);
}

static void test_pipelined(void)
{
    static const char in[] = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
                             "GET /two HTTP/1.1\r\nHost: b\r\n\r\n"
                             "GET /thr";
    parsed_t p;
    PARSE(in, &p);
    ASSERT_EQ(p.r, 30);
    ASSERT_SLICE(p.req.target, "/one");
    const char *next = in + p.r;
    size_t left = sizeof(in) - 1 - (size_t)p.r;
    parse3(next, left, MAX_H, &p);
    ASSERT_EQ(p.r, 30);
    ASSERT_SLICE(p.req.target, "/two");
    ASSERT_SLICE(p.h[0].value, "b");
    parse3(next + p.r, left - (size_t)p.r, MAX_H, &p);
    ASSERT_EQ(p.r, GN_PARSE_INCOMPLETE);
}

static void test_leading_crlf(void)
{
    static const char in[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    parsed_t p;
    PARSE(in, &p);
    ASSERT_EQ(p.r, sizeof(in) - 1);
    ASSERT_SLICE(p.req.method, "GET");
    ASSERT_EQ(off(p.req.method, in), 4);
    PARSE("\r\n\r\n", &p);
    ASSERT_EQ(p.r, GN_PARSE_INCOMPLETE);
    PARSE("\r", &p);
    ASSERT_EQ(p.r, GN_PARSE_INCOMPLETE);
}

static void test_incomplete(void)
{
    parsed_t p;
    PARSE("", &p);
    ASSERT_EQ(p.r, GN_PARSE_INCOMPLETE);
    PARSE("GET / HTTP/1.1\r\nHost: a\r\n", &p);
    ASSERT_EQ(p.r, GN_PARSE_INCOMPLETE);
    PARSE("GET / HTTP/1.1\r\nHost: a\r\n\r", &p);
    ASSERT_EQ(p.r, GN_PARSE_INCOMPLETE);
    PARSE("GET / HTTP/1.1", &p);
    ASSERT_EQ(p.r, GN_PARSE_INCOMPLETE);
}

static void test_http10(void)
{
    parsed_t p;
    PARSE("GET /old HTTP/1.0\r\n\r\n", &p);
    ASSERT_EQ(p.r, 21);
    ASSERT_EQ(p.req.minor_version, 0);
    ASSERT_EQ(p.req.flags, 0);
    ASSERT_EQ(p.req.num_headers, 0);
    PARSE("POST /old HTTP/1.0\r\nContent-Length: 3\r\nConnection: Keep-Alive\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_EQ(p.req.content_length, 3);
    ASSERT_EQ(p.req.flags, GN_REQ_CONN_KEEPALIVE);
}

static void test_value_trimming(void)
{
    parsed_t p;
    PARSE("GET / HTTP/1.1\r\nHost:example.com\r\nX-A: \t  a b\t c \t \r\n"
          "X-B:\tv\r\n\r\n",
          &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.h[0].value, "example.com");
    ASSERT_SLICE(p.h[1].value, "a b\t c");
    ASSERT_SLICE(p.h[2].value, "v");
}

static void test_empty_value(void)
{
    parsed_t p;
    PARSE("GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Blank: \t \r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_EQ(p.req.num_headers, 3);
    ASSERT_SLICE(p.h[1].name, "X-Empty");
    ASSERT_EQ(p.h[1].value.len, 0);
    ASSERT_EQ(p.h[2].value.len, 0);
}

static void test_obs_text_value(void)
{
    parsed_t p;
    PARSE("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9 \xff\x80\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.h[1].value, "caf\xc3\xa9 \xff\x80");
}

static void test_long_values(void)
{
    /* Exercises the word-at-a-time scans with stops at every offset. */
    for (int at = 0; at < 20; at++) {
        char in[256];
        char val[64];
        memset(val, 'v', sizeof(val));
        val[40] = '\0';
        val[at + 10] = '\t';
        int n = snprintf(in, sizeof(in),
                         "GET /%.*s?%s HTTP/1.1\r\nHost: %s\r\nX: %s\r\n\r\n", at,
                         "abcdefghijklmnopqrstuvwxyz", "q=1", val, val);
        parsed_t p;
        parse3(in, (size_t)n, MAX_H, &p);
        ASSERT_EQ(p.r, n);
        ASSERT_EQ(p.h[1].value.len, 40);
        val[at + 10] = '\x01';
        n = snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: a\r\nX: %s\r\n\r\n", val);
        parse3(in, (size_t)n, MAX_H, &p);
        ASSERT_EQ(p.r, GN_PARSE_ERR_400);
        n = snprintf(in, sizeof(in), "GET /%.*s\x7f HTTP/1.1\r\nHost: a\r\n\r\n", at,
                     "abcdefghijklmnopqrstuvwxyz");
        parse3(in, (size_t)n, MAX_H, &p);
        ASSERT_EQ(p.r, GN_PARSE_ERR_400);
    }
}

static void test_flag_chunked(void)
{
    parsed_t p;
    PARSE("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST | GN_REQ_CHUNKED);
    ASSERT_EQ(p.req.content_length, -1);
    PARSE("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding:  CHUNKED \r\n\r\n", &p);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST | GN_REQ_CHUNKED);
}

static void test_flag_close(void)
{
    parsed_t p;
    PARSE("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST | GN_REQ_CONN_CLOSE);
    PARSE("GET / HTTP/1.1\r\nHost: a\r\nCONNECTION: foo,CLOSE\r\n\r\n", &p);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST | GN_REQ_CONN_CLOSE);
    PARSE("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed, xclose\r\n\r\n", &p);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST);
}

static void test_flag_keepalive(void)
{
    parsed_t p;
    PARSE("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST | GN_REQ_CONN_KEEPALIVE);
}

static void test_flag_upgrade(void)
{
    parsed_t p;
    PARSE("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
          "Upgrade: websocket\r\n\r\n",
          &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST | GN_REQ_CONN_KEEPALIVE | GN_REQ_CONN_UPGRADE);
    /* Several Connection lines add up. */
    PARSE("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nConnection: close\r\n\r\n",
          &p);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST | GN_REQ_CONN_UPGRADE | GN_REQ_CONN_CLOSE);
}

static void test_flag_continue(void)
{
    parsed_t p;
    PARSE("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nExpect: 100-Continue\r\n\r\n",
          &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST | GN_REQ_EXPECT_CONTINUE);
    ASSERT_EQ(p.req.content_length, 0);
    PARSE("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", &p);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST);
}

static void test_flag_host(void)
{
    parsed_t p;
    PARSE("GET / HTTP/1.0\r\nHOST: a\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST);
    /* An empty Host is valid (RFC 9112 3.2, no authority). */
    PARSE("GET / HTTP/1.1\r\nHost:\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST);
    /* Names that merely contain a known one are not it. */
    PARSE("GET / HTTP/1.0\r\nX-Host: a\r\nContent-Lengthy: x\r\n\r\n", &p);
    ASSERT_EQ(p.req.flags, 0);
    ASSERT_EQ(p.req.content_length, -1);
}

static void test_content_length_values(void)
{
    parsed_t p;
    PARSE("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n", &p);
    ASSERT_EQ(p.req.content_length, 7);
    PARSE("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n", &p);
    ASSERT_EQ(p.req.content_length, INT64_MAX);
}

/* ---- request parser: one test per rejection --------------------------------- */

static void test_reject_cl_and_te(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
              "Transfer-Encoding: chunked\r\n\r\n");
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
              "Content-Length: 5\r\n\r\n");
}

static void test_reject_duplicate_cl(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
}

static void test_reject_cl_plus(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n");
}

static void test_reject_cl_minus(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n");
}

static void test_reject_cl_hex(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n");
}

static void test_reject_cl_inner_space(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  5 5\r\n\r\n");
}

static void test_reject_cl_list(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n");
}

static void test_reject_cl_empty(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n");
}

static void test_reject_cl_overflow(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n");
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n");
}

static void test_reject_te_gzip(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n");
}

static void test_reject_te_chunked_chunked(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
}

static void test_reject_te_chunked_gzip(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
}

static void test_reject_te_twice(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
              "Transfer-Encoding: chunked\r\n\r\n");
}

static void test_reject_te_lookalike(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n");
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n");
}

static void test_reject_te_http10(void)
{
    REJECT400("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
}

static void test_reject_bare_lf(void)
{
    REJECT400("GET / HTTP/1.1\nHost: a\r\n\r\n");
    REJECT400("GET / HTTP/1.1\r\nHost: a\n\r\n");
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\n\n");
    REJECT400("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    REJECT400("\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    /* Rejected as soon as the LF arrives, before the head is complete. */
    REJECT400("GET / HTTP/1.1\nHost: a");
}

static void test_reject_bare_cr(void)
{
    REJECT400("GET / HTTP/1.1\rHost: a\r\n\r\n");
    REJECT400("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n");
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n");
    REJECT400("\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n");
}

static void test_reject_obs_fold(void)
{
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n  continued\r\n\r\n");
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n\tcontinued\r\n\r\n");
}

static void test_reject_space_before_colon(void)
{
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n");
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n");
}

static void test_reject_nul_in_value(void)
{
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n");
}

static void test_reject_ctl_in_value(void)
{
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n");
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n");
}

static void test_reject_ctl_in_name(void)
{
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: b\r\n\r\n");
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\nX\0Y: b\r\n\r\n");
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\nX(Y): b\r\n\r\n");
}

static void test_reject_empty_name(void)
{
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n");
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n");
}

static void test_reject_method_not_token(void)
{
    REJECT400("G(T / HTTP/1.1\r\nHost: a\r\n\r\n");
    REJECT400("GE\x01T / HTTP/1.1\r\nHost: a\r\n\r\n");
    REJECT400(" / HTTP/1.1\r\nHost: a\r\n\r\n");
    REJECT400("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n");
}

static void test_reject_target_space(void)
{
    REJECT400("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n");
    REJECT400("GET  / HTTP/1.1\r\nHost: a\r\n\r\n");
    REJECT400("GET /  HTTP/1.1\r\nHost: a\r\n\r\n");
    REJECT400("GET HTTP/1.1\r\nHost: a\r\n\r\n");
}

static void test_reject_target_ctl(void)
{
    REJECT400("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n");
    REJECT400("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n");
    REJECT400("GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n");
    REJECT400("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n");
}

static void test_reject_no_host_http11(void)
{
    REJECT400("GET / HTTP/1.1\r\n\r\n");
    REJECT400("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n");
}

static void test_reject_duplicate_host(void)
{
    REJECT400("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n");
}

static void test_reject_version_505(void)
{
    REJECT("GET / HTTP/2.0\r\nHost: a\r\n\r\n", GN_PARSE_ERR_505);
    REJECT("GET / HTTP/1.2\r\nHost: a\r\n\r\n", GN_PARSE_ERR_505);
    REJECT("GET / HTTP/0.9\r\n\r\n", GN_PARSE_ERR_505);
}

static void test_reject_version_garbage(void)
{
    REJECT400("GET / HTTP/1.1x\r\nHost: a\r\n\r\n");
    REJECT400("GET / HTTP/11\r\nHost: a\r\n\r\n");
    REJECT400("GET / http/1.1\r\nHost: a\r\n\r\n");
    REJECT400("GET / HTTP/1.\r\nHost: a\r\n\r\n");
    REJECT400("GET / HTTP/1.1 \r\nHost: a\r\n\r\n");
    REJECT400("GET /\r\nHost: a\r\n\r\n");
    REJECT400("GET / H\r\n\r\n");
}

static void test_reject_too_many_headers(void)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nB: b\r\nC: c\r\n\r\n";
    parsed_t p;
    parse3(in, sizeof(in) - 1, 2, &p);
    ASSERT_EQ(p.r, GN_PARSE_ERR_431);
    char big[2048];
    size_t n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < MAX_H; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "H%d: v\r\n", i);
    n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
    parse3(big, n, MAX_H, &p);
    ASSERT_EQ(p.r, GN_PARSE_ERR_431);
}

/* ---- gn_parse_fields: a head given as fields (HTTP/2) ----------------------- */

typedef struct {
    const char *method, *target;
    const char *f[12]; /* name, value, ...; NULL ends */
} fields_case_t;

/* A slice of its own, ending just before an unreadable page. */
static gn_slice_t guarded(const char *s, void **maps, size_t *lens, int *n)
{
    size_t len = strlen(s);
    char *p = guard_copy(s, len, &maps[*n], &lens[*n]);
    (*n)++;
    return (gn_slice_t){p, len};
}

/* The case as HTTP/1.1 text through gn_parse_request, and as fields
 * through gn_parse_fields: the same answer, and on success the same
 * request (slices compared by content: they point into other memory). */
static void check_fields_case(const fields_case_t *k)
{
    char text[2048];
    int n = snprintf(text, sizeof(text), "%s %s HTTP/1.1\r\n", k->method, k->target);
    size_t nf = 0;
    for (; k->f[2 * nf]; nf++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "%s: %s\r\n", k->f[2 * nf], k->f[2 * nf + 1]);
    n += snprintf(text + n, sizeof(text) - (size_t)n, "\r\n");
    parsed_t a;
    a.r = gn_parse_request(text, (size_t)n, 0, &a.req, a.h, MAX_H);

    void *maps[32];
    size_t lens[32];
    int nm = 0;
    gn_request_t req = {0};
    gn_header_t h[MAX_H];
    req.method = guarded(k->method, maps, lens, &nm);
    req.target = guarded(k->target, maps, lens, &nm);
    for (size_t i = 0; i < nf; i++) {
        h[i].name = guarded(k->f[2 * i], maps, lens, &nm);
        h[i].value = guarded(k->f[2 * i + 1], maps, lens, &nm);
    }
    int r = gn_parse_fields(&req, h, nf);
    if ((a.r > 0 ? 0 : a.r) != r) {
        TEST_FAIL_("%s %s: fields gave %d, text %d", k->method, k->target, r, a.r);
    } else if (r == 0) {
        gn_slice_t sa[] = {a.req.method, a.req.target, a.req.path, a.req.query, a.req.authority};
        gn_slice_t sb[] = {req.method, req.target, req.path, req.query, req.authority};
        for (size_t i = 0; i < sizeof(sa) / sizeof(sa[0]); i++)
            if (sa[i].len != sb[i].len || memcmp(sa[i].base, sb[i].base, sa[i].len) != 0)
                TEST_FAIL_("%s %s: request slice %zu differs", k->method, k->target, i);
        CHECK_EQ(req.content_length, a.req.content_length);
        CHECK_EQ(req.flags, a.req.flags);
        CHECK_EQ(req.num_headers, a.req.num_headers);
        for (size_t i = 0; i < nf && i < a.req.num_headers; i++)
            if (h[i].value.len != a.h[i].value.len || memcmp(h[i].value.base, a.h[i].value.base, h[i].value.len))
                TEST_FAIL_("%s %s: field %zu's value differs", k->method, k->target, i);
    }
    for (int i = 0; i < nm; i++)
        munmap(maps[i], lens[i]);
}

static void test_fields_agree_with_text(void)
{
    static const fields_case_t cases[] = {
        {"GET", "/", {"host", "x"}},
        {"GET", "/a%20b?q=1&r", {"host", "x", "accept", "*/*", "user-agent", "h2load"}},
        {"GET", "/", {"accept", "a"}},                      /* no host: 400 */
        {"GET", "/", {"host", "x", "host", "y"}},           /* two: 400 */
        {"POST", "/", {"host", "x", "content-type", "a", "content-type", "b"}},
        {"POST", "/", {"host", "x", "content-length", "12"}},
        {"POST", "/", {"host", "x", "content-length", "1 2"}},
        {"POST", "/", {"host", "x", "content-length", "+1"}},
        {"POST", "/", {"host", "x", "content-length", "1", "content-length", "1"}},
        {"POST", "/", {"host", "x", "content-length", "99999999999999999999"}},
        {"POST", "/", {"host", "x", "transfer-encoding", "chunked", "content-length", "3"}},
        {"POST", "/", {"host", "x", "transfer-encoding", "gzip, chunked"}},
        {"POST", "/", {"host", "x", "transfer-encoding", "gzip"}},
        {"POST", "/", {"host", "x", "expect", "100-continue"}},
        {"GET", "/", {"host", "x", "connection", "close"}},
        {"OPTIONS", "*", {"host", "x"}},
        {"GET", "*", {"host", "x"}},
        {"CONNECT", "example.com:443", {"host", "x"}},
        {"CONNECT", "/", {"host", "x"}},
        {"CONNECT", "example.com:443", {"host", "x", "host", "y"}}, /* 400 wins over 501 */
        {"GET", "http://example.com/p?q", {"host", "x"}},
        {"GET", "https://example.com", {"host", "x"}},
        {"GET", "http://user@example.com/", {"host", "x"}},
        {"GET", "ftp://example.com/", {"host", "x"}},
        {"GET", "/a#frag", {"host", "x"}},
        {"GET", "/\x80", {"host", "x"}},
        {"GET", "", {"host", "x"}},
        {"", "/", {"host", "x"}},
        {"G@T", "/", {"host", "x"}},
        {"GET", "/", {"host", "x", "a b", "c"}},
        {"GET", "/", {"host", "x", "", "c"}},
        {"GET", "/", {"host", "x", "x-a", "bad\x01value"}},
        {"GET", "/", {"host", "x", "x-a", "del\x7fvalue"}},
        {"GET", "/", {"host", "x", "x-a", "tab\tand obs-text \xe9"}},
        {"GET", "/", {"host", "x", "x-a", "  spaced \t"}},
        {"GET", "/", {"host", "x", "x-a", ""}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_fields_case(&cases[i]);
}

/* ---- chunked decoder ----------------------------------------------------------- */

typedef struct {
    int err;        /* 0, or what gn_chunked_step returned */
    size_t consumed; /* bytes consumed before done (or the error) */
    int done;
    size_t calls;
    size_t ndata;
    char *data; /* decoded body, malloc'd */
} decoded_t;

static void decoded_free(decoded_t *o)
{
    free(o->data);
}

/* Decodes buf whole, looping as the connection layer does. */
static void decode_whole(const char *buf, size_t len, decoded_t *out)
{
    gn_chunked_t d;
    const char *start = buf;
    memset(out, 0, sizeof(*out));
    out->data = malloc(len + 1);
    gn_chunked_init(&d);
    while (len && !d.done) {
        gn_slice_t data;
        ssize_t n = gn_chunked_step(&d, buf, len, &data);
        out->calls++;
        if (n < 0) {
            out->err = (int)n;
            break;
        }
        if (n == 0 || (size_t)n > len) {
            TEST_FAIL_("step returned %zd for len %zu", n, len);
            out->err = 1;
            break;
        }
        if (data.len && (data.base < buf || data.base + data.len > buf + n))
            TEST_FAIL_("data slice outside the consumed bytes");
        memcpy(out->data + out->ndata, data.base, data.len);
        out->ndata += data.len;
        buf += n;
        len -= (size_t)n;
    }
    out->consumed = (size_t)(buf - start);
    out->done = d.done;
}

/* Decodes in one byte at a time, each in its own 1-byte heap block. */
static void decode_bytewise(const char *in, size_t len, decoded_t *out)
{
    gn_chunked_t d;
    memset(out, 0, sizeof(*out));
    out->data = malloc(len + 1);
    memset(&d, 0, sizeof(d)); /* a zeroed struct must work like gn_chunked_init */
    for (size_t i = 0; i < len && !d.done; i++) {
        char *one = malloc(1);
        gn_slice_t data;
        *one = in[i];
        ssize_t n = gn_chunked_step(&d, one, 1, &data);
        if (n < 0) {
            out->err = (int)n;
            free(one);
            break;
        }
        if (n != 1 || (data.len && (data.base != one || data.len != 1)))
            TEST_FAIL_("byte %zu: step returned %zd, data len %zu", i, n, data.len);
        if (data.len)
            out->data[out->ndata++] = *one;
        out->consumed++;
        out->calls++;
        free(one);
    }
    out->done = d.done;
}

/* Decodes in both ways (whole at a guard page, byte by byte) and compares. */
static void decode3(const char *in, size_t len, decoded_t *out)
{
    void *map;
    size_t map_len;
    decoded_t b;
    char *g = guard_copy(in, len, &map, &map_len);
    decode_whole(g, len, out);
    munmap(map, map_len);
    decode_bytewise(in, len, &b);
    CHECK_EQ(b.err, out->err);
    if (!out->err && !b.err) {
        CHECK_EQ(b.consumed, out->consumed);
        CHECK_EQ(b.done, out->done);
        CHECK_EQ(b.ndata, out->ndata);
        if (b.ndata == out->ndata && memcmp(b.data, out->data, b.ndata) != 0)
            TEST_FAIL_("byte-by-byte decoded different data");
    }
    decoded_free(&b);
}

#define DECODE(lit, out) decode3(lit, sizeof(lit) - 1, out)

/* The body decodes to `body`, consuming exactly `consumed` bytes. */
#define EXPECT_BODY(lit, body, consumed_)                                           \
    do {                                                                             \
        decoded_t o_;                                                                \
        DECODE(lit, &o_);                                                            \
        int ok_ = o_.err == 0 && o_.done && o_.consumed == (size_t)(consumed_) &&    \
                  o_.ndata == strlen(body) && memcmp(o_.data, body, o_.ndata) == 0;  \
        if (!ok_)                                                                    \
            TEST_FAIL_("decode: err %d done %d consumed %zu (want %zu) body \"%.*s\"", \
                       o_.err, o_.done, o_.consumed, (size_t)(consumed_),            \
                       (int)o_.ndata, o_.data);                                      \
        decoded_free(&o_);                                                           \
        if (!ok_)                                                                    \
            return;                                                                  \
    } while (0)

#define EXPECT_WHOLE_BODY(lit, body) EXPECT_BODY(lit, body, sizeof(lit) - 1)

#define CHUNK_REJECT(lit)                                                            \
    do {                                                                             \
        decoded_t o_;                                                                \
        DECODE(lit, &o_);                                                            \
        int err_ = o_.err;                                                           \
        decoded_free(&o_);                                                           \
        ASSERT_EQ(err_, GN_PARSE_ERR_400);                                           \
    } while (0)

/* ---- request-target forms (RFC 9112 section 3.2) ------------------------- */

static void test_absolute_form(void)
{
    parsed_t p;
    PARSE("GET http://example.com/foo?q=1 HTTP/1.1\r\nHost: other.example\r\nX-A: b\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.req.target, "http://example.com/foo?q=1");
    ASSERT_SLICE(p.req.path, "/foo");
    ASSERT_SLICE(p.req.query, "q=1");
    ASSERT_SLICE(p.req.authority, "example.com");
    /* The target's authority replaces Host; other fields are untouched. */
    ASSERT_EQ(p.req.num_headers, 2);
    ASSERT_SLICE(p.h[0].name, "Host");
    ASSERT_SLICE(p.h[0].value, "example.com");
    ASSERT_SLICE(p.h[1].value, "b");
}

static void test_absolute_form_variants(void)
{
    parsed_t p;
    /* Scheme in any case, https, a port, an IPv6 literal. */
    PARSE("POST HTTPS://[::1]:8443/a/b HTTP/1.1\r\nhost: x\r\nContent-Length: 0\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.req.authority, "[::1]:8443");
    ASSERT_SLICE(p.req.path, "/a/b");
    ASSERT_EQ(p.req.query.len, 0);
    ASSERT_SLICE(p.h[0].value, "[::1]:8443");
    /* An empty path is "/", with or without a query. */
    PARSE("GET http://h.example HTTP/1.1\r\nHost: x\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.req.path, "/");
    ASSERT_EQ(p.req.query.len, 0);
    ASSERT_SLICE(p.req.authority, "h.example");
    PARSE("GET http://h.example:81?a=b HTTP/1.1\r\nHost: x\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.req.path, "/");
    ASSERT_SLICE(p.req.query, "a=b");
    ASSERT_SLICE(p.req.authority, "h.example:81");
    /* HTTP/1.0 needs no Host: the authority is all there is. */
    PARSE("GET http://h.example/x HTTP/1.0\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_EQ(p.req.num_headers, 0);
    ASSERT_SLICE(p.req.authority, "h.example");
    ASSERT_SLICE(p.req.path, "/x");
    /* OPTIONS may use absolute-form too. */
    PARSE("OPTIONS http://h.example/ HTTP/1.1\r\nHost: x\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.req.path, "/");
}

static void test_origin_form_has_no_authority(void)
{
    parsed_t p;
    PARSE("GET //a.example/b HTTP/1.1\r\nHost: h\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.req.path, "//a.example/b");
    ASSERT_EQ(p.req.authority.len, 0);
    ASSERT_SLICE(p.h[0].value, "h");
}

static void test_reject_absolute_form(void)
{
    REJECT400("GET http:///foo HTTP/1.1\r\nHost: h\r\n\r\n");     /* empty host */
    REJECT400("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("GET http://u@h.example/ HTTP/1.1\r\nHost: h\r\n\r\n"); /* userinfo */
    REJECT400("GET ftp://h.example/ HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("GET http:/h.example/ HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("GET http:h.example HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("GET http://h\"x/ HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("GET http://h{x}/ HTTP/1.1\r\nHost: h\r\n\r\n");
    /* Still HTTP/1.1: Host is required even with an authority in the target. */
    REJECT400("GET http://h.example/ HTTP/1.1\r\n\r\n");
    REJECT400("GET http://h.example/ HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n");
}

static void test_reject_fragment(void)
{
    REJECT400("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("GET /p?x=1#y HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("GET # HTTP/1.1\r\nHost: h\r\n\r\n");
    /* Past the 8-byte fast path, and in absolute-form. */
    REJECT400("GET /abcdefghijklmnopq#rstuvwxyz HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("GET http://h.example/a#b HTTP/1.1\r\nHost: h\r\n\r\n");
}

static void test_reject_not_origin_form(void)
{
    REJECT400("GET foo/bar HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("GET ?a=b HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n"); /* authority-form */
    REJECT400("POST a HTTP/1.1\r\nHost: h\r\n\r\n");
}

static void test_asterisk_form(void)
{
    parsed_t p;
    PARSE("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_SLICE(p.req.path, "*");
    ASSERT_EQ(p.req.authority.len, 0);
    REJECT400("GET * HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("options * HTTP/1.1\r\nHost: h\r\n\r\n"); /* methods are case-sensitive */
    REJECT400("OPTIONS *a HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("OPTIONS ** HTTP/1.1\r\nHost: h\r\n\r\n");
}

static void test_connect(void)
{
    REJECT("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", GN_PARSE_ERR_501);
    REJECT("CONNECT [::1]:8080 HTTP/1.1\r\nHost: x\r\n\r\n", GN_PARSE_ERR_501);
    /* Malformed CONNECT requests stay 400: no port, another form, bad fields. */
    REJECT400("CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("CONNECT example.com: HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("CONNECT :443 HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("CONNECT a:44x HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("CONNECT u@a:443 HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("CONNECT http://a:443/ HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("CONNECT * HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT400("CONNECT a:443 HTTP/1.1\r\n\r\n");
    REJECT400("CONNECT a:443 HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n");
}

static void test_reject_duplicate_content_type(void)
{
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
              "content-type: application/json\r\n\r\n");
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nContent-Type: a\r\nContent-Type: a\r\n\r\n");
    parsed_t p;
    PARSE("POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n\r\n", &p);
    ASSERT_TRUE(p.r > 0);
    ASSERT_EQ(p.req.flags, GN_REQ_HAS_HOST | GN_REQ_HAS_CONTENT_TYPE);
}

static void test_te_unknown_coding_501(void)
{
    REJECT("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", GN_PARSE_ERR_501);
    REJECT("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
           "Transfer-Encoding: chunked\r\n\r\n", GN_PARSE_ERR_501);
    REJECT("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-custom ,  deflate,chunked\r\n\r\n",
           GN_PARSE_ERR_501);
    /* Malformed lists and a chunked that is not last stay 400. */
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked, gzip\r\n\r\n");
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n");
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip;q=1, chunked\r\n\r\n");
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gz ip, chunked\r\n\r\n");
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n");
    REJECT400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nX-A : b\r\n\r\n");
    REJECT400("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
}

static void test_chunked_basic(void)
{
    EXPECT_WHOLE_BODY("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world");
    EXPECT_WHOLE_BODY("0\r\n\r\n", "");
    EXPECT_WHOLE_BODY("1\r\nx\r\n0\r\n\r\n", "x");
}

static void test_chunked_one_run_per_call(void)
{
    static const char in[] = "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
    gn_chunked_t d;
    gn_slice_t data;
    gn_chunked_init(&d);
    ssize_t n = gn_chunked_step(&d, in, sizeof(in) - 1, &data);
    ASSERT_EQ(n, 11); /* framing after the data is consumed up to the next data */
    ASSERT_SLICE(data, "abc");
    ASSERT_EQ(d.done, 0);
    n = gn_chunked_step(&d, in + 11, sizeof(in) - 1 - 11, &data);
    ASSERT_EQ(n, sizeof(in) - 1 - 11);
    ASSERT_SLICE(data, "def");
    ASSERT_EQ(d.done, 1);
    ASSERT_EQ(gn_chunked_step(&d, in, sizeof(in) - 1, &data), 0);
    ASSERT_EQ(data.len, 0);
    gn_chunked_init(&d);
    ASSERT_EQ(gn_chunked_step(&d, in, 0, &data), 0);
    /* Framing only: data len 0 but bytes consumed. */
    ASSERT_EQ(gn_chunked_step(&d, in, 3, &data), 3);
    ASSERT_EQ(data.len, 0);
}

static void test_chunked_split_data(void)
{
    static const char in[] = "a\r\n0123456789\r\n0\r\n\r\n";
    gn_chunked_t d;
    gn_slice_t data;
    gn_chunked_init(&d);
    ASSERT_EQ(gn_chunked_step(&d, in, 7, &data), 7);
    ASSERT_SLICE(data, "0123");
    ASSERT_EQ(gn_chunked_step(&d, in + 7, 6, &data), 6);
    ASSERT_SLICE(data, "456789");
    ASSERT_EQ(gn_chunked_step(&d, in + 13, sizeof(in) - 1 - 13, &data),
              sizeof(in) - 1 - 13);
    ASSERT_EQ(d.done, 1);
}

static void test_chunked_hex_case(void)
{
    char in[128], body[64];
    memset(body, 'z', sizeof(body));
    /* 0x1a = 26 and 0x1F = 31 bytes. */
    int n = snprintf(in, sizeof(in), "1a\r\n%.26s\r\n1F\r\n%.31s\r\n0\r\n\r\n", body, body);
    decoded_t o;
    decode3(in, (size_t)n, &o);
    int err = o.err, done = o.done;
    size_t nd = o.ndata;
    decoded_free(&o);
    ASSERT_EQ(err, 0);
    ASSERT_EQ(done, 1);
    ASSERT_EQ(nd, 57);
    EXPECT_WHOLE_BODY("A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
                      "01234567890123456789");
    EXPECT_WHOLE_BODY("0005\r\nhello\r\n0000000000000000\r\n\r\n", "hello");
}

static void test_chunked_extensions(void)
{
    EXPECT_WHOLE_BODY("5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello");
    EXPECT_WHOLE_BODY("5;a=\"q u o;t=e\";b\r\nhello\r\n0\r\n\r\n", "hello");
    EXPECT_WHOLE_BODY("5 ; a = b\r\nhello\r\n0\t;x\r\n\r\n", "hello");
}

static void test_chunked_trailers(void)
{
    EXPECT_WHOLE_BODY("5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n", "hello");
}

static void test_chunked_pipelined(void)
{
    static const char in[] = "4\r\nbody\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    EXPECT_BODY(in, "body", 20);
    EXPECT_BODY("0\r\n\r\n0\r\n\r\n", "", 5);
}

static void test_chunked_incomplete(void)
{
    decoded_t o;
    DECODE("5\r\nhel", &o);
    int err = o.err, done = o.done;
    size_t consumed = o.consumed;
    decoded_free(&o);
    ASSERT_EQ(err, 0);
    ASSERT_EQ(done, 0);
    ASSERT_EQ(consumed, 6);
}

static void test_chunked_reject_empty_size(void)
{
    CHUNK_REJECT("\r\nhello\r\n0\r\n\r\n");
    CHUNK_REJECT(";ext\r\nhello\r\n0\r\n\r\n");
}

static void test_chunked_reject_sign(void)
{
    CHUNK_REJECT("+5\r\nhello\r\n0\r\n\r\n");
    CHUNK_REJECT("-5\r\nhello\r\n0\r\n\r\n");
}

static void test_chunked_reject_0x(void)
{
    CHUNK_REJECT("0x5\r\nhello\r\n0\r\n\r\n");
}

static void test_chunked_reject_non_hex(void)
{
    CHUNK_REJECT("5g\r\nhello\r\n0\r\n\r\n");
    CHUNK_REJECT("5 5\r\nhello\r\n0\r\n\r\n");
    CHUNK_REJECT("5 \r\nhello\r\n0\r\n\r\n");
}

static void test_chunked_reject_17_digits(void)
{
    CHUNK_REJECT("00000000000000005\r\nhello\r\n0\r\n\r\n");
}

static void test_chunked_reject_overflow(void)
{
    CHUNK_REJECT("8000000000000000\r\n");
    CHUNK_REJECT("FFFFFFFFFFFFFFFF\r\n");
    decoded_t o;
    DECODE("7fffffffffffffff\r\nabc", &o);
    int err = o.err;
    decoded_free(&o);
    ASSERT_EQ(err, 0);
}

static void test_chunked_reject_missing_crlf(void)
{
    CHUNK_REJECT("5\r\nhelloX\r\n0\r\n\r\n");
    CHUNK_REJECT("5\r\nhello\rX0\r\n\r\n");
    CHUNK_REJECT("5\r\nhello0\r\n\r\n");
}

static void test_chunked_reject_bare_lf(void)
{
    CHUNK_REJECT("5\nhello\r\n0\r\n\r\n");
    CHUNK_REJECT("5\r\nhello\n0\r\n\r\n");
    CHUNK_REJECT("5;ext\nhello\r\n0\r\n\r\n");
    CHUNK_REJECT("5\r\nhello\r\n0\n\r\n");
    CHUNK_REJECT("5\r\nhello\r\n0\r\n\n");
    CHUNK_REJECT("5\r\nhello\r\n0\r\nT: v\n\r\n");
}

static void test_chunked_reject_bare_cr(void)
{
    CHUNK_REJECT("5\rhello\r\n0\r\n\r\n");
    CHUNK_REJECT("5;a\rb\r\nhello\r\n0\r\n\r\n");
    CHUNK_REJECT("0\r\n\rX");
}

static void test_chunked_reject_ctl_in_ext(void)
{
    CHUNK_REJECT("5;a=\0\r\nhello\r\n0\r\n\r\n");
    CHUNK_REJECT("5;a=\x7f\r\nhello\r\n0\r\n\r\n");
}

static void test_chunked_size_line_limit(void)
{
    /* 4096 bytes on the size line (before CRLF) pass, 4097 do not. */
    static char in[4200];
    size_t n = 0;
    in[n++] = '1';
    in[n++] = ';';
    memset(in + n, 'e', 4094);
    n += 4094;
    memcpy(in + n, "\r\nx\r\n0\r\n\r\n", 10);
    decoded_t o;
    decode3(in, n + 10, &o);
    int err = o.err, done = o.done;
    decoded_free(&o);
    ASSERT_EQ(err, 0);
    ASSERT_EQ(done, 1);
    in[0] = '1';
    in[1] = ';';
    memset(in + 2, 'e', 4095);
    memcpy(in + 4097, "\r\nx\r\n0\r\n\r\n", 10);
    decode3(in, 4107, &o);
    err = o.err;
    decoded_free(&o);
    ASSERT_EQ(err, GN_PARSE_ERR_400);
}

static void test_chunked_trailer_limit(void)
{
    /* 8192 bytes of trailer field lines pass, 8193 do not. */
    static char in[8300];
    size_t n = (size_t)snprintf(in, sizeof(in), "0\r\nX: ");
    size_t fill = 8192 - 5; /* "X: " + fill + CRLF = 8192 */
    memset(in + n, 'v', fill);
    n += fill;
    memcpy(in + n, "\r\n\r\n", 4);
    decoded_t o;
    decode3(in, n + 4, &o);
    int err = o.err, done = o.done;
    decoded_free(&o);
    ASSERT_EQ(err, 0);
    ASSERT_EQ(done, 1);
    in[n] = 'v';
    memcpy(in + n + 1, "\r\n\r\n", 4);
    decode3(in, n + 5, &o);
    err = o.err;
    decoded_free(&o);
    ASSERT_EQ(err, GN_PARSE_ERR_400);
}

static void test_chunked_reject_bad_trailers(void)
{
    CHUNK_REJECT("0\r\nX: a\r\n  folded\r\n\r\n");
    CHUNK_REJECT("0\r\nX : a\r\n\r\n");
    CHUNK_REJECT("0\r\nX: a\0b\r\n\r\n");
    CHUNK_REJECT("0\r\n: a\r\n\r\n");
    CHUNK_REJECT("0\r\nNoColon\r\n\r\n");
    CHUNK_REJECT("0\r\nX(: a\r\n\r\n");
}

/* ---- runner ---------------------------------------------------------------- */

static const test_entry_t tests[] = {
    TEST_ENTRY(simple_get),
    TEST_ENTRY(path_and_query),
    TEST_ENTRY(many_headers),
    TEST_ENTRY(max_headers_exact),
    TEST_ENTRY(pipelined),
    TEST_ENTRY(leading_crlf),
    TEST_ENTRY(incomplete),
    TEST_ENTRY(http10),
    TEST_ENTRY(value_trimming),
    TEST_ENTRY(empty_value),
    TEST_ENTRY(obs_text_value),
    TEST_ENTRY(long_values),
    TEST_ENTRY(flag_chunked),
    TEST_ENTRY(flag_close),
    TEST_ENTRY(flag_keepalive),
    TEST_ENTRY(flag_upgrade),
    TEST_ENTRY(flag_continue),
    TEST_ENTRY(flag_host),
    TEST_ENTRY(content_length_values),
    TEST_ENTRY(reject_cl_and_te),
    TEST_ENTRY(reject_duplicate_cl),
    TEST_ENTRY(reject_cl_plus),
    TEST_ENTRY(reject_cl_minus),
    TEST_ENTRY(reject_cl_hex),
    TEST_ENTRY(reject_cl_inner_space),
    TEST_ENTRY(reject_cl_list),
    TEST_ENTRY(reject_cl_empty),
    TEST_ENTRY(reject_cl_overflow),
    TEST_ENTRY(reject_te_gzip),
    TEST_ENTRY(reject_te_chunked_chunked),
    TEST_ENTRY(reject_te_chunked_gzip),
    TEST_ENTRY(reject_te_twice),
    TEST_ENTRY(reject_te_lookalike),
    TEST_ENTRY(reject_te_http10),
    TEST_ENTRY(reject_bare_lf),
    TEST_ENTRY(reject_bare_cr),
    TEST_ENTRY(reject_obs_fold),
    TEST_ENTRY(reject_space_before_colon),
    TEST_ENTRY(reject_nul_in_value),
    TEST_ENTRY(reject_ctl_in_value),
    TEST_ENTRY(reject_ctl_in_name),
    TEST_ENTRY(reject_empty_name),
    TEST_ENTRY(reject_method_not_token),
    TEST_ENTRY(reject_target_space),
    TEST_ENTRY(reject_target_ctl),
    TEST_ENTRY(reject_no_host_http11),
    TEST_ENTRY(reject_duplicate_host),
    TEST_ENTRY(reject_version_505),
    TEST_ENTRY(reject_version_garbage),
    TEST_ENTRY(reject_too_many_headers),
    TEST_ENTRY(absolute_form),
    TEST_ENTRY(absolute_form_variants),
    TEST_ENTRY(origin_form_has_no_authority),
    TEST_ENTRY(reject_absolute_form),
    TEST_ENTRY(reject_fragment),
    TEST_ENTRY(reject_not_origin_form),
    TEST_ENTRY(asterisk_form),
    TEST_ENTRY(connect),
    TEST_ENTRY(reject_duplicate_content_type),
    TEST_ENTRY(te_unknown_coding_501),
    TEST_ENTRY(fields_agree_with_text),
    TEST_ENTRY(chunked_basic),
    TEST_ENTRY(chunked_one_run_per_call),
    TEST_ENTRY(chunked_split_data),
    TEST_ENTRY(chunked_hex_case),
    TEST_ENTRY(chunked_extensions),
    TEST_ENTRY(chunked_trailers),
    TEST_ENTRY(chunked_pipelined),
    TEST_ENTRY(chunked_incomplete),
    TEST_ENTRY(chunked_reject_empty_size),
    TEST_ENTRY(chunked_reject_sign),
    TEST_ENTRY(chunked_reject_0x),
    TEST_ENTRY(chunked_reject_non_hex),
    TEST_ENTRY(chunked_reject_17_digits),
    TEST_ENTRY(chunked_reject_overflow),
    TEST_ENTRY(chunked_reject_missing_crlf),
    TEST_ENTRY(chunked_reject_bare_lf),
    TEST_ENTRY(chunked_reject_bare_cr),
    TEST_ENTRY(chunked_reject_ctl_in_ext),
    TEST_ENTRY(chunked_size_line_limit),
    TEST_ENTRY(chunked_trailer_limit),
    TEST_ENTRY(chunked_reject_bad_trailers),
};

int main(int argc, char **argv)
{
    return test_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
