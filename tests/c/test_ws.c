/*
 * Unit tests for src/http/ws.c (WebSocket frame headers, unmasking, UTF-8).
 *
 * Every header is parsed two ways and the results must agree (picohttpparser
 * style): (a) whole, copied so that it ends exactly where an unreadable guard
 * page begins, and (b) fed one byte at a time, each prefix in its own
 * exact-size heap block so ASan sees any read past len. Every prefix shorter
 * than the one that decides the header must give GN_WS_INCOMPLETE.
 */
#include "http/ws.h"
#include "http/ws_deflate.h"

#include <stdint.h>
#include <sys/mman.h>
#include <zlib.h>

#include "test.h"

#define E_PROTO (-GN_WS_CLOSE_PROTOCOL)
#define E_BIG (-GN_WS_CLOSE_TOO_BIG)
#define NO_LIMIT UINT64_MAX

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---- helpers: building and parsing headers ------------------------------- */

/* Copies in[0..len) so that its last byte is just before a PROT_NONE page. */
static uint8_t *guard_copy(const uint8_t *in, size_t len, void **map, size_t *map_len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = len ? (len + pg - 1) / pg : 1;
    *map_len = (pages + 1) * pg;
    uint8_t *m = mmap(NULL, *map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    if (m == MAP_FAILED || mprotect(m + pages * pg, pg, PROT_NONE) != 0) {
        perror("mmap/mprotect");
        abort();
    }
    *map = m;
    uint8_t *p = m + pages * pg - len;
    if (len)
        memcpy(p, in, len);
    return p;
}

enum { ENC_7 = 7, ENC_16 = 16, ENC_64 = 64 };

/* Writes a client frame header with the length in the given encoding (even
 * a non-minimal one); returns its size. */
static size_t build(uint8_t *buf, uint8_t b0, int masked, uint64_t length, int enc)
{
    size_t n = 2;
    buf[0] = b0;
    buf[1] = masked ? 0x80 : 0;
    if (enc == ENC_7) {
        buf[1] |= (uint8_t)length;
    } else if (enc == ENC_16) {
        buf[1] |= 126;
        buf[2] = (uint8_t)(length >> 8);
        buf[3] = (uint8_t)length;
        n = 4;
    } else {
        buf[1] |= 127;
        for (int i = 0; i < 8; i++)
            buf[2 + i] = (uint8_t)(length >> (56 - 8 * i));
        n = 10;
    }
    if (masked) {
        memcpy(buf + n, KEY, 4);
        n += 4;
    }
    return n;
}

static int same_frame(const gn_ws_frame_t *a, const gn_ws_frame_t *b)
{
    return a->fin == b->fin && a->opcode == b->opcode && a->length == b->length &&
           memcmp(a->mask, b->mask, 4) == 0 && a->header_len == b->header_len;
}

/*
 * Parses in[0..len) whole and one byte at a time; records a failure unless
 * both agree and every prefix before the deciding one is incomplete. Returns
 * the whole result; *decided gets the length of the shortest deciding prefix
 * (0 when even the whole input is incomplete).
 */
static int parse_both(const uint8_t *in, size_t len, uint64_t max, gn_ws_frame_t *f,
                      size_t *decided)
{
    void *map;
    size_t map_len;
    uint8_t *g = guard_copy(in, len, &map, &map_len);
    memset(f, 0xa5, sizeof(*f));
    int r = gn_ws_parse_header(g, len, max, f);
    munmap(map, map_len);

    *decided = 0;
    for (size_t n = 0; n <= len; n++) {
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, in, n);
        gn_ws_frame_t f2;
        memset(&f2, 0x5a, sizeof(f2));
        int r2 = gn_ws_parse_header(p, n, max, &f2);
        free(p);
        if (r2 == GN_WS_INCOMPLETE && *decided == 0)
            continue;
        if (*decided == 0)
            *decided = n;
        if (r2 != r)
            TEST_FAIL_("prefix of %zu bytes returned %d, whole returned %d", n, r2, r);
        else if (r > 0 && !same_frame(f, &f2))
            TEST_FAIL_("prefix of %zu bytes gave another frame than the whole", n);
    }
    if (r > 0 && (size_t)r != f->header_len)
        TEST_FAIL_("returned %d but header_len is %zu", r, f->header_len);
    return r;
}

/* A rejection, decided exactly when the byte at index at-1 arrives. */
#define ASSERT_REJECT(buf, n, max, code, at)                                         \
    do {                                                                             \
        gn_ws_frame_t f_;                                                            \
        size_t d_;                                                                   \
        ASSERT_EQ(parse_both(buf, n, max, &f_, &d_), code);                          \
        ASSERT_EQ(d_, at);                                                           \
    } while (0)

/* Checks a header of every length encoding against what build() wrote. */
static void check_accept(uint8_t b0, uint64_t length, int enc, size_t want_len)
{
    uint8_t buf[16];
    size_t n = build(buf, b0, 1, length, enc);
    ASSERT_EQ(n, want_len);
    /* Trailing payload bytes must not change anything. */
    buf[n] = 0xee;
    buf[n + 1] = 0xff;
    gn_ws_frame_t f;
    size_t decided;
    ASSERT_EQ(parse_both(buf, n + 2, NO_LIMIT, &f, &decided), (int)n);
    ASSERT_EQ(decided, n);
    ASSERT_EQ(f.header_len, n);
    ASSERT_EQ(f.fin, (b0 & 0x80) != 0);
    ASSERT_EQ(f.opcode, b0 & 0x0f);
    ASSERT_TRUE(f.length == length);
    ASSERT_TRUE(memcmp(f.mask, KEY, 4) == 0);
    /* Exactly at the limit is still allowed. */
    ASSERT_EQ(parse_both(buf, n, length, &f, &decided), (int)n);
}

