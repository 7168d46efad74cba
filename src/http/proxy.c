/*
 * PROXY protocol v1/v2 parser and the trust list (see proxy.h).
 *
 * The parser is strict on purpose: a PROXY header sets the address the
 * application believes and logs, so anything the specification does not
 * allow is refused rather than read generously, and nothing is accepted
 * before the whole header is in.
 */
#include "http/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* Specification 2.2: "\r\n\r\n\0\r\nQUIT\n". */
static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static int fail(gn_proxy_header_t *out, const char *why)
{
    out->error = why;
    return GN_PROXY_INVALID;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* ---- v1: "PROXY TCP4 1.2.3.4 5.6.7.8 111 222\r\n" -------------------------- */

/* port: 0..65535 in decimal, without leading zeros (specification 2.1). */
static int v1_port(const char *p, size_t n, unsigned *port)
{
    unsigned v = 0;
    if (n == 0 || n > 5 || (n > 1 && p[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = v;
    return 0;
}

static int v1_addr(int family, const char *p, size_t n, struct sockaddr_storage *ss, socklen_t *len)
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(text))
        return -1;
    memcpy(text, p, n);
    text[n] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        *len = sizeof(*a);
        return inet_pton(AF_INET, text, &a->sin_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    *len = sizeof(*a);
    return inet_pton(AF_INET6, text, &a->sin6_addr) == 1 ? 0 : -1;
}

static void set_port(struct sockaddr_storage *ss, unsigned port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* "src dst sport dport" in line[0..n): four fields, one SP between each. */
static int v1_fields(int family, const char *line, size_t n, gn_proxy_header_t *out)
{
    const char *f[4], *end = line + n, *p = line;
    size_t flen[4];
    for (int i = 0; i < 4; i++) {
        const char *sp = i < 3 ? memchr(p, ' ', (size_t)(end - p)) : end;
        if (sp == NULL)
            return fail(out, "v1: fewer than four address fields");
        f[i] = p;
        flen[i] = (size_t)(sp - p);
        p = sp + 1;
    }
    unsigned sport, dport;
    if (memchr(f[3], ' ', flen[3]) != NULL)
        return fail(out, "v1: more than four address fields");
    if (v1_addr(family, f[0], flen[0], &out->src, &out->src_len) < 0 ||
        v1_addr(family, f[1], flen[1], &out->dst, &out->dst_len) < 0)
        return fail(out, "v1: malformed address");
    if (v1_port(f[2], flen[2], &sport) < 0 || v1_port(f[3], flen[3], &dport) < 0)
        return fail(out, "v1: malformed port");
    set_port(&out->src, sport);
    set_port(&out->dst, dport);
    out->has_addrs = 1;
    return 0;
}

static int parse_v1(const char *buf, size_t len, gn_proxy_header_t *out)
{
    out->version = 1;
    /* The line ends at the first CR, which must be followed by LF; no other
     * CTL may come before it. */
    size_t scan = min_size(len, GN_PROXY_V1_MAX);
    size_t i = 6;
    while (i < scan && (unsigned char)buf[i] >= 0x20 && (unsigned char)buf[i] < 0x7f)
        i++;
    if (i == scan)
        return len >= GN_PROXY_V1_MAX ? fail(out, "v1: no CRLF within 107 bytes") : GN_PROXY_INCOMPLETE;
    if (buf[i] != '\r')
        return fail(out, "v1: control character in the line");
    if (i + 1 == GN_PROXY_V1_MAX)
        return fail(out, "v1: no CRLF within 107 bytes");
    if (i + 1 == len)
        return GN_PROXY_INCOMPLETE;
    if (buf[i + 1] != '\n')
        return fail(out, "v1: CR without LF");
    const char *proto = buf + 6;
    size_t n = i - 6;
    int r;
    /* UNKNOWN: the rest of the line is ignored (specification 2.1). */
    if (n >= 7 && memcmp(proto, "UNKNOWN", 7) == 0 && (n == 7 || proto[7] == ' '))
        r = 0;
    else if (n > 5 && memcmp(proto, "TCP4 ", 5) == 0)
        r = v1_fields(AF_INET, proto + 5, n - 5, out);
    else if (n > 5 && memcmp(proto, "TCP6 ", 5) == 0)
        r = v1_fields(AF_INET6, proto + 5, n - 5, out);
    else
        r = fail(out, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
    return r < 0 ? r : (int)(i + 2);
}

/* ---- v2: 16-byte header, then addresses and TLVs --------------------------- */

static unsigned be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static void v2_inet(const unsigned char *b, gn_proxy_header_t *out)
{
    struct sockaddr_in *s = (struct sockaddr_in *)&out->src, *d = (struct sockaddr_in *)&out->dst;
    s->sin_family = d->sin_family = AF_INET;
    memcpy(&s->sin_addr, b, 4);
    memcpy(&d->sin_addr, b + 4, 4);
    memcpy(&s->sin_port, b + 8, 2);
    memcpy(&d->sin_port, b + 10, 2);
    out->src_len = out->dst_len = sizeof(*s);
}

static void v2_inet6(const unsigned char *b, gn_proxy_header_t *out)
{
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src, *d = (struct sockaddr_in6 *)&out->dst;
    s->sin6_family = d->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, b, 16);
    memcpy(&d->sin6_addr, b + 16, 16);
    memcpy(&s->sin6_port, b + 32, 2);
    memcpy(&d->sin6_port, b + 34, 2);
    out->src_len = out->dst_len = sizeof(*s);
}

static socklen_t v2_unix_one(const unsigned char *b, struct sockaddr_storage *ss)
{
    struct sockaddr_un *u = (struct sockaddr_un *)ss;
    size_t n = strnlen((const char *)b, 108);
    u->sun_family = AF_UNIX;
    memcpy(u->sun_path, b, n < sizeof(u->sun_path) ? n : sizeof(u->sun_path));
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

/* TLVs (type, 16-bit length, value) fill the rest of the block exactly. */
static int v2_tlvs(const unsigned char *p, const unsigned char *end, gn_proxy_header_t *out)
{
    while (p < end) {
        if (end - p < 3)
            return fail(out, "v2: truncated TLV");
        size_t n = be16(p + 1);
        if (n > (size_t)(end - p) - 3)
            return fail(out, "v2: TLV longer than the header");
        p += 3 + n;
    }
    return 0;
}

static int parse_v2(const char *buf, size_t len, gn_proxy_header_t *out)
{
    const unsigned char *h = (const unsigned char *)buf;
    out->version = 2;
    unsigned version = h[12] >> 4, command = h[12] & 0x0f;
    unsigned family = h[13] >> 4, transport = h[13] & 0x0f;
    size_t block = be16(h + 14);
    if (version != 2)
        return fail(out, "v2: version is not 2");
    if (command > 1)
        return fail(out, "v2: command is not LOCAL or PROXY");
    if (block > GN_PROXY_V2_MAX_LEN)
        return fail(out, "v2: header longer than 4096 bytes");
    if (len < 16 + block)
        return GN_PROXY_INCOMPLETE;
    /* LOCAL (a health check by the proxy itself): the addresses, if any, are
     * ignored and the connection's own are kept (specification 2.2). */
    if (command == 0)
        return (int)(16 + block);
    if (family > 3 || transport > 2)
        return fail(out, "v2: unknown address family or transport");
    if (family == 0) /* UNSPEC: the proxy does not know the addresses */
        return (int)(16 + block);
    if (transport != 1)
        return fail(out, "v2: transport is not STREAM");
    static const size_t need[] = {0, 12, 36, 216};
    if (block < need[family])
        return fail(out, "v2: address block too short for its family");
    const unsigned char *b = h + 16;
    if (family == 1)
        v2_inet(b, out);
    else if (family == 2)
        v2_inet6(b, out);
    else {
        out->src_len = v2_unix_one(b, &out->src);
        out->dst_len = v2_unix_one(b + 108, &out->dst);
    }
    if (v2_tlvs(b + need[family], b + block, out) < 0)
        return GN_PROXY_INVALID;
    out->has_addrs = 1;
    return (int)(16 + block);
}

int gn_proxy_parse(const char *buf, size_t len, gn_proxy_header_t *out)
{
    memset(out, 0, sizeof(*out));
    /* Each signature is told apart from the other by its first byte, and
     * any other first bytes are refused at once, without waiting for more. */
    if (memcmp(buf, v2_sig, min_size(len, 12)) == 0)
        return len < 16 ? GN_PROXY_INCOMPLETE : parse_v2(buf, len, out);
    if (memcmp(buf, "PROXY ", min_size(len, 6)) == 0)
        return len < 6 ? GN_PROXY_INCOMPLETE : parse_v1(buf, len, out);
    return fail(out, "no PROXY protocol signature");
}

/* ---- trust list ---------------------------------------------------------------- */

static int parse_net(const char *item, size_t n, struct gn_trust_net *net)
{
    char text[64];
    if (n == 0 || n >= sizeof(text))
        return -1;
    memcpy(text, item, n);
    text[n] = '\0';
    char *slash = strchr(text, '/');
    if (slash)
        *slash = '\0';
    net->family = strchr(text, ':') ? AF_INET6 : AF_INET;
    unsigned bits = net->family == AF_INET ? 32 : 128;
    if (inet_pton(net->family, text, net->addr) != 1)
        return -1;
    net->prefix = bits;
    if (slash) {
        const char *p = slash + 1;
        unsigned v = 0;
        if (*p == '\0' || strlen(p) > 3)
            return -1;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                return -1;
            v = v * 10 + (unsigned)(*p - '0');
        }
        if (v > bits)
            return -1;
        net->prefix = v;
    }
    return 0;
}

void gn_trust_free(gn_trust_t *t)
{
    free(t->nets);
    memset(t, 0, sizeof(*t));
}

int gn_trust_parse(gn_trust_t *t, const char *spec, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    size_t cap = 1;
    for (const char *p = spec; *p; p++)
        cap += *p == ',';
    t->nets = calloc(cap, sizeof(*t->nets));
    if (t->nets == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *p = spec;
    for (;;) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e - p == 1 && *p == '*')
            t->any = 1;
        else if (e > p && parse_net(p, (size_t)(e - p), &t->nets[t->n++]) < 0) {
            snprintf(err, errlen, "not an address, a network or '*': '%.*s'", (int)(e - p), p);
            gn_trust_free(t);
            return -1;
        }
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

static int prefix_match(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

/* An IPv4 peer is also seen as ::ffff:a.b.c.d and the other way round, so
 * either way of writing an entry matches either kind of socket. */
int gn_trust_match(const gn_trust_t *t, const struct sockaddr *sa)
{
    if (t->any || sa->sa_family == AF_UNIX)
        return 1;
    unsigned char v6[16] = {0};
    int has_v4 = 1;
    v6[10] = v6[11] = 0xff;
    if (sa->sa_family == AF_INET)
        memcpy(v6 + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        has_v4 = IN6_IS_ADDR_V4MAPPED(a6);
        memcpy(v6, a6->s6_addr, 16);
    } else {
        return 0;
    }
    for (size_t i = 0; i < t->n; i++) {
        const struct gn_trust_net *net = &t->nets[i];
        if (net->family == AF_INET6 ? prefix_match(v6, net->addr, net->prefix)
                                    : has_v4 && prefix_match(v6 + 12, net->addr, net->prefix))
            return 1;
    }
    return 0;
}
