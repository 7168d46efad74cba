/*
 * An upgraded (WebSocket) connection: frames in, whole messages out to the
 * bridge; pings answered, the close handshake and protocol errors handled
 * here, so the application only ever sees messages and one disconnect.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "http/conn.h"
#include "http/fault.h"
#include "http/loop.h"
#include "http/ws.h"
#include "http/ws_deflate.h"
#include "server/log.h"

#define CLOSE_WAIT_SECONDS 5.0

struct gn_ws_state {
    gn_ws_frame_t frame;
    int in_frame;
    uint64_t frame_got;   /* payload bytes of the current frame seen */
    int msg_opcode;       /* TEXT or BINARY while a message is assembled */
    char *msg;
    size_t msg_len, msg_cap;
    uint32_t utf8;
    char ctrl[125];
    size_t ctrl_len;
    int close_sent, closing, paused, reported, ping_outstanding;
    gn_ws_deflate_t *deflate; /* permessage-deflate, when negotiated */
    int msg_compressed;       /* the message being assembled has RSV1 */
    uint64_t msg_wire;        /* its payload bytes as they came (compressed) */
    int undrained;    /* a message went to the bridge that the app has not asked past */
    int pending_fail; /* close code of a protocol error held back (see defer_fail) */
};

int gn_conn__ws_step(gn_conn_t *c);
void gn_conn__ws_timeout(gn_conn_t *c);
void gn_conn__ws_free(gn_conn_t *c);
ssize_t gn_conn__read_more(gn_conn_t *c);
void gn_conn__linger(gn_conn_t *c);

static void report_close(gn_conn_t *c, int code)
{
    if (c->ws->reported || c->bridge == NULL)
        return;
    c->ws->reported = 1;
    c->loop->handler->on_ws_close(c, code, c->loop->handler->ctx);
}

static void send_frame_rsv(gn_conn_t *c, int opcode, unsigned rsv, const char *p, size_t n)
{
    uint8_t head[10];
    size_t h = gn_ws_frame_header(head, 1, opcode, n);
    head[0] |= (uint8_t)rsv;
    gn_conn_write(c, (const char *)head, h);
    gn_conn_write(c, p, n);
}

static void send_frame(gn_conn_t *c, int opcode, const char *p, size_t n)
{
    send_frame_rsv(c, opcode, 0, p, n);
}

static void send_close(gn_conn_t *c, int code, const char *reason, size_t len)
{
    if (c->ws->close_sent)
        return;
    char payload[125];
    if (len > sizeof(payload) - 2) {
        /* Cut between characters: the reason must stay valid UTF-8 (RFC
         * 6455 5.5.1), or the client fails the connection with 1007. */
        len = sizeof(payload) - 2;
        while (len > 0 && ((unsigned char)reason[len] & 0xC0) == 0x80)
            len--;
    }
    payload[0] = (char)(code >> 8);
    payload[1] = (char)(code & 0xff);
    memcpy(payload + 2, reason, len);
    send_frame(c, GN_WS_CLOSE, payload, len + 2);
    c->ws->close_sent = 1;
}

/* A protocol violation (or the server's own failure, 1011): close with
 * code, tell the app, end after flushing. */
static void fail(gn_conn_t *c, int code)
{
    char host[64];
    int port;
    gn_conn_peer(c, host, sizeof(host), &port);
    gn_log(GN_LOG_INFO, "WebSocket from %s closed with %d (%s)", host, code,
           code == GN_WS_CLOSE_INTERNAL ? "server error" : code == GN_WS_CLOSE_TOO_BIG ? "message too big"
                                                                                     : "protocol violation");
    send_close(c, code, "", 0);
    c->ws->closing = 1;
    report_close(c, code);
}

static int valid_close_code(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) || (code >= 3000 && code <= 4999);
}

/* The client's close frame (RFC 6455 5.5.1): answer it, then end. */
static void on_close_frame(gn_conn_t *c)
{
    struct gn_ws_state *ws = c->ws;
    int code = 1005;
    if (ws->ctrl_len == 1) {
        fail(c, GN_WS_CLOSE_PROTOCOL);
        return;
    }
    if (ws->ctrl_len >= 2) {
        code = ((uint8_t)ws->ctrl[0] << 8) | (uint8_t)ws->ctrl[1];
        uint32_t st = 0;
        if (!valid_close_code(code)) {
            fail(c, GN_WS_CLOSE_PROTOCOL);
            return;
        }
        if (gn_utf8_validate(&st, (const uint8_t *)ws->ctrl + 2, ws->ctrl_len - 2) < 0 || st != 0) {
            fail(c, GN_WS_CLOSE_BAD_DATA);
            return;
        }
    }
    send_close(c, code == 1005 ? GN_WS_CLOSE_NORMAL : code, "", 0);
    ws->closing = 1;
    report_close(c, code);
}

