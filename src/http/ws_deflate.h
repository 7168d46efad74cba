/*
 * WebSocket permessage-deflate (RFC 7692): the handshake's negotiation and
 * the per-connection zlib streams. Pure C, no Python.
 *
 * Memory is bounded by the window sizes chosen here, not by the peer: the
 * server compresses with at most GN_WS_DEFLATE_SERVER_BITS of window and
 * memLevel GN_WS_DEFLATE_MEM_LEVEL, and asks the client (when its offer lets
 * it, as browsers' do) to compress with at most GN_WS_DEFLATE_CLIENT_BITS.
 * zlib's own figures: deflate takes (1 << (bits + 2)) + (1 << (memLevel + 9))
 * bytes plus ~6 KB of state, inflate (1 << bits) plus ~7 KB.
 */
#ifndef GN_HTTP_WS_DEFLATE_H
#define GN_HTTP_WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#define GN_WS_DEFLATE_SERVER_BITS 11 /* 2 KB window: 8 KB + 8 KB + state */
#define GN_WS_DEFLATE_MEM_LEVEL 4
#define GN_WS_DEFLATE_CLIENT_BITS 11 /* asked of clients that accept the parameter */

/* What was agreed for one connection. */
typedef struct gn_ws_deflate_params {
    int server_no_context_takeover; /* reset the compressor after each message */
    int client_no_context_takeover; /* the client resets: so may our inflater */
    int server_bits;                /* window the server compresses with (9..15) */
    int client_bits;                /* window the client compresses with (8..15) */
    int client_bits_sent;           /* client_max_window_bits is in the response */
} gn_ws_deflate_params_t;

/*
 * Reads a Sec-WebSocket-Extensions value (RFC 6455 9.1 syntax, quoted values
 * allowed) and accepts the first permessage-deflate offer whose parameters
 * are all known, unrepeated and valid (RFC 7692 7.1). Returns 1 with *p
 * filled, 0 when no offer is acceptable (the handshake goes on without the
 * extension). An offer of server_max_window_bits=8 is declined: zlib cannot
 * compress with a 256-byte window (it silently uses 512).
 */
int gn_ws_deflate_negotiate(const char *value, size_t len, gn_ws_deflate_params_t *p);

/* Writes the response's extension value (no header name, no CRLF) into buf;
 * returns its length. 128 bytes always suffice. */
size_t gn_ws_deflate_response(const gn_ws_deflate_params_t *p, char *buf, size_t cap);

typedef struct gn_ws_deflate gn_ws_deflate_t;

/* A connection's compressor and decompressor, each started on first use. */
gn_ws_deflate_t *gn_ws_deflate_new(const gn_ws_deflate_params_t *p);
void gn_ws_deflate_free(gn_ws_deflate_t *d);

/*
 * Compresses one whole message into a malloc'd block (*out, *outlen; the
 * caller frees it) without the final 00 00 ff ff (RFC 7692 7.2.1). Returns
 * 0, or -1 when out of memory.
 */
int gn_ws_deflate_message(gn_ws_deflate_t *d, const char *data, size_t len, char **out, size_t *outlen);

/*
 * Decompresses the next n bytes of a compressed message's payload, appending
 * to *buf (a malloc'd block of *cap bytes holding *used; grown as needed, to
 * at most max + 1 bytes). `last` is set for the end of the message: the
 * 00 00 ff ff that the sender removed is fed in then. *used beyond max means
 * too big (the caller closes with 1009; a decompression bomb stops there).
 * Returns 0, -1 for corrupt data, -2 when out of memory.
 */
int gn_ws_inflate(gn_ws_deflate_t *d, const uint8_t *p, size_t n, int last, char **buf, size_t *cap, size_t *used,
                  uint64_t max);

/* Between messages while idle: frees whichever stream keeps no context. */
void gn_ws_deflate_idle(gn_ws_deflate_t *d);

#endif
