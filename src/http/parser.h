/*
 * gorgon HTTP/1.1 request parser and chunked-body decoder.
 *
 * Pure C, no Python, no allocation: every output is a slice into the
 * caller's buffer. Size limits (request line, header bytes, body size) are
 * enforced by the connection layer, not here; the parser only enforces the
 * syntax and the framing rules that defeat request smuggling (RFC 9112 and
 * the classic CL.TE / TE.CL / TE.TE desync attacks).
 *
 * Errors are reported as the negated HTTP status the server must answer
 * with (GN_PARSE_ERR_400 = -400, ...), so an error code *is* the response.
 */
#ifndef GN_HTTP_PARSER_H
#define GN_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A byte range inside a caller-owned buffer; never NUL-terminated. */
typedef struct {
    const char *base;
    size_t len;
} gn_slice_t;

typedef struct {
    gn_slice_t name; /* as received (case preserved), validated as a token */
    gn_slice_t value; /* leading/trailing SP and HTAB stripped */
} gn_header_t;

/* Return codes shared by the parser and the chunked decoder. */
enum {
    GN_PARSE_INCOMPLETE = -2, /* need more bytes; nothing is wrong yet */
    GN_PARSE_ERR_400 = -400,  /* malformed or ambiguous: answer 400, close */
    GN_PARSE_ERR_431 = -431,  /* more header fields than the caller's array */
    GN_PARSE_ERR_501 = -501,  /* CONNECT, or a transfer coding other than
                                 chunked: valid, but not something we do */
    GN_PARSE_ERR_505 = -505,  /* HTTP version other than 1.0 / 1.1 */
};

/* What the parser learned about the request's framing and connection. */
enum {
    GN_REQ_CHUNKED = 1u << 0,        /* Transfer-Encoding: chunked (final) */
    GN_REQ_CONN_CLOSE = 1u << 1,     /* Connection: close token present */
    GN_REQ_CONN_KEEPALIVE = 1u << 2, /* Connection: keep-alive token present */
    GN_REQ_EXPECT_CONTINUE = 1u << 3, /* Expect: 100-continue */
    GN_REQ_CONN_UPGRADE = 1u << 4,   /* Connection: upgrade token present */
    GN_REQ_HAS_HOST = 1u << 5,       /* a Host header was present */
    GN_REQ_HAS_CONTENT_TYPE = 1u << 6, /* a Content-Type header was present */
    GN_REQ_TE_OTHER = 1u << 7,       /* a transfer coding other than chunked */
};

typedef struct {
    gn_slice_t method;
    gn_slice_t target;   /* raw request-target, e.g. "/a%20b?x=1" */
    gn_slice_t path;     /* the target's path (still percent-encoded): up to
                            '?' in origin-form, "/..." after the authority in
                            absolute-form ("/" when empty), "*" for OPTIONS */
    gn_slice_t query;    /* after '?', without it; len 0 when absent */
    gn_slice_t authority; /* absolute-form's "host[:port]", else len 0 */
    int minor_version;   /* 0 or 1 (HTTP/1.x) */
    int64_t content_length; /* -1 when no Content-Length header */
    unsigned flags;      /* GN_REQ_* */
    size_t num_headers;  /* out: number of entries filled in headers[] */
} gn_request_t;

