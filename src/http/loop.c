#include "http/loop.h"

#include <errno.h>
#include <limits.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "http/fault.h"
#include "http/group.h"
#include "http/h2.h"
#include "http/peers.h"
#include "http/h2_remote.h"
#include "http/tls.h"
#include "server/log.h"

#define MAX_EVENTS 256
#define ACCEPT_BATCH 64
#define SCAN_INTERVAL 0.25 /* seconds between timeout scans */
/* Idle connections closed at once to make room (make_room), at most. */
#define ROOM_BATCH_MAX 32
#define ROOM_LOG_EVERY 10.0 /* seconds between two warnings about it */
/* After a stop begins, how long a worker still accepts the connections whose
 * handshake was under way (they were promised service) before it closes its
 * listeners. Loopback handshakes take microseconds; this leaves room for a
 * loaded machine. */
#define STOP_ACCEPT_WINDOW 0.2
/* A loop that retires while others serve the same sockets takes at most
 * this many connections from them on its way out: the ones its last
 * wake-up may have been for. Draining the queue, as a stop does, would
 * answer with the old application every client that reconnects meanwhile. */
#define RETIRE_ACCEPT 4

/* epoll data for the listeners and the wake fd: small tags, never pointers. */
#define TAG_WAKE ((uintptr_t)1)
#define TAG_PEERS ((uintptr_t)2) /* other processes pass a client (http/peers.h) */
#define TAG_LISTEN_BASE ((uintptr_t)16)
#define IS_TAG(p) ((uintptr_t)(p) < 4096)

double gn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int gn_listener_refuse_new(int fd)
{
    int domain = 0;
    socklen_t len = sizeof(domain);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
        return -1;
    if (domain != AF_INET && domain != AF_INET6)
        return 0; /* a unix socket: its path is removed instead */
    /* A socket filter sees a TCP segment from its TCP header on: byte 13
     * holds the flags. A SYN without ACK opens a new connection: drop it.
     * Everything else, the last ACK of a handshake under way included,
     * passes, so no connection the kernel already answered is cut. Closing
     * the socket instead would reset every connection in its queue. */
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12), /* SYN | ACK */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
    };
    struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
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
    loop->room_logged_at = loop->now - ROOM_LOG_EVERY;
    loop->stats = &loop->own_stats;
    atomic_init(&loop->stop_requested, 0);
    atomic_init(&loop->hurry_requested, 0);
    atomic_init(&loop->retire_requested, 0);
    atomic_init(&loop->replace_wanted, 0);
    loop->served_enough = ULLONG_MAX;
    atomic_init(&loop->polled_us, gn_loop__us(loop->now));
    atomic_init(&loop->sleeping, 0);
    atomic_init(&loop->inflight, 0);
    atomic_init(&loop->stolen, 0);
    atomic_init(&loop->steal_wanted, 0);
    atomic_init(&loop->handed_wanted, 0);
    atomic_init(&loop->accept_wanted, 0);
    atomic_init(&loop->n_conns_pub, 0);
    atomic_init(&loop->remote_out, 0);
    atomic_init(&loop->remote_in, 0);
    atomic_init(&loop->h2r_wanted, 0);
    loop->h2_cost = GN_H2R_COST_FIRST;
    atomic_init(&loop->app_since_us, 0);
    pthread_mutex_init(&loop->app_mu, NULL);
    loop->epfd = GN_FAIL(GN_FAIL_ERRNO(EMFILE), epoll_create1(EPOLL_CLOEXEC));
    if (loop->epfd < 0)
        return -1;
    loop->wake_fd = GN_FAIL(GN_FAIL_ERRNO(EMFILE), eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (loop->wake_fd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = (void *)TAG_WAKE};
    if (GN_FAIL(GN_FAIL_ERRNO(ENOMEM), epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wake_fd, &ev)) < 0)
        return -1;
    return listen_ctl(loop, EPOLL_CTL_ADD);
}