/* ---- header: accepted frames --------------------------------------------- */

static void test_hdr_len7(void)
{
    check_accept(0x81, 0, ENC_7, 6);
    check_accept(0x81, 5, ENC_7, 6);
    check_accept(0x82, 125, ENC_7, 6);
}

static void test_hdr_len16(void)
{
    check_accept(0x81, 126, ENC_16, 8);
    check_accept(0x82, 0x1234, ENC_16, 8);
    check_accept(0x02, 65535, ENC_16, 8);
}

static void test_hdr_len64(void)
{
    check_accept(0x82, 65536, ENC_64, 14);
    check_accept(0x82, 0x0123456789abcdefull, ENC_64, 14);
    check_accept(0x80, 0x7fffffffffffffffull, ENC_64, 14);
}

static void test_hdr_opcodes(void)
{
    static const int ops[] = {GN_WS_CONT, GN_WS_TEXT, GN_WS_BINARY,
                              GN_WS_CLOSE, GN_WS_PING, GN_WS_PONG};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        check_accept((uint8_t)(0x80 | ops[i]), 125, ENC_7, 6);
        if (ops[i] < GN_WS_CLOSE) /* data frames may be fragmented (5.4) */
            check_accept((uint8_t)ops[i], 0, ENC_7, 6);
    }
}

static void test_hdr_incomplete(void)
{
    uint8_t buf[16] = {0};
    gn_ws_frame_t f;
    ASSERT_EQ(gn_ws_parse_header(buf, 0, NO_LIMIT, &f), GN_WS_INCOMPLETE);
    size_t n = build(buf, 0x82, 1, 70000, ENC_64);
    for (size_t i = 0; i < n; i++)
        ASSERT_EQ(gn_ws_parse_header(buf, i, NO_LIMIT, &f), GN_WS_INCOMPLETE);
    ASSERT_EQ(gn_ws_parse_header(buf, n, NO_LIMIT, &f), (int)n);
}

/* ---- header: rejections (one per rule) ------------------------------------ */

static void test_reject_unmasked(void)
{
    uint8_t buf[16];
    size_t n = build(buf, 0x81, 0, 5, ENC_7);
    ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 2);
    n = build(buf, 0x82, 0, 300, ENC_16);
    ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 2);
    n = build(buf, 0x89, 0, 0, ENC_7);
    ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 2);
}

static void test_reject_rsv(void)
{
    uint8_t buf[16];
    for (int bit = 0x10; bit <= 0x40; bit <<= 1) {
        size_t n = build(buf, (uint8_t)(0x81 | bit), 1, 5, ENC_7);
        ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 1);
    }
    size_t n = build(buf, 0xf1, 1, 5, ENC_7);
    ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 1);
}

static void test_reject_unknown_opcode(void)
{
    uint8_t buf[16];
    for (int op = 0; op <= 0xf; op++) {
        if (op <= 2 || (op >= 8 && op <= 0xa))
            continue;
        size_t n = build(buf, (uint8_t)(0x80 | op), 1, 5, ENC_7);
        ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 1);
        n = build(buf, (uint8_t)op, 1, 5, ENC_7);
        ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 1);
    }
}

static void test_reject_control_long(void)
{
    uint8_t buf[16];
    for (int op = GN_WS_CLOSE; op <= GN_WS_PONG; op++) {
        size_t n = build(buf, (uint8_t)(0x80 | op), 1, 126, ENC_16);
        ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 2);
        n = build(buf, (uint8_t)(0x80 | op), 1, 70000, ENC_64);
        ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 2);
        /* Even a small length in an extended field (non-minimal anyway). */
        n = build(buf, (uint8_t)(0x80 | op), 1, 5, ENC_16);
        ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 2);
    }
}

static void test_reject_control_fragmented(void)
{
    uint8_t buf[16];
    for (int op = GN_WS_CLOSE; op <= GN_WS_PONG; op++) {
        size_t n = build(buf, (uint8_t)op, 1, 0, ENC_7);
        ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 1);
    }
}

static void test_reject_nonminimal_16(void)
{
    uint8_t buf[16];
    static const uint64_t lens[] = {0, 1, 125};
    for (size_t i = 0; i < 3; i++) {
        size_t n = build(buf, 0x82, 1, lens[i], ENC_16);
        ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 4);
    }
}

static void test_reject_nonminimal_64(void)
{
    uint8_t buf[16];
    static const uint64_t lens[] = {0, 125, 126, 1000, 65535};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = build(buf, 0x82, 1, lens[i], ENC_64);
        ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 10);
    }
}

static void test_reject_64bit_top_bit(void)
{
    uint8_t buf[16];
    size_t n = build(buf, 0x82, 1, 0x8000000000000000ull, ENC_64);
    ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 3);
    n = build(buf, 0x82, 1, UINT64_MAX, ENC_64);
    ASSERT_REJECT(buf, n, NO_LIMIT, E_PROTO, 3);
}

