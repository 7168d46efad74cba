/*
 * Unit tests for src/http/proxy.c: the PROXY protocol v1/v2 parser and the
 * trust list. Every header is also fed one byte at a time, each prefix in
 * its own exact-size heap block (so ASan sees any read past the end): every
 * proper prefix of a valid header must be "incomplete", and a refused one
 * must stay refused once refused.
 */
#include "http/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/un.h>

#include "test.h"

/* Parses in[0..len) whole, then byte by byte; returns the whole result. */
static int parse_all_ways(const char *in, size_t len, gn_proxy_header_t *out)
{
    int whole = gn_proxy_parse(in, len, out);
    int refused = 0;
    for (size_t n = 0; n < len; n++) {
        char *copy = malloc(n ? n : 1);
        memcpy(copy, in, n);
        gn_proxy_header_t h;
        int r = gn_proxy_parse(copy, n, &h);
        free(copy);
        if (whole > 0 && (size_t)whole > n && r != GN_PROXY_INCOMPLETE)
            TEST_FAIL_("prefix of %zu bytes: %d, expected incomplete", n, r);
        if (whole > 0 && (size_t)whole <= n && r != whole)
            TEST_FAIL_("prefix of %zu bytes: %d, expected %d", n, r, whole);
        if (refused && r != GN_PROXY_INVALID)
            TEST_FAIL_("prefix of %zu bytes: %d after an earlier refusal", n, r);
        if (r == GN_PROXY_INVALID) {
            refused = 1;
            if (h.error == NULL)
                TEST_FAIL_("refused without a reason");
        }
    }
    if (whole == GN_PROXY_INVALID && out->error == NULL)
        TEST_FAIL_("refused without a reason");
    return whole;
}

#define PARSE(lit, out) parse_all_ways(lit, sizeof(lit) - 1, out)

#define REFUSE(lit)                                                                  \
    do {                                                                             \
        gn_proxy_header_t h_;                                                        \
        ASSERT_EQ(PARSE(lit, &h_), GN_PROXY_INVALID);                                \
    } while (0)

static void check_in4(const struct sockaddr_storage *ss, const char *addr, unsigned port)
{
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    char text[INET_ADDRSTRLEN];
    CHECK_EQ(a->sin_family, AF_INET);
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
    if (strcmp(text, addr) != 0)
        TEST_FAIL_("address %s, expected %s", text, addr);
    CHECK_EQ(ntohs(a->sin_port), port);
}

static void check_in6(const struct sockaddr_storage *ss, const char *addr, unsigned port)
{
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    char text[INET6_ADDRSTRLEN];
    CHECK_EQ(a->sin6_family, AF_INET6);
    inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
    if (strcmp(text, addr) != 0)
        TEST_FAIL_("address %s, expected %s", text, addr);
    CHECK_EQ(ntohs(a->sin6_port), port);
}

/* ---- v1 -------------------------------------------------------------------- */

static void test_v1_tcp4(void)
{
    static const char in[] = "PROXY TCP4 192.0.2.10 198.51.100.7 56324 443\r\nGET / HTTP/1.1\r\n";
    gn_proxy_header_t h;
    ASSERT_EQ(PARSE(in, &h), 46);
    CHECK_EQ(h.version, 1);
    CHECK_EQ(h.has_addrs, 1);
    check_in4(&h.src, "192.0.2.10", 56324);
    check_in4(&h.dst, "198.51.100.7", 443);
    CHECK_EQ(h.src_len, sizeof(struct sockaddr_in));
}

static void test_v1_tcp6(void)
{
    static const char in[] = "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n";
    gn_proxy_header_t h;
    ASSERT_EQ(PARSE(in, &h), sizeof(in) - 1);
    CHECK_EQ(h.has_addrs, 1);
    check_in6(&h.src, "2001:db8::1", 0);
    check_in6(&h.dst, "::1", 65535);
    CHECK_EQ(h.dst_len, sizeof(struct sockaddr_in6));
}

