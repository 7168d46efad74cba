/*
 * gorgon.shared and channels over Redis or Valkey (--shared-url), on
 * hiredis. Plain C: no Python here; blocking calls are made with the
 * caller's GIL released by the caller.
 *
 * Connections: one per thread (so one per worker, and one per extra thread
 * an app starts that uses gorgon.shared), made on first use, closed when the
 * thread ends. A failed connect or call drops the connection; the next
 * attempt waits a backoff that doubles from 50 ms to 2 s, and calls made
 * meanwhile fail at once. Every connect and command is bounded by the
 * timeout given to gn_redis_configure. The first failure of an outage is
 * logged once per process, and so is the recovery. Round trips, failures
 * and reconnections are counted for --metrics-bind (server/metrics.h).
 *
 * Keys: <prefix>k:<encoded key> for the store, <prefix>q:<name> (a list) and
 * <prefix>c:<name> (a hash: cap, closed) for each channel.
 */
#ifndef GN_SHARED_REDIS_H
#define GN_SHARED_REDIS_H

#include <stddef.h>
#include <stdint.h>

struct gn_backend;
extern const struct gn_backend gn_backend_redis;

/* Parses url and keeps it with prefix and timeout (seconds) for every
 * connection made afterwards. Returns 0, or -1 with a reason in err. */
int gn_redis_configure(const char *url, const char *prefix, double timeout, char *err, size_t errlen);
/* Connects from the calling thread and PINGs; 0, or -1 with the reason in
 * err. The connection is closed again (forked children must not share it). */
int gn_redis_check(char *err, size_t errlen);
/* The server's address for messages ("host:port" or "unix:///path"). */
const char *gn_redis_where(void);
/* Whether this build speaks rediss:// (hiredis with libhiredis_ssl). */
int gn_redis_tls_built(void);
/* The calling thread's last error message ("" if none). */
const char *gn_redis_error(void);

/* ---- channels (lists) ---- */

enum { GN_RCH_OK = 0, GN_RCH_EMPTY = 1, GN_RCH_FULL = 2, GN_RCH_CLOSED = 3, GN_RCH_ERROR = -1 };

/* Makes the channel's hash if missing and returns its capacity in *cap
 * (capacity 0: the existing one or def). GN_RCH_OK, GN_RCH_ERROR, or -2 when
 * capacity differs from the existing one (*cap: the existing one). */
int gn_redis_ch_open(const char *name, size_t len, unsigned capacity, unsigned def, unsigned *cap);
/* One attempt, no waiting: GN_RCH_OK, _FULL, _CLOSED or _ERROR. */
int gn_redis_ch_send(const char *name, size_t len, const uint8_t *msg, size_t mlen);
/* Waits up to wait seconds (0: not at all) for a message. GN_RCH_OK with
 * *out a malloc'd copy (*olen bytes), _EMPTY, _CLOSED or _ERROR. */
int gn_redis_ch_recv(const char *name, size_t len, double wait, uint8_t **out, size_t *olen);
int gn_redis_ch_close(const char *name, size_t len);
/* Queued messages (or -1), and whether closed (or -1). */
long gn_redis_ch_len(const char *name, size_t len);
int gn_redis_ch_closed(const char *name, size_t len);

#endif
