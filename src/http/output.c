/*
 * The connection's output queue: owned (copied) blocks, borrowed slices of
 * the application's bytes objects, and file ranges for sendfile, sent with
 * one writev per flush where possible. A TLS connection's queue goes through
 * SSL_write instead (flush_tls), files included: read, then encrypted.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include "http/conn.h"
#include "http/fault.h"
#include "http/h2.h"
#include "http/loop.h"
#include "http/tls.h"

#define OWN_BLOCK 4096
#define SPARE_MAX (64u * 1024)

static gn_seg_t *seg_at(gn_conn_t *c, unsigned i)
{
    return &c->outq[(c->out_head + i) % GN_OUTQ_MAX];
}

static gn_seg_t *push_seg(gn_conn_t *c)
{
    if (c->out_count == GN_OUTQ_MAX || (c->buf == NULL && gn_conn__take_buf(c) < 0))
        return NULL;
    gn_seg_t *s = seg_at(c, c->out_count++);
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    return s;
}

static void release_seg(gn_conn_t *c, gn_seg_t *s)
{
    if (s->owner)
        c->loop->handler->release(s->owner, c->loop->handler->ctx);
    if (s->own) {
        if (c->buf->spare == NULL && s->cap <= SPARE_MAX) {
            c->buf->spare = s->own;
            c->buf->spare_cap = s->cap;
        } else {
            free(s->own);
        }
    }
    s->own = NULL;
    s->owner = NULL;
}

static void pop_seg(gn_conn_t *c)
{
    release_seg(c, seg_at(c, 0));
    c->out_head = (c->out_head + 1) % GN_OUTQ_MAX;
    c->out_count--;
}

/* Room for n more bytes at the end of the tail's owned block, growing it. */
static int own_tail_room(gn_conn_t *c, gn_seg_t *t, size_t n)
{
    size_t used = (size_t)(t->base - t->own) + t->len;
    if (t->cap - used >= n)
        return 0;
    size_t cap = t->cap * 2 > used + n ? t->cap * 2 : used + n;
    char *p = GN_FAIL(NULL, realloc(t->own, cap));
    if (p == NULL)
        return -1;
    t->base = p + (t->base - t->own);
    t->own = p;
    t->cap = cap;
    (void)c;
    return 0;
}

static int new_owned_seg(gn_conn_t *c, size_t n)
{
    gn_seg_t *s = push_seg(c);
    if (s == NULL)
        return -1;
    if (c->buf->spare && c->buf->spare_cap >= n) {
        s->own = c->buf->spare;
        s->cap = c->buf->spare_cap;
        c->buf->spare = NULL;
    } else {
        s->cap = n > OWN_BLOCK ? n : OWN_BLOCK;
        s->own = GN_FAIL(NULL, malloc(s->cap));
        if (s->own == NULL) {
            c->out_count--;
            return -1;
        }
    }
    s->base = s->own;
    return 0;
}

int gn_conn_write(gn_conn_t *c, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    gn_seg_t *t = c->out_count ? seg_at(c, c->out_count - 1) : NULL;
    int tail_ok = t && t->own && t->fd < 0;
    if (tail_ok && (size_t)(t->base - t->own) + t->len + n <= t->cap) {
        /* fits: the common case */
    } else if (c->out_count < GN_OUTQ_MAX) {
        if (new_owned_seg(c, n) < 0)
            return -1;
        t = seg_at(c, c->out_count - 1);
    } else if (!tail_ok || own_tail_room(c, t, n) < 0) {
        return -1; /* a full queue ending in a borrowed slice: caller flushes */
    }
    memcpy((char *)t->base + t->len, p, n);
    t->len += n;
    c->out_bytes += n;
    return 0;
}

int gn_conn_write_ref(gn_conn_t *c, const char *p, size_t n, void *owner)
{
    if (n == 0 || c->out_count + 1 >= GN_OUTQ_MAX) {
        /* Copying keeps a slot free for the framing after it. */
        int r = gn_conn_write(c, p, n);
        c->loop->handler->release(owner, c->loop->handler->ctx);
        return r;
    }
    gn_seg_t *s = push_seg(c);
    s->base = p;
    s->len = n;
    s->owner = owner;
    c->out_bytes += n;
    return 0;
}

