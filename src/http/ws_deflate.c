/*
 * permessage-deflate (RFC 7692): negotiation and zlib streams (see
 * ws_deflate.h).
 */
#include "ws_deflate.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "http/fault.h"

/* ---- negotiation ---------------------------------------------------------- */

typedef struct {
    const char *s;
    size_t i, n;
} cur_t;

static void skip_ows(cur_t *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t'))
        c->i++;
}

/* RFC 7230 3.2.6 tchar. */
static bool tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* A token at the cursor: its length (0 if none), *start set. */
static size_t token(cur_t *c, const char **start)
{
    skip_ows(c);
    *start = c->s + c->i;
    size_t b = c->i;
    while (c->i < c->n && tchar(c->s[c->i]))
        c->i++;
    return c->i - b;
}

/* A parameter value: a token or a quoted-string (RFC 6455 9.1 lets either
 * carry the same value), copied unquoted into v. Returns 0 or -1. */
static int param_value(cur_t *c, char *v, size_t cap)
{
    skip_ows(c);
    size_t k = 0;
    if (c->i < c->n && c->s[c->i] == '"') {
        for (c->i++; c->i < c->n && c->s[c->i] != '"'; c->i++) {
            if (c->s[c->i] == '\\' && ++c->i == c->n)
                return -1;
            if (k + 1 >= cap)
                return -1;
            v[k++] = c->s[c->i];
        }
        if (c->i == c->n)
            return -1;
        c->i++;
    } else {
        const char *t;
        size_t n = token(c, &t);
        if (n == 0 || n >= cap)
            return -1;
        memcpy(v, t, n);
        k = n;
    }
    v[k] = '\0';
    return 0;
}

/* RFC 7692 7.1.2: a window size is a decimal 8..15 without leading zeros. */
static int window_bits(const char *v)
{
    if (v[0] == '8' || v[0] == '9')
        return v[1] == '\0' ? v[0] - '0' : -1;
    if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && v[2] == '\0')
        return 10 + v[1] - '0';
    return -1;
}

typedef struct {
    int seen[4];
    int snct, cnct;   /* server_/client_no_context_takeover */
    int sbits, cbits; /* 0: absent; -1: client_max_window_bits with no value */
} offer_t;

static const char *const PARAMS[4] = {"server_no_context_takeover", "client_no_context_takeover",
                                      "server_max_window_bits", "client_max_window_bits"};

/* One parameter of an offer into o; returns false if it makes the offer
 * unacceptable (RFC 7692 7.1: unknown, repeated or invalid). */
static bool offer_param(offer_t *o, const char *name, size_t len, const char *v, int has_value)
{
    int k = -1;
    for (int i = 0; i < 4; i++)
        if (strlen(PARAMS[i]) == len && strncasecmp(PARAMS[i], name, len) == 0)
            k = i;
    if (k < 0 || o->seen[k]++)
        return false;
    switch (k) {
    case 0: o->snct = 1; return !has_value;
    case 1: o->cnct = 1; return !has_value;
    case 2: return has_value && (o->sbits = window_bits(v)) > 0;
    default:
        if (!has_value) {
            o->cbits = -1;
            return true;
        }
        return (o->cbits = window_bits(v)) > 0;
    }
}

static void accept_offer(const offer_t *o, gn_ws_deflate_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->server_no_context_takeover = o->snct;
    p->client_no_context_takeover = o->cnct;
    p->server_bits = o->sbits > 0 && o->sbits < GN_WS_DEFLATE_SERVER_BITS ? o->sbits : GN_WS_DEFLATE_SERVER_BITS;
    if (o->cbits != 0) {
        int asked = o->cbits > 0 ? o->cbits : 15;
        p->client_bits = asked < GN_WS_DEFLATE_CLIENT_BITS ? asked : GN_WS_DEFLATE_CLIENT_BITS;
        p->client_bits_sent = 1;
    } else {
        p->client_bits = 15; /* the client did not offer to limit itself */
    }
}

