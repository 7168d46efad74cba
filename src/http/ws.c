/*
 * WebSocket (RFC 6455) frame header parser and writer, payload unmasking and
 * incremental UTF-8 validation (see ws.h).
 *
 * The header parser is picohttpparser-style: pure, allocation-free, and it
 * looks at no byte past len. Every check is made as soon as the byte it
 * depends on has arrived, and in a fixed order, so a header fed one byte at a
 * time gets GN_WS_INCOMPLETE until the first prefix that decides it, and then
 * exactly the answer the whole header gets. Message-level rules (a
 * continuation frame with no message open, a new data frame inside a
 * fragmented message, RFC 6455 section 5.4) need state across frames and
 * belong to the connection layer, not here.
 */
#include "ws.h"

#include <stdbool.h>
#include <string.h>

/* ---- frame header ------------------------------------------------------- */

#define WS_FIN 0x80
#define WS_RSV 0x70 /* RSV1..RSV3 */
#define WS_OPCODE 0x0f
#define WS_MASK 0x80
#define WS_LEN7 0x7f
#define WS_CONTROL 0x08 /* opcodes 0x8..0xF are control frames (5.5) */

#define WS_MAX_CONTROL 125
#define WS_LEN16 126
#define WS_LEN64 127

/* RFC 6455 5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved; "If an unknown
 * opcode is received, the receiving endpoint MUST _Fail the WebSocket
 * Connection_". */
static bool known_opcode(int opcode)
{
    return opcode <= GN_WS_BINARY || (opcode >= GN_WS_CLOSE && opcode <= GN_WS_PONG);
}

/* Checks the first byte: FIN, RSV1-3 and the opcode. Returns 0 or -1002. */
static int check_byte0(uint8_t b0, unsigned rsv_allowed)
{
    /* 5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines
     * meanings for non-zero values". */
    if (b0 & WS_RSV & ~rsv_allowed)
        return -GN_WS_CLOSE_PROTOCOL;
    /* RFC 7692 6.1: permessage-deflate's RSV1 marks the first frame of a
     * compressed message; it must not be set on a control frame or on a
     * continuation frame. */
    if ((b0 & WS_RSV) && ((b0 & WS_CONTROL) || (b0 & WS_OPCODE) == GN_WS_CONT))
        return -GN_WS_CLOSE_PROTOCOL;
    if (!known_opcode(b0 & WS_OPCODE))
        return -GN_WS_CLOSE_PROTOCOL;
    /* 5.5: "Control frames themselves MUST NOT be fragmented." (5.4: a
     * fragmented frame is one with FIN clear.) */
    if ((b0 & WS_CONTROL) && !(b0 & WS_FIN))
        return -GN_WS_CLOSE_PROTOCOL;
    return 0;
}

static uint64_t load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/*
 * Reads the payload length that follows byte 1 into *length and sets *ext to
 * the size of its extended field (0, 2 or 8). Returns 0, GN_WS_INCOMPLETE or
 * -1002. The caller has checked the mask bit and the control-frame limit.
 */
static int read_length(const uint8_t *buf, size_t len, uint64_t *length, size_t *ext)
{
    uint64_t l = buf[1] & WS_LEN7;
    if (l < WS_LEN16) {
        *length = l;
        *ext = 0;
        return 0;
    }
    if (l == WS_LEN16) {
        if (len < 4)
            return GN_WS_INCOMPLETE;
        l = load_be(buf + 2, 2);
        /* 5.2: "the minimal number of bytes MUST be used to encode the
         * length"; a 16-bit field may only carry 126..65535. Two encodings
         * of one frame would let two parsers disagree on where it ends. */
        if (l < WS_LEN16)
            return -GN_WS_CLOSE_PROTOCOL;
        *length = l;
        *ext = 2;
        return 0;
    }
    /* 5.2: for the 64-bit length "the most significant bit MUST be 0". It is
     * the first bit of buf[2], so reject it as soon as that byte is here. */
    if (len >= 3 && (buf[2] & 0x80))
        return -GN_WS_CLOSE_PROTOCOL;
    if (len < 10)
        return GN_WS_INCOMPLETE;
    l = load_be(buf + 2, 8);
    /* 5.2 again: minimal encoding, so a 64-bit field carries >= 65536. */
    if (l <= 0xffff)
        return -GN_WS_CLOSE_PROTOCOL;
    *length = l;
    *ext = 8;
    return 0;
}

int gn_ws_parse_header(const uint8_t *buf, size_t len, uint64_t max_payload, gn_ws_frame_t *f)
{
    return gn_ws_parse_header_ext(buf, len, max_payload, 0, f);
}

