#include "shared/codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void gn_wbuf_init(gn_wbuf_t *w, size_t limit)
{
    w->buf = w->inline_;
    w->len = 0;
    w->cap = sizeof(w->inline_);
    w->limit = limit;
}

void gn_wbuf_free(gn_wbuf_t *w)
{
    if (w->buf != w->inline_)
        free(w->buf);
    w->buf = w->inline_;
    w->len = 0;
    w->cap = sizeof(w->inline_);
}

static int grow(gn_wbuf_t *w, size_t need)
{
    size_t cap = w->cap * 2;
    while (cap < need)
        cap *= 2;
    if (cap > w->limit)
        cap = w->limit;
    uint8_t *p = w->buf == w->inline_ ? malloc(cap) : realloc(w->buf, cap);
    if (p == NULL) {
        errno = ENOMEM;
        return -1;
    }
    if (w->buf == w->inline_)
        memcpy(p, w->inline_, w->len);
    w->buf = p;
    w->cap = cap;
    return 0;
}

int gn_wbuf_put(gn_wbuf_t *w, const void *p, size_t n)
{
    /* The limit is checked before any allocation, so a value larger than
     * the store can hold is refused without first being copied whole. */
    if (n > w->limit || w->len > w->limit - n) {
        errno = E2BIG;
        return -1;
    }
    if (w->len + n > w->cap && grow(w, w->len + n) < 0)
        return -1;
    if (n)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
    return 0;
}

int gn_codec_put_tag(gn_wbuf_t *w, uint8_t tag)
{
    return gn_wbuf_put(w, &tag, 1);
}

static int put_u32(gn_wbuf_t *w, uint8_t tag, size_t n)
{
    if (n > UINT32_MAX) {
        errno = E2BIG;
        return -1;
    }
    uint8_t head[5] = {tag};
    uint32_t n32 = (uint32_t)n;
    memcpy(head + 1, &n32, 4);
    return gn_wbuf_put(w, head, sizeof(head));
}

int gn_codec_put_int64(gn_wbuf_t *w, int64_t v)
{
    uint8_t b[9] = {GN_TAG_INT};
    memcpy(b + 1, &v, 8);
    return gn_wbuf_put(w, b, sizeof(b));
}

/* Drops most-significant bytes that only repeat the sign. */
static size_t minimal_len(const uint8_t *le, size_t n)
{
    while (n > 1) {
        uint8_t top = le[n - 1], next_sign = le[n - 2] & 0x80;
        if (!((top == 0x00 && !next_sign) || (top == 0xFF && next_sign)))
            break;
        n--;
    }
    return n;
}

static int64_t small_from_le(const uint8_t *le, size_t n)
{
    uint64_t u = (le[n - 1] & 0x80) ? UINT64_MAX : 0;
    for (size_t i = 0; i < n; i++) {
        u &= ~((uint64_t)0xFF << (8 * i));
        u |= (uint64_t)le[i] << (8 * i);
    }
    int64_t v;
    memcpy(&v, &u, 8);
    return v;
}

int gn_codec_put_bigint(gn_wbuf_t *w, const uint8_t *le, size_t n)
{
    n = minimal_len(le, n);
    if (n <= 8)
        return gn_codec_put_int64(w, small_from_le(le, n));
    if (put_u32(w, GN_TAG_BIGINT, n) < 0)
        return -1;
    return gn_wbuf_put(w, le, n);
}

int gn_codec_put_float(gn_wbuf_t *w, double v)
{
    uint8_t b[9] = {GN_TAG_FLOAT};
    memcpy(b + 1, &v, 8);
    return gn_wbuf_put(w, b, sizeof(b));
}

int gn_codec_put_data(gn_wbuf_t *w, uint8_t tag, const void *p, size_t n)
{
    if (put_u32(w, tag, n) < 0)
        return -1;
    return gn_wbuf_put(w, p, n);
}

int gn_codec_put_tuple(gn_wbuf_t *w, uint32_t count)
{
    return put_u32(w, GN_TAG_TUPLE, count);
}

/* ---- reading ----------------------------------------------------------- */

static int read_u32(const uint8_t **p, const uint8_t *end, size_t *out)
{
    if (end - *p < 4)
        return -1;
    uint32_t n;
    memcpy(&n, *p, 4);
    *p += 4;
    *out = n;
    return 0;
}

static int read_fixed(const uint8_t **p, const uint8_t *end, gn_item_t *out)
{
    if (end - *p < 8)
        return -1;
    if (out->tag == GN_TAG_INT)
        memcpy(&out->i, *p, 8);
    else
        memcpy(&out->f, *p, 8);
    *p += 8;
    return 0;
}

