#include "http/loop.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "server/log.h"

#define MAX_EVENTS 256
#define ACCEPT_BATCH 64
#define SCAN_INTERVAL 0.25 /* seconds between timeout scans */

/* epoll data for the listeners and the wake fd: small tags, never pointers. */
#define TAG_WAKE ((uintptr_t)1)
#define TAG_LISTEN_BASE ((uintptr_t)16)
#define IS_TAG(p) ((uintptr_t)(p) < 4096)

double gn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int listen_ctl(gn_loop_t *loop, int op)
{
    for (unsigned i = 0; i < loop->n_listen; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = (void *)(TAG_LISTEN_BASE + i)};
        /* EPOLLEXCLUSIVE wakes one waiter per connection when several
         * workers watch one shared socket, avoiding a thundering herd. */
        if (loop->exclusive && op == EPOLL_CTL_ADD)
            ev.events |= EPOLLEXCLUSIVE;
        if (epoll_ctl(loop->epfd, op, loop->listen_fds[i], &ev) < 0 && op == EPOLL_CTL_ADD)
            return -1;
    }
    loop->accepting = op == EPOLL_CTL_ADD;
    return 0;
}

int gn_loop_init(gn_loop_t *loop, int *listen_fds, unsigned n_listen, int exclusive,
                 const gn_limits_t *limits, const gn_handler_t *handler)
{
    memset(loop, 0, sizeof(*loop));
    loop->epfd = loop->wake_fd = -1;
    loop->listen_fds = listen_fds;
    loop->n_listen = n_listen;
    loop->exclusive = exclusive;
    loop->limits = limits;
    loop->handler = handler;
    loop->now = gn_now();
    atomic_init(&loop->stop_requested, 0);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        return -1;
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_fd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = (void *)TAG_WAKE};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wake_fd, &ev) < 0)
        return -1;
    return listen_ctl(loop, EPOLL_CTL_ADD);
}

void gn_loop_request_stop(gn_loop_t *loop)
{
    uint64_t one = 1;
    atomic_store(&loop->stop_requested, 1);
    if (write(loop->wake_fd, &one, sizeof(one)) < 0) {
        /* the counter is already non-zero: the loop will wake anyway */
    }
}

int gn_loop__watch(gn_loop_t *loop, gn_conn_t *c, uint32_t events)
{
    if (c->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    int op = c->events == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(loop->epfd, op, c->fd, &ev) < 0)
        return -1;
    c->events = events;
    return 0;
}

void gn_loop__retire(gn_loop_t *loop, gn_conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    loop->n_conns--;
    /* Freed after the current batch: later events in it may name c. */
    c->next = loop->dead;
    c->prev = NULL;
    loop->dead = c;
}

static void free_dead(gn_loop_t *loop)
{
    while (loop->dead) {
        gn_conn_t *c = loop->dead;
        loop->dead = c->next;
        free(c);
    }
}

static void stop_listening(gn_loop_t *loop)
{
    if (loop->accepting)
        listen_ctl(loop, EPOLL_CTL_DEL);
}

static void accept_one_batch(gn_loop_t *loop, int lfd)
{
    /* On a socket shared by several workers, take one connection per wake-up:
     * a worker busy in application code is not in epoll_wait, so the next
     * client goes to an idle worker instead of queueing behind it. */
    int batch = loop->exclusive ? 1 : ACCEPT_BATCH;
    for (int i = 0; i < batch; i++) {
        if (loop->n_conns >= loop->limits->max_connections) {
            /* Backpressure: leave further clients in the kernel's backlog. */
            stop_listening(loop);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                gn_log(GN_LOG_ERROR, "worker %d: accept: %s", loop->worker_id, strerror(errno));
            return; /* EAGAIN, or another worker took it */
        }
        if (ss.ss_family != AF_UNIX) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        gn_conn_t *c = gn_conn_new(loop, fd, (struct sockaddr *)&ss, len);
        if (c == NULL) {
            gn_log(GN_LOG_ERROR, "worker %d: out of memory for a connection", loop->worker_id);
            close(fd);
            continue;
        }
        /* TCP_DEFER_ACCEPT usually means the request is already here. */
        gn_conn_on_event(c, EPOLLIN);
    }
}