int gn_ws_parse_header_ext(const uint8_t *buf, size_t len, uint64_t max_payload, unsigned rsv_allowed,
                           gn_ws_frame_t *f)
{
    if (len < 1)
        return GN_WS_INCOMPLETE;
    int r = check_byte0(buf[0], rsv_allowed);
    if (r != 0)
        return r;
    if (len < 2)
        return GN_WS_INCOMPLETE;
    /* 5.1: "a client MUST mask all frames that it sends to the server" and
     * "The server MUST close the connection upon receiving a frame that is
     * not masked", for which 7.4.1's 1002 is the status (5.1 says it MAY
     * send one). */
    if (!(buf[1] & WS_MASK))
        return -GN_WS_CLOSE_PROTOCOL;
    /* 5.5: "All control frames MUST have a payload length of 125 bytes or
     * less". A 7-bit value of 126 or 127 announces an extended length, which
     * with the minimal-encoding rule means > 125: reject it now. */
    if ((buf[0] & WS_CONTROL) && (buf[1] & WS_LEN7) > WS_MAX_CONTROL)
        return -GN_WS_CLOSE_PROTOCOL;
    uint64_t length;
    size_t ext;
    r = read_length(buf, len, &length, &ext);
    if (r != 0)
        return r;
    /* 7.4.1: 1009 is for "a message that is too big for it to process". */
    if (length > max_payload)
        return -GN_WS_CLOSE_TOO_BIG;
    /* 5.2: the 4-byte Masking-key follows the length. */
    size_t header_len = 2 + ext + 4;
    if (len < header_len)
        return GN_WS_INCOMPLETE;
    f->fin = (buf[0] & WS_FIN) != 0;
    f->rsv = buf[0] & WS_RSV;
    f->opcode = buf[0] & WS_OPCODE;
    f->length = length;
    memcpy(f->mask, buf + 2 + ext, 4);
    f->header_len = header_len;
    return (int)header_len;
}

/*
 * 5.2 payload length in the minimal encoding; 5.1: "A server MUST NOT mask
 * any frames that it sends to the client", so the mask bit is clear and no
 * key follows. The caller keeps length below 2^63 (5.2: the top bit MUST be
 * 0); a size_t from a real buffer always is.
 */
size_t gn_ws_frame_header(uint8_t *buf, int fin, int opcode, uint64_t length)
{
    buf[0] = (uint8_t)((fin ? WS_FIN : 0) | (opcode & WS_OPCODE));
    if (length < WS_LEN16) {
        buf[1] = (uint8_t)length;
        return 2;
    }
    if (length <= 0xffff) {
        buf[1] = WS_LEN16;
        buf[2] = (uint8_t)(length >> 8);
        buf[3] = (uint8_t)length;
        return 4;
    }
    buf[1] = WS_LEN64;
    for (int i = 0; i < 8; i++)
        buf[2 + i] = (uint8_t)(length >> (56 - 8 * i));
    return 10;
}

/* ---- unmasking ----------------------------------------------------------- */

/*
 * 5.3: "octet i of the transformed data is the XOR of octet i of the
 * original data with octet at index i modulo 4 of the masking key", i
 * counting from the start of the frame's payload, hence `offset`.
 *
 * Bytes are XORed one at a time until p is 8-byte aligned; from there the
 * key, rotated to the current position, is repeated into a 64-bit word and
 * applied 8 bytes at a time (32 per loop turn, which compilers turn into
 * vector code). As 8 is a multiple of 4 the rotation stays valid across
 * words. memcpy keeps the word accesses free of aliasing and alignment UB
 * and compiles to plain loads and stores.
 */
void gn_ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    size_t k = (size_t)(offset & 3);
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        *p++ ^= mask[k];
        k = (k + 1) & 3;
        n--;
    }
    if (n >= 8) {
        uint8_t rot[8];
        for (size_t i = 0; i < 8; i++)
            rot[i] = mask[(k + i) & 3];
        uint64_t m, w[4];
        memcpy(&m, rot, 8);
        for (; n >= 32; p += 32, n -= 32) {
            memcpy(w, p, 32);
            w[0] ^= m;
            w[1] ^= m;
            w[2] ^= m;
            w[3] ^= m;
            memcpy(p, w, 32);
        }
        for (; n >= 8; p += 8, n -= 8) {
            memcpy(w, p, 8);
            w[0] ^= m;
            memcpy(p, w, 8);
        }
    }
    for (; n > 0; n--) {
        *p++ ^= mask[k];
        k = (k + 1) & 3;
    }
}

/* ---- UTF-8 --------------------------------------------------------------- */

/*
 * 8.1: "the endpoint MUST _Fail the WebSocket Connection_" when a text
 * message (or, 5.5.1, a Close reason) is not valid UTF-8; 5.6: the text
 * may be split across frames at any byte, so the check must carry its
 * state from one fragment to the next.
 *
 * A DFA over byte classes that follows the well-formed byte sequences table
 * of RFC 3629 section 4 (Unicode 15 table 3-7). The states remember how many
 * continuation bytes are still owed, and for the second byte of the
 * sequences that table restricts, which range it may take:
 *
 *   E0 A0..BF         (E0 80..9F would be an overlong 3-byte form)
 *   ED 80..9F         (ED A0..BF would encode a UTF-16 surrogate)
 *   F0 90..BF         (F0 80..8F would be an overlong 4-byte form)
 *   F4 80..8F         (F4 90.. would be above U+10FFFF)
 *
 * C0, C1 (overlong 2-byte forms) and F5..FF (above U+10FFFF) can never
 * appear, nor can a continuation byte where a lead byte is expected.
 */