static void test_v1_unknown(void)
{
    gn_proxy_header_t h;
    ASSERT_EQ(PARSE("PROXY UNKNOWN\r\nGET", &h), 15);
    CHECK_EQ(h.version, 1);
    CHECK_EQ(h.has_addrs, 0);
    /* Whatever follows UNKNOWN on the line is ignored. */
    ASSERT_EQ(PARSE("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", &h), 35);
    CHECK_EQ(h.has_addrs, 0);
    REFUSE("PROXY UNKNOWNX\r\n");
}

static void test_v1_longest_line(void)
{
    char in[200];
    gn_proxy_header_t h;
    /* 107 bytes, CRLF included: the longest allowed. */
    memset(in, 'x', sizeof(in));
    memcpy(in, "PROXY UNKNOWN ", 14);
    memcpy(in + 105, "\r\n", 2);
    ASSERT_EQ(parse_all_ways(in, 107, &h), 107);
    ASSERT_EQ(parse_all_ways(in, 150, &h), 107);
    /* 108 bytes: refused, and without waiting for the CRLF. */
    memset(in, 'x', sizeof(in));
    memcpy(in, "PROXY UNKNOWN ", 14);
    memcpy(in + 106, "\r\n", 2);
    ASSERT_EQ(parse_all_ways(in, 108, &h), GN_PROXY_INVALID);
    ASSERT_EQ(parse_all_ways(in, 107, &h), GN_PROXY_INVALID);
    ASSERT_EQ(parse_all_ways(in, 106, &h), GN_PROXY_INCOMPLETE);
}

