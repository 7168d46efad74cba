/*
 * The worker loops of one process, seen by each other, so that work follows
 * idle workers.
 *
 * A loop owns the connections it accepted, and a loop that runs application
 * code does not look at them. When a request arrives on an idle keep-alive
 * connection of such a busy loop while another loop has nothing to do, the
 * idle loop takes the connection over (it is plain C state: an fd and a peer
 * address) and answers the request itself. A request is always read, handed
 * to the application and answered by one loop; only connections between two
 * requests move, so keep-alive and pipelining order hold.
 *
 * Who decides: the supervisor's thread calls gn_group_watch() every few
 * milliseconds (it never blocks on a worker; 20 ms apart while no loop is
 * busy, 4 ms while one is); it nudges an idle loop through
 * its wake-up fd, and that loop takes one connection at a time with
 * gn_group__steal() for as long as there is one to take.
 *
 * Safety: a connection between requests is marked idle (conn.h: claim);
 * whichever of its owner and a thief flips the mark first has it. A thief
 * looks into the owner's epoll set and reads the connection under the
 * owner's slot lock, which the owner also holds while it frees connections,
 * so nothing it looks at is freed meanwhile.
 */
#ifndef GN_HTTP_GROUP_H
#define GN_HTTP_GROUP_H

#include <pthread.h>

typedef struct gn_loop gn_loop_t;
typedef struct gn_conn gn_conn_t;

typedef struct gn_handed gn_handed_t;

typedef struct {
    pthread_mutex_t mu;  /* look into the loop's epoll set; free its connections */
    gn_loop_t *loop;     /* NULL while the loop is not serving */
    gn_handed_t *handed; /* idle connections a retiring sibling gave it */
    /* HTTP/2 streams with news for the loop (http/h2_remote.h): as the
     * runner (a stream to start, a cancel, room) and as the owner (response
     * bytes). */
    struct gn_h2r_job *h2r_run, *h2r_own;
} gn_group_slot_t;

typedef struct gn_group {
    unsigned n;
    gn_group_slot_t *slots;
} gn_group_t;

/* n slots, all empty. Returns 0 or -1 (out of memory). */
int gn_group_init(gn_group_t *g, unsigned n);
void gn_group_destroy(gn_group_t *g);
/* The loop's thread: the loop serves from now on as slot i. */
void gn_group_join(gn_group_t *g, unsigned i, gn_loop_t *loop);
/* The loop's thread: the loop stops being seen (before it is torn down). */
void gn_group_leave(gn_loop_t *loop);
/* Any thread but a loop's, every few milliseconds: nudge idle loops towards
 * requests that wait on a busy loop. Returns how many loops are busy in the
 * application (the caller looks again sooner while some are). */
int gn_group_watch(gn_group_t *g);

/* Internal, for loop.c. */
/* Take one connection whose request waits on a busy sibling, and start
 * serving it. Returns 1 if one was taken. */
int gn_group__steal(gn_loop_t *loop);
/* This loop is full: wake a sibling with room to accept. Returns 1 if
 * one had room, 0 if every sibling is full too (or there is none). */
int gn_group__pass_accept(gn_loop_t *loop);
/* The loop retires (a reload, a replaced worker) while siblings go on
 * serving: give c, idle between requests, to one of them instead of closing
 * it, so that its client keeps its connection. Returns 1 if c went (its
 * record is let go like a stolen one's), 0 if it stays (not idle any more,
 * no sibling that serves on, or out of memory). */
int gn_group__hand_over(gn_loop_t *loop, gn_conn_t *c);
/* Start serving the connections retiring siblings handed to this loop. */
void gn_group__adopt_handed(gn_loop_t *loop);
void gn_group__lock(gn_loop_t *loop);
void gn_group__unlock(gn_loop_t *loop);

#endif