static void test_reject_too_big(void)
{
    uint8_t buf[16];
    size_t n = build(buf, 0x81, 1, 100, ENC_7);
    ASSERT_REJECT(buf, n, 99, E_BIG, 2);
    n = build(buf, 0x81, 1, 1, ENC_7);
    ASSERT_REJECT(buf, n, 0, E_BIG, 2);
    n = build(buf, 0x89, 1, 125, ENC_7); /* control frames too */
    ASSERT_REJECT(buf, n, 124, E_BIG, 2);
    n = build(buf, 0x82, 1, 65535, ENC_16);
    ASSERT_REJECT(buf, n, 65534, E_BIG, 4);
    n = build(buf, 0x02, 1, 1ull << 40, ENC_64);
    ASSERT_REJECT(buf, n, 1 << 20, E_BIG, 10);
    /* A protocol error decided earlier wins over the size. */
    n = build(buf, 0x82, 0, 100, ENC_7);
    ASSERT_REJECT(buf, n, 10, E_PROTO, 2);
    n = build(buf, 0x82, 1, 100, ENC_16);
    ASSERT_REJECT(buf, n, 10, E_PROTO, 4);
}

/* ---- frame_header ---------------------------------------------------------- */

static void check_frame_header(int fin, int opcode, uint64_t length, size_t want)
{
    uint8_t out[10], in[16];
    memset(out, 0xcc, sizeof(out));
    size_t n = gn_ws_frame_header(out, fin, opcode, length);
    ASSERT_EQ(n, want);
    ASSERT_EQ(out[0], (fin ? 0x80 : 0) | opcode);
    ASSERT_EQ(out[1] & 0x80, 0); /* 5.1: server frames are not masked */
    /* Round trip: with the mask bit and a key added, the parser reads it back. */
    memcpy(in, out, n);
    in[1] |= 0x80;
    memcpy(in + n, KEY, 4);
    gn_ws_frame_t f;
    size_t decided;
    ASSERT_EQ(parse_both(in, n + 4, NO_LIMIT, &f, &decided), (int)(n + 4));
    ASSERT_EQ(f.fin, fin);
    ASSERT_EQ(f.opcode, opcode);
    ASSERT_TRUE(f.length == length);
}

static void test_frame_header_sizes(void)
{
    check_frame_header(1, GN_WS_TEXT, 0, 2);
    check_frame_header(1, GN_WS_TEXT, 125, 2);
    check_frame_header(0, GN_WS_BINARY, 126, 4);
    check_frame_header(1, GN_WS_BINARY, 65535, 4);
    check_frame_header(0, GN_WS_CONT, 65536, 10);
    check_frame_header(1, GN_WS_BINARY, 0x7fffffffffffffffull, 10);
    check_frame_header(1, GN_WS_CLOSE, 2, 2);
    check_frame_header(1, GN_WS_PONG, 125, 2);
}

static void test_frame_header_bytes(void)
{
    uint8_t out[10];
    ASSERT_EQ(gn_ws_frame_header(out, 1, GN_WS_TEXT, 125), 2);
    ASSERT_TRUE(memcmp(out, "\x81\x7d", 2) == 0);
    ASSERT_EQ(gn_ws_frame_header(out, 1, GN_WS_BINARY, 126), 4);
    ASSERT_TRUE(memcmp(out, "\x82\x7e\x00\x7e", 4) == 0);
    ASSERT_EQ(gn_ws_frame_header(out, 0, GN_WS_TEXT, 65535), 4);
    ASSERT_TRUE(memcmp(out, "\x01\x7e\xff\xff", 4) == 0);
    ASSERT_EQ(gn_ws_frame_header(out, 1, GN_WS_BINARY, 65536), 10);
    ASSERT_TRUE(memcmp(out, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10) == 0);
}

/* ---- unmask ----------------------------------------------------------------- */

static void ref_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= mask[(offset + i) % 4];
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

/* Every key offset 0..7, payload length 0..100 and start alignment 0..7, in
 * an exact-size heap block with guard bytes checked on either side. */
static void test_unmask_reference(void)
{
    uint8_t src[100 + 16], ref[100 + 16];
    fill(src, sizeof(src), 1);
    for (uint64_t offset = 0; offset < 8; offset++) {
        for (size_t len = 0; len <= 100; len++) {
            for (size_t align = 0; align < 8; align++) {
                uint8_t *block = malloc(align + len + 1);
                memcpy(block, src, align + len + 1);
                memcpy(ref, src, align + len + 1);
                gn_ws_unmask(block + align, len, KEY, offset);
                ref_unmask(ref + align, len, KEY, offset);
                int ok = memcmp(block, ref, align + len + 1) == 0;
                free(block);
                if (!ok) {
                    TEST_FAIL_("offset %d len %zu align %zu differs", (int)offset, len,
                               align);
                    return;
                }
            }
        }
    }
}

