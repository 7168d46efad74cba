/*
 * libFuzzer driver for src/http/ws.c. Built and run by scripts/fuzz.
 *
 * Each input is used three ways:
 *  - as a frame header, parsed whole and one byte more at a time (which must
 *    agree), with a size limit taken from the data; an accepted header must
 *    match an independent decoding and gn_ws_frame_header must write it back;
 *  - the bytes after it as a payload, unmasked in one call and in two pieces
 *    (which must match a byte-by-byte reference and undo each other);
 *  - the whole input as UTF-8, validated in one call, in two pieces and one
 *    byte at a time, all compared with the simple reference decoder below.
 * Any broken invariant aborts, which libFuzzer reports as a crash with the
 * input saved.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/ws.h"

#include "check.h"

/* ---- frame header -------------------------------------------------------- */

static int same_frame(const gn_ws_frame_t *a, const gn_ws_frame_t *b)
{
    return a->fin == b->fin && a->opcode == b->opcode && a->length == b->length &&
           memcmp(a->mask, b->mask, 4) == 0 && a->header_len == b->header_len;
}

/* Invariants of an accepted header, restated from RFC 6455 5.2 directly. */
static void check_frame(const uint8_t *buf, size_t len, uint64_t max, int r,
                        const gn_ws_frame_t *f)
{
    CHECK(r >= 2 && r <= 14 && (size_t)r <= len && (size_t)r == f->header_len);
    CHECK((buf[0] & 0x70) == 0 && (buf[1] & 0x80) != 0);
    CHECK(f->fin == (buf[0] >> 7) && f->opcode == (buf[0] & 0xf));
    CHECK(f->opcode <= 2 || (f->opcode >= 8 && f->opcode <= 0xa));
    CHECK(f->length <= max && f->length < (1ull << 63));
    if (f->opcode >= 8)
        CHECK(f->fin && f->length <= 125);
    size_t ext = (buf[1] & 0x7f) == 126 ? 2 : (buf[1] & 0x7f) == 127 ? 8 : 0;
    CHECK(f->header_len == 2 + ext + 4);
    CHECK(memcmp(f->mask, buf + 2 + ext, 4) == 0);
    /* The server writer produces the same bytes, less the mask bit and key,
     * which also proves the accepted encoding was the minimal one. */
    uint8_t out[10];
    size_t n = gn_ws_frame_header(out, f->fin, f->opcode, f->length);
    CHECK(n == 2 + ext);
    CHECK(out[0] == buf[0] && out[1] == (buf[1] & 0x7f));
    CHECK(memcmp(out + 2, buf + 2, ext) == 0);
}

static int fuzz_header(const uint8_t *buf, size_t len, gn_ws_frame_t *f)
{
    /* The limit comes from the data so that -1009 is reached too. */
    unsigned shift = len ? buf[len - 1] % 65 : 64;
    uint64_t max = shift < 64 ? (uint64_t)1 << shift : UINT64_MAX;
    int r = gn_ws_parse_header(buf, len, max, f);
    CHECK(r > 0 || r == GN_WS_INCOMPLETE || r == -GN_WS_CLOSE_PROTOCOL ||
          r == -GN_WS_CLOSE_TOO_BIG);
    if (r > 0)
        check_frame(buf, len, max, r, f);
    if (len >= 14)
        CHECK(r != GN_WS_INCOMPLETE); /* 14 bytes always decide */

    /* Fed one more byte each time (each prefix in an exact-size block so
     * ASan sees any overread), the answer is incomplete until it is the
     * whole answer, and then it never changes. */
    int decided = 0;
    for (size_t n = 0; n <= len && n <= 16; n++) {
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, buf, n);
        gn_ws_frame_t f2;
        int r2 = gn_ws_parse_header(p, n, max, &f2);
        free(p);
        if (r2 == GN_WS_INCOMPLETE) {
            CHECK(!decided);
            continue;
        }
        decided = 1;
        CHECK(r2 == r);
        if (r > 0)
            CHECK(same_frame(f, &f2));
    }
    CHECK(decided || r == GN_WS_INCOMPLETE);
    return r;
}

/* ---- unmasking ------------------------------------------------------------ */