static void test_v1_refused(void)
{
    REFUSE("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n");   /* two spaces */
    REFUSE("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n");   /* leading zero */
    REFUSE("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"); /* port too big */
    REFUSE("PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n");
    REFUSE("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n");      /* three fields */
    REFUSE("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n");  /* five fields */
    REFUSE("PROXY TCP4 ::1 ::1 1 2\r\n");            /* family mismatch */
    REFUSE("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n");
    REFUSE("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n");
    REFUSE("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n");
    REFUSE("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n");   /* trailing space */
    REFUSE("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n");
    REFUSE("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n");
    REFUSE("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n");      /* bare LF */
    REFUSE("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX");     /* CR without LF */
    REFUSE("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n");
    REFUSE("PROXY \r\n");
    REFUSE("PROXY TCP4\r\n");
    REFUSE("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    REFUSE("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n");
}

/* ---- v2 -------------------------------------------------------------------- */

static const unsigned char SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Builds a v2 header: ver_cmd, fam, then block[0..n) as the payload. */
static size_t v2(char *out, unsigned ver_cmd, unsigned fam, const void *block, size_t n)
{
    memcpy(out, SIG, 12);
    out[12] = (char)ver_cmd;
    out[13] = (char)fam;
    out[14] = (char)(n >> 8);
    out[15] = (char)(n & 0xff);
    memcpy(out + 16, block, n);
    return 16 + n;
}

static void test_v2_tcp4_with_tlvs(void)
{
    unsigned char b[12 + 3 + 5 + 3 + 0 + 3 + 2];
    unsigned char *p = b;
    memcpy(p, "\xc0\x00\x02\x0a", 4);       /* 192.0.2.10 */
    memcpy(p + 4, "\xc6\x33\x64\x07", 4);   /* 198.51.100.7 */
    memcpy(p + 8, "\xdc\x04\x01\xbb", 4);   /* 56324, 443 */
    p += 12;
    memcpy(p, "\x01\x00\x05" "h2xyz", 8);   /* PP2_TYPE_ALPN, 5 bytes */
    p += 8;
    memcpy(p, "\x04\x00\x00", 3);           /* PP2_TYPE_NOOP, empty */
    p += 3;
    memcpy(p, "\xee\x00\x02\x00\x00", 5);   /* unknown type, skipped */
    char in[256];
    size_t n = v2(in, 0x21, 0x11, b, sizeof(b));
    memcpy(in + n, "GET /", 5);
    gn_proxy_header_t h;
    ASSERT_EQ(parse_all_ways(in, n + 5, &h), (int)n);
    CHECK_EQ(h.version, 2);
    CHECK_EQ(h.has_addrs, 1);
    check_in4(&h.src, "192.0.2.10", 56324);
    check_in4(&h.dst, "198.51.100.7", 443);
}

static void test_v2_tcp6(void)
{
    unsigned char b[36] = {0};
    b[0] = 0x20, b[1] = 0x01, b[2] = 0x0d, b[3] = 0xb8, b[15] = 1; /* 2001:db8::1 */
    b[31] = 1;                                                      /* ::1 */
    b[32] = 0x30, b[33] = 0x39, b[34] = 0x1f, b[35] = 0x90;          /* 12345, 8080 */
    char in[128];
    size_t n = v2(in, 0x21, 0x21, b, sizeof(b));
    gn_proxy_header_t h;
    ASSERT_EQ(parse_all_ways(in, n, &h), (int)n);
    check_in6(&h.src, "2001:db8::1", 12345);
    check_in6(&h.dst, "::1", 8080);
}

static void test_v2_unix(void)
{
    unsigned char b[216] = {0};
    memcpy(b, "/run/client.sock", 16);
    memset(b + 108, 'p', 108); /* a path using all 108 bytes, no NUL */
    char in[256];
    size_t n = v2(in, 0x21, 0x31, b, sizeof(b));
    gn_proxy_header_t h;
    ASSERT_EQ(parse_all_ways(in, n, &h), (int)n);
    CHECK_EQ(h.has_addrs, 1);
    const struct sockaddr_un *s = (const struct sockaddr_un *)&h.src;
    const struct sockaddr_un *d = (const struct sockaddr_un *)&h.dst;
    CHECK_EQ(s->sun_family, AF_UNIX);
    CHECK_EQ(memcmp(s->sun_path, "/run/client.sock", 17), 0);
    CHECK_EQ(h.src_len, offsetof(struct sockaddr_un, sun_path) + 16);
    CHECK_EQ(d->sun_path[107], 'p');
    CHECK_EQ(h.dst_len, offsetof(struct sockaddr_un, sun_path) + 108);
}

static void test_v2_local(void)
{
    char in[64];
    gn_proxy_header_t h;
    /* A health check: no addresses. */
    size_t n = v2(in, 0x20, 0x00, "", 0);
    ASSERT_EQ(parse_all_ways(in, n, &h), 16);
    CHECK_EQ(h.has_addrs, 0);
    /* LOCAL with an address block and TLVs: all ignored, even a family
     * that a PROXY command could not use. */
    n = v2(in, 0x20, 0x12, "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02\x04\x00\x00", 15);
    ASSERT_EQ(parse_all_ways(in, n, &h), (int)n);
    CHECK_EQ(h.has_addrs, 0);
    /* PROXY with UNSPEC: the proxy does not know; keep the socket's. */
    n = v2(in, 0x21, 0x00, "\x00\x00\x00", 3);
    ASSERT_EQ(parse_all_ways(in, n, &h), (int)n);
    CHECK_EQ(h.has_addrs, 0);
}

static void test_v2_refused(void)
{
    char in[64];
    unsigned char b[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    gn_proxy_header_t h;
    size_t n = v2(in, 0x11, 0x11, b, 12); /* version 1 */
    ASSERT_EQ(parse_all_ways(in, n, &h), GN_PROXY_INVALID);
    n = v2(in, 0x22, 0x11, b, 12); /* command 2 */
    ASSERT_EQ(parse_all_ways(in, n, &h), GN_PROXY_INVALID);
    n = v2(in, 0x21, 0x12, b, 12); /* DGRAM */
    ASSERT_EQ(parse_all_ways(in, n, &h), GN_PROXY_INVALID);
    n = v2(in, 0x21, 0x10, b, 12); /* transport UNSPEC with an address */
    ASSERT_EQ(parse_all_ways(in, n, &h), GN_PROXY_INVALID);
    n = v2(in, 0x21, 0x41, b, 12); /* family 4 */
    ASSERT_EQ(parse_all_ways(in, n, &h), GN_PROXY_INVALID);
    n = v2(in, 0x21, 0x11, b, 11); /* block too short for INET */
    ASSERT_EQ(parse_all_ways(in, n, &h), GN_PROXY_INVALID);
    n = v2(in, 0x21, 0x21, b, 12); /* too short for INET6 */
    ASSERT_EQ(parse_all_ways(in, n, &h), GN_PROXY_INVALID);
    unsigned char t[12 + 3] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x01, 0x00, 0x01};
    n = v2(in, 0x21, 0x11, t, sizeof(t)); /* TLV longer than what is left */
    ASSERT_EQ(parse_all_ways(in, n, &h), GN_PROXY_INVALID);
    n = v2(in, 0x21, 0x11, t, 14); /* truncated TLV header */
    ASSERT_EQ(parse_all_ways(in, n, &h), GN_PROXY_INVALID);
}

static void test_v2_too_long(void)
{
    static char in[16 + GN_PROXY_V2_MAX_LEN + 1];
    static unsigned char b[GN_PROXY_V2_MAX_LEN + 1];
    gn_proxy_header_t h;
    /* The largest accepted: an INET block padded with one big TLV. */
    memcpy(b, "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02", 12);
    b[12] = 0x04;
    b[13] = (unsigned char)((GN_PROXY_V2_MAX_LEN - 15) >> 8);
    b[14] = (unsigned char)((GN_PROXY_V2_MAX_LEN - 15) & 0xff);
    size_t n = v2(in, 0x21, 0x11, b, GN_PROXY_V2_MAX_LEN);
    ASSERT_EQ(gn_proxy_parse(in, n, &h), (int)n);
    /* One byte more is refused as soon as the length field is in. */
    n = v2(in, 0x21, 0x11, b, GN_PROXY_V2_MAX_LEN + 1);
    ASSERT_EQ(gn_proxy_parse(in, 16, &h), GN_PROXY_INVALID);
    ASSERT_EQ(gn_proxy_parse(in, 15, &h), GN_PROXY_INCOMPLETE);
}

static void test_wrong_signature(void)
{
    gn_proxy_header_t h;
    /* Refused at the first byte that differs from both signatures. */
    ASSERT_EQ(gn_proxy_parse("G", 1, &h), GN_PROXY_INVALID);
    ASSERT_EQ(gn_proxy_parse("PROXX", 5, &h), GN_PROXY_INVALID);
    ASSERT_EQ(gn_proxy_parse("\r\n\r\n\0\r\nQUIX", 11, &h), GN_PROXY_INVALID);
    ASSERT_EQ(gn_proxy_parse("\r\n\r\n\0\r\nQU", 9, &h), GN_PROXY_INCOMPLETE);
    ASSERT_EQ(gn_proxy_parse("", 0, &h), GN_PROXY_INCOMPLETE);
    REFUSE("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    REFUSE("\r\nPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
}

/* ---- trust list ---------------------------------------------------------- */

static int trusted(const gn_trust_t *t, const char *addr)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, addr, &a->sin6_addr);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, addr, &a->sin_addr);
    }
    return gn_trust_match(t, (struct sockaddr *)&ss);
}