static int read_data(const uint8_t **p, const uint8_t *end, gn_item_t *out)
{
    if (read_u32(p, end, &out->len) < 0 || (size_t)(end - *p) < out->len)
        return -1;
    out->data = *p;
    *p += out->len;
    return 0;
}

int gn_codec_next(const uint8_t **p, const uint8_t *end, gn_item_t *out)
{
    if (*p >= end)
        return -1;
    out->tag = *(*p)++;
    out->data = NULL;
    out->len = 0;
    switch (out->tag) {
    case GN_TAG_NONE:
    case GN_TAG_TRUE:
    case GN_TAG_FALSE:
        return 0;
    case GN_TAG_INT:
    case GN_TAG_FLOAT:
        return read_fixed(p, end, out);
    case GN_TAG_BIGINT:
    case GN_TAG_STR:
    case GN_TAG_BYTES:
        return read_data(p, end, out);
    case GN_TAG_TUPLE:
        return read_u32(p, end, &out->len);
    default:
        return -1;
    }
}

/* Skips one value (and, for a tuple, its items); -1 if malformed or too deep. */
static int skip_value(const uint8_t **p, const uint8_t *end, unsigned depth, int canonical)
{
    gn_item_t it;
    if (gn_codec_next(p, end, &it) < 0)
        return -1;
    if (it.tag == GN_TAG_BIGINT && canonical && (it.len <= 8 || minimal_len(it.data, it.len) != it.len))
        return -1;
    if (it.tag != GN_TAG_TUPLE)
        return 0;
    /* Every item takes at least one byte: a count beyond what is left is a
     * lie, refused before looping over it. */
    if (depth >= GN_CODEC_MAX_DEPTH || it.len > (size_t)(end - *p))
        return -1;
    for (size_t i = 0; i < it.len; i++) {
        if (skip_value(p, end, depth + 1, canonical) < 0)
            return -1;
    }
    return 0;
}

int gn_codec_valid(const uint8_t *buf, size_t len)
{
    const uint8_t *p = buf;
    return skip_value(&p, buf + len, 0, 1) == 0 && p == buf + len;
}

size_t gn_codec_value_len(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *q = p;
    return skip_value(&q, end, 0, 0) == 0 ? (size_t)(q - p) : 0;
}

int gn_codec_is_int(const uint8_t *p, size_t len)
{
    return len > 0 && (p[0] == GN_TAG_INT || p[0] == GN_TAG_BIGINT);
}

/* ---- int arithmetic for incr ------------------------------------------- */

/* An encoded int as little-endian two's complement bytes; small ints are
 * spelled out into tmp. Returns the byte count, or 0 if not an int. */
static size_t int_bytes(const uint8_t *p, size_t len, uint8_t tmp[8], const uint8_t **le)
{
    gn_item_t it;
    const uint8_t *q = p;
    if (!gn_codec_is_int(p, len) || gn_codec_next(&q, p + len, &it) < 0)
        return 0;
    if (it.tag == GN_TAG_BIGINT) {
        *le = it.data;
        return it.len;
    }
    uint64_t u;
    memcpy(&u, &it.i, 8);
    for (int i = 0; i < 8; i++)
        tmp[i] = (uint8_t)(u >> (8 * i));
    *le = tmp;
    return 8;
}

static uint8_t byte_at(const uint8_t *le, size_t n, size_t i)
{
    if (i < n)
        return le[i];
    return (le[n - 1] & 0x80) ? 0xFF : 0x00; /* sign extension */
}

int gn_codec_int_add(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, gn_wbuf_t *out)
{
    uint8_t ta[8], tb[8], small[32] = {0};
    const uint8_t *la, *lb;
    size_t na = int_bytes(a, alen, ta, &la), nb = int_bytes(b, blen, tb, &lb);
    if (na == 0 || nb == 0)
        return -2;
    /* One byte more than the longer operand holds any carry. */
    size_t n = (na > nb ? na : nb) + 1;
    uint8_t *sum = n <= sizeof(small) ? small : malloc(n);
    if (sum == NULL) {
        errno = ENOMEM;
        return -1;
    }
    unsigned carry = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned s = (unsigned)byte_at(la, na, i) + byte_at(lb, nb, i) + carry;
        sum[i] = (uint8_t)s;
        carry = s >> 8;
    }
    int rc = gn_codec_put_bigint(out, sum, n);
    if (sum != small)
        free(sum);
    return rc;
}
