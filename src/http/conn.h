/*
 * HTTP/1.1 connections: reading and limiting request heads and bodies,
 * keep-alive, pipelining (one request at a time, responses in order), the
 * output queue, and error responses. No Python here: the request is handed
 * to a bridge through gn_handler_t, and the bridge answers through the
 * gn_conn_* output functions.
 */
#ifndef GN_HTTP_CONN_H
#define GN_HTTP_CONN_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "http/body.h"
#include "http/parser.h"

typedef struct gn_conn gn_conn_t;
typedef struct gn_loop gn_loop_t;

/* Limits shared by every connection of a server (read-only once running). */
typedef struct {
    size_t max_request_line;  /* 414 beyond */
    size_t max_fields;        /* 431 beyond */
    size_t max_field_size;    /* one header line; 431 beyond */
    size_t max_head_size;     /* whole head; 431 beyond */
    uint64_t max_body;        /* 413 beyond; 0 = unlimited */
    double header_timeout;    /* seconds to receive a head (408) */
    double keepalive_timeout; /* idle seconds between requests */
    double io_timeout;        /* seconds without progress on a body or a write */
    size_t write_high_water;  /* stop producing above this many queued bytes */
    unsigned max_connections; /* per worker; stop accepting beyond */
    /* Connections open in this process (counted once per accept and close,
     * by every loop), and its bound: a client beyond it is answered 503 and
     * closed. NULL: no such bound. */
    atomic_uint *conns_total;
    unsigned max_connections_total;
    /* Worker processes on one shared socket (http/peers.h), and this
     * process's slot in their table. NULL: the process is alone. */
    const struct gn_peers *peers;
    int peer_slot;
    int access_log;
    uint64_t ws_max_size;     /* largest WebSocket message; close 1009 beyond */
    double ws_ping_interval;  /* idle seconds before the server pings; 0 = never */
    uint64_t inherited_listeners; /* bit i: listening socket i was given to us
                                     (fd://N): left unfiltered at the stop */
    int ws_deflate;           /* accept permessage-deflate offers (RFC 7692) */
    uint64_t proxy_listeners; /* bit i: connections to listening socket i
                                 (the i-th bind) start with a PROXY header */
    const struct gn_trust *proxy_trust; /* peers allowed to send one (http/proxy.h),
                                           and to send proxy headers */
    int proxy_headers;        /* believe Forwarded / X-Forwarded-* from those peers */
    struct gn_tls_server *tls; /* TCP listeners serve TLS (http/tls.h); NULL: plain */
    int http;                 /* --http: GN_HTTP_AUTO, _ONLY1 or _ONLY2 (http/h2.h) */
} gn_limits_t;

/* How a bridge is driven. All callbacks run on the loop's thread. */
typedef struct {
    /* A request head and its whole body are available: start answering. */
    void (*on_request)(gn_conn_t *c, void *ctx);
    /* The output queue drained below the high-water mark: produce more. */
    void (*on_writable)(gn_conn_t *c, void *ctx);
    /* The connection is going away with a response unfinished: release. */
    void (*on_abort)(gn_conn_t *c, void *ctx);
    /* Release a reference handed to gn_conn_write_ref(). */
    void (*release)(void *owner, void *ctx);
    /*
     * Streaming bodies (ASGI): when set, on_request comes right after the
     * head, and body bytes are read only while the bridge asks for them
     * (gn_conn_want_body), each run handed to on_body as a slice valid only
     * during the call; done is 1 with the last one (possibly empty).
     */
    void (*on_body)(gn_conn_t *c, const char *data, size_t len, int done, void *ctx);
    /* WebSocket, after gn_conn_upgrade_ws: one whole message (a text one
     * is valid UTF-8); the bytes are valid only during the call. */
    void (*on_ws_message)(gn_conn_t *c, int opcode, const char *data, size_t len, void *ctx);
    /* The WebSocket ended: the client's close code (1005 if it gave none),
     * 1006 if the connection was lost, or the code the server closed with. */
    void (*on_ws_close)(gn_conn_t *c, int code, void *ctx);
    void *ctx;
} gn_handler_t;

#define GN_MAX_HEADERS_CAP 256
#define GN_OUTQ_MAX 16

typedef struct {
    char *own;          /* owned heap block (copied bytes), else NULL */
    size_t cap;         /* size of own */
    const char *base;   /* next byte to send: inside own, or borrowed */
    size_t len;         /* bytes left to send */
    void *owner;        /* borrowed: give back with handler->release */
    int fd;             /* >= 0: a file range sent with sendfile */
    off_t file_off;
} gn_seg_t;

