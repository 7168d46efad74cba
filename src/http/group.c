#include "http/group.h"

#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "http/fault.h"
#include "http/h2_remote.h"
#include "http/loop.h"
#include "http/tls.h"
#include "server/log.h"

/* A loop that has run application code for this long without looking at its
 * events is busy: requests waiting on its idle connections may move. Short
 * enough that a waiting request is taken in a few milliseconds, long enough
 * that ordinary fast requests never move connections around. */
#define BUSY_AFTER_US 4000
#define PEEK_EVENTS 32

/* An idle connection on its way from a retiring loop to a sibling: what
 * gn_loop__adopt() needs to serve it. */
struct gn_handed {
    gn_handed_t *next;
    int fd;
    struct sockaddr_storage peer;
    socklen_t len;
    unsigned requests;
    struct ssl_st *tls;
};

static void close_handed(gn_handed_t *h)
{
    while (h) {
        gn_handed_t *next = h->next;
        if (h->tls)
            gn_tls_discard(h->tls);
        close(h->fd); /* a FIN, as the retiring loop would have sent */
        free(h);
        h = next;
    }
}

int gn_group_init(gn_group_t *g, unsigned n)
{
    g->n = 0;
    g->slots = GN_FAIL(NULL, calloc(n, sizeof(gn_group_slot_t)));
    if (g->slots == NULL)
        return -1;
    for (unsigned i = 0; i < n; i++)
        pthread_mutex_init(&g->slots[i].mu, NULL);
    g->n = n;
    return 0;
}

void gn_group_destroy(gn_group_t *g)
{
    for (unsigned i = 0; i < g->n; i++) {
        close_handed(g->slots[i].handed);
        pthread_mutex_destroy(&g->slots[i].mu);
    }
    free(g->slots);
    g->slots = NULL;
    g->n = 0;
}

void gn_group_join(gn_group_t *g, unsigned i, gn_loop_t *loop)
{
    loop->group = g;
    loop->slot = i;
    pthread_mutex_lock(&g->slots[i].mu);
    g->slots[i].loop = loop;
    pthread_mutex_unlock(&g->slots[i].mu);
}

void gn_group_leave(gn_loop_t *loop)
{
    gn_group_t *g = loop->group;
    if (g == NULL)
        return;
    pthread_mutex_lock(&g->slots[loop->slot].mu);
    g->slots[loop->slot].loop = NULL;
    gn_group_slot_t *s = &g->slots[loop->slot];
    gn_handed_t *late = s->handed; /* came after its last look */
    struct gn_h2r_job *run = s->h2r_run, *own = s->h2r_own;
    s->handed = NULL;
    s->h2r_run = s->h2r_own = NULL;
    pthread_mutex_unlock(&g->slots[loop->slot].mu);
    close_handed(late);
    gn_h2r__orphans(run, own);
}

void gn_group__lock(gn_loop_t *loop)
{
    if (loop->group)
        pthread_mutex_lock(&loop->group->slots[loop->slot].mu);
}

void gn_group__unlock(gn_loop_t *loop)
{
    if (loop->group)
        pthread_mutex_unlock(&loop->group->slots[loop->slot].mu);
}

/* Running application code, and not back to its events for a while. */
static int busy(gn_loop_t *l, long long now_us)
{
    return atomic_load_explicit(&l->inflight, memory_order_relaxed) > 0 &&
           !atomic_load_explicit(&l->sleeping, memory_order_relaxed) &&
           now_us - atomic_load_explicit(&l->polled_us, memory_order_relaxed) > BUSY_AFTER_US;
}

/* Nothing of its own to answer (its HTTP/2 streams that siblings answer
 * are not its work): it can take work at once (a stopping loop declines, in
 * take_requests). */
static int idle(gn_loop_t *l)
{
    return atomic_load_explicit(&l->inflight, memory_order_relaxed) ==
           atomic_load_explicit(&l->remote_out, memory_order_relaxed);
}

