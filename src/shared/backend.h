/*
 * Where gorgon.shared keeps its data: the operations pyapi.c calls, by
 * pointer, on one of two backends with the same contracts.
 *
 * - gn_backend_local: the process-wide store (store.c), the default. Its
 *   operations are store.c's own, so choosing it costs one indirect call.
 * - gn_backend_redis (redis.c): a Redis or Valkey named by --shared-url.
 *
 * Every operation takes encoded keys and values (codec.h). Results: as in
 * store.h, with -1 and err filled on failure. err->code beyond store.h's:
 *   EIO       the server cannot be reached or refused the call (the message
 *             is gn_backend_error()); the app sees gorgon.Unavailable
 *   ENOSPC    Redis is at its maxmemory (MemoryError, like the local bound)
 *   EOVERFLOW incr beyond int64, which Redis's INCRBY cannot do
 *   EPROTO    the key holds something gorgon did not write
 * The backend is chosen once, before any worker starts (gn_backend_use).
 */
#ifndef GN_SHARED_BACKEND_H
#define GN_SHARED_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "shared/codec.h"
#include "shared/store.h"

typedef struct {
    size_t keys;
    size_t used_bytes;
    size_t max_bytes;
} gn_backend_stats_t;

typedef struct gn_backend {
    const char *name; /* "local" or "redis" */
    /* 1 with out filled, 0 if missing, -1 on error */
    int (*get)(const uint8_t *key, size_t klen, gn_ref_t *out, gn_store_err_t *err);
    int (*contains)(const uint8_t *key, size_t klen, gn_store_err_t *err);
    int (*set)(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen, double ttl,
               gn_store_err_t *err);
    int (*del)(const uint8_t *key, size_t klen, gn_store_err_t *err);
    int (*setdefault)(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen, double ttl,
                      gn_ref_t *out, gn_store_err_t *err);
    int (*cas)(const uint8_t *key, size_t klen, const uint8_t *expected, size_t elen, const uint8_t *val,
               size_t vlen, double ttl, gn_store_err_t *err);
    int (*incr)(const uint8_t *key, size_t klen, const uint8_t *delta, size_t dlen, double ttl, gn_ref_t *out,
                gn_store_err_t *err);
    long (*keys)(gn_wbuf_t *out, gn_store_err_t *err);
    long (*len)(gn_store_err_t *err);
    int (*clear)(gn_store_err_t *err);
    int (*stats)(gn_backend_stats_t *out, gn_store_err_t *err);
} gn_backend_t;

extern const gn_backend_t gn_backend_local;

/* The backend in use (gn_backend_local until gn_backend_use). */
const gn_backend_t *gn_backend(void);
void gn_backend_use(const gn_backend_t *b);
/* The calling thread's last EIO/EPROTO message. */
const char *gn_backend_error(void);

#endif