/* Who may act on a connection (http/group.h): its loop, or, while it is
 * idle between requests, whichever loop claims it first. */
enum gn_conn_claim {
    GN_CLAIM_OWNED, /* its loop's, as every connection outside a group is */
    GN_CLAIM_IDLE,  /* between requests, nothing buffered: may move */
    GN_CLAIM_MOVED, /* taken by a sibling loop: its old loop lets go */
};

enum gn_conn_state {
    GN_CONN_READ_HEAD,
    GN_CONN_READ_BODY,
    GN_CONN_RESPOND,   /* the bridge is producing the response */
    GN_CONN_DRAIN,     /* response complete, output still queued */
    GN_CONN_WEBSOCKET, /* upgraded: frames both ways (http/ws_conn.c) */
    GN_CONN_H2,        /* HTTP/2: streams are requests (http/h2.c) */
    GN_CONN_LINGER,    /* write side shut, discarding input before close */
    GN_CONN_CLOSED,
};

/*
 * What a connection needs only while it has a request: the read buffer, the
 * parsed header slices and the output queue. A connection takes one when its
 * next request starts and gives it back when it goes idle between requests;
 * the loop keeps a few for reuse (gn_loop_t.free_bufs). An idle keep-alive
 * connection therefore holds only its gn_conn_t.
 */
/* An IPv4 or IPv6 address; a unix socket keeps only its family. */
typedef union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} gn_addr_t;

/* What a trusted proxy said about the current request (http/forwarded.h). */
typedef struct {
    int has_client;   /* client and client_port are the proxy's word */
    gn_addr_t client;
    int client_port;  /* 0 when the proxy gave none */
    int https;        /* the client used https (or wss) */
    gn_slice_t proto, host, port; /* as given; len 0 when absent */
} gn_fwd_t;

#define GN_RBUF_INITIAL 16384
typedef struct gn_conn_buf {
    struct gn_conn_buf *next_free;
    gn_header_t headers[GN_MAX_HEADERS_CAP];
    gn_seg_t outq[GN_OUTQ_MAX];
    char *spare;        /* a sent owned output block, kept for the next response */
    size_t spare_cap;
    gn_fwd_t fwd;
    double started;     /* when the current request's head was complete */
    char rbuf[GN_RBUF_INITIAL];
} gn_conn_buf_t;

struct gn_conn {
    int fd;
    enum gn_conn_state state;
    atomic_int claim;            /* enum gn_conn_claim */
    unsigned char gauge;         /* enum gn_conn_gauge: where the loop's stats count it */
    unsigned char refused;       /* over max_connections_total: answered 503, not counted */
    gn_loop_t *loop;
    struct gn_conn *prev, *next; /* the loop's list of connections */
    uint32_t events;             /* epoll events registered */
    double deadline;             /* monotonic seconds; 0 = none */

    gn_addr_t peer;
    socklen_t peer_len;
    gn_addr_t local; /* cached by gn_conn_local */
    int local_known;
    int peer_trust;  /* in --forwarded-allow-ips: 1, not: -1, not known yet: 0 */

    /* Input: the head stays in rbuf until the response is complete, so the
     * bridge and the access log can use the request's slices. rbuf is buf's
     * own, or a larger heap block for a head that outgrew it. */
    gn_conn_buf_t *buf; /* NULL while idle */
    char *rbuf;
    size_t rlen, rcap;
    size_t head_len;   /* bytes of the current head, 0 while incomplete */
    size_t parsed_len; /* bytes already scanned by the parser */

    gn_request_t req;
    gn_header_t *headers; /* buf's */
    gn_body_t body;
    gn_chunked_t chunked;
    uint64_t body_expected; /* Content-Length, when not chunked */
    uint64_t body_seen;     /* body bytes read so far */
    int continue_sent;
    int streaming;     /* body handed to on_body as it arrives */
    int want_body;     /* the bridge waits for body bytes */
    int body_complete; /* the whole body has been read */
    int watch_hangup;  /* report a client hang-up while responding */
    int driving;       /* drive() is on the stack: do not re-enter */
    int redrive;       /* something happened meanwhile: go round again */
    int out_blocked;   /* output waited for the socket since on_writable */
    int yield;         /* wait for the next epoll round before reading */
    int proxy_wait;    /* a PROXY header must come first (http/proxy_conn.c) */

