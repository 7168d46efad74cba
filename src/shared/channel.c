#include "shared/channel.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int for_send;
} waiter_t;

struct gn_channel {
    gn_channel_t *next; /* registry list; under registry_mu */
    unsigned refs;      /* under registry_mu */
    unsigned capacity;

    /* Everything below is under mu. */
    pthread_mutex_t mu;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    gn_msg_t **ring;
    size_t head, count;
    int closed;
    waiter_t *waiters; /* armed asyncio eventfds */
    size_t n_waiters, cap_waiters;

    size_t name_len;
    char name[];
};

/* Lock order: registry_mu, then a channel's mu; never the other way. */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static gn_channel_t *registry;

gn_msg_t *gn_msg_new(const uint8_t *data, size_t len)
{
    gn_msg_t *m = malloc(sizeof(*m) + len);
    if (m == NULL)
        return NULL;
    m->len = len;
    if (len)
        memcpy(m->data, data, len);
    return m;
}

/* ---- the registry ------------------------------------------------------- */

static gn_channel_t *channel_new(const char *name, size_t len, unsigned capacity)
{
    gn_channel_t *ch = calloc(1, sizeof(*ch) + len + 1);
    if (ch == NULL)
        return NULL;
    ch->ring = calloc(capacity, sizeof(*ch->ring));
    if (ch->ring == NULL) {
        free(ch);
        return NULL;
    }
    ch->capacity = capacity;
    ch->name_len = len;
    memcpy(ch->name, name, len);
    pthread_mutex_init(&ch->mu, NULL);
    /* Timeouts are measured on the monotonic clock: a wall-clock jump must
     * not make recv(timeout=1) wait an hour. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ch->not_empty, &ca);
    pthread_cond_init(&ch->not_full, &ca);
    pthread_condattr_destroy(&ca);
    return ch;
}

static void channel_free(gn_channel_t *ch)
{
    for (size_t i = 0; i < ch->count; i++)
        free(ch->ring[(ch->head + i) % ch->capacity]);
    free(ch->ring);
    free(ch->waiters);
    pthread_mutex_destroy(&ch->mu);
    pthread_cond_destroy(&ch->not_empty);
    pthread_cond_destroy(&ch->not_full);
    free(ch);
}

static gn_channel_t *lookup(const char *name, size_t len)
{
    for (gn_channel_t *ch = registry; ch; ch = ch->next) {
        if (ch->name_len == len && memcmp(ch->name, name, len) == 0)
            return ch;
    }
    return NULL;
}

gn_channel_t *gn_channel_open(const char *name, size_t len, unsigned capacity)
{
    if (capacity > GN_CHANNEL_MAX_CAPACITY) {
        errno = EINVAL;
        return NULL;
    }
    pthread_mutex_lock(&registry_mu);
    gn_channel_t *ch = lookup(name, len);
    if (ch && capacity && capacity != ch->capacity) {
        ch = NULL;
        errno = EINVAL;
    } else if (ch == NULL) {
        ch = channel_new(name, len, capacity ? capacity : GN_CHANNEL_DEFAULT_CAPACITY);
        if (ch) {
            ch->next = registry;
            registry = ch;
        } else {
            errno = ENOMEM;
        }
    }
    if (ch)
        ch->refs++;
    pthread_mutex_unlock(&registry_mu);
    return ch;
}

static void unlink_channel(gn_channel_t *ch)
{
    for (gn_channel_t **link = &registry; *link; link = &(*link)->next) {
        if (*link == ch) {
            *link = ch->next;
            return;
        }
    }
}

void gn_channel_release(gn_channel_t *ch)
{
    pthread_mutex_lock(&registry_mu);
    int drop = 0;
    if (--ch->refs == 0) {
        /* With no holder there is no waiter either: only the queue decides. */
        pthread_mutex_lock(&ch->mu);
        drop = ch->count == 0;
        pthread_mutex_unlock(&ch->mu);
        if (drop)
            unlink_channel(ch);
    }
    pthread_mutex_unlock(&registry_mu);
    if (drop)
        channel_free(ch);
}

size_t gn_channel_count(void)
{
    size_t n = 0;
    pthread_mutex_lock(&registry_mu);
    for (gn_channel_t *ch = registry; ch; ch = ch->next)
        n++;
    pthread_mutex_unlock(&registry_mu);
    return n;
}

/* ---- waiting (callers hold ch->mu) -------------------------------------- */

