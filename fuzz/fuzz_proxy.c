/*
 * libFuzzer driver for src/http/proxy.c. Built and run by scripts/fuzz.
 *
 * Each input is given to gn_proxy_parse whole and then as every prefix (one
 * more byte each time), which must agree: a proper prefix of an accepted
 * header is "incomplete", and a refusal is never taken back. The input is
 * also read as a --forwarded-allow-ips list. Any broken invariant aborts,
 * which libFuzzer reports as a crash with the input saved.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "http/proxy.h"

#include "check.h"

static void check_addr(const struct sockaddr_storage *ss, socklen_t len, int version)
{
    if (ss->ss_family == AF_INET)
        CHECK(len == sizeof(struct sockaddr_in));
    else if (ss->ss_family == AF_INET6)
        CHECK(len == sizeof(struct sockaddr_in6));
    else {
        CHECK(ss->ss_family == AF_UNIX && version == 2);
        CHECK(len >= offsetof(struct sockaddr_un, sun_path) && len <= sizeof(struct sockaddr_un));
    }
}

static void check_result(int r, const char *buf, size_t len, const gn_proxy_header_t *h)
{
    CHECK(r > 0 || r == GN_PROXY_INCOMPLETE || r == GN_PROXY_INVALID);
    if (r == GN_PROXY_INVALID)
        CHECK(h->error != NULL);
    if (r <= 0)
        return;
    CHECK((size_t)r <= len);
    CHECK(h->version == 1 || h->version == 2);
    if (h->version == 1) {
        CHECK(r <= GN_PROXY_V1_MAX && memcmp(buf, "PROXY ", 6) == 0);
        CHECK(buf[r - 2] == '\r' && buf[r - 1] == '\n');
        CHECK(memchr(buf, '\n', (size_t)r - 1) == NULL);
    } else {
        CHECK(r >= 16 && r <= 16 + GN_PROXY_V2_MAX_LEN);
        CHECK((size_t)r == 16 + ((size_t)(unsigned char)buf[14] << 8 | (unsigned char)buf[15]));
    }
    if (h->has_addrs) {
        check_addr(&h->src, h->src_len, h->version);
        check_addr(&h->dst, h->dst_len, h->version);
        CHECK(h->src.ss_family == h->dst.ss_family);
    }
}

static void fuzz_header(const char *buf, size_t len)
{
    gn_proxy_header_t h;
    int r = gn_proxy_parse(buf, len, &h);
    check_result(r, buf, len, &h);
    int refused = 0;
    for (size_t n = 0; n < len; n++) {
        gn_proxy_header_t p;
        int rp = gn_proxy_parse(buf, n, &p);
        check_result(rp, buf, n, &p);
        if (r > 0)
            CHECK((size_t)r > n ? rp == GN_PROXY_INCOMPLETE : rp == r);
        if (refused)
            CHECK(rp == GN_PROXY_INVALID);
        refused = rp == GN_PROXY_INVALID;
    }
    if (refused)
        CHECK(r == GN_PROXY_INVALID);
}

static void fuzz_trust(const char *buf, size_t len)
{
    char spec[512], err[200];
    size_t n = len < sizeof(spec) - 1 ? len : sizeof(spec) - 1;
    memcpy(spec, buf, n);
    spec[n] = '\0';
    gn_trust_t t;
    if (gn_trust_parse(&t, spec, err, sizeof(err)) < 0) {
        CHECK(t.nets == NULL && t.n == 0 && err[0] != '\0');
        return;
    }
    /* Every listed network contains its own address. */
    for (size_t i = 0; i < t.n; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        CHECK(t.nets[i].prefix <= (t.nets[i].family == AF_INET ? 32u : 128u));
        if (t.nets[i].family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            a->sin_family = AF_INET;
            memcpy(&a->sin_addr, t.nets[i].addr, 4);
        } else {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            a->sin6_family = AF_INET6;
            memcpy(&a->sin6_addr, t.nets[i].addr, 16);
        }
        CHECK(gn_trust_match(&t, (struct sockaddr *)&ss));
    }
    gn_trust_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_header((const char *)data, size);
    fuzz_trust((const char *)data, size);
    return 0;
}