/* 1 MiB, unaligned, in one call and in uneven pieces carrying the offset. */
static void test_unmask_large(void)
{
    size_t n = (size_t)1 << 20;
    uint8_t *a = malloc(n + 3), *b = malloc(n + 3), *c = malloc(n + 3);
    ASSERT_TRUE(a && b && c);
    fill(a, n + 3, 7);
    memcpy(b, a, n + 3);
    memcpy(c, a, n + 3);
    gn_ws_unmask(a + 3, n, KEY, 0);
    ref_unmask(b + 3, n, KEY, 0);
    int whole = memcmp(a, b, n + 3) == 0;
    size_t done = 0, piece = 1;
    while (done < n) {
        size_t k = piece < n - done ? piece : n - done;
        gn_ws_unmask(c + 3 + done, k, KEY, done);
        done += k;
        piece = piece * 3 + 1;
    }
    int pieces = memcmp(c, b, n + 3) == 0;
    /* Masking is its own inverse. */
    gn_ws_unmask(a + 3, n, KEY, 0);
    ref_unmask(b + 3, n, KEY, 0);
    int twice = memcmp(a, b, n + 3) == 0;
    free(a);
    free(b);
    free(c);
    ASSERT_TRUE(whole);
    ASSERT_TRUE(pieces);
    ASSERT_TRUE(twice);
}

static void test_unmask_offset_above_32_bits(void)
{
    uint8_t a[40], b[40];
    fill(a, sizeof(a), 3);
    memcpy(b, a, sizeof(a));
    uint64_t offset = (1ull << 40) + 3;
    gn_ws_unmask(a + 1, 37, KEY, offset);
    ref_unmask(b + 1, 37, KEY, offset);
    ASSERT_TRUE(memcmp(a, b, sizeof(a)) == 0);
}

/* ---- UTF-8 ------------------------------------------------------------------ */

typedef struct {
    const char *s;
    size_t n;
} sample_t;

#define S(lit) {lit, sizeof(lit) - 1}

static const sample_t valid[] = {
    S(""),
    S("hello, world"),
    S("0123456789abcdefghijklmnopqrstuvwxyz ASCII longer than a few words"),
    S("\x00\x7f"),
    S("\xc2\x80"),                 /* U+0080, smallest 2-byte */
    S("\xc3\xa9t\xc3\xa9"),        /* "été" */
    S("\xdf\xbf"),                 /* U+07FF */
    S("\xe0\xa0\x80"),             /* U+0800, smallest 3-byte */
    S("\xe2\x82\xac"),             /* U+20AC euro */
    S("\xed\x9f\xbf"),             /* U+D7FF, just below the surrogates */
    S("\xee\x80\x80"),             /* U+E000, just above them */
    S("\xef\xbf\xbf"),             /* U+FFFF */
    S("\xf0\x90\x80\x80"),         /* U+10000, smallest 4-byte */
    S("\xf0\x9f\x98\x80"),         /* U+1F600 */
    S("\xf3\xbf\xbf\xbf"),         /* U+FFFFF */
    S("\xf4\x8f\xbf\xbf"),         /* U+10FFFF, the largest */
    S("ab\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9f\x98\x80 mixed text!!"),
};

/* Validates p[0..n) in one call; returns 1 valid, 0 incomplete, -1 invalid. */
static int utf8_one(const char *p, size_t n)
{
    uint32_t st = 0;
    if (gn_utf8_validate(&st, (const uint8_t *)p, n) < 0)
        return -1;
    return st == 0 ? 1 : 0;
}

static void test_utf8_valid(void)
{
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        if (utf8_one(valid[i].s, valid[i].n) != 1)
            TEST_FAIL_("valid sample %zu rejected", i);
}

/* Each valid sample split at every position into two calls, each piece in its
 * own exact-size heap block. */
static void test_utf8_split(void)
{
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        const sample_t *v = &valid[i];
        for (size_t cut = 0; cut <= v->n; cut++) {
            uint8_t *a = malloc(cut ? cut : 1), *b = malloc(v->n - cut ? v->n - cut : 1);
            memcpy(a, v->s, cut);
            memcpy(b, v->s + cut, v->n - cut);
            uint32_t st = 0;
            int r1 = gn_utf8_validate(&st, a, cut);
            int r2 = gn_utf8_validate(&st, b, v->n - cut);
            free(a);
            free(b);
            if (r1 != 0 || r2 != 0 || st != 0)
                TEST_FAIL_("sample %zu split at %zu: %d %d state %u", i, cut, r1, r2,
                           (unsigned)st);
        }
    }
}

/* Invalid inputs must give -1, alone and behind an ASCII run long enough to
 * take the 8-byte fast path, in one call and byte by byte. */
static void check_invalid(const sample_t *bad, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        char buf[64];
        for (size_t pre = 0; pre <= 17; pre++) {
            memset(buf, 'x', pre);
            memcpy(buf + pre, bad[i].s, bad[i].n);
            size_t n = pre + bad[i].n;
            if (utf8_one(buf, n) != -1)
                TEST_FAIL_("invalid sample %zu (after %zu ASCII) accepted", i, pre);
            uint32_t st = 0;
            int r = 0;
            for (size_t k = 0; k < n && r == 0; k++)
                r = gn_utf8_validate(&st, (const uint8_t *)buf + k, 1);
            if (r != -1)
                TEST_FAIL_("invalid sample %zu byte by byte accepted", i);
        }
    }
}

#define CHECK_INVALID(arr) check_invalid(arr, sizeof(arr) / sizeof(arr[0]))

static void test_utf8_reject_overlong(void)
{
    static const sample_t bad[] = {
        S("\xc0\x80"), S("\xc0\xaf"), S("\xc1\xbf"),          /* C0, C1 */
        S("\xe0\x80\x80"), S("\xe0\x9f\xbf"),                 /* E0 80..9F */
        S("\xf0\x80\x80\x80"), S("\xf0\x8f\xbf\xbf"),         /* F0 80..8F */
        S("\xc0"), S("\xe0\x80"), S("\xf0\x8f"),              /* even truncated */
    };
    CHECK_INVALID(bad);
}