/*
 * With the owner's slot lock held: a connection of the owner whose request
 * has arrived and which is still idle, or NULL. epoll_wait on another loop's
 * set takes nothing from it: every registration is level-triggered, so the
 * owner sees the same events again.
 */
static gn_conn_t *waiting_conn(gn_loop_t *owner)
{
    struct epoll_event ev[PEEK_EVENTS];
    int n = epoll_wait(owner->epfd, ev, PEEK_EVENTS, 0);
    for (int i = 0; i < n; i++) {
        gn_conn_t *c = gn_loop__conn_of(ev[i].data.ptr);
        if (c && (ev[i].events & EPOLLIN) &&
            atomic_load_explicit(&c->claim, memory_order_relaxed) == GN_CLAIM_IDLE)
            return c;
    }
    return NULL;
}

int gn_group_watch(gn_group_t *g)
{
    long long now_us = gn_loop__us(gn_now());
    int n_busy = 0;
    for (unsigned i = 0; i < g->n; i++) {
        pthread_mutex_lock(&g->slots[i].mu);
        gn_loop_t *owner = g->slots[i].loop;
        int is_busy = owner && busy(owner, now_us);
        int waiting = is_busy && waiting_conn(owner) != NULL;
        pthread_mutex_unlock(&g->slots[i].mu);
        n_busy += is_busy;
        if (!waiting)
            continue;
        /* One idle sibling is enough: it takes connections one by one for
         * as long as there are some (gn_group__steal). */
        for (unsigned j = 0; j < g->n; j++) {
            pthread_mutex_lock(&g->slots[j].mu);
            gn_loop_t *l = g->slots[j].loop;
            int nudged = l && j != i && idle(l) &&
                         atomic_load_explicit(&l->n_conns_pub, memory_order_relaxed) < l->limits->max_connections;
            if (nudged && !atomic_exchange(&l->steal_wanted, 1))
                gn_loop__wake(l);
            pthread_mutex_unlock(&g->slots[j].mu);
            if (nudged)
                break;
        }
    }
    return n_busy;
}

/* What a connection that moves carries to its new loop. Set once, before
 * the connection was first marked idle: its owner's thread is the only one
 * that writes these, and whoever moves it only reads them. */
static void fill(gn_handed_t *h, const gn_conn_t *c)
{
    h->fd = c->fd;
    h->len = c->peer_len;
    memcpy(&h->peer, &c->peer, c->peer_len);
    h->requests = c->requests;
    h->tls = c->tls; /* the new loop's now: the old record never frees it */
}

/* c, claimed MOVED, leaves its owner's epoll set; the owner lets the old
 * record go on its next look. */