void gn_loop_request_stop(gn_loop_t *loop)
{
    atomic_store(&loop->stop_requested, 1);
    gn_loop__wake(loop);
}

void gn_loop_retire(gn_loop_t *loop)
{
    atomic_store(&loop->retire_requested, 1);
    gn_loop_request_stop(loop);
}

int gn_loop__app_taken(gn_loop_t *loop)
{
    /* The watchdog took the call and acts on it under app_mu: once we have
     * the lock, it is done with the connection. */
    pthread_mutex_lock(&loop->app_mu);
    pthread_mutex_unlock(&loop->app_mu);
    return -1;
}

void gn_loop__wake(gn_loop_t *loop)
{
    uint64_t one = 1;
    if (write(loop->wake_fd, &one, sizeof(one)) < 0) {
        /* the counter is already non-zero: the loop will wake anyway */
    }
}

long long gn_loop__us(double t)
{
    return (long long)(t * 1e6);
}

gn_conn_t *gn_loop__conn_of(void *ptr)
{
    return IS_TAG(ptr) ? NULL : (gn_conn_t *)ptr;
}

/* A connection, new or taken from a sibling, starts here: its request is
 * usually already in (TCP_DEFER_ACCEPT, or the reason it was taken). */
static void serve_conn(gn_loop_t *loop, int fd, const struct sockaddr *peer, socklen_t len, unsigned requests,
                       int proxy, struct ssl_st *tls, int refused)
{
    gn_conn_t *c = gn_conn_new(loop, fd, peer, len);
    if (c)
        c->refused = (unsigned char)refused;
    if (c == NULL || (tls == NULL && peer->sa_family != AF_UNIX && loop->limits->tls != NULL &&
                      gn_tls_attach(c, loop->limits->tls, &loop->tls_view) < 0)) {
        gn_log(GN_LOG_ERROR, "worker %d: out of memory for a connection", loop->worker_id);
        if (c) {
            gn_conn_close(c);
            return;
        }
        if (tls)
            gn_tls_discard(tls);
        close(fd);
        if (loop->limits->conns_total && !refused)
            atomic_fetch_sub_explicit(loop->limits->conns_total, 1, memory_order_relaxed);
        return;
    }
    if (tls) { /* a TLS connection taken from a sibling, between requests */
        c->tls = tls;
        c->tls_ready = 1;
    }
    c->requests = requests;
    c->proxy_wait = proxy;
    gn_conn_on_event(c, EPOLLIN);
}

void gn_loop__adopt(gn_loop_t *loop, int fd, const struct sockaddr *peer, socklen_t len, unsigned requests,
                    struct ssl_st *tls)
{
    serve_conn(loop, fd, peer, len, requests, 0, tls, 0); /* past any PROXY header */
}

void gn_loop_hurry(gn_loop_t *loop)
{
    atomic_store(&loop->hurry_requested, 1);
    gn_loop_request_stop(loop);
}

int gn_loop__watch(gn_loop_t *loop, gn_conn_t *c, uint32_t events)
{
    /* 0 unless a TLS step waits the other way: then that event, instead of
     * the one the state asks for (which could not make it progress, and
     * being level-triggered would fire again at once). */
    if (events && c->tls_want)
        events = (events & ~(uint32_t)(EPOLLIN | EPOLLOUT)) | c->tls_want;
    if (c->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    int op = c->events == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(loop->epfd, op, c->fd, &ev) < 0)
        return -1;
    c->events = events;
    return 0;
}

void gn_loop__link(gn_loop_t *loop, gn_conn_t *c)
{
    c->next = loop->conns;
    if (loop->conns)
        loop->conns->prev = c;
    loop->conns = c;
    loop->n_conns++;
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
    if (loop->dead == NULL)
        return;
    /* A sibling may be looking at one of them (http/group.h). */
    gn_group__lock(loop);
    while (loop->dead) {
        gn_conn_t *c = loop->dead;
        loop->dead = c->next;
        if (c->h2s == (struct gn_h2_stream *)(void *)c) /* a stream of this loop's connections */
            gn_h2__recycle(loop, c);
        else
            free(c);
    }
    gn_group__unlock(loop);
}

