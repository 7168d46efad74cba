/*
 * The worker processes of a server, seen by each other: how many
 * connections each holds and whether it has room, so that a process at its
 * --max-connections passes a new client to one with room instead of closing
 * its own idle connections.
 *
 * The supervisor maps the table (MAP_SHARED | MAP_ANONYMOUS) and makes one
 * eventfd before it forks any child; every child inherits both. A child
 * claims a slot when it starts and the supervisor frees it when it reaps the
 * child, whatever way it ended (a SIGKILL included), so a process that is
 * gone never looks as if it had room.
 *
 * Each loop of a process that has room (it listens, is not stopping, and is
 * below its bound) counts itself in its slot's `room` and watches the shared
 * eventfd with EPOLLEXCLUSIVE beside its listening sockets. A full loop
 * woken for a new client first leaves that count, then, if another process
 * counts some room, writes to the eventfd: the kernel wakes one loop with
 * room, in whichever process, and that loop accepts the client. Only when no
 * process has room does the full loop close its own idle connections
 * (loop.c: make_room). Leaving before looking means two full processes
 * cannot each believe the other has room. A wake-up can still be lost (the
 * loop it reached filled up or ended): for a second after a pass, loops
 * with room also look at the backlog with their timeout scan.
 *
 * Nothing here runs per request: a loop changes its slot when it crosses
 * its bound or its connection count changes in a round of events (one
 * relaxed atomic add), and looks at the others only when it is full.
 */
#ifndef GN_HTTP_PEERS_H
#define GN_HTTP_PEERS_H

#include <stdatomic.h>
#include <sys/types.h>

typedef struct gn_peer_slot {
    _Alignas(64) atomic_int pid; /* 0: free */
    atomic_uint conns;           /* connections its loops hold */
    atomic_uint room;            /* its loops that have room and listen */
} gn_peer_slot_t;

typedef struct gn_peers_shared {
    _Alignas(64) atomic_llong passed_us; /* when a client was last passed on */
    gn_peer_slot_t slots[];
} gn_peers_shared_t;

typedef struct gn_peers {
    gn_peers_shared_t *shm; /* shared by every process */
    unsigned n;
    int wake_fd;           /* eventfd: a loop with room accepts */
} gn_peers_t;

/* Supervisor, before the first fork: n slots, all free. Returns 0, or -1
 * with errno set. */
int gn_peers_init(gn_peers_t *p, unsigned n);
void gn_peers_destroy(gn_peers_t *p);
/* Supervisor: the process pid ended; its slot is free again. */
void gn_peers_release(gn_peers_t *p, pid_t pid);
/* A child, as it starts: its slot, or -1 when none is free (the process then
 * takes no part, and works as if it were alone). */
int gn_peers_claim(gn_peers_t *p);

/* Internal, for loop.c. */
/* Slot `self` gains or loses delta loops with room, or connections. */
void gn_peers__add_room(const gn_peers_t *p, int self, int delta);
void gn_peers__add_conns(const gn_peers_t *p, int self, int delta);
/* Another process has a loop with room: one of them is woken to accept.
 * Returns 1, or 0 when none has room. now_us: gn_loop__us() time. */
int gn_peers__pass_accept(const gn_peers_t *p, int self, long long now_us);
/* A client was passed on since since_us: one whose wake-up was lost may
 * wait in the backlog. */
int gn_peers__passed_since(const gn_peers_t *p, long long since_us);
/* Wakes one loop with room to accept (a passed client, or the next one
 * in the backlog after a passed client was taken). */
void gn_peers__wake(const gn_peers_t *p);

#endif