static void moved_out(gn_loop_t *owner, const gn_conn_t *c)
{
    epoll_ctl(owner->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    atomic_fetch_add(&owner->stolen, 1);
}

static void adopt(gn_loop_t *loop, gn_handed_t *h)
{
    gn_loop__adopt(loop, h->fd, (struct sockaddr *)&h->peer, h->len, h->requests, h->tls);
}

/* With the owner's slot lock held: claim c for a thief, and note in h what
 * the thief's new connection needs. */
static int take(gn_loop_t *owner, gn_conn_t *c, gn_handed_t *h)
{
    int expected = GN_CLAIM_IDLE;
    if (!atomic_compare_exchange_strong(&c->claim, &expected, GN_CLAIM_MOVED))
        return 0; /* its owner came back to it first */
    fill(h, c);
    moved_out(owner, c);
    return 1;
}

int gn_group__steal(gn_loop_t *loop)
{
    gn_group_t *g = loop->group;
    /* A full loop takes no connection: else the one it came from would
     * have room for a new client, and the server more than its bound. */
    if (loop->n_conns >= loop->limits->max_connections)
        return 0;
    long long now_us = gn_loop__us(loop->now);
    for (unsigned k = 1; k < g->n; k++) {
        gn_group_slot_t *s = &g->slots[(loop->slot + k) % g->n];
        gn_handed_t h;
        int got = 0;
        pthread_mutex_lock(&s->mu);
        gn_loop_t *owner = s->loop;
        if (owner && busy(owner, now_us)) {
            gn_conn_t *c = waiting_conn(owner);
            got = c && take(owner, c, &h);
        }
        pthread_mutex_unlock(&s->mu);
        if (got) {
            adopt(loop, &h);
            return 1;
        }
    }
    return 0;
}

int gn_group__pass_accept(gn_loop_t *loop)
{
    gn_group_t *g = loop->group;
    if (g == NULL)
        return 0;
    for (unsigned k = 1; k < g->n; k++) {
        gn_group_slot_t *s = &g->slots[(loop->slot + k) % g->n];
        pthread_mutex_lock(&s->mu);
        gn_loop_t *l = s->loop;
        int room = l && atomic_load_explicit(&l->n_conns_pub, memory_order_relaxed) < l->limits->max_connections;
        if (room && !atomic_exchange(&l->accept_wanted, 1))
            gn_loop__wake(l);
        pthread_mutex_unlock(&s->mu);
        if (room)
            return 1;
    }
    return 0;
}

/* A sibling that will go on serving, with room: it gets the connection. */
static int serves_on(gn_loop_t *l)
{
    return l && !atomic_load_explicit(&l->stop_requested, memory_order_relaxed) &&
           atomic_load_explicit(&l->n_conns_pub, memory_order_relaxed) < l->limits->max_connections;
}

/* Puts h in the inbox of a sibling that serves on, past slot `from`.
 * Returns 0 if none can take it. With claim set, the connection is claimed
 * from its owner first, under the sibling's lock: 0 also if the owner's
 * sibling took it meanwhile (claim is then no longer idle). */
static int give(gn_group_t *g, unsigned from, gn_handed_t *h, atomic_int *claim)
{
    for (unsigned k = 1; k < g->n; k++) {
        gn_group_slot_t *s = &g->slots[(from + k) % g->n];
        pthread_mutex_lock(&s->mu);
        gn_loop_t *to = s->loop;
        int expected = GN_CLAIM_IDLE;
        int go = serves_on(to) &&
                 (claim == NULL || atomic_compare_exchange_strong(claim, &expected, GN_CLAIM_MOVED));
        if (go) {
            h->next = s->handed;
            s->handed = h;
            atomic_store(&to->handed_wanted, 1);
            gn_loop__wake(to);
        }
        pthread_mutex_unlock(&s->mu);
        if (go)
            return 1;
        if (expected != GN_CLAIM_IDLE)
            return 0;
    }
    return 0;
}

int gn_group__hand_over(gn_loop_t *loop, gn_conn_t *c)
{
    gn_group_t *g = loop->group;
    if (g == NULL || atomic_load_explicit(&c->claim, memory_order_relaxed) != GN_CLAIM_IDLE)
        return 0;
    gn_handed_t *h = GN_FAIL(NULL, malloc(sizeof(*h)));
    if (h == NULL) {
        gn_log(GN_LOG_ERROR, "worker %d: out of memory to hand a keep-alive connection over: closed",
               loop->worker_id);
        return 0;
    }
    fill(h, c);
    /* Claimed as a thief claims: whichever flips the mark first has it. */
    if (!give(g, loop->slot, h, &c->claim)) {
        free(h);
        return 0;
    }
    moved_out(loop, c);
    return 1;
}

void gn_group__adopt_handed(gn_loop_t *loop)
{
    gn_group_t *g = loop->group;
    gn_group_slot_t *s = &g->slots[loop->slot];
    pthread_mutex_lock(&s->mu);
    gn_handed_t *h = s->handed;
    s->handed = NULL;
    pthread_mutex_unlock(&s->mu);
    while (h) {
        gn_handed_t *next = h->next;
        if (!loop->stopping) {
            adopt(loop, h);
            free(h);
        } else if (!loop->retiring || !give(g, loop->slot, h, NULL)) {
            /* Retired too since it was picked (a reload retires the old
             * workers one after another): on to one that serves on, if
             * any; else ended as this loop ends its own. */
            h->next = NULL;
            close_handed(h);
        }
        h = next;
    }
}
