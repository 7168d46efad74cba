/*
 * Proxy headers: a trusted proxy (--forwarded-allow-ips) says who the client
 * is, which scheme it used and which host it asked for, in RFC 7239
 * `Forwarded` or in the X-Forwarded-For/-Proto/-Host/-Port headers. Applied
 * once per request, before the bridge builds the environ or scope; from any
 * other peer the headers are passed on untouched and change nothing.
 *
 * The client is the right-most address that is not itself a trusted proxy
 * (a client can put anything on the left of the list; only what the trusted
 * hops appended is believed). A value that does not parse is ignored, never
 * an error: the socket's own addresses stay.
 */
#include "http/forwarded.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/conn.h"
#include "http/loop.h"
#include "http/proxy.h"

static int name_is(gn_slice_t name, const char *lower, size_t len)
{
    return name.len == len && strncasecmp(name.base, lower, len) == 0;
}

static gn_slice_t trim(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return (gn_slice_t){p, (size_t)(end - p)};
}

/* The first comma-separated item of v. */
static gn_slice_t first_item(gn_slice_t v)
{
    const char *comma = memchr(v.base, ',', v.len);
    return trim(v.base, comma ? comma : v.base + v.len);
}

/*
 * A node as a proxy writes it: "192.0.2.1", "2001:db8::1", "[2001:db8::1]",
 * with ":port" after an IPv4 address or a bracketed IPv6 one. Fills *addr
 * and *port (0 when none); returns 0, or -1 if it is not an address
 * ("unknown", an obfuscated identifier, garbage).
 */
static int parse_node(gn_slice_t s, gn_addr_t *addr, int *port)
{
    char text[64];
    const char *p = s.base, *end = s.base + s.len, *port_at = NULL;
    *port = 0;
    if (p < end && *p == '[') {
        const char *close = memchr(p, ']', s.len);
        if (close == NULL)
            return -1;
        if (close + 1 < end && close[1] == ':')
            port_at = close + 2;
        else if (close + 1 != end)
            return -1;
        p++;
        end = close;
    } else {
        const char *colon = memchr(p, ':', s.len);
        if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1)) == NULL) {
            port_at = colon + 1; /* one colon: IPv4 with a port */
            end = colon;
        }
    }
    if ((size_t)(end - p) >= sizeof(text) || end == p)
        return -1;
    memcpy(text, p, (size_t)(end - p));
    text[end - p] = '\0';
    memset(addr, 0, sizeof(*addr));
    if (inet_pton(AF_INET, text, &addr->in4.sin_addr) == 1) {
        addr->in4.sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, text, &addr->in6.sin6_addr) == 1) {
        addr->in6.sin6_family = AF_INET6;
    } else {
        return -1;
    }
    if (port_at) {
        int n = 0;
        const char *q = port_at, *pend = s.base + s.len;
        if (q == pend || pend - q > 5)
            return -1;
        for (; q < pend; q++) {
            if (*q < '0' || *q > '9')
                return -1;
            n = n * 10 + (*q - '0');
        }
        if (n > 65535)
            return -1;
        *port = n;
    }
    return 0;
}

static int trusted(const gn_conn_t *c, const gn_addr_t *a)
{
    return gn_trust_match(c->loop->limits->proxy_trust, &a->sa);
}

/* One parameter of a Forwarded element: for=, proto=, host= (a token or a
 * quoted string; RFC 7239 4). */
static gn_slice_t param(gn_slice_t elem, const char *name, size_t nlen)
{
    const char *p = elem.base, *end = elem.base + elem.len;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        gn_slice_t pair = trim(p, semi ? semi : end);
        const char *eq = memchr(pair.base, '=', pair.len);
        if (eq && (size_t)(eq - pair.base) == nlen && strncasecmp(pair.base, name, nlen) == 0) {
            gn_slice_t val = trim(eq + 1, pair.base + pair.len);
            if (val.len >= 2 && val.base[0] == '"' && val.base[val.len - 1] == '"')
                val = (gn_slice_t){val.base + 1, val.len - 2};
            return val;
        }
        p = semi ? semi + 1 : end;
    }
    return (gn_slice_t){NULL, 0};
}