static void begin_stop(gn_loop_t *loop)
{
    loop->stopping = 1;
    loop->stop_deadline = loop->now + loop->graceful_timeout;
    /* Connections already queued in our backlog were promised service:
     * take them before closing the listeners. */
    for (unsigned i = 0; i < loop->n_listen; i++) {
        if (!loop->exclusive)
            accept_one_batch(loop, loop->listen_fds[i]);
    }
    stop_listening(loop);
    for (unsigned i = 0; i < loop->n_listen; i++) {
        close(loop->listen_fds[i]);
        loop->listen_fds[i] = -1;
    }
    loop->n_listen = 0;
    for (gn_conn_t *c = loop->conns, *next; c; c = next) {
        next = c->next;
        gn_conn_shutdown(c);
    }
}

static void scan_timeouts(gn_loop_t *loop)
{
    for (gn_conn_t *c = loop->conns, *next; c; c = next) {
        next = c->next;
        if (c->deadline > 0 && c->deadline <= loop->now)
            gn_conn_on_timeout(c);
    }
    if (loop->stopping && loop->now >= loop->stop_deadline) {
        for (gn_conn_t *c = loop->conns, *next; c; c = next) {
            next = c->next;
            gn_conn_close(c);
        }
    }
    loop->next_scan = loop->now + SCAN_INTERVAL;
}

static void dispatch(gn_loop_t *loop, struct epoll_event *ev)
{
    void *p = ev->data.ptr;
    if (!IS_TAG(p)) {
        gn_conn_on_event((gn_conn_t *)p, ev->events);
        return;
    }
    uintptr_t tag = (uintptr_t)p;
    if (tag == TAG_WAKE) {
        uint64_t v;
        if (read(loop->wake_fd, &v, sizeof(v)) < 0) {
            /* spurious: nothing to drain */
        }
        if (atomic_load(&loop->stop_requested) && !loop->stopping)
            begin_stop(loop);
    } else if (tag - TAG_LISTEN_BASE < loop->n_listen && loop->accepting) {
        accept_one_batch(loop, loop->listen_fds[tag - TAG_LISTEN_BASE]);
    }
}

/* One round: wait up to timeout_ms, dispatch, timers, backpressure. */
static void iterate(gn_loop_t *loop, int timeout_ms)
{
    struct epoll_event events[MAX_EVENTS];
    if (loop->before_wait && timeout_ms != 0)
        loop->before_wait(loop->wait_arg);
    int n = epoll_wait(loop->epfd, events, MAX_EVENTS, timeout_ms);
    if (loop->after_wait && timeout_ms != 0)
        loop->after_wait(loop->wait_arg);
    loop->now = gn_now();
    /* A stop requested while we were busy applies to this batch already,
     * so a connection accepted in it is answered with Connection: close. */
    if (atomic_load(&loop->stop_requested) && !loop->stopping)
        begin_stop(loop);
    for (int i = 0; i < n; i++) {
        dispatch(loop, &events[i]);
        /* Application code may have run for a long time: deadlines set by
         * the next event must count from now, not from epoll_wait's return
         * (else a keep-alive connection idles out with a request pending). */
        loop->now = gn_now();
    }
    free_dead(loop);
    if (loop->now >= loop->next_scan)
        scan_timeouts(loop);
    /* Resume accepting once connections fall below the bound. */
    if (!loop->accepting && !loop->stopping && loop->n_listen > 0 &&
        loop->n_conns < loop->limits->max_connections)
        listen_ctl(loop, EPOLL_CTL_ADD);
    free_dead(loop);
}

static int finished(const gn_loop_t *loop)
{
    return loop->stopping && loop->n_conns == 0;
}

void gn_loop_run(gn_loop_t *loop)
{
    while (!finished(loop)) {
        int timeout = (int)((loop->next_scan - loop->now) * 1000) + 1;
        iterate(loop, timeout < 0 ? 0 : timeout);
    }
}

int gn_loop_poll(gn_loop_t *loop)
{
    iterate(loop, 0);
    return finished(loop);
}

int gn_loop_tick(gn_loop_t *loop)
{
    loop->now = gn_now();
    scan_timeouts(loop);
    free_dead(loop);
    return finished(loop);
}

void gn_loop_destroy(gn_loop_t *loop)
{
    while (loop->conns)
        gn_conn_close(loop->conns);
    free_dead(loop);
    for (unsigned i = 0; i < loop->n_listen; i++) {
        if (loop->listen_fds[i] >= 0)
            close(loop->listen_fds[i]);
    }
    loop->n_listen = 0;
    if (loop->wake_fd >= 0)
        close(loop->wake_fd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    loop->wake_fd = loop->epfd = -1;
}