int gn_ws_deflate_negotiate(const char *value, size_t len, gn_ws_deflate_params_t *p)
{
    cur_t c = {value, 0, len};
    for (;;) {
        const char *name;
        size_t nlen = token(&c, &name);
        if (nlen == 0)
            return 0; /* malformed (or empty): no extension */
        offer_t o = {0};
        bool ok = nlen == 18 && strncasecmp(name, "permessage-deflate", 18) == 0;
        skip_ows(&c);
        while (c.i < c.n && c.s[c.i] == ';') {
            c.i++;
            const char *pname;
            size_t plen = token(&c, &pname);
            if (plen == 0)
                return 0;
            char v[16] = "";
            int has_value = 0;
            skip_ows(&c);
            if (c.i < c.n && c.s[c.i] == '=') {
                c.i++;
                if (param_value(&c, v, sizeof(v)) < 0)
                    return 0;
                has_value = 1;
            }
            ok = ok && offer_param(&o, pname, plen, v, has_value);
            skip_ows(&c);
        }
        /* 8 is declined, not lowered: a window larger than asked breaks the
         * client's decompressor. */
        if (ok && o.sbits != 8) {
            accept_offer(&o, p);
            return 1;
        }
        if (c.i == c.n || c.s[c.i] != ',')
            return 0;
        c.i++;
    }
}

size_t gn_ws_deflate_response(const gn_ws_deflate_params_t *p, char *buf, size_t cap)
{
    char client[40] = "";
    if (p->client_bits_sent)
        snprintf(client, sizeof(client), "; client_max_window_bits=%d", p->client_bits);
    /* RFC 7692 7.1.2.1: a server may state server_max_window_bits even when
     * the offer did not ask for it; the client may then use a smaller
     * window for its decompressor. */
    int n = snprintf(buf, cap, "permessage-deflate%s%s; server_max_window_bits=%d%s",
                     p->server_no_context_takeover ? "; server_no_context_takeover" : "",
                     p->client_no_context_takeover ? "; client_no_context_takeover" : "", p->server_bits, client);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ---- streams ---------------------------------------------------------------- */

struct gn_ws_deflate {
    gn_ws_deflate_params_t p;
    z_stream def, inf;
    int def_on, inf_on;
    int inf_ended; /* a final block ended the input so far: no tail to add */
};

/* 7.2.1: each compressed message ends with an empty stored block's
 * 00 00 ff ff, which the sender removes and the receiver puts back. */
static const uint8_t TAIL[4] = {0x00, 0x00, 0xff, 0xff};

gn_ws_deflate_t *gn_ws_deflate_new(const gn_ws_deflate_params_t *p)
{
    gn_ws_deflate_t *d = GN_FAIL(NULL, calloc(1, sizeof(*d)));
    if (d)
        d->p = *p;
    return d;
}

void gn_ws_deflate_free(gn_ws_deflate_t *d)
{
    if (d == NULL)
        return;
    if (d->def_on)
        deflateEnd(&d->def);
    if (d->inf_on)
        inflateEnd(&d->inf);
    free(d);
}

void gn_ws_deflate_idle(gn_ws_deflate_t *d)
{
    if (d->def_on && d->p.server_no_context_takeover) {
        deflateEnd(&d->def);
        d->def_on = 0;
    }
    if (d->inf_on && d->p.client_no_context_takeover) {
        inflateEnd(&d->inf);
        d->inf_on = 0;
    }
}

int gn_ws_deflate_message(gn_ws_deflate_t *d, const char *data, size_t len, char **out, size_t *outlen)
{
    z_stream *z = &d->def;
    if (len > UINT32_MAX / 2)
        return -1; /* one zlib call's size; far above any --ws-max-size */
    /* Negative window bits: raw deflate, no zlib header (7.2.1). */
    if (!d->def_on && GN_FAIL(Z_MEM_ERROR, deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -d->p.server_bits,
                                                         GN_WS_DEFLATE_MEM_LEVEL, Z_DEFAULT_STRATEGY)) != Z_OK)
        return -1;
    d->def_on = 1;
    /* deflateBound is for Z_FINISH; a sync flush adds at most an empty
     * stored block and a partial byte. */
    size_t cap = deflateBound(z, (uLong)len) + 16, used = 0;
    char *buf = GN_FAIL(NULL, malloc(cap));
    if (buf == NULL)
        return -1;
    z->next_in = (Bytef *)(uintptr_t)data;
    z->avail_in = (uInt)len;
    for (;;) {
        z->next_out = (Bytef *)buf + used;
        z->avail_out = (uInt)(cap - used);
        int r = deflate(z, Z_SYNC_FLUSH);
        used = cap - z->avail_out;
        if (r != Z_OK && r != Z_BUF_ERROR) {
            free(buf);
            return -1;
        }
        if (z->avail_out > 0 && z->avail_in == 0)
            break;
        char *nb = GN_FAIL(NULL, realloc(buf, cap * 2));
        if (nb == NULL) {
            free(buf);
            return -1;
        }
        buf = nb;
        cap *= 2;
    }
    if (used >= 4 && memcmp(buf + used - 4, TAIL, 4) == 0)
        used -= 4;
    else if (used == 0) {
        /* Nothing to flush (an empty message right after another flush):
         * zlib writes nothing, but the receiver appends 00 00 ff ff, which
         * needs the stored block's header byte before it (7.2.3.6). */
        buf[0] = 0;
        used = 1;
    }
    if (d->p.server_no_context_takeover)
        deflateReset(z);
    *out = buf;
    *outlen = used;
    return 0;
}