static void on_control(gn_conn_t *c)
{
    struct gn_ws_state *ws = c->ws;
    switch (ws->frame.opcode) {
    case GN_WS_PING:
        if (!ws->close_sent)
            send_frame(c, GN_WS_PONG, ws->ctrl, ws->ctrl_len);
        break;
    case GN_WS_PONG:
        ws->ping_outstanding = 0;
        break;
    case GN_WS_CLOSE:
        on_close_frame(c);
        break;
    }
}

static int msg_append(struct gn_ws_state *ws, const char *p, size_t n)
{
    if (n == 0)
        return 0; /* an empty frame: ws->msg may not exist (freed while idle) */
    if (ws->msg_len + n > ws->msg_cap) {
        size_t cap = ws->msg_cap ? ws->msg_cap : 4096;
        while (cap < ws->msg_len + n)
            cap *= 2;
        char *m = GN_FAIL(NULL, realloc(ws->msg, cap));
        if (m == NULL)
            return -1;
        ws->msg = m;
        ws->msg_cap = cap;
    }
    memcpy(ws->msg + ws->msg_len, p, n);
    ws->msg_len += n;
    return 0;
}

/* A data frame begins: check fragmentation rules (RFC 6455 5.4). */
static int begin_data_frame(gn_conn_t *c)
{
    struct gn_ws_state *ws = c->ws;
    int op = ws->frame.opcode;
    if (op == GN_WS_CONT && ws->msg_opcode == 0)
        return -GN_WS_CLOSE_PROTOCOL;
    if (op != GN_WS_CONT && ws->msg_opcode != 0)
        return -GN_WS_CLOSE_PROTOCOL;
    if (op != GN_WS_CONT) {
        ws->msg_opcode = op;
        ws->msg_len = 0;
        ws->utf8 = 0;
        ws->msg_compressed = (ws->frame.rsv & GN_WS_RSV1) != 0;
        ws->msg_wire = 0;
    }
    /* A compressed message is bounded twice: here by its compressed size,
     * and while inflating by what it expands to (gn_ws_inflate). */
    uint64_t sofar = ws->msg_compressed ? ws->msg_wire : ws->msg_len;
    if (sofar + ws->frame.length > c->loop->limits->ws_max_size)
        return -GN_WS_CLOSE_TOO_BIG;
    ws->msg_wire += ws->frame.length;
    return 0;
}

/* RFC 7692 6.2: the payloads of a compressed message's frames, joined,
 * are one deflate stream; inflated as they come, so the text is checked
 * and the size bounded (a decompression bomb stops at ws_max_size) before
 * the whole message has arrived. */
static int inflate_payload(gn_conn_t *c, const uint8_t *p, size_t n)
{
    struct gn_ws_state *ws = c->ws;
    uint64_t max = c->loop->limits->ws_max_size;
    size_t before = ws->msg_len;
    int last = ws->frame.fin && ws->frame_got == ws->frame.length;
    int r = gn_ws_inflate(ws->deflate, p, n, last, &ws->msg, &ws->msg_cap, &ws->msg_len, max);
    if (r == -1)
        return -GN_WS_CLOSE_BAD_DATA; /* not a valid deflate stream */
    if (r < 0)
        return -GN_WS_CLOSE_INTERNAL;
    if (ws->msg_len > max)
        return -GN_WS_CLOSE_TOO_BIG;
    if (ws->msg_opcode == GN_WS_TEXT &&
        gn_utf8_validate(&ws->utf8, (const uint8_t *)ws->msg + before, ws->msg_len - before) < 0)
        return -GN_WS_CLOSE_BAD_DATA;
    return 0;
}

static int frame_payload(gn_conn_t *c, uint8_t *p, size_t n)
{
    struct gn_ws_state *ws = c->ws;
    gn_ws_unmask(p, n, ws->frame.mask, ws->frame_got);
    ws->frame_got += n;
    if (ws->frame.opcode >= GN_WS_CLOSE) {
        memcpy(ws->ctrl + ws->ctrl_len, p, n);
        ws->ctrl_len += n;
        return 0;
    }
    if (ws->msg_compressed)
        return inflate_payload(c, p, n);
    if (ws->msg_opcode == GN_WS_TEXT && gn_utf8_validate(&ws->utf8, p, n) < 0)
        return -GN_WS_CLOSE_BAD_DATA;
    return msg_append(ws, (const char *)p, n) < 0 ? -GN_WS_CLOSE_INTERNAL : 0; /* no memory: the size was checked */
}