    /* Output queue. */
    gn_seg_t *outq;     /* buf's */
    unsigned out_head, out_count;
    size_t out_bytes;

    /* Response bookkeeping (filled by the bridge via gn_conn_*). */
    int keepalive;      /* the connection may serve another request */
    int status;         /* response status, for the access log */
    uint64_t sent_body; /* body bytes queued, for the access log */
    unsigned requests;  /* served on this connection */

    void *bridge;       /* the bridge's per-request state */
    struct gn_ws_state *ws; /* WebSocket state once upgraded */

    /* TLS (http/tls.h); tls is NULL on a plaintext connection, and nothing
     * else here is looked at then. */
    struct ssl_st *tls;
    unsigned char tls_ready; /* handshake done */
    unsigned char tls_want;  /* EPOLLIN / EPOLLOUT the SSL waits for, besides
                                what the state machine watches */
    unsigned tls_pend;       /* a write to repeat with this many bytes */

    /* HTTP/2 (http/h2.h): h2 is a connection's session once it is one;
     * h2s is set on the gn_conn_t of a stream, which has no socket. */
    struct gn_h2 *h2;
    struct gn_h2_stream *h2s;
};

/* ---- for the loop ---- */
gn_conn_t *gn_conn_new(gn_loop_t *loop, int fd, const struct sockaddr *peer, socklen_t len);
/* Frees the buffers a loop keeps for reuse (when it ends). */
void gn_conn__free_bufs(gn_loop_t *loop);
/* Internal (conn.c, output.c): c->buf, taken from the loop's spares. */
int gn_conn__take_buf(gn_conn_t *c);
/* Internal (ws_conn.c): gives c->buf back if nothing is buffered or queued. */
void gn_conn__idle_buf(gn_conn_t *c);
/* Lets go of a connection that a sibling loop took (claim MOVED): the
 * descriptor is the sibling's now, only the memory is freed here. */
void gn_conn_let_go(gn_conn_t *c);
/* Internal (conn.c, proxy_conn.c): the PROXY header at the start of rbuf.
 * Returns 1 once it is consumed (the addresses are the client's now), 0 to
 * wait for more bytes, -1 after refusing and closing the connection. */
int gn_conn__proxy_header(gn_conn_t *c);
/* Internal (conn.c): reads into rbuf the PROXY header of a TLS connection,
 * and not one byte past it (what follows is the TLS handshake, OpenSSL's to
 * read from the socket). As read(): > 0, 0 for "would block", -1. */
ssize_t gn_conn__proxy_read(gn_conn_t *c);
/* The header timeout struck before a PROXY header came: log and close. */
void gn_conn__proxy_timeout(gn_conn_t *c);
/* Internal (output.c, h2.c): copy up to n queued bytes from the front of
 * the queue (file ranges read); then drop n bytes from it. */
ssize_t gn_conn__gather(gn_conn_t *c, char *dst, size_t n);
void gn_conn__advance(gn_conn_t *c, size_t n);
/* Internal (h2.c): the queue's first bytes when they are an owned block
 * (writable), *len of them; else NULL. */
char *gn_conn__front_own(gn_conn_t *c, size_t *len);
/* Internal (h2.c): the access-log line of c's request. */
void gn_conn__access_log(gn_conn_t *c);
/* Internal (conn.c, ws_conn.c, h2.c): every change of c->state. */
void gn_conn__set_state(gn_conn_t *c, enum gn_conn_state state);
/* Runs the connection's state machine after an event; may free it. */
void gn_conn_on_event(gn_conn_t *c, uint32_t events);
/* The timeout check: closes (or answers 408) a connection past its deadline. */
void gn_conn_on_timeout(gn_conn_t *c);
/* Waits between requests with nothing buffered, after serving at least one:
 * the loop may end it to make room for a new client (gn_conn_end_idle). */
int gn_conn_reusable(const gn_conn_t *c);
/* Ends a reusable connection as its keep-alive timeout would; a request
 * that already came is served instead. */
void gn_conn_end_idle(gn_conn_t *c);
/* Graceful stop: close if idle, else make the current response the last. */
void gn_conn_shutdown(gn_conn_t *c);
/* Immediate close; the bridge's on_abort is called if a response is open. */
void gn_conn_close(gn_conn_t *c);