static void test_utf8_reject_surrogates(void)
{
    static const sample_t bad[] = {
        S("\xed\xa0\x80"), S("\xed\xaf\xbf"), S("\xed\xb0\x80"), S("\xed\xbf\xbf"),
        S("\xed\xa0\x80\xed\xb0\x80"), /* a CESU-8 pair */
        S("\xed\xa0"),
    };
    CHECK_INVALID(bad);
}

static void test_utf8_reject_above_max(void)
{
    static const sample_t bad[] = {
        S("\xf4\x90\x80\x80"), S("\xf4\xbf\xbf\xbf"), S("\xf5\x80\x80\x80"),
        S("\xf7\xbf\xbf\xbf"), S("\xf8\x88\x80\x80\x80"), S("\xfc\x84\x80\x80\x80\x80"),
        S("\xfe"), S("\xff"), S("\xf4\x90"),
    };
    CHECK_INVALID(bad);
}

static void test_utf8_reject_bad_continuation(void)
{
    static const sample_t bad[] = {
        S("\x80"), S("\xbf"), S("a\x80"), S("\xc3\xa9\xa9"),  /* stray continuation */
        S("\xc3\x41"), S("\xe2\x82\x41"), S("\xf0\x9f\x98\x41"), /* ASCII too soon */
        S("\xc3\xc3\xa9"), S("\xe2\xe2\x82\xac"), S("\xf0\x9f\xf0\x9f\x98\x80"),
    };
    CHECK_INVALID(bad);
}

/* A truncated sequence is not an error, only "incomplete" (state != 0). */
static void test_utf8_truncated_is_incomplete(void)
{
    static const sample_t part[] = {
        S("\xc3"), S("\xe2"), S("\xe2\x82"), S("\xe0\xa0"), S("\xed\x9f"), S("\xf0"),
        S("\xf0\x9f"), S("\xf0\x9f\x98"), S("\xf4\x8f\xbf"), S("abcdefghijk\xe2\x82"),
    };
    for (size_t i = 0; i < sizeof(part) / sizeof(part[0]); i++)
        if (utf8_one(part[i].s, part[i].n) != 0)
            TEST_FAIL_("truncated sample %zu not incomplete", i);
}

/* After -1 the state stays failed; an unknown state is refused. */
static void test_utf8_sticky_failure(void)
{
    uint32_t st = 0;
    ASSERT_EQ(gn_utf8_validate(&st, (const uint8_t *)"\xff", 1), -1);
    ASSERT_TRUE(st != 0);
    ASSERT_EQ(gn_utf8_validate(&st, (const uint8_t *)"abc", 3), -1);
    ASSERT_EQ(gn_utf8_validate(&st, (const uint8_t *)"", 0), -1);
    st = 0xdeadbeef;
    ASSERT_EQ(gn_utf8_validate(&st, (const uint8_t *)"abc", 3), -1);
}

/* The 8-byte ASCII fast path must notice a non-ASCII byte at any position. */
static void test_utf8_fast_path(void)
{
    char buf[80];
    for (size_t at = 0; at < 64; at++) {
        memset(buf, 'a', sizeof(buf));
        buf[at] = (char)0x80;
        ASSERT_EQ(utf8_one(buf, sizeof(buf)), -1);
        buf[at] = (char)0xc3;
        buf[at + 1] = (char)0xa9;
        ASSERT_EQ(utf8_one(buf, sizeof(buf)), 1);
        ASSERT_EQ(utf8_one(buf, at + 1), 0);
    }
}

static size_t encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* Every code point U+0000..U+10FFFF: valid unless a surrogate; each of its
 * overlong encodings (one byte longer than needed) is invalid. */
static void test_utf8_every_code_point(void)
{
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        uint8_t b[4];
        size_t n = encode(cp, b);
        int want = cp >= 0xd800 && cp <= 0xdfff ? -1 : 1;
        int got = utf8_one((const char *)b, n);
        if (got != want) {
            TEST_FAIL_("U+%04X: got %d, want %d", (unsigned)cp, got, want);
            return;
        }
        if (n == 4)
            continue;
        /* Overlong: the same bits in the next longer form. */
        uint8_t o[4];
        size_t m = n + 1;
        for (size_t k = m - 1, v = cp; k > 0; k--, v >>= 6)
            o[k] = (uint8_t)(0x80 | (v & 0x3f));
        o[0] = (uint8_t)(m == 2 ? 0xc0 : m == 3 ? 0xe0 : 0xf0);
        o[0] |= (uint8_t)(cp >> (6 * (m - 1)));
        if (utf8_one((const char *)o, m) != -1) {
            TEST_FAIL_("overlong U+%04X in %zu bytes accepted", (unsigned)cp, m);
            return;
        }
    }
}

/* ---- permessage-deflate (ws_deflate.c) ---------------------------------- */

static int negotiate(const char *v, gn_ws_deflate_params_t *p)
{
    return gn_ws_deflate_negotiate(v, strlen(v), p);
}