static void fuzz_unmask(const uint8_t *payload, size_t n, const uint8_t mask[4],
                        uint64_t offset, size_t cut)
{
    uint8_t *a = malloc(n ? n : 1), *b = malloc(n ? n : 1), *c = malloc(n ? n : 1);
    memcpy(a, payload, n);
    memcpy(b, payload, n);
    memcpy(c, payload, n);
    gn_ws_unmask(a, n, mask, offset);
    for (size_t i = 0; i < n; i++)
        b[i] ^= mask[(offset + i) & 3];
    CHECK(memcmp(a, b, n) == 0);
    cut = n ? cut % (n + 1) : 0;
    gn_ws_unmask(c, cut, mask, offset);
    gn_ws_unmask(c + cut, n - cut, mask, offset + cut);
    CHECK(memcmp(c, b, n) == 0);
    gn_ws_unmask(a, n, mask, offset);
    CHECK(memcmp(a, payload, n) == 0);
    free(a);
    free(b);
    free(c);
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/*
 * Reference: can p[0..n) be extended into well-formed UTF-8 (RFC 3629)?
 * Written as a plain decoder, independent of the DFA: complete sequences are
 * decoded and checked by value; for a truncated last sequence the code points
 * it could still become form the interval [lo, hi] (missing bytes all 80 or
 * all BF), and it is viable if that interval meets a valid value.
 * Returns -1 if not viable, 0 if viable but cut short, 1 if complete.
 */
static int ref_utf8(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t need;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            need = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return -1;
        }
        size_t have = 0;
        for (; have < need && i + 1 + have < n; have++) {
            uint8_t d = p[i + 1 + have];
            if ((d & 0xc0) != 0x80)
                return -1;
            cp = (cp << 6) | (d & 0x3f);
        }
        uint32_t lo = cp, hi = cp;
        for (size_t k = have; k < need; k++) {
            lo = lo << 6;
            hi = (hi << 6) | 0x3f;
        }
        if (lo < min)
            lo = min;
        if (hi > 0x10ffff)
            hi = 0x10ffff;
        if (lo > hi || (lo >= 0xd800 && hi <= 0xdfff))
            return -1;
        if (have < need)
            return 0;
        i += 1 + need;
    }
    return 1;
}

static void fuzz_utf8(const uint8_t *buf, size_t len, size_t cut)
{
    int want = ref_utf8(buf, len);

    uint32_t st = 0;
    int r = gn_utf8_validate(&st, buf, len);
    int got = r < 0 ? -1 : st == 0 ? 1 : 0;
    CHECK(got == want);

    /* Split in two at `cut`. */
    cut = len ? cut % (len + 1) : 0;
    st = 0;
    r = gn_utf8_validate(&st, buf, cut);
    if (r == 0)
        r = gn_utf8_validate(&st, buf + cut, len - cut);
    CHECK((r < 0 ? -1 : st == 0 ? 1 : 0) == want);

    /* One byte at a time: the first -1 comes at the first byte after which
     * the reference says the prefix can no longer be completed. */
    st = 0;
    size_t i = 0;
    for (; i < len; i++) {
        uint8_t b = buf[i];
        if (gn_utf8_validate(&st, &b, 1) < 0)
            break;
    }
    if (i < len) {
        CHECK(want == -1);
        CHECK(ref_utf8(buf, i) >= 0 && ref_utf8(buf, i + 1) == -1);
        uint8_t b = 'a';
        CHECK(gn_utf8_validate(&st, &b, 1) == -1); /* failure is sticky */
    } else {
        CHECK(want >= 0 && (st == 0) == (want == 1));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gn_ws_frame_t f;
    int r = fuzz_header(data, size, &f);

    /* The payload is what follows an accepted header, else the whole input
     * with a key and offset taken from its first bytes. */
    uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    uint64_t offset = 0;
    size_t skip = 0;
    if (r > 0) {
        memcpy(mask, f.mask, 4);
        offset = f.length;
        skip = (size_t)r;
    } else {
        for (size_t i = 0; i < 4 && i < size; i++)
            mask[i] = data[i];
        for (size_t i = 4; i < 12 && i < size; i++)
            offset = (offset << 8) | data[i];
    }
    size_t cut = size ? data[0] * 31u + data[size / 2] : 0;
    fuzz_unmask(data + skip, size - skip, mask, offset, cut);
    fuzz_utf8(data, size, cut);
    return 0;
}
