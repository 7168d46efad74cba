#include "shared/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Sixteen shards, picked by the hash's top bits: workers touching different
 * keys rarely wait for each other. */
#define SHARD_BITS 4
#define N_SHARDS (1u << SHARD_BITS)
#define INITIAL_BUCKETS 16
#define SWEEP_PER_WRITE 2

struct gn_entry {
    gn_entry_t *next;
    uint64_t hash;
    int64_t expires; /* CLOCK_MONOTONIC ns; 0 = never */
    atomic_uint refs;  /* 1 for the table while linked, 1 per gn_ref_t */
    uint32_t klen;
    size_t vlen;
    uint8_t data[]; /* the key, then the value */
};

typedef struct {
    pthread_mutex_t mu;
    gn_entry_t **buckets; /* NULL until the first insert */
    size_t mask;          /* buckets - 1 */
    size_t count;         /* linked entries, expired ones not yet swept included */
    size_t sweep;         /* next bucket the incremental sweep looks at */
} shard_t;

static shard_t shards[N_SHARDS];
static atomic_size_t used_bytes;
static atomic_size_t max_bytes = GN_STORE_DEFAULT_MAX_BYTES;
static uint64_t hash_key[2];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* ---- setup, hashing, time ---------------------------------------------- */

static void init_once(void)
{
    for (unsigned i = 0; i < N_SHARDS; i++)
        pthread_mutex_init(&shards[i].mu, NULL);
    /* A random key keeps clients that choose keys (rate limiting by client
     * address, say) from forcing collisions. */
    if (getrandom(hash_key, sizeof(hash_key), GRND_NONBLOCK) != (ssize_t)sizeof(hash_key)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        hash_key[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15u ^ (uint64_t)(uintptr_t)&ts;
        hash_key[1] = (uint64_t)ts.tv_sec * 0xC2B2AE3D27D4EB4Fu;
    }
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                                  \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                     \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                     \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                                  \
    } while (0)

/* SipHash-1-3, as CPython uses for str and bytes. */
static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t k0 = hash_key[0], k1 = hash_key[1];
    uint64_t v0 = k0 ^ 0x736f6d6570736575u, v1 = k1 ^ 0x646f72616e646f6du;
    uint64_t v2 = k0 ^ 0x6c7967656e657261u, v3 = k1 ^ 0x7465646279746573u;
    uint64_t b = (uint64_t)n << 56;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t m = 0;
        for (int j = 0; j < 8; j++)
            m |= (uint64_t)p[i + j] << (8 * j);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (int j = 0; i < n; i++, j++)
        b |= (uint64_t)p[i] << (8 * j);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t expiry_for(double ttl)
{
    if (!(ttl > 0))
        return 0;
    /* Past ~292 years the monotonic clock cannot reach it: never. */
    if (ttl > 9.0e9)
        return INT64_MAX;
    return now_ns() + (int64_t)(ttl * 1e9) + 1;
}

/* *now is read from the clock once, and only if some entry has a ttl. */
static int is_expired(const gn_entry_t *e, int64_t *now)
{
    if (e->expires == 0)
        return 0;
    if (*now == 0)
        *now = now_ns();
    return e->expires <= *now;
}

/* ---- entries and size accounting ---------------------------------------- */

static size_t entry_size(const gn_entry_t *e)
{
    return sizeof(*e) + e->klen + e->vlen;
}

static gn_entry_t *entry_new(uint64_t h, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                             int64_t expires)
{
    gn_entry_t *e = malloc(sizeof(*e) + klen + vlen);
    if (e == NULL)
        return NULL;
    e->next = NULL;
    e->hash = h;
    e->expires = expires;
    atomic_init(&e->refs, 1);
    e->klen = (uint32_t)klen;
    e->vlen = vlen;
    memcpy(e->data, key, klen);
    if (vlen)
        memcpy(e->data + klen, val, vlen);
    return e;
}

static void entry_unref(gn_entry_t *e)
{
    if (e && atomic_fetch_sub(&e->refs, 1) == 1)
        free(e);
}

static void make_ref(gn_entry_t *e, gn_ref_t *out)
{
    atomic_fetch_add(&e->refs, 1);
    out->entry = e;
    out->val = e->data + e->klen;
    out->len = e->vlen;
    out->owned = NULL;
}

/* Accounts a replacement of old_size bytes by new_size; refuses growth past
 * the bound. Lock-free because shards account into one total. */
static int reserve(size_t new_size, size_t old_size)
{
    if (new_size <= old_size) {
        atomic_fetch_sub(&used_bytes, old_size - new_size);
        return 0;
    }
    size_t delta = new_size - old_size, max = atomic_load(&max_bytes);
    size_t cur = atomic_load(&used_bytes);
    do {
        if (cur > max || delta > max - cur)
            return -1;
    } while (!atomic_compare_exchange_weak(&used_bytes, &cur, cur + delta));
    return 0;
}

static void fill_err(gn_store_err_t *err, int code, size_t need)
{
    if (err == NULL)
        return;
    err->code = code;
    err->need = need;
    err->used = atomic_load(&used_bytes);
    err->max = atomic_load(&max_bytes);
}

/* Entries unlinked under a shard lock are freed after it is released. */
static void release_list(gn_entry_t *garbage)
{
    while (garbage) {
        gn_entry_t *next = garbage->next;
        entry_unref(garbage);
        garbage = next;
    }
}

/* ---- the table (callers hold the shard's lock) -------------------------- */

static shard_t *shard_for(uint64_t h)
{
    return &shards[h >> (64 - SHARD_BITS)];
}

static void unlink_at(shard_t *s, gn_entry_t **link, gn_entry_t **garbage)
{
    gn_entry_t *e = *link;
    *link = e->next;
    s->count--;
    atomic_fetch_sub(&used_bytes, entry_size(e));
    e->next = *garbage;
    *garbage = e;
}

/* The link that points at key's live entry, or NULL; an expired entry met
 * on the way is unlinked, so no reader ever sees it again. */
static gn_entry_t **find(shard_t *s, uint64_t h, const uint8_t *key, size_t klen, int64_t *now,
                         gn_entry_t **garbage)
{
    if (s->buckets == NULL)
        return NULL;
    gn_entry_t **link = &s->buckets[h & s->mask];
    for (gn_entry_t *e; (e = *link) != NULL; link = &e->next) {
        if (e->hash != h || e->klen != klen || memcmp(e->data, key, klen) != 0)
            continue;
        if (is_expired(e, now)) {
            unlink_at(s, link, garbage);
            return NULL;
        }
        return link;
    }
    return NULL;
}

static void sweep_bucket(shard_t *s, size_t b, int64_t *now, gn_entry_t **garbage)
{
    gn_entry_t **link = &s->buckets[b];
    while (*link) {
        if (is_expired(*link, now))
            unlink_at(s, link, garbage);
        else
            link = &(*link)->next;
    }
}

/* A few buckets per write, so keys that nobody reads again still expire
 * and give their bytes back. */
static void sweep_some(shard_t *s, int64_t *now, gn_entry_t **garbage)
{
    for (int i = 0; i < SWEEP_PER_WRITE && s->buckets; i++) {
        sweep_bucket(s, s->sweep & s->mask, now, garbage);
        s->sweep = (s->sweep + 1) & s->mask;
    }
}

static void sweep_shard(shard_t *s, int64_t *now, gn_entry_t **garbage)
{
    for (size_t b = 0; s->buckets && b <= s->mask; b++)
        sweep_bucket(s, b, now, garbage);
}

/* Doubles the buckets when entries outnumber them; a failed allocation only
 * leaves the chains longer. */
static void maybe_grow(shard_t *s)
{
    if (s->count <= s->mask + 1)
        return;
    size_t n = (s->mask + 1) * 2;
    gn_entry_t **nb = calloc(n, sizeof(*nb));
    if (nb == NULL)
        return;
    for (size_t b = 0; b <= s->mask; b++) {
        for (gn_entry_t *e = s->buckets[b], *next; e; e = next) {
            next = e->next;
            e->next = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->mask = n - 1;
}

/* Links e in place of *link (a replacement) or at its bucket's head. */
static int link_entry(shard_t *s, gn_entry_t **link, gn_entry_t *e, gn_entry_t **garbage)
{
    if (link) {
        gn_entry_t *old = *link;
        e->next = old->next;
        *link = e;
        old->next = *garbage;
        *garbage = old;
        return 0;
    }
    if (s->buckets == NULL) {
        s->buckets = calloc(INITIAL_BUCKETS, sizeof(*s->buckets));
        if (s->buckets == NULL)
            return -1;
        s->mask = INITIAL_BUCKETS - 1;
    }
    e->next = s->buckets[e->hash & s->mask];
    s->buckets[e->hash & s->mask] = e;
    s->count++;
    maybe_grow(s);
    return 0;
}

/* Reserves room for e (in place of *link's entry, if any) and links it.
 * Returns 0, or -1 with errno E2BIG (bound) or ENOMEM. */
static int install(shard_t *s, gn_entry_t **link, gn_entry_t *e, int64_t *now, gn_entry_t **garbage)
{
    size_t old_size = link ? entry_size(*link) : 0;
    if (reserve(entry_size(e), old_size) < 0) {
        errno = E2BIG;
        return -1;
    }
    if (link_entry(s, link, e, garbage) < 0) {
        reserve(0, entry_size(e) - old_size); /* give the reservation back */
        errno = ENOMEM;
        return -1;
    }
    sweep_some(s, now, garbage);
    return 0;
}

/* Drops every expired entry of every shard (one shard locked at a time). */
static void sweep_all(void)
{
    int64_t now = 0;
    for (unsigned i = 0; i < N_SHARDS; i++) {
        gn_entry_t *garbage = NULL;
        pthread_mutex_lock(&shards[i].mu);
        sweep_shard(&shards[i], &now, &garbage);
        pthread_mutex_unlock(&shards[i].mu);
        release_list(garbage);
    }
}

/* ---- public operations -------------------------------------------------- */

void gn_store_set_max_bytes(size_t max)
{
    atomic_store(&max_bytes, max);
}

size_t gn_store_max_bytes(void)
{
    return atomic_load(&max_bytes);
}

size_t gn_store_used_bytes(void)
{
    return atomic_load(&used_bytes);
}

int gn_store_get(const uint8_t *key, size_t klen, gn_ref_t *out)
{
    pthread_once(&once, init_once);
    uint64_t h = hash_bytes(key, klen);
    shard_t *s = shard_for(h);
    gn_entry_t *garbage = NULL;
    int64_t now = 0;
    pthread_mutex_lock(&s->mu);
    gn_entry_t **link = find(s, h, key, klen, &now, &garbage);
    if (link)
        make_ref(*link, out);
    pthread_mutex_unlock(&s->mu);
    release_list(garbage);
    return link != NULL;
}

int gn_store_contains(const uint8_t *key, size_t klen)
{
    gn_ref_t ref;
    if (!gn_store_get(key, klen, &ref))
        return 0;
    gn_store_unref(&ref);
    return 1;
}

void gn_store_unref(gn_ref_t *ref)
{
    entry_unref(ref->entry);
    free(ref->owned);
    ref->entry = NULL;
    ref->owned = NULL;
}

/* What set, setdefault and cas share: a new entry built outside the lock,
 * then `decide` under the lock says whether to install it. */
typedef enum { DECIDE_INSTALL, DECIDE_KEEP } decision_t;
typedef decision_t (*decide_fn)(gn_entry_t *old, void *arg);

static int write_entry(gn_entry_t *e, decide_fn decide, void *arg, gn_ref_t *out, gn_store_err_t *err)
{
    shard_t *s = shard_for(e->hash);
    for (int attempt = 0;; attempt++) {
        gn_entry_t *garbage = NULL;
        int64_t now = 0;
        pthread_mutex_lock(&s->mu);
        gn_entry_t **link = find(s, e->hash, e->data, e->klen, &now, &garbage);
        int rc = 0;
        if (decide(link ? *link : NULL, arg) == DECIDE_KEEP) {
            if (out && link)
                make_ref(*link, out);
            rc = 1;
        } else if (install(s, link, e, &now, &garbage) == 0) {
            if (out)
                make_ref(e, out);
            rc = 2;
        }
        int saved = errno;
        pthread_mutex_unlock(&s->mu);
        release_list(garbage);
        if (rc == 1)
            entry_unref(e); /* not installed: the caller's entry goes */
        if (rc)
            return rc == 2;
        /* Over the bound: expired keys elsewhere may free enough. Once. */
        if (saved != E2BIG || attempt > 0) {
            fill_err(err, saved, entry_size(e));
            entry_unref(e);
            return -1;
        }
        sweep_all();
    }
}

static decision_t always_install(gn_entry_t *old, void *arg)
{
    (void)old, (void)arg;
    return DECIDE_INSTALL;
}

static decision_t install_if_missing(gn_entry_t *old, void *arg)
{
    (void)arg;
    return old ? DECIDE_KEEP : DECIDE_INSTALL;
}

typedef struct {
    const uint8_t *expected;
    size_t elen;
} cas_arg_t;

static decision_t install_if_equal(gn_entry_t *old, void *arg)
{
    const cas_arg_t *c = arg;
    if (old == NULL)
        return c->elen == 1 && c->expected[0] == GN_TAG_NONE ? DECIDE_INSTALL : DECIDE_KEEP;
    if (old->vlen == c->elen && memcmp(old->data + old->klen, c->expected, c->elen) == 0)
        return DECIDE_INSTALL;
    return DECIDE_KEEP;
}

static gn_entry_t *new_for_write(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                                 double ttl, gn_store_err_t *err)
{
    pthread_once(&once, init_once);
    gn_entry_t *e = NULL;
    if (klen <= UINT32_MAX)
        e = entry_new(hash_bytes(key, klen), key, klen, val, vlen, expiry_for(ttl));
    if (e == NULL)
        fill_err(err, ENOMEM, sizeof(*e) + klen + vlen);
    return e;
}

int gn_store_set(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen, double ttl,
                 gn_store_err_t *err)
{
    gn_entry_t *e = new_for_write(key, klen, val, vlen, ttl, err);
    if (e == NULL)
        return -1;
    return write_entry(e, always_install, NULL, NULL, err) < 0 ? -1 : 0;
}

int gn_store_setdefault(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen, double ttl,
                        gn_ref_t *out, gn_store_err_t *err)
{
    gn_entry_t *e = new_for_write(key, klen, val, vlen, ttl, err);
    if (e == NULL)
        return -1;
    return write_entry(e, install_if_missing, NULL, out, err) < 0 ? -1 : 0;
}

int gn_store_cas(const uint8_t *key, size_t klen, const uint8_t *expected, size_t elen, const uint8_t *val,
                 size_t vlen, double ttl, gn_store_err_t *err)
{
    gn_entry_t *e = new_for_write(key, klen, val, vlen, ttl, err);
    if (e == NULL)
        return -1;
    cas_arg_t c = {expected, elen};
    return write_entry(e, install_if_equal, &c, NULL, err);
}

int gn_store_delete(const uint8_t *key, size_t klen)
{
    pthread_once(&once, init_once);
    uint64_t h = hash_bytes(key, klen);
    shard_t *s = shard_for(h);
    gn_entry_t *garbage = NULL;
    int64_t now = 0;
    pthread_mutex_lock(&s->mu);
    gn_entry_t **link = find(s, h, key, klen, &now, &garbage);
    if (link)
        unlink_at(s, link, &garbage);
    pthread_mutex_unlock(&s->mu);
    release_list(garbage);
    return link != NULL;
}

/* The read-modify-write of incr, under the shard's lock. Returns 0 or -1
 * with errno (EINVAL: not an int, *out then refers to the stored value). */
static int incr_locked(shard_t *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *delta,
                       size_t dlen, double ttl, gn_ref_t *out, gn_entry_t **garbage)
{
    static const uint8_t zero[9] = {GN_TAG_INT};
    int64_t now = 0;
    gn_entry_t **link = find(s, h, key, klen, &now, garbage);
    const uint8_t *cur = link ? (*link)->data + (*link)->klen : zero;
    size_t clen = link ? (*link)->vlen : sizeof(zero);
    gn_wbuf_t sum;
    gn_wbuf_init(&sum, atomic_load(&max_bytes));
    int rc = gn_codec_int_add(cur, clen, delta, dlen, &sum);
    if (rc == -2) {
        make_ref(*link, out);
        errno = EINVAL;
        return -1;
    }
    gn_entry_t *e = NULL;
    if (rc == 0) {
        /* An existing key keeps its expiry, as Redis's INCR does. */
        e = entry_new(h, key, klen, sum.buf, sum.len, link ? (*link)->expires : expiry_for(ttl));
        errno = ENOMEM;
    }
    gn_wbuf_free(&sum);
    if (e == NULL || install(s, link, e, &now, garbage) < 0) {
        free(e);
        return -1;
    }
    make_ref(e, out);
    return 0;
}

int gn_store_incr(const uint8_t *key, size_t klen, const uint8_t *delta, size_t dlen, double ttl,
                  gn_ref_t *out, gn_store_err_t *err)
{
    pthread_once(&once, init_once);
    uint64_t h = hash_bytes(key, klen);
    shard_t *s = shard_for(h);
    for (int attempt = 0;; attempt++) {
        gn_entry_t *garbage = NULL;
        pthread_mutex_lock(&s->mu);
        int rc = incr_locked(s, h, key, klen, delta, dlen, ttl, out, &garbage);
        int saved = errno;
        pthread_mutex_unlock(&s->mu);
        release_list(garbage);
        if (rc == 0)
            return 0;
        if (saved != E2BIG || attempt > 0) {
            fill_err(err, saved, klen + dlen + 1 + sizeof(gn_entry_t));
            return -1;
        }
        sweep_all();
    }
}

long gn_store_keys(gn_wbuf_t *out)
{
    pthread_once(&once, init_once);
    long n = 0;
    int64_t now = 0;
    for (unsigned i = 0; i < N_SHARDS; i++) {
        shard_t *s = &shards[i];
        gn_entry_t *garbage = NULL;
        int rc = 0;
        pthread_mutex_lock(&s->mu);
        sweep_shard(s, &now, &garbage);
        for (size_t b = 0; s->buckets && b <= s->mask && rc == 0; b++) {
            for (gn_entry_t *e = s->buckets[b]; e && rc == 0; e = e->next, n++)
                rc = gn_wbuf_put(out, e->data, e->klen);
        }
        pthread_mutex_unlock(&s->mu);
        release_list(garbage);
        if (rc < 0)
            return -1;
    }
    return n;
}

size_t gn_store_len(void)
{
    pthread_once(&once, init_once);
    size_t n = 0;
    int64_t now = 0;
    for (unsigned i = 0; i < N_SHARDS; i++) {
        gn_entry_t *garbage = NULL;
        pthread_mutex_lock(&shards[i].mu);
        sweep_shard(&shards[i], &now, &garbage);
        n += shards[i].count;
        pthread_mutex_unlock(&shards[i].mu);
        release_list(garbage);
    }
    return n;
}

void gn_store_clear(void)
{
    pthread_once(&once, init_once);
    for (unsigned i = 0; i < N_SHARDS; i++) {
        shard_t *s = &shards[i];
        gn_entry_t *garbage = NULL;
        pthread_mutex_lock(&s->mu);
        for (size_t b = 0; s->buckets && b <= s->mask; b++) {
            while (s->buckets[b])
                unlink_at(s, &s->buckets[b], &garbage);
        }
        pthread_mutex_unlock(&s->mu);
        release_list(garbage);
    }
}