static int frame_done(gn_conn_t *c)
{
    struct gn_ws_state *ws = c->ws;
    ws->in_frame = 0;
    if (ws->frame.opcode >= GN_WS_CLOSE) {
        on_control(c);
        return 0;
    }
    if (!ws->frame.fin)
        return 0;
    if (ws->msg_opcode == GN_WS_TEXT && ws->utf8 != 0)
        return -GN_WS_CLOSE_BAD_DATA; /* ends inside a multi-byte sequence */
    int op = ws->msg_opcode;
    ws->msg_opcode = 0;
    if (c->bridge != NULL && !ws->closing) {
        ws->undrained = 1;
        c->loop->handler->on_ws_message(c, op, ws->msg ? ws->msg : "", ws->msg_len, c->loop->handler->ctx);
    }
    ws->msg_len = 0;
    return 0;
}

/* Consumes the frames in rbuf. Returns 0, or a negated close code. */
static int parse_frames(gn_conn_t *c)
{
    struct gn_ws_state *ws = c->ws;
    uint8_t *buf = (uint8_t *)c->rbuf;
    size_t used = 0;
    int rc = 0;
    while (used < c->rlen && !ws->closing && !ws->paused && !ws->pending_fail && rc == 0) {
        if (!ws->in_frame) {
            int h = gn_ws_parse_header_ext(buf + used, c->rlen - used, c->loop->limits->ws_max_size,
                                           ws->deflate ? GN_WS_RSV1 : 0, &ws->frame);
            if (h == GN_WS_INCOMPLETE)
                break;
            if (h < 0 || (ws->frame.opcode < GN_WS_CLOSE && (rc = begin_data_frame(c)) < 0)) {
                rc = h < 0 ? h : rc;
                break;
            }
            used += (size_t)h;
            ws->in_frame = 1;
            ws->frame_got = 0;
            ws->ctrl_len = 0;
        }
        size_t n = c->rlen - used;
        if (n > ws->frame.length - ws->frame_got)
            n = (size_t)(ws->frame.length - ws->frame_got);
        if ((rc = frame_payload(c, buf + used, n)) < 0)
            break;
        used += n;
        if (ws->frame_got == ws->frame.length)
            rc = frame_done(c);
    }
    if (used > 0) { /* none while idle: no buffer at all then */
        memmove(c->rbuf, c->rbuf + used, c->rlen - used);
        c->rlen -= used;
    }
    return rc;
}

/*
 * A protocol error in a frame that follows messages the application has not
 * yet taken: those messages came first and are answered first, and only
 * then is the connection failed (RFC 6455 7.1.7 fails the connection at the
 * bad frame, not before the good ones; Autobahn's "strict" behaviour, e.g.
 * cases 3.2 and 5.15, expects the echo of a message that shared a TCP segment
 * with the bad frame that followed it). Nothing after the bad frame is read.
 * The bridge says when the app asks for more (gn_conn_ws_drained); an app
 * that never does is failed after CLOSE_WAIT_SECONDS.
 */
static void defer_fail(gn_conn_t *c, int code)
{
    if (!c->ws->undrained || c->bridge == NULL) {
        fail(c, code);
        return;
    }
    c->ws->pending_fail = code;
    c->deadline = c->loop->now + CLOSE_WAIT_SECONDS;
}

static void fail_pending(gn_conn_t *c)
{
    int code = c->ws->pending_fail;
    c->ws->pending_fail = 0;
    fail(c, code);
}

static uint32_t ws_events(const gn_conn_t *c)
{
    uint32_t ev = c->ws->paused || c->ws->closing || c->ws->pending_fail ? EPOLLRDHUP : EPOLLIN | EPOLLRDHUP;
    return c->out_count ? ev | EPOLLOUT : ev;
}