static void test_rsv1_allowed_only_on_first_data_frame(void)
{
    gn_ws_frame_t f;
    uint8_t text[] = {0xC1, 0x80, 1, 2, 3, 4}; /* FIN RSV1 text, masked, empty */
    ASSERT_EQ(gn_ws_parse_header_ext(text, sizeof(text), NO_LIMIT, GN_WS_RSV1, &f), 6);
    ASSERT_EQ(f.rsv, GN_WS_RSV1);
    ASSERT_EQ(gn_ws_parse_header(text, sizeof(text), NO_LIMIT, &f), -GN_WS_CLOSE_PROTOCOL);
    uint8_t cont[] = {0xC0, 0x80, 1, 2, 3, 4};
    ASSERT_EQ(gn_ws_parse_header_ext(cont, sizeof(cont), NO_LIMIT, GN_WS_RSV1, &f), -GN_WS_CLOSE_PROTOCOL);
    uint8_t ping[] = {0xC9, 0x80, 1, 2, 3, 4};
    ASSERT_EQ(gn_ws_parse_header_ext(ping, sizeof(ping), NO_LIMIT, GN_WS_RSV1, &f), -GN_WS_CLOSE_PROTOCOL);
    uint8_t rsv2[] = {0xA1, 0x80, 1, 2, 3, 4};
    ASSERT_EQ(gn_ws_parse_header_ext(rsv2, sizeof(rsv2), NO_LIMIT, GN_WS_RSV1, &f), -GN_WS_CLOSE_PROTOCOL);
}

static void test_deflate_negotiate_browser_offers(void)
{
    gn_ws_deflate_params_t p;
    char buf[160];
    /* Chrome's offer. */
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits", &p), 1);
    ASSERT_EQ(p.client_bits, GN_WS_DEFLATE_CLIENT_BITS);
    ASSERT_EQ(p.server_bits, GN_WS_DEFLATE_SERVER_BITS);
    ASSERT_EQ(p.server_no_context_takeover, 0);
    gn_ws_deflate_response(&p, buf, sizeof(buf));
    ASSERT_TRUE(strcmp(buf, "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11") == 0);
    /* Firefox's: no client_max_window_bits, so the client may use 15. */
    ASSERT_EQ(negotiate("permessage-deflate", &p), 1);
    ASSERT_EQ(p.client_bits, 15);
    ASSERT_EQ(p.client_bits_sent, 0);
    gn_ws_deflate_response(&p, buf, sizeof(buf));
    ASSERT_TRUE(strcmp(buf, "permessage-deflate; server_max_window_bits=11") == 0);
    ASSERT_EQ(negotiate("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                        "server_max_window_bits=\"9\"; client_max_window_bits=10", &p), 1);
    ASSERT_EQ(p.server_no_context_takeover, 1);
    ASSERT_EQ(p.client_no_context_takeover, 1);
    ASSERT_EQ(p.server_bits, 9);
    ASSERT_EQ(p.client_bits, 10);
    gn_ws_deflate_response(&p, buf, sizeof(buf));
    ASSERT_TRUE(strcmp(buf, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                            "server_max_window_bits=9; client_max_window_bits=10") == 0);
}

static void test_deflate_negotiate_declines(void)
{
    gn_ws_deflate_params_t p;
    ASSERT_EQ(negotiate("x-webkit-deflate-frame", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; server_max_window_bits=8", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; server_max_window_bits", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; server_max_window_bits=16", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; server_max_window_bits=010", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits=7", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; server_no_context_takeover=1", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; server_no_context_takeover; server_no_context_takeover", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; unknown", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits=\"12", &p), 0);
    ASSERT_EQ(negotiate("", &p), 0);
    /* A declined offer gives way to the next one. */
    ASSERT_EQ(negotiate("permessage-deflate; server_max_window_bits=8, foo, permessage-deflate; "
                        "client_no_context_takeover", &p), 1);
    ASSERT_EQ(p.client_no_context_takeover, 1);
    ASSERT_EQ(p.server_bits, GN_WS_DEFLATE_SERVER_BITS);
}

/* Our compressor into our decompressor, both ways of context. */
static void roundtrip(int no_context)
{
    gn_ws_deflate_params_t p = {no_context, no_context, 11, 11, 1};
    gn_ws_deflate_t *a = gn_ws_deflate_new(&p), *b = gn_ws_deflate_new(&p);
    /* 1500 pseudo-random letters: little to gain within one message, all
     * of it from the last one, which fits the 2 KB window. */
    char msg[1500];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(msg); i++) {
        x = x * 1103515245u + 12345u;
        msg[i] = (char)('a' + (x >> 16) % 26);
    }
    size_t last_len = 0;
    for (int round = 0; round < 3; round++) {
        char *z, *out = NULL;
        size_t zlen, cap = 0, used = 0;
        ASSERT_EQ(gn_ws_deflate_message(a, msg, sizeof(msg), &z, &zlen), 0);
        if (round == 0 || no_context)
            ASSERT_TRUE(zlen > sizeof(msg) / 2);
        else
            ASSERT_TRUE(zlen < 50); /* the context from the last message */
        if (round > 0 && no_context)
            ASSERT_EQ(zlen, last_len);
        last_len = zlen;
        /* Fed in two pieces, the second ending the message. */
        ASSERT_EQ(gn_ws_inflate(b, (uint8_t *)z, zlen / 2, 0, &out, &cap, &used, 1 << 20), 0);
        ASSERT_EQ(gn_ws_inflate(b, (uint8_t *)z + zlen / 2, zlen - zlen / 2, 1, &out, &cap, &used, 1 << 20), 0);
        ASSERT_EQ(used, sizeof(msg));
        ASSERT_TRUE(memcmp(out, msg, sizeof(msg)) == 0);
        free(z);
        free(out);
        gn_ws_deflate_idle(a);
        gn_ws_deflate_idle(b);
    }
    gn_ws_deflate_free(a);
    gn_ws_deflate_free(b);
}