/*
 * The client hop of a list of hops, the last X-Forwarded-For line or the
 * last Forwarded line (with `elements`): the right-most that is not a
 * trusted proxy, or the left-most if every one is. Walking leftwards stops
 * at the first hop that is not an address: nothing further left is
 * believed. Fills f's client (and, from a Forwarded element, its proto and
 * host); returns whether one was found.
 */
static int client_hop(const gn_conn_t *c, gn_slice_t v, int elements, gn_fwd_t *f)
{
    const char *end = v.base + v.len;
    int found = 0;
    while (end > v.base) {
        const char *start = end;
        while (start > v.base && start[-1] != ',')
            start--;
        gn_slice_t item = trim(start, end);
        gn_addr_t a;
        int port;
        if (parse_node(elements ? param(item, "for", 3) : item, &a, &port) < 0)
            return found;
        f->client = a;
        f->client_port = port;
        if (elements) {
            f->proto = param(item, "proto", 5);
            f->host = param(item, "host", 4);
        }
        found = 1;
        if (!trusted(c, &a))
            return 1;
        end = start > v.base ? start - 1 : v.base;
    }
    return found;
}

static int peer_trusted(gn_conn_t *c)
{
    if (c->peer_trust == 0)
        c->peer_trust = gn_trust_match(c->loop->limits->proxy_trust, &c->peer.sa) ? 1 : -1;
    return c->peer_trust > 0;
}

void gn_forwarded_apply(gn_conn_t *c)
{
    gn_fwd_t *f = &c->buf->fwd;
    memset(f, 0, sizeof(*f));
    gn_slice_t xff = {0}, xfproto = {0}, xfhost = {0}, xfport = {0}, fwd = {0};
    gn_header_t *host = NULL;
    int any = 0;
    for (size_t i = 0; i < c->req.num_headers; i++) {
        gn_header_t *h = &c->headers[i];
        char c0 = h->name.base[0] | 0x20;
        if (c0 == 'h' && name_is(h->name, "host", 4)) {
            host = h;
        } else if (c0 == 'f' && name_is(h->name, "forwarded", 9)) {
            fwd = h->value;
            any = 1;
        } else if (c0 == 'x' && h->name.len >= 15 && strncasecmp(h->name.base, "x-forwarded-", 12) == 0) {
            gn_slice_t rest = {h->name.base + 12, h->name.len - 12};
            if (name_is(rest, "for", 3))
                xff = h->value;
            else if (name_is(rest, "proto", 5))
                xfproto = h->value;
            else if (name_is(rest, "host", 4))
                xfhost = h->value;
            else if (name_is(rest, "port", 4))
                xfport = h->value;
            else
                continue;
            any = 1;
        }
    }
    if (!any || !peer_trusted(c))
        return;
    if (fwd.len > 0 && client_hop(c, fwd, 1, f)) {
        f->has_client = 1;
    } else {
        f->has_client = xff.len > 0 && client_hop(c, xff, 0, f);
        f->proto = xfproto.len ? first_item(xfproto) : (gn_slice_t){NULL, 0};
        f->host = xfhost.len ? first_item(xfhost) : (gn_slice_t){NULL, 0};
        f->port = xfport.len ? first_item(xfport) : (gn_slice_t){NULL, 0};
    }
    if (f->proto.len == 5 && strncasecmp(f->proto.base, "https", 5) == 0)
        f->https = 1;
    else if (f->proto.len == 3 && strncasecmp(f->proto.base, "wss", 3) == 0)
        f->https = 1;
    /* The host the client asked the proxy for: it is the request's Host
     * from here on, for the environ, the scope's headers and the log. */
    if (f->host.len > 0 && f->host.len < 256 && memchr(f->host.base, ' ', f->host.len) == NULL) {
        if (host)
            host->value = f->host;
        else
            c->req.authority = f->host;
    }
}
