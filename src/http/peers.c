#include "http/peers.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "http/fault.h"

static size_t size_of(unsigned n)
{
    return sizeof(gn_peers_shared_t) + n * sizeof(gn_peer_slot_t);
}

int gn_peers_init(gn_peers_t *p, unsigned n)
{
    p->shm = NULL;
    p->n = 0;
    p->wake_fd = GN_FAIL(GN_FAIL_ERRNO(EMFILE), eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (p->wake_fd < 0)
        return -1;
    void *m = mmap(NULL, size_of(n), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        close(p->wake_fd);
        p->wake_fd = -1;
        errno = e;
        return -1;
    }
    p->shm = m; /* zero-filled: every slot free */
    p->n = n;
    return 0;
}

void gn_peers_destroy(gn_peers_t *p)
{
    if (p->shm)
        munmap(p->shm, size_of(p->n));
    if (p->wake_fd >= 0)
        close(p->wake_fd);
    p->shm = NULL;
    p->n = 0;
    p->wake_fd = -1;
}

void gn_peers_release(gn_peers_t *p, pid_t pid)
{
    for (unsigned i = 0; i < p->n; i++) {
        gn_peer_slot_t *s = &p->shm->slots[i];
        if (atomic_load_explicit(&s->pid, memory_order_relaxed) != (int)pid)
            continue;
        /* Its counts go first: a slot is claimed zeroed. */
        atomic_store(&s->room, 0);
        atomic_store(&s->conns, 0);
        atomic_store(&s->pid, 0);
        return;
    }
}

int gn_peers_claim(gn_peers_t *p)
{
    for (unsigned i = 0; i < p->n; i++) {
        int expected = 0;
        if (atomic_load_explicit(&p->shm->slots[i].pid, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&p->shm->slots[i].pid, &expected, (int)getpid()))
            return (int)i;
    }
    return -1;
}

void gn_peers__add_room(const gn_peers_t *p, int self, int delta)
{
    /* Sequentially consistent, with the loads in gn_peers__pass_accept: of
     * two full loops that leave and look at once, one sees the other gone. */
    if (delta > 0)
        atomic_fetch_add(&p->shm->slots[self].room, (unsigned)delta);
    else
        atomic_fetch_sub(&p->shm->slots[self].room, (unsigned)-delta);
}

void gn_peers__add_conns(const gn_peers_t *p, int self, int delta)
{
    if (delta > 0)
        atomic_fetch_add_explicit(&p->shm->slots[self].conns, (unsigned)delta, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&p->shm->slots[self].conns, (unsigned)-delta, memory_order_relaxed);
}

int gn_peers__pass_accept(const gn_peers_t *p, int self, long long now_us)
{
    for (unsigned i = 0; i < p->n; i++) {
        if ((int)i != self && atomic_load(&p->shm->slots[i].pid) != 0 && atomic_load(&p->shm->slots[i].room) > 0) {
            atomic_store_explicit(&p->shm->passed_us, now_us, memory_order_relaxed);
            gn_peers__wake(p);
            return 1;
        }
    }
    return 0;
}

int gn_peers__passed_since(const gn_peers_t *p, long long since_us)
{
    return atomic_load_explicit(&p->shm->passed_us, memory_order_relaxed) >= since_us;
}

void gn_peers__wake(const gn_peers_t *p)
{
    uint64_t one = 1;
    if (write(p->wake_fd, &one, sizeof(one)) < 0) {
        /* the counter cannot overflow from this: nothing to do */
    }
}