/* Makes room after *used; 1 when the bound is reached, -1 out of memory. */
static int room(char **buf, size_t *cap, size_t used, uint64_t max)
{
    if (used < *cap)
        return 0;
    size_t limit = max < SIZE_MAX - 1 ? (size_t)max + 1 : SIZE_MAX;
    if (*cap >= limit)
        return 1;
    size_t nc = *cap ? *cap * 2 : 4096;
    if (nc > limit || nc < *cap)
        nc = limit;
    char *nb = GN_FAIL(NULL, realloc(*buf, nc));
    if (nb == NULL)
        return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

static int inflate_some(gn_ws_deflate_t *d, const uint8_t *p, size_t n, char **buf, size_t *cap, size_t *used,
                        uint64_t max)
{
    z_stream *z = &d->inf;
    z->next_in = (Bytef *)(uintptr_t)p;
    z->avail_in = (uInt)n;
    if (n > 0)
        d->inf_ended = 0;
    for (;;) {
        int rm = room(buf, cap, *used, max);
        if (rm < 0)
            return -2;
        if (rm > 0)
            return 0; /* *used > max: the caller says 1009 */
        z->next_out = (Bytef *)*buf + *used;
        z->avail_out = (uInt)(*cap - *used);
        int r = inflate(z, Z_SYNC_FLUSH);
        *used = *cap - z->avail_out;
        if (r == Z_STREAM_END) {
            /* A final block (BFINAL): a sender may end its stream; what
             * follows starts a new one. */
            inflateReset(z);
            if (z->avail_in == 0) {
                d->inf_ended = 1;
                return 0;
            }
            continue;
        }
        if (r == Z_BUF_ERROR)
            return 0; /* no progress possible: all input taken */
        if (r != Z_OK)
            return r == Z_MEM_ERROR ? -2 : -1;
        if (z->avail_in == 0 && z->avail_out > 0)
            return 0;
    }
}

int gn_ws_inflate(gn_ws_deflate_t *d, const uint8_t *p, size_t n, int last, char **buf, size_t *cap, size_t *used,
                  uint64_t max)
{
    /* A window of 8 is raised to 9: zlib's deflate turns 8 into 9, so a
     * zlib-based client asked for 8 may send distances up to 512; a larger
     * inflate window always decodes a smaller one. */
    int bits = d->p.client_bits < 9 ? 9 : d->p.client_bits;
    if (!d->inf_on && GN_FAIL(Z_MEM_ERROR, inflateInit2(&d->inf, -bits)) != Z_OK)
        return -2;
    d->inf_on = 1;
    int r = inflate_some(d, p, n, buf, cap, used, max);
    /* 7.2.2: the tail completes the sender's flush; after a message that
     * ended its stream with a final block (RFC 7692 7.2.3) there is no
     * flush to complete, and the tail would start the next stream wrong. */
    if (r == 0 && last && *used <= max && !d->inf_ended)
        r = inflate_some(d, TAIL, sizeof(TAIL), buf, cap, used, max);
    if (last)
        d->inf_ended = 0;
    if (last && d->p.client_no_context_takeover)
        inflateReset(&d->inf);
    return r;
}