int gn_conn_write_file(gn_conn_t *c, int fd, off_t off, size_t n, void *owner)
{
    gn_seg_t *s = push_seg(c);
    if (s == NULL) {
        c->loop->handler->release(owner, c->loop->handler->ctx);
        return -1;
    }
    s->fd = fd;
    s->file_off = off;
    s->len = n;
    s->owner = owner;
    c->out_bytes += n;
    return 0;
}

#define COPY_MAX 8192 /* body runs up to this size are copied, larger ones borrowed */

int gn_conn_write_body(gn_conn_t *c, int chunked, const char *p, size_t n, void *owner)
{
    char line[24];
    int rc = chunked ? gn_conn_write(c, line, (size_t)snprintf(line, sizeof(line), "%zx\r\n", n)) : 0;
    if (rc == 0 && owner != NULL && n > COPY_MAX) {
        rc = gn_conn_write_ref(c, p, n, owner);
        owner = NULL; /* taken */
    } else if (rc == 0) {
        rc = gn_conn_write(c, p, n);
    }
    if (owner != NULL)
        c->loop->handler->release(owner, c->loop->handler->ctx);
    if (rc == 0 && chunked)
        rc = gn_conn_write(c, "\r\n", 2);
    return rc;
}

int gn_conn_out_full(const gn_conn_t *c)
{
    /* Three slots stay free: a chunk-size line, the data, the CRLF. */
    return c->out_bytes >= c->loop->limits->write_high_water || c->out_count + 3 > GN_OUTQ_MAX;
}

static void advance(gn_conn_t *c, size_t n)
{
    c->out_bytes -= n;
    while (n > 0) {
        gn_seg_t *s = seg_at(c, 0);
        size_t k = n < s->len ? n : s->len;
        s->base += k;
        s->file_off += k; /* a file range: only TLS flushes one this way */
        s->len -= k;
        n -= k;
        if (s->len == 0)
            pop_seg(c);
    }
    /* Empty segments (a zero-length file range) are popped too. */
    while (c->out_count && seg_at(c, 0)->len == 0)
        pop_seg(c);
}

static int flush_file(gn_conn_t *c, gn_seg_t *s)
{
    ssize_t n = sendfile(c->fd, s->fd, &s->file_off, s->len);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (n == 0) {
        errno = EIO; /* the file is shorter than promised */
        return -1;
    }
    c->out_bytes -= (size_t)n;
    gn_stat_add(&c->loop->stats->bytes_out, (unsigned long long)n);
    s->len -= (size_t)n;
    if (s->len == 0)
        pop_seg(c);
    return 1;
}

/* TLS: a queue's front of small pieces, or a file range, is copied into one
 * buffer of this size to be encrypted (a record holds 16 KB at most), and
 * a large slice in memory is encrypted where it lies, up to TLS_DIRECT. */
#define TLS_CHUNK 16384
#define TLS_DIRECT (256u * 1024)

/* Copies up to n bytes from the front of the queue into dst, reading file
 * ranges (no sendfile through TLS). Returns the bytes copied, or -1. */
static ssize_t gather(gn_conn_t *c, char *dst, size_t n)
{
    size_t got = 0;
    for (unsigned i = 0; i < c->out_count && got < n; i++) {
        gn_seg_t *s = seg_at(c, i);
        size_t k = s->len < n - got ? s->len : n - got;
        if (s->fd < 0) {
            memcpy(dst + got, s->base, k);
        } else {
            ssize_t r = pread(s->fd, dst + got, k, s->file_off);
            if (r < 0 && errno == EINTR)
                r = pread(s->fd, dst + got, k, s->file_off);
            if (r <= 0) {
                if (r == 0)
                    errno = EIO; /* the file is shorter than promised */
                return -1;
            }
            if ((size_t)r < k)
                return (ssize_t)(got + (size_t)r);
        }
        got += k;
    }
    return (ssize_t)got;
}