/*
 * Parses one request head (request line + header fields + empty line) from
 * buf[0..len).
 *
 * last_len is how many bytes of buf were already seen by a previous call
 * that returned GN_PARSE_INCOMPLETE (0 on the first call); the parser uses it
 * to avoid re-scanning old bytes for the end of the head.
 *
 * headers/max_headers: caller-provided array. More fields than max_headers
 * gives GN_PARSE_ERR_431.
 *
 * Returns the number of bytes of the head (> 0) when complete, with req and
 * headers filled; GN_PARSE_INCOMPLETE when more bytes are needed; or a
 * GN_PARSE_ERR_*. The parser may return an error before the head is complete
 * when the bytes so far already prove it invalid (bare LF, NUL, bad token).
 *
 * Rejected with GN_PARSE_ERR_400 (each is a smuggling or desync vector):
 *  - bare LF or bare CR as a line ending; obs-fold (a line starting with SP
 *    or HTAB); whitespace between a field name and the colon; an empty or
 *    non-token field name; CTL characters (other than HTAB) or NUL in values;
 *  - Content-Length together with Transfer-Encoding; more than one
 *    Content-Length (even with equal values); a Content-Length that is not
 *    1*DIGIT or overflows int64;
 *  - any Transfer-Encoding other than exactly one final "chunked" coding
 *    (case-insensitive), e.g. "gzip", "chunked, chunked", "chunked, gzip",
 *    or Transfer-Encoding on an HTTP/1.0 request;
 *  - a request line not of the form token SP target SP "HTTP/1." DIGIT CRLF,
 *    a target with CTL, SP, '#' or bytes >= 0x80; a missing Host in
 *    HTTP/1.1; more than one Host or Content-Type field (RFC 9112 3.2);
 *  - a target in the wrong form (RFC 9112 3.2): not starting with "/"
 *    unless it is "*" with OPTIONS, an http(s) absolute-form with a
 *    non-empty authority and no userinfo, or host:port with CONNECT.
 * Answered GN_PARSE_ERR_501 once the head is otherwise valid: CONNECT with
 * an authority-form target (we make no tunnels), and a Transfer-Encoding
 * list that ends in chunked but names another coding too.
 * absolute-form is accepted (RFC 9112 3.2.2): path and query come from it,
 * req->authority is its host[:port], and the Host field's value slice is
 * replaced with that authority, so every consumer of Host sees it.
 * Leading empty lines (CRLF) before the request line are skipped, as
 * RFC 9112 section 2.2 allows.
 */
int gn_parse_request(const char *buf, size_t len, size_t last_len,
                     gn_request_t *req, gn_header_t *headers, size_t max_headers);

/*
 * The checks gn_parse_request makes, for a head that did not come as
 * HTTP/1.1 text (an HTTP/2 stream's header block): the caller sets
 * req->method and req->target, and headers[0..n) to the fields (slices into
 * its own memory). Each answer is the one the same head written as
 * HTTP/1.1 text would get: 0 with req filled (minor_version 1, num_headers
 * n, values without OWS around them), or a GN_PARSE_ERR_*. The caller
 * bounds n (431).
 */
int gn_parse_fields(gn_request_t *req, gn_header_t *headers, size_t n);

/* Whether s is a token (RFC 9110 5.6.2): a method, a field name. */
bool gn_http_token(gn_slice_t s);

/* Whether a is a non-empty host[:port] with no userinfo (RFC 3986 3.2, RFC
 * 9110 4.2.4): what an absolute-form target and HTTP/2's :authority hold. */
bool gn_authority_ok(gn_slice_t a);

/* Incremental chunked-body decoder state; zero it (or gn_chunked_init) per body. */
typedef struct {
    uint64_t remaining; /* bytes left in the current chunk's data */
    uint64_t size_acc;  /* chunk-size being accumulated */
    size_t line_len;    /* bytes seen on the current size/trailer line */
    size_t trailer_bytes; /* total trailer bytes, bounded */
    int state;          /* internal */
    int done;           /* 1 once the last-chunk and trailer section are consumed */
} gn_chunked_t;

void gn_chunked_init(gn_chunked_t *d);

/*
 * Consumes bytes of a chunked body from buf[0..len). At most one run of body
 * data is produced per call: *data is set to a slice into buf (len 0 when the
 * call consumed only framing). Returns the number of bytes consumed (>= 0;
 * 0 only when len == 0 or d->done), or GN_PARSE_ERR_400.
 *
 * Callers loop: while (len && !d->done) { n = step(...); if (n < 0) error;
 * use *data; buf += n; len -= n; }. Bytes after the body (a pipelined next
 * request) are never consumed: once d->done is set the decoder stops.
 *
 * Rejected: a chunk-size that is empty, has a sign, "0x", non-hex digits,
 * more than 16 hex digits or overflows; a size line longer than 4096 bytes
 * (chunk extensions included); data not followed by CRLF; bare LF; trailer
 * fields that are malformed or larger than 8192 bytes in total.
 */
ssize_t gn_chunked_step(gn_chunked_t *d, const char *buf, size_t len, gn_slice_t *data);

#endif