static void test_deflate_roundtrip_context_takeover(void)
{
    roundtrip(0);
}

static void test_deflate_roundtrip_no_context_takeover(void)
{
    roundtrip(1);
}

static void test_deflate_empty_message(void)
{
    gn_ws_deflate_params_t p = {0, 0, 11, 11, 1};
    gn_ws_deflate_t *d = gn_ws_deflate_new(&p);
    char *z, *out = NULL;
    size_t zlen, cap = 0, used = 0;
    /* "a", then two empty messages: the second is a flush with nothing to
     * flush, after which zlib writes no bytes at all. */
    const char *msgs[3] = {"a", "", ""};
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(gn_ws_deflate_message(d, msgs[i], strlen(msgs[i]), &z, &zlen), 0);
        ASSERT_TRUE(zlen > 0);
        used = 0;
        ASSERT_EQ(gn_ws_inflate(d, (uint8_t *)z, zlen, 1, &out, &cap, &used, 100), 0);
        ASSERT_EQ(used, strlen(msgs[i]));
        free(z);
    }
    free(out);
    gn_ws_deflate_free(d);
}

/* A bomb: 4 MB of zeros compress to a few KB; inflating stops at the bound
 * with the buffer never above bound + 1. */
static void test_deflate_bomb_is_bounded(void)
{
    gn_ws_deflate_params_t p = {0, 0, 11, 11, 1};
    gn_ws_deflate_t *a = gn_ws_deflate_new(&p), *b = gn_ws_deflate_new(&p);
    size_t n = 4 << 20;
    char *zeros = calloc(1, n), *z, *out = NULL;
    size_t zlen, cap = 0, used = 0;
    ASSERT_EQ(gn_ws_deflate_message(a, zeros, n, &z, &zlen), 0);
    ASSERT_TRUE(zlen < 64 * 1024);
    ASSERT_EQ(gn_ws_inflate(b, (uint8_t *)z, zlen, 1, &out, &cap, &used, 100000), 0);
    ASSERT_TRUE(used > 100000);
    ASSERT_TRUE(cap <= 100001);
    free(zeros);
    free(z);
    free(out);
    gn_ws_deflate_free(a);
    gn_ws_deflate_free(b);
}

static void test_deflate_corrupt_input(void)
{
    gn_ws_deflate_params_t p = {0, 0, 11, 11, 1};
    gn_ws_deflate_t *d = gn_ws_deflate_new(&p);
    uint8_t bad[] = {0xff, 0xff, 0xff, 0xff}; /* BTYPE 11: reserved */
    char *out = NULL;
    size_t cap = 0, used = 0;
    ASSERT_EQ(gn_ws_inflate(d, bad, sizeof(bad), 1, &out, &cap, &used, 1000), -1);
    free(out);
    gn_ws_deflate_free(d);
}

static void test_deflate_negotiate_parameter_values(void)
{
    gn_ws_deflate_params_t p;
    char buf[160];
    /* A quoted-string may escape any character: "1\1" is 11. */
    ASSERT_EQ(negotiate("permessage-deflate;\tclient_max_window_bits=\"1\\1\"", &p), 1);
    ASSERT_EQ(p.client_bits, 11);
    ASSERT_EQ(p.client_bits_sent, 1);
    /* Single-digit windows: 9 for us is kept (below our 11), 8 for the
     * client too (its compressor's own limit). */
    ASSERT_EQ(negotiate("permessage-deflate; server_max_window_bits=9; client_max_window_bits=8", &p), 1);
    ASSERT_EQ(p.server_bits, 9);
    ASSERT_EQ(p.client_bits, 8);
    /* Above ours: the server still compresses with its own 11. */
    ASSERT_EQ(negotiate("permessage-deflate; server_max_window_bits=15", &p), 1);
    ASSERT_EQ(p.server_bits, GN_WS_DEFLATE_SERVER_BITS);
    ASSERT_EQ(negotiate("PerMessage-Deflate ; Client_No_Context_Takeover", &p), 1);
    ASSERT_EQ(p.client_no_context_takeover, 1);
    /* Malformed values and parameters decline the offer. */
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits=\"1\\", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits=\"1111111111111111\"", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits=1111111111111111", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits=", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits=91", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits=1", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits=19", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits=1a", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits=151", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate; client_max_window_bits=a", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflate;", &p), 0);
    ASSERT_EQ(negotiate("permessage-deflat", &p), 0);
    /* A response that does not fit is cut, NUL-terminated. */
    ASSERT_EQ(negotiate("permessage-deflate", &p), 1);
    ASSERT_EQ(gn_ws_deflate_response(&p, buf, 19), 18);
    ASSERT_TRUE(strcmp(buf, "permessage-deflate") == 0);
}

/* Raw deflate of s, ending with a final block (BFINAL), as zlib's Z_FINISH
 * makes it: what a sender may end a message with. */