/* Lets go of the connections siblings took that no event named yet. */
static void let_go_moved(gn_loop_t *loop)
{
    for (gn_conn_t *c = loop->conns, *next; c; c = next) {
        next = c->next;
        if (atomic_load(&c->claim) == GN_CLAIM_MOVED)
            gn_conn_let_go(c);
    }
}

/*
 * Keeps this loop's part of its process's slot (http/peers.h) true: it
 * counts as having room, and watches the eventfd other processes wake a
 * loop with room through, exactly while it listens on the shared socket
 * below its bound and is not stopping (alive 0: from now on it never will).
 * Called after each round of events and before a full loop looks for room
 * elsewhere; it does nothing unless something changed.
 */
static void update_peers(gn_loop_t *loop, int alive)
{
    const gn_peers_t *p = loop->limits->peers;
    int self = loop->limits->peer_slot;
    int room = alive && loop->exclusive && loop->accepting && !loop->stopping &&
               loop->n_conns < loop->limits->max_connections;
    if (room != loop->peer_room) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = (void *)TAG_PEERS};
        if (epoll_ctl(loop->epfd, room ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, p->wake_fd, &ev) == 0 || !room) {
            gn_peers__add_room(p, self, room ? 1 : -1);
            loop->peer_room = room;
        }
    }
    unsigned conns = alive ? loop->n_conns : 0;
    if (conns != loop->peer_conns) {
        gn_peers__add_conns(p, self, (int)(conns - loop->peer_conns));
        loop->peer_conns = conns;
    }
}

static void stop_listening(gn_loop_t *loop)
{
    if (loop->accepting)
        listen_ctl(loop, EPOLL_CTL_DEL);
}

/*
 * At the bound, the connections that wait idle between requests make room
 * for new clients, the longest idle first, as nginx reuses its keep-alive
 * connections: a server held full by idle clients still answers a new one.
 * Closing a connection between requests is what the keep-alive timeout
 * does anyway, and clients retry on it (RFC 9112, section 9.3.1). A few are
 * closed at a time, so that a burst of new clients does not pay a scan of
 * every connection each. Returns how many were picked (one whose next
 * request just came is served instead, and stays).
 */
static unsigned make_room(gn_loop_t *loop)
{
    unsigned want = loop->limits->max_connections / 16;
    want = want < 1 ? 1 : want > ROOM_BATCH_MAX ? ROOM_BATCH_MAX : want;
    gn_conn_t *pick[ROOM_BATCH_MAX];
    unsigned n = 0;
    /* The `want` reusable connections with the earliest deadlines (an idle
     * connection's deadline is when it went idle plus the keep-alive
     * timeout), kept sorted by insertion. */
    for (gn_conn_t *c = loop->conns; c; c = c->next) {
        if (!gn_conn_reusable(c) || (n == want && c->deadline >= pick[n - 1]->deadline))
            continue;
        unsigned i = n < want ? n++ : n - 1;
        for (; i > 0 && pick[i - 1]->deadline > c->deadline; i--)
            pick[i] = pick[i - 1];
        pick[i] = c;
    }
    for (unsigned i = 0; i < n; i++)
        gn_conn_end_idle(pick[i]);
    if (n > 0 && loop->now >= loop->room_logged_at + ROOM_LOG_EVERY) {
        loop->room_logged_at = loop->now;
        gn_log(GN_LOG_WARNING, "worker %d: %u connections (--max-connections) are not enough: closing %u idle "
               "keep-alive connection%s for new clients", loop->worker_id, loop->limits->max_connections, n,
               n == 1 ? "" : "s");
    }
    return n;
}

/*
 * --max-connections-total: counts a new connection in the process's total,
 * or, at the bound, says it is refused (answered 503 and closed, uncounted).
 * One atomic add per connection, none per request.
 */