static void test_trust_list(void)
{
    gn_trust_t t;
    char err[128];
    ASSERT_EQ(gn_trust_parse(&t, " 127.0.0.1, 10.0.0.0/8 ,fd00::/8,192.168.1.128/25,::1", err, sizeof(err)), 0);
    CHECK_EQ(t.n, 5);
    CHECK_EQ(t.any, 0);
    CHECK_EQ(trusted(&t, "127.0.0.1"), 1);
    CHECK_EQ(trusted(&t, "127.0.0.2"), 0);
    CHECK_EQ(trusted(&t, "10.255.0.1"), 1);
    CHECK_EQ(trusted(&t, "11.0.0.1"), 0);
    CHECK_EQ(trusted(&t, "192.168.1.200"), 1);
    CHECK_EQ(trusted(&t, "192.168.1.100"), 0);
    CHECK_EQ(trusted(&t, "::ffff:10.1.2.3"), 1); /* dual-stack socket */
    CHECK_EQ(trusted(&t, "::ffff:11.1.2.3"), 0);
    CHECK_EQ(trusted(&t, "fd12::1"), 1);
    CHECK_EQ(trusted(&t, "fe80::1"), 0);
    CHECK_EQ(trusted(&t, "::1"), 1);
    CHECK_EQ(trusted(&t, "::2"), 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    CHECK_EQ(gn_trust_match(&t, (struct sockaddr *)&un), 1);
    gn_trust_free(&t);

    ASSERT_EQ(gn_trust_parse(&t, "*", err, sizeof(err)), 0);
    CHECK_EQ(trusted(&t, "203.0.113.9"), 1);
    CHECK_EQ(trusted(&t, "2001:db8::9"), 1);
    gn_trust_free(&t);

    ASSERT_EQ(gn_trust_parse(&t, "", err, sizeof(err)), 0);
    CHECK_EQ(trusted(&t, "127.0.0.1"), 0);
    gn_trust_free(&t);

    /* An entry written as IPv4-mapped IPv6 matches an IPv4 peer too. */
    ASSERT_EQ(gn_trust_parse(&t, "::ffff:10.0.0.0/104", err, sizeof(err)), 0);
    CHECK_EQ(trusted(&t, "10.9.9.9"), 1);
    CHECK_EQ(trusted(&t, "::ffff:10.9.9.9"), 1);
    CHECK_EQ(trusted(&t, "11.9.9.9"), 0);
    gn_trust_free(&t);

    ASSERT_EQ(gn_trust_parse(&t, "0.0.0.0/0", err, sizeof(err)), 0);
    CHECK_EQ(trusted(&t, "203.0.113.9"), 1);
    CHECK_EQ(trusted(&t, "2001:db8::9"), 0);
    gn_trust_free(&t);
}

static void test_trust_list_refused(void)
{
    static const char *const bad[] = {"10.0.0.0/33", "::1/129", "1.2.3.4/", "abc", "1.2.3.4/x",
                                      "127.0.0.1,nope", "10.0.0.0/-1", "**"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gn_trust_t t;
        char err[128] = "";
        if (gn_trust_parse(&t, bad[i], err, sizeof(err)) != -1)
            TEST_FAIL_("'%s' accepted", bad[i]);
        else if (err[0] == '\0' || t.nets != NULL || t.n != 0)
            TEST_FAIL_("'%s': no message, or a list left behind", bad[i]);
    }
}

static const test_entry_t tests[] = {
    TEST_ENTRY(v1_tcp4),
    TEST_ENTRY(v1_tcp6),
    TEST_ENTRY(v1_unknown),
    TEST_ENTRY(v1_longest_line),
    TEST_ENTRY(v1_refused),
    TEST_ENTRY(v2_tcp4_with_tlvs),
    TEST_ENTRY(v2_tcp6),
    TEST_ENTRY(v2_unix),
    TEST_ENTRY(v2_local),
    TEST_ENTRY(v2_refused),
    TEST_ENTRY(v2_too_long),
    TEST_ENTRY(wrong_signature),
    TEST_ENTRY(trust_list),
    TEST_ENTRY(trust_list_refused),
};

int main(int argc, char **argv)
{
    return test_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
