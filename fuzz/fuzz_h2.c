/*
 * libFuzzer driver for the HTTP/2 input path (src/http/h2.c over nghttp2,
 * with the connection code of src/http/conn.c and output.c around it).
 * Built and run by scripts/fuzz.
 *
 * Each input is what a client sends after its preface. The first byte picks
 * how the connection starts and which kind of bridge answers:
 *  - bit 0: by prior knowledge (the preface), or by an HTTP/1.1 request
 *    with Upgrade: h2c that becomes stream 1 (then the preface);
 *  - bit 1: a buffered bridge (WSGI's way: called once a stream's request
 *    is complete), or a streaming one (ASGI's way: on_body, called at once);
 *  - bit 2: the bridge answers at once, or in pieces as on_writable comes
 *    (a body larger than the client's windows and the high-water mark).
 * The rest goes to a real loop (gn_loop_init, no listeners) through one
 * end of a socketpair, in pieces whose sizes come from byte 1, and the loop
 * runs until nothing moves; what the server sends is read and dropped.
 * The bridges are stubs that keep no Python: they check that the calls
 * they get make sense (a request once, a body only while wanted, an abort
 * only while answering) and abort otherwise, which libFuzzer reports as a
 * crash with the input saved. ASan and UBSan catch the rest.
 */
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/conn.h"
#include "http/h2.h"
#include "http/loop.h"
#include "server/log.h"

#include "check.h"

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static const char UPGRADE[] = "GET /up HTTP/1.1\r\nHost: fuzz\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                              "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
#define PIECES 64 * 1024 /* the answer in pieces: this much in all */

/* A stub bridge's per-request state (c->bridge). */
typedef struct {
    size_t left;    /* body bytes still to produce */
    uint64_t taken; /* request body bytes seen */
    int wants;      /* asked for body bytes */
} stub_t;

static int pieces; /* bit 2 of the first byte */

static void finish(gn_conn_t *c)
{
    free(c->bridge);
    c->bridge = NULL;
    gn_conn_response_done(c);
}

/* Queues the answer, all of it or as much as there is room for. */
static void produce(gn_conn_t *c)
{
    stub_t *b = c->bridge;
    static char block[4096];
    while (b->left && !gn_conn_out_full(c)) {
        size_t n = b->left < sizeof(block) ? b->left : sizeof(block);
        CHECK(gn_conn_write(c, block, n) == 0);
        b->left -= n;
    }
    if (b->left == 0)
        finish(c);
    else if (c->loop->handler->on_body)
        gn_conn_want_writable(c);
}

static void respond(gn_conn_t *c)
{
    stub_t *b = c->bridge;
    char head[128];
    size_t len = pieces ? PIECES : 5;
    int n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: keep-alive\r\n\r\n",
                     len);
    CHECK(gn_conn_write(c, head, (size_t)n) == 0);
    if (!pieces) {
        CHECK(gn_conn_write(c, "hello", 5) == 0);
        finish(c);
        return;
    }
    b->left = len;
    produce(c);
}

static void on_request(gn_conn_t *c, void *ctx)
{
    (void)ctx;
    CHECK(c->bridge == NULL && c->state == GN_CONN_RESPOND);
    CHECK(c->req.minor_version == GN_HTTP2_VERSION);
    stub_t *b = calloc(1, sizeof(*b));
    CHECK(b != NULL);
    c->bridge = b;
    if (c->loop->handler->on_body) {
        b->wants = 1;
        gn_conn_want_body(c);
        return;
    }
    respond(c);
}

static void on_body(gn_conn_t *c, const char *data, size_t len, int done, void *ctx)
{
    (void)ctx;
    (void)data;
    stub_t *b = c->bridge;
    CHECK(b != NULL && b->wants);
    b->wants = 0;
    b->taken += len;
    if (done) {
        respond(c);
        return;
    }
    b->wants = 1;
    gn_conn_want_body(c);
}

static void on_writable(gn_conn_t *c, void *ctx)
{
    (void)ctx;
    if (c->bridge)
        produce(c);
}

static void on_abort(gn_conn_t *c, void *ctx)
{
    (void)ctx;
    CHECK(c->bridge != NULL);
    free(c->bridge);
    c->bridge = NULL;
}

static void release(void *owner, void *ctx)
{
    (void)owner;
    (void)ctx;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    gn_log_set_level(GN_LOG_CRITICAL + 1); /* quiet: every bad input logs a line */
    signal(SIGPIPE, SIG_IGN);              /* as the server does */
    return 0;
}

/* Reads and drops what the server sent; returns how much. */
static size_t drain(int fd)
{
    static char sink[65536];
    size_t all = 0;
    ssize_t n;
    while ((n = read(fd, sink, sizeof(sink))) > 0)
        all += (size_t)n;
    return all;
}

static void run(gn_loop_t *loop, int peer)
{
    for (int round = 0; round < 64; round++) {
        gn_loop_poll(loop);
        if (drain(peer) == 0 && round > 2)
            break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int upgrade = data[0] & 1;
    pieces = (data[0] >> 2) & 1;
    size_t step = 1 + (size_t)data[1] * 16;
    data += 2;
    size -= 2;
    gn_limits_t lim = {
        .max_request_line = 8190, .max_fields = 100, .max_field_size = 8190, .max_head_size = 16384,
        .max_body = 32768, .header_timeout = 10, .keepalive_timeout = 10, .io_timeout = 10,
        .write_high_water = 16384, .max_connections = 16, .http = GN_HTTP_AUTO,
    };
    gn_handler_t hd = {.on_request = on_request, .on_writable = on_writable, .on_abort = on_abort,
                       .release = release, .on_body = (data[-2] & 2) ? on_body : NULL};
    gn_loop_t loop;
    CHECK(gn_loop_init(&loop, NULL, 0, 0, &lim, &hd) == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    gn_conn_t *c = gn_conn_new(&loop, sv[0], (struct sockaddr *)&peer, sizeof(peer));
    CHECK(c != NULL);
    if (upgrade)
        CHECK(write(sv[1], UPGRADE, sizeof(UPGRADE) - 1) == (ssize_t)(sizeof(UPGRADE) - 1));
    CHECK(write(sv[1], PREFACE, sizeof(PREFACE) - 1) == (ssize_t)(sizeof(PREFACE) - 1));
    run(&loop, sv[1]);
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        ssize_t w = write(sv[1], data + off, n);
        if (w < 0)
            break; /* the server closed: the rest is not read */
        run(&loop, sv[1]);
    }
    shutdown(sv[1], SHUT_WR); /* the client is done: end of input */
    run(&loop, sv[1]);
    gn_loop_destroy(&loop);
    close(sv[1]);
    return 0;
}