/*
 * The TLS flush. A write that must wait is repeated with the same bytes
 * (OpenSSL asks it): the queue only grows at its end, so its first
 * c->tls_pend bytes, gathered again the same way, are the same.
 */
static int flush_tls(gn_conn_t *c)
{
    char buf[TLS_CHUNK];
    while (c->out_count) {
        gn_seg_t *first = seg_at(c, 0);
        if (first->len == 0) {
            pop_seg(c);
            continue;
        }
        ssize_t w;
        if (first->fd < 0 && first->len >= TLS_CHUNK) {
            size_t n = c->tls_pend ? c->tls_pend : first->len < TLS_DIRECT ? first->len : TLS_DIRECT;
            w = gn_tls_write(c, first->base, n);
        } else {
            ssize_t n = gather(c, buf, c->tls_pend ? c->tls_pend : sizeof(buf));
            if (n < 0)
                return -1;
            w = gn_tls_write(c, buf, (size_t)n);
        }
        if (w <= 0)
            return (int)w;
        advance(c, (size_t)w);
    }
    return 0;
}

int gn_conn_flush(gn_conn_t *c)
{
    if (c->h2s) /* an HTTP/2 stream: its connection sends */
        return gn_h2__flush(c);
    if (c->tls)
        return flush_tls(c);
    while (c->out_count) {
        gn_seg_t *first = seg_at(c, 0);
        if (first->len == 0) {
            pop_seg(c);
            continue;
        }
        if (first->fd >= 0) {
            int r = flush_file(c, first);
            if (r <= 0)
                return r;
            continue;
        }
        struct iovec iov[GN_OUTQ_MAX];
        int n = 0;
        size_t total = 0;
        for (unsigned i = 0; i < c->out_count && seg_at(c, i)->fd < 0; i++) {
            gn_seg_t *s = seg_at(c, i);
            iov[n].iov_base = (void *)s->base;
            iov[n++].iov_len = s->len;
            total += s->len;
        }
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        advance(c, (size_t)w);
        gn_stat_add(&c->loop->stats->bytes_out, (unsigned long long)w);
        if ((size_t)w < total)
            return 0; /* the socket buffer is full */
    }
    return 0;
}

int gn_conn_flush_blocking(gn_conn_t *c, size_t keep)
{
    /* An HTTP/2 stream waits for its window (the connection's other
     * streams on this loop wait with it, as other connections do). */
    if (c->h2s)
        return gn_h2__flush_blocking(c, keep);
    gn_loop_t *loop = c->loop;
    double deadline = gn_now() + loop->limits->io_timeout;
    for (;;) {
        if (gn_conn_flush(c) < 0)
            return -1;
        if (c->out_bytes <= keep)
            return 0;
        double left = deadline - gn_now();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        /* A TLS write may wait for input instead (c->tls_want). */
        struct pollfd p = {.fd = c->fd, .events = c->tls_want & EPOLLIN ? POLLIN : POLLOUT};
        if (loop->before_wait)
            loop->before_wait(loop->wait_arg);
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (loop->after_wait)
            loop->after_wait(loop->wait_arg);
        if (r < 0 && errno != EINTR)
            return -1;
        if (r > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL))) {
            errno = EPIPE;
            return -1;
        }
    }
}

char *gn_conn__front_own(gn_conn_t *c, size_t *len)
{
    gn_seg_t *s = c->out_count ? seg_at(c, 0) : NULL;
    if (s == NULL || s->own == NULL || s->fd >= 0)
        return NULL;
    *len = s->len;
    return (char *)s->base;
}

ssize_t gn_conn__gather(gn_conn_t *c, char *dst, size_t n)
{
    return gather(c, dst, n);
}

void gn_conn__advance(gn_conn_t *c, size_t n)
{
    advance(c, n);
}

void gn_conn__out_release_all(gn_conn_t *c)
{
    while (c->out_count)
        pop_seg(c);
    c->out_bytes = 0;
}