static int over_total(gn_loop_t *loop)
{
    atomic_uint *total = loop->limits->conns_total;
    if (total == NULL || atomic_fetch_add_explicit(total, 1, memory_order_relaxed) < loop->limits->max_connections_total)
        return 0;
    atomic_fetch_sub_explicit(total, 1, memory_order_relaxed);
    return 1;
}

/* Accepts from the loop's listening socket number i (the i-th --bind).
 * Returns how many connections it accepted. */
static int accept_one_batch(gn_loop_t *loop, unsigned i)
{
    int lfd = loop->listen_fds[i];
    int proxy = i < 64 && (loop->limits->proxy_listeners >> i & 1);
    /* On a socket shared by several workers, take one connection per wake-up:
     * a worker busy in application code is not in epoll_wait, so the next
     * client goes to an idle worker instead of queueing behind it. */
    int batch = loop->stopping ? (loop->retiring ? RETIRE_ACCEPT : ACCEPT_BATCH) : loop->exclusive ? 1 : ACCEPT_BATCH;
    for (int k = 0; k < batch; k++) {
        /* While stopping, the queue is drained whatever the bound: what
         * is left in it when the listener closes would be reset. */
        if (loop->n_conns >= loop->limits->max_connections && !loop->stopping) {
            /* Since the wake-up for this client came here, a sibling with
             * room is asked to take it: a loop of this process, else one of
             * another process on the same socket (this loop first stops
             * counting as having room there). When every loop is full,
             * idle connections make room. Else backpressure: further
             * clients wait in the kernel's backlog until connections close. */
            if (loop->limits->peers)
                update_peers(loop, 1);
            if (gn_group__pass_accept(loop) ||
                (loop->limits->peers &&
                 gn_peers__pass_accept(loop->limits->peers, loop->limits->peer_slot, gn_loop__us(loop->now))) ||
                make_room(loop) == 0 || loop->n_conns >= loop->limits->max_connections) {
                stop_listening(loop);
                return k;
            }
        }
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                gn_log(GN_LOG_ERROR, "worker %d: accept: %s", loop->worker_id, strerror(errno));
            return k; /* EAGAIN, or another worker took it */
        }
        GN_FAULT_ACCEPTED();
        if (ss.ss_family != AF_UNIX) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        serve_conn(loop, fd, (struct sockaddr *)&ss, len, 0, proxy, NULL, over_total(loop));
    }
    return batch;
}

/* Another process, full, passed a client on (http/peers.h). Once it is
 * taken, the next loop with room is woken too, in case more wait in the
 * backlog: the kernel woke the full process for each of them. */
static void accept_passed(gn_loop_t *loop)
{
    const gn_peers_t *p = loop->limits->peers;
    uint64_t v;
    if (read(p->wake_fd, &v, sizeof(v)) != (ssize_t)sizeof(v) || !loop->accepting)
        return; /* another loop took the wake-up */
    int got = 0;
    for (unsigned i = 0; i < loop->n_listen && loop->accepting; i++)
        got += accept_one_batch(loop, i);
    if (got > 0)
        gn_peers__wake(p);
}

static void close_own_copies(gn_loop_t *loop)
{
    for (unsigned i = 0; i < loop->n_listen; i++) {
        close(loop->listen_fds[i]);
        loop->listen_fds[i] = -1;
    }
    loop->n_listen = 0;
}

static void close_listeners(gn_loop_t *loop)
{
    /* The last look at the queues: whatever is in them was promised service. */
    for (unsigned i = 0; i < loop->n_listen; i++) {
        for (int round = 0; round < 64; round++) {
            unsigned before = loop->n_conns;
            accept_one_batch(loop, i);
            if (loop->n_conns - before < ACCEPT_BATCH)
                break;
        }
    }
    stop_listening(loop);
    close_own_copies(loop);
}