static size_t raw_final(const char *s, uint8_t *out, size_t cap)
{
    z_stream z = {0};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -11, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    z.next_in = (Bytef *)(uintptr_t)s;
    z.avail_in = (uInt)strlen(s);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_FINISH);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    return r == Z_STREAM_END ? n : 0;
}

/* A final block ends one deflate stream: what follows it in the message
 * starts a new one, and a message may end right after it. */
static void test_deflate_final_block_starts_a_new_stream(void)
{
    gn_ws_deflate_params_t p = {0, 0, 11, 11, 1};
    gn_ws_deflate_t *d = gn_ws_deflate_new(&p);
    uint8_t z[256];
    size_t a = raw_final("hello, ", z, sizeof(z));
    ASSERT_TRUE(a > 0);
    size_t b = raw_final("world", z + a, sizeof(z) - a);
    ASSERT_TRUE(b > 0);
    char *out = NULL;
    size_t cap = 0, used = 0;
    ASSERT_EQ(gn_ws_inflate(d, z, a + b, 1, &out, &cap, &used, 1000), 0);
    ASSERT_EQ(used, 12);
    ASSERT_TRUE(memcmp(out, "hello, world", 12) == 0);
    /* The next message: one stream that ends with the frame. */
    used = 0;
    ASSERT_EQ(gn_ws_inflate(d, z + a, b, 1, &out, &cap, &used, 1000), 0);
    ASSERT_EQ(used, 5);
    ASSERT_TRUE(memcmp(out, "world", 5) == 0);
    /* An empty frame in the middle of a message: nothing to do. */
    used = 0;
    ASSERT_EQ(gn_ws_inflate(d, z, 0, 0, &out, &cap, &used, 1000), 0);
    ASSERT_EQ(used, 0);
    free(out);
    gn_ws_deflate_free(d);
}

/* A message that compresses to more than its size (random bytes): whole
 * after the round trip. */
static void test_deflate_incompressible_message(void)
{
    gn_ws_deflate_params_t p = {1, 1, 9, 9, 1};
    gn_ws_deflate_t *a = gn_ws_deflate_new(&p), *b = gn_ws_deflate_new(&p);
    size_t n = 200000;
    char *msg = malloc(n), *z, *out = NULL;
    uint32_t x = 99;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        msg[i] = (char)(x >> 24);
    }
    size_t zlen, cap = 0, used = 0;
    ASSERT_EQ(gn_ws_deflate_message(a, msg, n, &z, &zlen), 0);
    ASSERT_TRUE(zlen > n);
    ASSERT_EQ(gn_ws_inflate(b, (uint8_t *)z, zlen, 1, &out, &cap, &used, n), 0);
    ASSERT_EQ(used, n);
    ASSERT_TRUE(memcmp(out, msg, n) == 0);
    free(msg);
    free(z);
    free(out);
    gn_ws_deflate_free(a);
    gn_ws_deflate_free(b);
}

static const test_entry_t tests[] = {
    TEST_ENTRY(hdr_len7),
    TEST_ENTRY(hdr_len16),
    TEST_ENTRY(hdr_len64),
    TEST_ENTRY(hdr_opcodes),
    TEST_ENTRY(hdr_incomplete),
    TEST_ENTRY(reject_unmasked),
    TEST_ENTRY(reject_rsv),
    TEST_ENTRY(reject_unknown_opcode),
    TEST_ENTRY(reject_control_long),
    TEST_ENTRY(reject_control_fragmented),
    TEST_ENTRY(reject_nonminimal_16),
    TEST_ENTRY(reject_nonminimal_64),
    TEST_ENTRY(reject_64bit_top_bit),
    TEST_ENTRY(reject_too_big),
    TEST_ENTRY(frame_header_sizes),
    TEST_ENTRY(frame_header_bytes),
    TEST_ENTRY(unmask_reference),
    TEST_ENTRY(unmask_large),
    TEST_ENTRY(unmask_offset_above_32_bits),
    TEST_ENTRY(utf8_valid),
    TEST_ENTRY(utf8_split),
    TEST_ENTRY(utf8_reject_overlong),
    TEST_ENTRY(utf8_reject_surrogates),
    TEST_ENTRY(utf8_reject_above_max),
    TEST_ENTRY(utf8_reject_bad_continuation),
    TEST_ENTRY(utf8_truncated_is_incomplete),
    TEST_ENTRY(utf8_sticky_failure),
    TEST_ENTRY(utf8_fast_path),
    TEST_ENTRY(utf8_every_code_point),
    TEST_ENTRY(rsv1_allowed_only_on_first_data_frame),
    TEST_ENTRY(deflate_negotiate_browser_offers),
    TEST_ENTRY(deflate_negotiate_declines),
    TEST_ENTRY(deflate_roundtrip_context_takeover),
    TEST_ENTRY(deflate_roundtrip_no_context_takeover),
    TEST_ENTRY(deflate_empty_message),
    TEST_ENTRY(deflate_bomb_is_bounded),
    TEST_ENTRY(deflate_corrupt_input),
    TEST_ENTRY(deflate_negotiate_parameter_values),
    TEST_ENTRY(deflate_final_block_starts_a_new_stream),
    TEST_ENTRY(deflate_incompressible_message),
};

int main(int argc, char **argv)
{
    return test_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