/* ---- for the bridge ---- */
/* Whether the request was HEAD (send headers only). */
int gn_conn_is_head(const gn_conn_t *c);
/* The peer address as text ("127.0.0.1"), and port. */
void gn_conn_peer(const gn_conn_t *c, char *host, size_t hostlen, int *port);
/* Whether the client used https, as a trusted proxy said (else 0). */
int gn_conn_https(const gn_conn_t *c);
/* The port the client connected to, as a trusted proxy said (X-Forwarded-Port),
 * or 0. */
int gn_conn_forwarded_port(const gn_conn_t *c);
/* The local address and port the connection arrived on. */
void gn_conn_local(gn_conn_t *c, char *host, size_t hostlen, int *port);

/* Queue bytes (copied). Returns 0, or -1 if memory ran out. */
int gn_conn_write(gn_conn_t *c, const char *p, size_t n);
/* Queue bytes owned by `owner` (released through the handler once sent). */
int gn_conn_write_ref(gn_conn_t *c, const char *p, size_t n, void *owner);
/* Queue a file range for sendfile; `owner` keeps fd open until released. */
int gn_conn_write_file(gn_conn_t *c, int fd, off_t off, size_t n, void *owner);
/*
 * Queue one run of body bytes with the response's framing (a chunk-size
 * line and CRLF around it when chunked). owner, if not NULL, is a reference
 * that keeps p alive: large runs are sent from it without a copy, and it is
 * released through the handler either way. Returns 0, or -1 if memory ran out.
 */
int gn_conn_write_body(gn_conn_t *c, int chunked, const char *p, size_t n, void *owner);
/*
 * Queue a whole small plain-text response (status line, Date and Server,
 * Content-Length, the body unless the request was HEAD); close ends the
 * connection after it. For the server's own answers (4xx, 500).
 */
void gn_conn_write_simple(gn_conn_t *c, int status, const char *body, size_t len, int close);
/* The first header field of the current request named name (any case). */
const gn_header_t *gn_conn_header(const gn_conn_t *c, const char *name);
/* Whether the producer should pause until on_writable. */
int gn_conn_out_full(const gn_conn_t *c);
/* Write as much as the socket takes now; -1 if the connection failed. */
int gn_conn_flush(gn_conn_t *c);
/*
 * Flush, waiting (up to the I/O timeout) while more than `keep` bytes stay
 * queued. For the WSGI write() callable, whose caller cannot be suspended.
 */
int gn_conn_flush_blocking(gn_conn_t *c, size_t keep);
/* The response is complete (all of it queued). */
void gn_conn_response_done(gn_conn_t *c);
/* The response cannot be completed: close once what is queued is sent. */
void gn_conn_response_abort(gn_conn_t *c);
/* Whether the server is stopping (responses should say Connection: close). */
int gn_conn_stopping(const gn_conn_t *c);
/* Streaming bodies: ask for (more) body bytes; they come through on_body. */
void gn_conn_want_body(gn_conn_t *c);
/* Streaming bridges: call on_writable once the queued output has drained
 * (at once, from here, if it already has). */
void gn_conn_want_writable(gn_conn_t *c);
/* Streaming bridges: notice a client that hangs up while responding. */
void gn_conn_watch_hangup(gn_conn_t *c);
/*
 * WebSocket: after the bridge queued the 101 response, switch the connection
 * to frames. Pings are answered and the close handshake is done here.
 */
int gn_conn_upgrade_ws(gn_conn_t *c);
/* After gn_conn_upgrade_ws: messages both ways are compressed as agreed in
 * the handshake (http/ws_deflate.h). -1 when out of memory. */
struct gn_ws_deflate_params;
int gn_conn_ws_deflate(gn_conn_t *c, const struct gn_ws_deflate_params *p);
/* Queue one whole server message (text or binary), copied (compressed
 * when permessage-deflate is on). */
int gn_conn_ws_send(gn_conn_t *c, int opcode, const char *data, size_t len);
/* Start the close handshake with code and reason (reason <= 123 bytes). */
void gn_conn_ws_close(gn_conn_t *c, int code, const char *reason, size_t len);
/* The app has taken every message handed to the bridge and asks for more:
 * a protocol error held back behind those messages fails the connection now
 * (http/ws_conn.c, defer_fail). */
void gn_conn_ws_drained(gn_conn_t *c);
/* Stop (1) or resume (0) reading frames: the bridge's queue is full. */
void gn_conn_ws_pause(gn_conn_t *c, int paused);
/* Run the state machine after the bridge queued output or finished from
 * outside a connection callback (an ASGI task). May close the connection. */
void gn_conn_resume(gn_conn_t *c);

#endif