/* Other loops go on accepting from the same sockets: no filter on them.
 * Watching them ends first, so no wake-up for a new connection comes here
 * any more; one last look takes the connection a wake-up that came just
 * before may have been for (with EPOLLEXCLUSIVE, no other loop got it). */
static void begin_retire(gn_loop_t *loop)
{
    loop->retiring = 1;
    stop_listening(loop);
    for (unsigned i = 0; i < loop->n_listen; i++)
        accept_one_batch(loop, i);
    close_own_copies(loop);
}

static void begin_stop(gn_loop_t *loop)
{
    loop->stopping = 1;
    loop->stop_deadline = loop->now + loop->graceful_timeout;
    if (atomic_load(&loop->retire_requested)) {
        begin_retire(loop);
        /* Siblings serve on: an idle keep-alive connection goes to one of
         * them rather than closing, so its client keeps it (a proxy's
         * upstream pool survives a reload). */
        for (gn_conn_t *c = loop->conns, *next; c; c = next) {
            next = c->next;
            if (!gn_group__hand_over(loop, c))
                gn_conn_shutdown(c);
        }
        return;
    }
    /* No new connection from now on, but the ones already queued, or whose
     * handshake is under way, are accepted for a short window, then the
     * listeners close (with --reuse-port this worker's queue is its own). */
    for (unsigned i = 0; i < loop->n_listen; i++) {
        if (!(i < 64 && (loop->limits->inherited_listeners >> i & 1)))
            gn_listener_refuse_new(loop->listen_fds[i]);
    }
    loop->listen_until = loop->now + STOP_ACCEPT_WINDOW;
    if (loop->listen_until < loop->next_scan)
        loop->next_scan = loop->listen_until;
    if (!loop->accepting && loop->n_listen > 0)
        listen_ctl(loop, EPOLL_CTL_ADD);
    for (unsigned i = 0; i < loop->n_listen; i++)
        accept_one_batch(loop, i);
    for (gn_conn_t *c = loop->conns, *next; c; c = next) {
        next = c->next;
        gn_conn_shutdown(c);
    }
}

/* What other threads asked for: a stop, or to stop waiting. */
static void take_requests(gn_loop_t *loop)
{
    if (atomic_load(&loop->stop_requested) && !loop->stopping)
        begin_stop(loop);
    if (loop->stopping && atomic_load(&loop->hurry_requested) && loop->stop_deadline > loop->now) {
        loop->stop_deadline = loop->listen_until = loop->now;
        loop->next_scan = loop->now;
    }
    if (loop->group == NULL)
        return;
    if (atomic_load_explicit(&loop->stolen, memory_order_relaxed) > 0)
        let_go_moved(loop);
    if (atomic_load_explicit(&loop->handed_wanted, memory_order_relaxed) && atomic_exchange(&loop->handed_wanted, 0))
        gn_group__adopt_handed(loop);
    if (atomic_load_explicit(&loop->h2r_wanted, memory_order_relaxed) && atomic_exchange(&loop->h2r_wanted, 0))
        gn_h2r__poll(loop);
    if (atomic_load_explicit(&loop->accept_wanted, memory_order_relaxed) && atomic_exchange(&loop->accept_wanted, 0)) {
        for (unsigned i = 0; i < loop->n_listen && loop->accepting; i++)
            accept_one_batch(loop, i);
    }
    /* Nudged by the watch: take waiting requests from a busy sibling, one
     * connection per round while there are some. The flag stays up, and the
     * loop wakes itself for the next round: an event loop that waits on the
     * epoll descriptor (ASGI's) comes back only when it is readable, and the
     * watch does not nudge a loop whose flag is already up. */
    if (atomic_load_explicit(&loop->steal_wanted, memory_order_relaxed)) {
        if (loop->stopping || !gn_group__steal(loop))
            atomic_store(&loop->steal_wanted, 0);
        else
            gn_loop__wake(loop);
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
    /* A client passed on by another process whose wake-up was lost (the
     * loop it reached filled up or ended meanwhile) waits in the backlog:
     * for a second after a pass, a loop with room looks there a few times
     * a second. */
    if (loop->peer_room && gn_peers__passed_since(loop->limits->peers, gn_loop__us(loop->now - 1.0))) {
        for (unsigned i = 0; i < loop->n_listen && loop->accepting; i++)
            accept_one_batch(loop, i);
    }
    if (loop->on_scan)
        loop->on_scan(loop->scan_arg);
    if (loop->stopping && loop->n_listen > 0 && loop->now >= loop->listen_until)
        close_listeners(loop);
    else if (loop->stopping && loop->n_listen > 0 && loop->listen_until < loop->next_scan)
        loop->next_scan = loop->listen_until;
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
        take_requests(loop);
    } else if (tag == TAG_PEERS) {
        accept_passed(loop);
    } else if (tag - TAG_LISTEN_BASE < loop->n_listen && loop->accepting) {
        accept_one_batch(loop, (unsigned)(tag - TAG_LISTEN_BASE));
    }
}

