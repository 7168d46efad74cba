/*
 * WebSocket (RFC 6455) frames: an incremental parser for client frames and
 * a writer for server frames. Pure C, no Python, no allocation: the parser
 * unmasks payload bytes in place in the caller's buffer.
 */
#ifndef GN_HTTP_WS_H
#define GN_HTTP_WS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
    GN_WS_CONT = 0x0,
    GN_WS_TEXT = 0x1,
    GN_WS_BINARY = 0x2,
    GN_WS_CLOSE = 0x8,
    GN_WS_PING = 0x9,
    GN_WS_PONG = 0xA,
};

/* Close codes the server sends for protocol problems (RFC 6455 7.4.1). */
enum {
    GN_WS_CLOSE_NORMAL = 1000,
    GN_WS_CLOSE_GOING_AWAY = 1001,
    GN_WS_CLOSE_PROTOCOL = 1002,
    GN_WS_CLOSE_BAD_DATA = 1007,  /* e.g. invalid UTF-8 in a text message */
    GN_WS_CLOSE_TOO_BIG = 1009,
    GN_WS_CLOSE_INTERNAL = 1011,
};

#define GN_WS_RSV1 0x40 /* permessage-deflate's "compressed" bit (RFC 7692 6) */

typedef struct {
    int fin;
    int opcode;
    unsigned rsv;        /* the RSV bits as in the first byte (0x70 mask) */
    uint64_t length;     /* payload length */
    uint8_t mask[4];
    size_t header_len;   /* bytes of the frame header (2..14) */
} gn_ws_frame_t;

/*
 * Parses one frame header from buf[0..len). Returns the header length (> 0)
 * with *f filled, GN_WS_INCOMPLETE (-2) when more bytes are needed, or the
 * negated close code to send (-GN_WS_CLOSE_PROTOCOL = -1002 for reserved
 * bits set, an unknown opcode, an unmasked client frame, a control frame
 * longer than 125 bytes or fragmented, a 64-bit length with the top bit set
 * or a non-minimal length encoding; -GN_WS_CLOSE_TOO_BIG when length is over
 * max_payload).
 */
#define GN_WS_INCOMPLETE (-2)
int gn_ws_parse_header(const uint8_t *buf, size_t len, uint64_t max_payload, gn_ws_frame_t *f);

/* The same, with the RSV bits of rsv_allowed (e.g. GN_WS_RSV1 once
 * permessage-deflate is negotiated) accepted on the first frame of a data
 * message; they stay -1002 on control and continuation frames. */
int gn_ws_parse_header_ext(const uint8_t *buf, size_t len, uint64_t max_payload, unsigned rsv_allowed,
                           gn_ws_frame_t *f);

/* Unmasks n payload bytes in place; `offset` is how many payload bytes of
 * this frame were unmasked before (the mask key rotates by position). */
void gn_ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);

/* Writes a server (unmasked) frame header for a payload of `length`; returns
 * its size (2, 4 or 10). buf must hold 10 bytes. */
size_t gn_ws_frame_header(uint8_t *buf, int fin, int opcode, uint64_t length);

/*
 * Incremental UTF-8 validation across fragments (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF). *state starts at 0; returns 0 while
 * valid so far, -1 at the first invalid byte. After the last fragment the
 * text is complete only if *state is 0 again.
 */
int gn_utf8_validate(uint32_t *state, const uint8_t *p, size_t n);

#endif