static struct timespec deadline_after(double timeout)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double whole = (double)(time_t)timeout;
    ts.tv_sec += (time_t)timeout;
    ts.tv_nsec += (long)((timeout - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* One wait on cv; returns -1 once the deadline has passed. */
static int wait_on(pthread_cond_t *cv, pthread_mutex_t *mu, double timeout, const struct timespec *deadline)
{
    if (timeout == 0)
        return -1;
    if (timeout < 0)
        return pthread_cond_wait(cv, mu) == 0 ? 0 : -1;
    return pthread_cond_timedwait(cv, mu, deadline) == ETIMEDOUT ? -1 : 0;
}

/* Fires (and forgets) the armed eventfds of one side. */
static void wake_armed(gn_channel_t *ch, int senders, int receivers)
{
    size_t kept = 0;
    for (size_t i = 0; i < ch->n_waiters; i++) {
        waiter_t w = ch->waiters[i];
        if ((w.for_send && senders) || (!w.for_send && receivers)) {
            uint64_t one = 1;
            /* Non-blocking, and the counter cannot overflow from one write. */
            ssize_t r = write(w.fd, &one, sizeof(one));
            (void)r;
        } else {
            ch->waiters[kept++] = w;
        }
    }
    ch->n_waiters = kept;
}

/* ---- operations --------------------------------------------------------- */

int gn_channel_send(gn_channel_t *ch, gn_msg_t *msg, double timeout)
{
    struct timespec deadline = {0};
    if (timeout > 0)
        deadline = deadline_after(timeout);
    pthread_mutex_lock(&ch->mu);
    int rc = GN_CH_OK;
    while (!ch->closed && ch->count == ch->capacity) {
        /* The queue is checked again after a timed-out wait: room that came
         * at the last moment is still taken. */
        if (wait_on(&ch->not_full, &ch->mu, timeout, &deadline) < 0 && ch->count == ch->capacity) {
            rc = GN_CH_FULL;
            break;
        }
    }
    if (ch->closed) {
        rc = GN_CH_CLOSED;
    } else if (rc == GN_CH_OK) {
        ch->ring[(ch->head + ch->count) % ch->capacity] = msg;
        ch->count++;
        pthread_cond_signal(&ch->not_empty);
        if (ch->n_waiters)
            wake_armed(ch, 0, 1);
    }
    pthread_mutex_unlock(&ch->mu);
    return rc;
}

int gn_channel_recv(gn_channel_t *ch, gn_msg_t **out, double timeout)
{
    struct timespec deadline = {0};
    if (timeout > 0)
        deadline = deadline_after(timeout);
    pthread_mutex_lock(&ch->mu);
    int rc = GN_CH_OK;
    while (!ch->closed && ch->count == 0) {
        if (wait_on(&ch->not_empty, &ch->mu, timeout, &deadline) < 0 && ch->count == 0) {
            rc = GN_CH_EMPTY;
            break;
        }
    }
    if (ch->count > 0) {
        /* Queued messages outlive close(): receivers drain them first. */
        *out = ch->ring[ch->head];
        ch->ring[ch->head] = NULL;
        ch->head = (ch->head + 1) % ch->capacity;
        ch->count--;
        rc = GN_CH_OK;
        pthread_cond_signal(&ch->not_full);
        if (ch->n_waiters)
            wake_armed(ch, 1, 0);
    } else if (ch->closed) {
        rc = GN_CH_CLOSED;
    }
    pthread_mutex_unlock(&ch->mu);
    return rc;
}

void gn_channel_close(gn_channel_t *ch)
{
    pthread_mutex_lock(&ch->mu);
    ch->closed = 1;
    pthread_cond_broadcast(&ch->not_empty);
    pthread_cond_broadcast(&ch->not_full);
    wake_armed(ch, 1, 1);
    pthread_mutex_unlock(&ch->mu);
}

static int ready_for(const gn_channel_t *ch, int for_send)
{
    return ch->closed || (for_send ? ch->count < ch->capacity : ch->count > 0);
}

static int add_waiter(gn_channel_t *ch, int fd, int for_send)
{
    if (ch->n_waiters == ch->cap_waiters) {
        size_t cap = ch->cap_waiters ? ch->cap_waiters * 2 : 4;
        waiter_t *w = realloc(ch->waiters, cap * sizeof(*w));
        if (w == NULL)
            return -1;
        ch->waiters = w;
        ch->cap_waiters = cap;
    }
    ch->waiters[ch->n_waiters++] = (waiter_t){fd, for_send};
    return 0;
}

int gn_channel_arm(gn_channel_t *ch, int for_send, int *fd)
{
    /* Created before locking: no system call beyond write() under mu. */
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        return -1;
    pthread_mutex_lock(&ch->mu);
    int rc = GN_CH_READY;
    if (!ready_for(ch, for_send))
        rc = add_waiter(ch, efd, for_send) < 0 ? -1 : GN_CH_OK;
    pthread_mutex_unlock(&ch->mu);
    if (rc != GN_CH_OK) {
        close(efd);
        if (rc < 0)
            errno = ENOMEM;
        return rc;
    }
    *fd = efd;
    return GN_CH_OK;
}

void gn_channel_disarm(gn_channel_t *ch, int fd)
{
    pthread_mutex_lock(&ch->mu);
    for (size_t i = 0; i < ch->n_waiters; i++) {
        if (ch->waiters[i].fd == fd) {
            ch->waiters[i] = ch->waiters[--ch->n_waiters];
            break;
        }
    }
    pthread_mutex_unlock(&ch->mu);
    close(fd);
}

const char *gn_channel_name(const gn_channel_t *ch)
{
    return ch->name;
}

unsigned gn_channel_capacity(const gn_channel_t *ch)
{
    return ch->capacity;
}

size_t gn_channel_size(gn_channel_t *ch)
{
    pthread_mutex_lock(&ch->mu);
    size_t n = ch->count;
    pthread_mutex_unlock(&ch->mu);
    return n;
}

size_t gn_channel_depths(gn_channel_depth_t *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&registry_mu);
    for (gn_channel_t *ch = registry; ch && max > 0; ch = ch->next) {
        size_t depth = gn_channel_size(ch);
        if (n == max && depth <= out[n - 1].depth)
            continue;
        size_t i = n < max ? n++ : n - 1; /* the shallowest makes room */
        for (; i > 0 && out[i - 1].depth < depth; i--)
            out[i] = out[i - 1];
        out[i].depth = depth;
        out[i].name_len = ch->name_len < GN_CHANNEL_DEPTH_NAME ? ch->name_len : GN_CHANNEL_DEPTH_NAME;
        memcpy(out[i].name, ch->name, out[i].name_len);
    }
    pthread_mutex_unlock(&registry_mu);
    return n;
}

int gn_channel_closed(gn_channel_t *ch)
{
    pthread_mutex_lock(&ch->mu);
    int c = ch->closed;
    pthread_mutex_unlock(&ch->mu);
    return c;
}