int gn_conn__ws_step(gn_conn_t *c)
{
    struct gn_ws_state *ws = c->ws;
    if (gn_conn_flush(c) < 0) {
        report_close(c, 1006);
        gn_conn_close(c);
        return 0;
    }
    if (c->out_count)
        c->out_blocked = 1;
    else if (c->out_blocked && c->bridge != NULL) {
        c->out_blocked = 0; /* a send() waiting for the client to read may go on */
        c->loop->handler->on_writable(c, c->loop->handler->ctx);
    }
    if (ws->pending_fail && (!ws->undrained || c->bridge == NULL))
        fail_pending(c);
    int rc = parse_frames(c);
    if (rc < 0)
        defer_fail(c, -rc);
    if (ws->closing && ws->close_sent && c->out_count == 0) {
        /* The server ends the TCP connection (RFC 6455 7.1.1), but lingers:
         * closing with unread input (the rest of an oversized message) would
         * reset the connection and lose the close frame on its way. */
        report_close(c, 1006);
        gn_conn__linger(c);
        return 1;
    }
    if (c->out_count || ws->paused || ws->closing || ws->pending_fail) {
        gn_loop__watch(c->loop, c, ws_events(c));
        return 0;
    }
    ssize_t n = gn_conn__read_more(c);
    if (n < 0) {
        report_close(c, 1006);
        gn_conn_close(c);
        return 0;
    }
    if (n == 0) {
        gn_loop__watch(c->loop, c, ws_events(c));
        /* Waiting: hold no buffers meanwhile (a message being assembled
         * keeps its own). */
        if (ws->msg_opcode == 0) {
            free(ws->msg);
            ws->msg = NULL;
            ws->msg_cap = 0;
            if (ws->deflate)
                gn_ws_deflate_idle(ws->deflate);
        }
        gn_conn__idle_buf(c);
        return 0;
    }
    double ping = c->loop->limits->ws_ping_interval;
    c->deadline = ping > 0 ? c->loop->now + ping : 0;
    return 1;
}

/* Idle: ping; no pong since the last ping, or a close not answered: end. */
void gn_conn__ws_timeout(gn_conn_t *c)
{
    struct gn_ws_state *ws = c->ws;
    if (ws->pending_fail) {
        fail_pending(c);
        gn_conn_resume(c);
        return;
    }
    if (ws->close_sent || ws->ping_outstanding) {
        report_close(c, 1006);
        gn_conn_close(c);
        return;
    }
    send_frame(c, GN_WS_PING, "", 0);
    ws->ping_outstanding = 1;
    c->deadline = c->loop->now + c->loop->limits->ws_ping_interval;
    gn_conn_resume(c);
}

int gn_conn_upgrade_ws(gn_conn_t *c)
{
    c->ws = GN_FAIL(NULL, calloc(1, sizeof(*c->ws)));
    if (c->ws == NULL)
        return -1;
    /* Bytes after the request head are already frames. */
    memmove(c->rbuf, c->rbuf + c->head_len, c->rlen - c->head_len);
    c->rlen -= c->head_len;
    c->head_len = c->parsed_len = 0;
    gn_conn__set_state(c, GN_CONN_WEBSOCKET);
    c->keepalive = 0;
    double ping = c->loop->limits->ws_ping_interval;
    c->deadline = ping > 0 ? c->loop->now + ping : 0;
    return 0;
}

int gn_conn_ws_send(gn_conn_t *c, int opcode, const char *data, size_t len)
{
    if (c->ws == NULL || c->ws->close_sent)
        return -1;
    char *z;
    size_t zlen;
    if (c->ws->deflate && gn_ws_deflate_message(c->ws->deflate, data, len, &z, &zlen) == 0) {
        send_frame_rsv(c, opcode, GN_WS_RSV1, z, zlen);
        free(z);
        return 0;
    }
    send_frame(c, opcode, data, len); /* uncompressed (RSV1 clear) is always allowed */
    return 0;
}

int gn_conn_ws_deflate(gn_conn_t *c, const struct gn_ws_deflate_params *p)
{
    if (c->ws == NULL || (c->ws->deflate = gn_ws_deflate_new(p)) == NULL)
        return -1;
    return 0;
}

void gn_conn_ws_close(gn_conn_t *c, int code, const char *reason, size_t len)
{
    if (c->ws == NULL)
        return;
    send_close(c, code, reason, len);
    c->ws->reported = 1; /* the app chose to close: no disconnect for it */
    c->deadline = c->loop->now + CLOSE_WAIT_SECONDS;
}

void gn_conn_ws_drained(gn_conn_t *c)
{
    if (c->ws == NULL)
        return;
    c->ws->undrained = 0;
    if (c->ws->pending_fail)
        gn_conn_resume(c);
}

void gn_conn_ws_pause(gn_conn_t *c, int paused)
{
    if (c->ws)
        c->ws->paused = paused;
}

/* Graceful stop: 1001 "going away", then wait for the client's answer. */
void gn_conn__ws_shutdown(gn_conn_t *c)
{
    send_close(c, GN_WS_CLOSE_GOING_AWAY, "server stopping", 15);
    c->deadline = c->loop->now + CLOSE_WAIT_SECONDS;
    report_close(c, GN_WS_CLOSE_GOING_AWAY);
    gn_conn_resume(c);
}

void gn_conn__ws_free(gn_conn_t *c)
{
    if (c->ws == NULL)
        return;
    if (c->bridge != NULL)
        report_close(c, 1006);
    free(c->ws->msg);
    gn_ws_deflate_free(c->ws->deflate);
    free(c->ws);
    c->ws = NULL;
}