/* One round: wait up to timeout_ms, dispatch, timers, backpressure. */
static void iterate(gn_loop_t *loop, int timeout_ms)
{
    struct epoll_event events[MAX_EVENTS];
    if (timeout_ms != 0) {
        atomic_store_explicit(&loop->sleeping, 1, memory_order_relaxed);
        if (loop->before_wait)
            loop->before_wait(loop->wait_arg);
    }
    int n = epoll_wait(loop->epfd, events, MAX_EVENTS, timeout_ms);
    if (timeout_ms != 0) {
        if (loop->after_wait)
            loop->after_wait(loop->wait_arg);
        atomic_store_explicit(&loop->sleeping, 0, memory_order_relaxed);
    }
    loop->now = gn_now();
    atomic_store_explicit(&loop->polled_us, gn_loop__us(loop->now), memory_order_relaxed);
    /* A stop requested while we were busy applies to this batch already,
     * so a connection accepted in it is answered with Connection: close. */
    take_requests(loop);
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
    if (loop->stopping && loop->n_listen > 0 && loop->now >= loop->listen_until)
        close_listeners(loop);
    /* Resume accepting once connections fall below the bound. */
    if (!loop->accepting && !loop->stopping && loop->n_listen > 0 &&
        loop->n_conns < loop->limits->max_connections)
        listen_ctl(loop, EPOLL_CTL_ADD);
    free_dead(loop);
    atomic_store_explicit(&loop->n_conns_pub, loop->n_conns, memory_order_relaxed);
    if (loop->limits->peers)
        update_peers(loop, 1);
    /* --max-requests: one compare per round of events. */
    if (loop->served >= loop->served_enough) {
        loop->served_enough = ULLONG_MAX;
        atomic_store(&loop->replace_wanted, 1);
    }
}

static int finished(const gn_loop_t *loop)
{
    return loop->stopping && loop->n_conns == 0 && loop->n_listen == 0;
}

void gn_loop_run(gn_loop_t *loop)
{
    while (!finished(loop)) {
        int timeout = (int)((loop->next_scan - loop->now) * 1000) + 1;
        if (atomic_load_explicit(&loop->steal_wanted, memory_order_relaxed))
            timeout = 0;
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
    atomic_store_explicit(&loop->polled_us, gn_loop__us(loop->now), memory_order_relaxed);
    scan_timeouts(loop);
    free_dead(loop);
    if (loop->limits->peers)
        update_peers(loop, 1);
    return finished(loop);
}

void gn_loop_destroy(gn_loop_t *loop)
{
    if (loop->limits && loop->limits->peers && loop->epfd >= 0)
        update_peers(loop, 0);
    gn_group_leave(loop);
    loop->group = NULL;
    while (loop->conns)
        gn_conn_close(loop->conns);
    free_dead(loop);
    gn_conn__free_bufs(loop);
    gn_h2__free_spares(loop);
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
    gn_tls_view_release(&loop->tls_view);
    pthread_mutex_destroy(&loop->app_mu);
}
