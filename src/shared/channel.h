/*
 * Named channels between workers: bounded FIFO queues of encoded values
 * (codec.h), process-wide plain C data. Many producers and consumers, in any
 * interpreters and threads. A full channel makes senders wait; nothing grows
 * without bound.
 *
 * Blocking calls here never touch Python: callers release their GIL around
 * them. Waiting is done on condition variables (threads) or, for asyncio,
 * on one-shot eventfds that a loop watches with add_reader (gn_channel_arm).
 */
#ifndef GN_SHARED_CHANNEL_H
#define GN_SHARED_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#define GN_CHANNEL_DEFAULT_CAPACITY 1024u
#define GN_CHANNEL_MAX_CAPACITY (1u << 24)

typedef struct gn_channel gn_channel_t;

/* One message: an encoded value, owned by whoever holds the pointer. */
typedef struct {
    size_t len;
    uint8_t data[];
} gn_msg_t;

enum {
    GN_CH_OK = 0,
    GN_CH_EMPTY = 1,  /* recv: nothing came in time */
    GN_CH_FULL = 2,   /* send: no room came in time */
    GN_CH_CLOSED = 3, /* closed (recv: and drained) */
    GN_CH_READY = 4,  /* arm: no need to wait, try again now */
};

/* A message holding a copy of data[0..len); NULL if out of memory. */
gn_msg_t *gn_msg_new(const uint8_t *data, size_t len);

/*
 * The channel named name[0..len), created with `capacity` slots (0 = the
 * default) if it does not exist. Each call takes a reference that
 * gn_channel_release gives back. Returns NULL with errno: EINVAL when
 * capacity is non-zero and differs from the existing channel's, ENOMEM.
 */
gn_channel_t *gn_channel_open(const char *name, size_t len, unsigned capacity);
/* Gives a reference back. A channel nobody holds is freed once it is empty;
 * one that still holds messages waits for its next opener. */
void gn_channel_release(gn_channel_t *ch);

/* timeout in seconds: < 0 waits for ever, 0 does not wait. send takes msg
 * only when it returns GN_CH_OK. */
int gn_channel_send(gn_channel_t *ch, gn_msg_t *msg, double timeout);
int gn_channel_recv(gn_channel_t *ch, gn_msg_t **out, double timeout);
/* Refuses further sends and wakes every waiter; queued messages can still
 * be received. */
void gn_channel_close(gn_channel_t *ch);

/*
 * For asyncio: a non-blocking eventfd that becomes readable once the channel
 * changes in the caller's favour (a message for a receiver, room for a
 * sender, or closing). Returns GN_CH_OK with *fd set, GN_CH_READY when there
 * is no need to wait (try again now), or -1 with errno. Every fd handed out
 * must go back to gn_channel_disarm, which unregisters and closes it: once
 * that returns, the channel never writes to that fd number again.
 */
int gn_channel_arm(gn_channel_t *ch, int for_send, int *fd);
void gn_channel_disarm(gn_channel_t *ch, int fd);

const char *gn_channel_name(const gn_channel_t *ch);
unsigned gn_channel_capacity(const gn_channel_t *ch);
size_t gn_channel_size(gn_channel_t *ch);
int gn_channel_closed(gn_channel_t *ch);
/* Channels in the registry (for tests). */
size_t gn_channel_count(void);
/* One channel's name (cut to fit) and how many messages wait in it. */
#define GN_CHANNEL_DEPTH_NAME 64
typedef struct {
    char name[GN_CHANNEL_DEPTH_NAME];
    size_t name_len;
    size_t depth;
} gn_channel_depth_t;
/* The `max` deepest channels of the registry, deepest first, into out;
 * returns how many (for the metrics endpoint: a bounded set of labels). */
size_t gn_channel_depths(gn_channel_depth_t *out, size_t max);

#endif