enum {
    U_ASCII, /* 00..7F */
    U_C8,    /* 80..8F continuation */
    U_C9,    /* 90..9F continuation */
    U_CA,    /* A0..BF continuation */
    U_BAD,   /* C0, C1, F5..FF */
    U_L2,    /* C2..DF */
    U_E0,    /* E0 */
    U_L3,    /* E1..EC, EE, EF */
    U_ED,    /* ED */
    U_F0,    /* F0 */
    U_L4,    /* F1..F3 */
    U_F4,    /* F4 */
    U_NCLASS
};

enum {
    S_ACCEPT, /* between characters */
    S_NEED1,  /* one more 80..BF */
    S_NEED2,  /* two more 80..BF */
    S_NEED3,  /* three more 80..BF */
    S_E0,     /* then A0..BF, then 1 */
    S_ED,     /* then 80..9F, then 1 */
    S_F0,     /* then 90..BF, then 2 */
    S_F4,     /* then 80..8F, then 2 */
    S_REJECT, /* sticky: every later call fails too */
};

#define UCLASS(c)                                                                    \
    ((c) < 0x80   ? U_ASCII                                                          \
     : (c) < 0x90 ? U_C8                                                             \
     : (c) < 0xA0 ? U_C9                                                             \
     : (c) < 0xC0 ? U_CA                                                             \
     : (c) < 0xC2 ? U_BAD                                                            \
     : (c) < 0xE0 ? U_L2                                                             \
     : (c) == 0xE0 ? U_E0                                                            \
     : (c) == 0xED ? U_ED                                                            \
     : (c) < 0xF0 ? U_L3                                                             \
     : (c) == 0xF0 ? U_F0                                                            \
     : (c) < 0xF4 ? U_L4                                                             \
     : (c) == 0xF4 ? U_F4                                                            \
                   : U_BAD)

#define X4(F, b) F(b), F(b + 1), F(b + 2), F(b + 3)
#define X16(F, b) X4(F, b), X4(F, b + 4), X4(F, b + 8), X4(F, b + 12)
#define X64(F, b) X16(F, b), X16(F, b + 16), X16(F, b + 32), X16(F, b + 48)
#define X256(F) X64(F, 0), X64(F, 64), X64(F, 128), X64(F, 192)

static const uint8_t uclass[256] = {X256(UCLASS)};

#define R S_REJECT
#define A S_ACCEPT
static const uint8_t utrans[S_REJECT][U_NCLASS] = {
    /* columns: ASCII C8 C9 CA BAD L2 E0 L3 ED F0 L4 F4; A = S_ACCEPT, R = S_REJECT */
    [S_ACCEPT] = {A,  R,       R,       R,       R,  S_NEED1, S_E0, S_NEED2, S_ED, S_F0, S_NEED3, S_F4},
    [S_NEED1] =  {R,  A,       A,       A,       R,  R,       R,    R,       R,    R,    R,       R},
    [S_NEED2] =  {R,  S_NEED1, S_NEED1, S_NEED1, R,  R,       R,    R,       R,    R,    R,       R},
    [S_NEED3] =  {R,  S_NEED2, S_NEED2, S_NEED2, R,  R,       R,    R,       R,    R,    R,       R},
    [S_E0] =     {R,  R,       R,       S_NEED1, R,  R,       R,    R,       R,    R,    R,       R},
    [S_ED] =     {R,  S_NEED1, S_NEED1, R,       R,  R,       R,    R,       R,    R,    R,       R},
    [S_F0] =     {R,  R,       S_NEED2, S_NEED2, R,  R,       R,    R,       R,    R,    R,       R},
    [S_F4] =     {R,  S_NEED2, R,       R,       R,  R,       R,    R,       R,    R,    R,       R},
};
#undef A
#undef R

#define HIGH_BITS 0x8080808080808080ull

int gn_utf8_validate(uint32_t *state, const uint8_t *p, size_t n)
{
    uint32_t s = *state;
    if (s >= S_REJECT) /* an earlier failure, or a state we never handed out */
        return -1;
    size_t i = 0;
    while (i < n) {
        if (s == S_ACCEPT) {
            /* Text is mostly ASCII: between characters, skip 8 bytes at a
             * time while none has its high bit set. */
            for (; n - i >= 8; i += 8) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & HIGH_BITS)
                    break;
            }
            if (i == n)
                break;
        }
        s = utrans[s][uclass[p[i++]]];
        if (s == S_REJECT) {
            *state = s;
            return -1;
        }
    }
    *state = s;
    return 0;
}
