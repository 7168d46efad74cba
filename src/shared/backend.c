#include "shared/backend.h"

#include <errno.h>
#include <stdatomic.h>

#include "shared/redis.h"

/* store.c's operations with the backend's signatures. */

static int local_get(const uint8_t *key, size_t klen, gn_ref_t *out, gn_store_err_t *err)
{
    (void)err;
    return gn_store_get(key, klen, out);
}

static int local_contains(const uint8_t *key, size_t klen, gn_store_err_t *err)
{
    (void)err;
    return gn_store_contains(key, klen);
}

static int local_del(const uint8_t *key, size_t klen, gn_store_err_t *err)
{
    (void)err;
    return gn_store_delete(key, klen);
}

static long local_keys(gn_wbuf_t *out, gn_store_err_t *err)
{
    long n = gn_store_keys(out);
    if (n < 0)
        err->code = ENOMEM;
    return n;
}

static long local_len(gn_store_err_t *err)
{
    (void)err;
    return (long)gn_store_len();
}

static int local_clear(gn_store_err_t *err)
{
    (void)err;
    gn_store_clear();
    return 0;
}

static int local_stats(gn_backend_stats_t *out, gn_store_err_t *err)
{
    (void)err;
    out->keys = gn_store_len();
    out->used_bytes = gn_store_used_bytes();
    out->max_bytes = gn_store_max_bytes();
    return 0;
}

const gn_backend_t gn_backend_local = {
    .name = "local",
    .get = local_get,
    .contains = local_contains,
    .set = gn_store_set,
    .del = local_del,
    .setdefault = gn_store_setdefault,
    .cas = gn_store_cas,
    .incr = gn_store_incr,
    .keys = local_keys,
    .len = local_len,
    .clear = local_clear,
    .stats = local_stats,
};

/* Written once before any worker starts (or by a script before it uses
 * gorgon.shared); atomic only so that a late switch is not a data race. */
static _Atomic(const gn_backend_t *) current = &gn_backend_local;

const gn_backend_t *gn_backend(void)
{
    return atomic_load_explicit(&current, memory_order_relaxed);
}

void gn_backend_use(const gn_backend_t *b)
{
    atomic_store(&current, b);
}

const char *gn_backend_error(void)
{
    return gn_redis_error();
}
