/*
 * Unit tests for src/shared/{codec,store,channel,redis_proto}.c: the plain C under
 * gorgon.shared and gorgon.channel, built with ASan+UBSan (make
 * test-shared-c). Threads hammer the store and channels the way worker
 * interpreters do, without any Python.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "shared/channel.h"
#include "shared/codec.h"
#include "shared/redis_proto.h"
#include "shared/store.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* An encoded str key. */
static void key_of(gn_wbuf_t *w, const char *s)
{
    gn_wbuf_init(w, SIZE_MAX);
    gn_codec_put_data(w, GN_TAG_STR, s, strlen(s));
}

static void int_of(gn_wbuf_t *w, int64_t v)
{
    gn_wbuf_init(w, SIZE_MAX);
    gn_codec_put_int64(w, v);
}

/* The int64 stored at key, or INT64_MIN if missing or not an int64. */
static int64_t get_int(const char *key)
{
    gn_wbuf_t k;
    gn_ref_t ref;
    key_of(&k, key);
    int64_t v = INT64_MIN;
    if (gn_store_get(k.buf, k.len, &ref)) {
        gn_item_t it;
        const uint8_t *p = ref.val;
        if (gn_codec_next(&p, ref.val + ref.len, &it) == 0 && it.tag == GN_TAG_INT)
            v = it.i;
        gn_store_unref(&ref);
    }
    gn_wbuf_free(&k);
    return v;
}

static int set_int(const char *key, int64_t v, double ttl)
{
    gn_wbuf_t k, val;
    key_of(&k, key);
    int_of(&val, v);
    int rc = gn_store_set(k.buf, k.len, val.buf, val.len, ttl, NULL);
    gn_wbuf_free(&k);
    gn_wbuf_free(&val);
    return rc;
}

static int64_t incr(const char *key, int64_t delta)
{
    gn_wbuf_t k, d;
    gn_ref_t ref;
    key_of(&k, key);
    int_of(&d, delta);
    int rc = gn_store_incr(k.buf, k.len, d.buf, d.len, 0, &ref, NULL);
    gn_wbuf_free(&k);
    gn_wbuf_free(&d);
    if (rc < 0)
        return INT64_MIN;
    int64_t v;
    memcpy(&v, ref.val + 1, 8);
    gn_store_unref(&ref);
    return v;
}

/* ---- codec -------------------------------------------------------------- */

static void test_codec_roundtrip(void)
{
    gn_wbuf_t w;
    gn_wbuf_init(&w, SIZE_MAX);
    gn_codec_put_tuple(&w, 5);
    gn_codec_put_tag(&w, GN_TAG_NONE);
    gn_codec_put_int64(&w, -42);
    gn_codec_put_float(&w, 2.5);
    gn_codec_put_data(&w, GN_TAG_BYTES, "ab\0c", 4);
    gn_codec_put_tuple(&w, 0);
    ASSERT_TRUE(gn_codec_valid(w.buf, w.len));
    ASSERT_EQ(gn_codec_value_len(w.buf, w.buf + w.len), w.len);
    const uint8_t *p = w.buf, *end = w.buf + w.len;
    gn_item_t it;
    ASSERT_EQ(gn_codec_next(&p, end, &it), 0);
    ASSERT_EQ(it.tag, GN_TAG_TUPLE);
    ASSERT_EQ(it.len, 5);
    ASSERT_EQ(gn_codec_next(&p, end, &it), 0);
    ASSERT_EQ(it.tag, GN_TAG_NONE);
    ASSERT_EQ(gn_codec_next(&p, end, &it), 0);
    ASSERT_EQ(it.i, -42);
    ASSERT_EQ(gn_codec_next(&p, end, &it), 0);
    ASSERT_TRUE(it.tag == GN_TAG_FLOAT && it.f == 2.5);
    ASSERT_EQ(gn_codec_next(&p, end, &it), 0);
    ASSERT_TRUE(it.tag == GN_TAG_BYTES && it.len == 4 && memcmp(it.data, "ab\0c", 4) == 0);
    ASSERT_EQ(gn_codec_next(&p, end, &it), 0);
    ASSERT_TRUE(it.tag == GN_TAG_TUPLE && it.len == 0 && p == end);
    gn_wbuf_free(&w);
}

/* Grows past the inline storage and stops at the limit. */
static void test_codec_wbuf_limit(void)
{
    gn_wbuf_t w;
    gn_wbuf_init(&w, 1000);
    char big[600] = {0};
    ASSERT_EQ(gn_wbuf_put(&w, big, 600), 0);
    ASSERT_EQ(gn_wbuf_put(&w, big, 400), 0);
    errno = 0;
    ASSERT_EQ(gn_wbuf_put(&w, big, 1), -1);
    ASSERT_EQ(errno, E2BIG);
    ASSERT_EQ(w.len, 1000);
    gn_wbuf_free(&w);
}

static void test_codec_bigint_canonical(void)
{
    gn_wbuf_t w;
    /* -1 written with 12 bytes of sign: canonical form is the int64 -1. */
    uint8_t minus_one[12];
    memset(minus_one, 0xFF, sizeof(minus_one));
    gn_wbuf_init(&w, SIZE_MAX);
    gn_codec_put_bigint(&w, minus_one, sizeof(minus_one));
    ASSERT_EQ(w.len, 9);
    ASSERT_EQ(w.buf[0], GN_TAG_INT);
    gn_wbuf_free(&w);
    /* 2**63 needs 9 bytes: a big int. */
    uint8_t two63[10] = {0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0};
    gn_wbuf_init(&w, SIZE_MAX);
    gn_codec_put_bigint(&w, two63, sizeof(two63));
    ASSERT_EQ(w.buf[0], GN_TAG_BIGINT);
    ASSERT_EQ(w.len, 1 + 4 + 9);
    ASSERT_TRUE(gn_codec_valid(w.buf, w.len));
    gn_wbuf_free(&w);
    /* A hand-made 'I' of 9 bytes whose top byte is redundant: not canonical. */
    uint8_t bad[14] = {GN_TAG_BIGINT, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0};
    ASSERT_TRUE(!gn_codec_valid(bad, sizeof(bad)));
}

static void check_add(int64_t a, int64_t b, const uint8_t *want, size_t want_len)
{
    gn_wbuf_t x, y, out;
    int_of(&x, a);
    int_of(&y, b);
    gn_wbuf_init(&out, SIZE_MAX);
    CHECK_EQ(gn_codec_int_add(x.buf, x.len, y.buf, y.len, &out), 0);
    if (out.len != want_len || memcmp(out.buf, want, want_len) != 0)
        TEST_FAIL_("%lld + %lld: wrong encoding (%zu bytes)", (long long)a, (long long)b, out.len);
    gn_wbuf_free(&x);
    gn_wbuf_free(&y);
    gn_wbuf_free(&out);
}

static void test_codec_int_add(void)
{
    gn_wbuf_t w;
    int_of(&w, -2);
    check_add(-1, -1, w.buf, w.len);
    gn_wbuf_free(&w);
    int_of(&w, INT64_MIN);
    check_add(INT64_MIN + 5, -5, w.buf, w.len);
    gn_wbuf_free(&w);
    /* INT64_MAX + 1 = 2**63, a big int; 2**63 + -1 comes back to int64. */
    uint8_t two63[9] = {0, 0, 0, 0, 0, 0, 0, 0x80, 0};
    gn_wbuf_init(&w, SIZE_MAX);
    gn_codec_put_bigint(&w, two63, 9);
    check_add(INT64_MAX, 1, w.buf, w.len);
    gn_wbuf_t minus1, back;
    int_of(&minus1, -1);
    gn_wbuf_init(&back, SIZE_MAX);
    ASSERT_EQ(gn_codec_int_add(w.buf, w.len, minus1.buf, minus1.len, &back), 0);
    ASSERT_EQ(back.buf[0], GN_TAG_INT);
    int64_t v;
    memcpy(&v, back.buf + 1, 8);
    ASSERT_EQ(v, INT64_MAX);
    /* INT64_MIN + INT64_MIN = -2**64: 9 bytes 00.. FF. */
    uint8_t m264[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0xFF};
    gn_wbuf_t want;
    gn_wbuf_init(&want, SIZE_MAX);
    gn_codec_put_bigint(&want, m264, 9);
    check_add(INT64_MIN, INT64_MIN, want.buf, want.len);
    /* Not ints. */
    uint8_t none = GN_TAG_NONE;
    ASSERT_EQ(gn_codec_int_add(&none, 1, minus1.buf, minus1.len, &back), -2);
    gn_wbuf_free(&w);
    gn_wbuf_free(&minus1);
    gn_wbuf_free(&back);
    gn_wbuf_free(&want);
}

/* Every strict prefix of a valid value is invalid, read from an exact-size
 * heap copy so ASan sees any read past the end. */
static void test_codec_truncated(void)
{
    gn_wbuf_t w;
    gn_wbuf_init(&w, SIZE_MAX);
    uint8_t big[20];
    memset(big, 0x5A, sizeof(big));
    gn_codec_put_tuple(&w, 3);
    gn_codec_put_bigint(&w, big, sizeof(big));
    gn_codec_put_data(&w, GN_TAG_STR, "hello", 5);
    gn_codec_put_tuple(&w, 1);
    gn_codec_put_float(&w, 1.0);
    ASSERT_TRUE(gn_codec_valid(w.buf, w.len));
    for (size_t n = 0; n < w.len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, w.buf, n);
        if (gn_codec_valid(copy, n))
            TEST_FAIL_("prefix of %zu bytes accepted", n);
        free(copy);
    }
    /* Trailing bytes, an unknown tag, a tuple count larger than the input. */
    uint8_t extra[10] = {GN_TAG_NONE, GN_TAG_NONE};
    ASSERT_TRUE(!gn_codec_valid(extra, 2));
    uint8_t unknown = 'z';
    ASSERT_TRUE(!gn_codec_valid(&unknown, 1));
    uint8_t lie[5] = {GN_TAG_TUPLE, 0xFF, 0xFF, 0xFF, 0x7F};
    ASSERT_TRUE(!gn_codec_valid(lie, sizeof(lie)));
    gn_wbuf_free(&w);
}

static void test_codec_depth(void)
{
    gn_wbuf_t w;
    gn_wbuf_init(&w, SIZE_MAX);
    for (int i = 0; i < GN_CODEC_MAX_DEPTH; i++)
        gn_codec_put_tuple(&w, 1);
    gn_codec_put_tag(&w, GN_TAG_NONE);
    ASSERT_TRUE(gn_codec_valid(w.buf, w.len));
    gn_wbuf_free(&w);
    gn_wbuf_init(&w, SIZE_MAX);
    for (int i = 0; i < GN_CODEC_MAX_DEPTH + 1; i++)
        gn_codec_put_tuple(&w, 1);
    gn_codec_put_tag(&w, GN_TAG_NONE);
    ASSERT_TRUE(!gn_codec_valid(w.buf, w.len));
    gn_wbuf_free(&w);
}

/* ---- store -------------------------------------------------------------- */

static void test_store_basic(void)
{
    ASSERT_EQ(gn_store_len(), 0);
    ASSERT_EQ(set_int("a", 1, 0), 0);
    ASSERT_EQ(set_int("b", 2, 0), 0);
    ASSERT_EQ(set_int("a", 3, 0), 0);
    ASSERT_EQ(get_int("a"), 3);
    ASSERT_EQ(get_int("b"), 2);
    ASSERT_EQ(get_int("c"), INT64_MIN);
    ASSERT_EQ(gn_store_len(), 2);
    gn_wbuf_t k;
    key_of(&k, "a");
    ASSERT_TRUE(gn_store_contains(k.buf, k.len));
    ASSERT_EQ(gn_store_delete(k.buf, k.len), 1);
    ASSERT_EQ(gn_store_delete(k.buf, k.len), 0);
    ASSERT_TRUE(!gn_store_contains(k.buf, k.len));
    gn_wbuf_free(&k);
    /* Many keys: the table grows. */
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "k%d", i);
        ASSERT_EQ(set_int(name, i, 0), 0);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "k%d", i);
        CHECK_EQ(get_int(name), i);
    }
    gn_wbuf_t keys;
    gn_wbuf_init(&keys, SIZE_MAX);
    ASSERT_EQ(gn_store_keys(&keys), 5001);
    gn_wbuf_free(&keys);
    gn_store_clear();
    ASSERT_EQ(gn_store_len(), 0);
    ASSERT_EQ(gn_store_used_bytes(), 0);
}

/* TTLs of half a second: what is read right after a set must not have
 * expired yet even on a loaded machine under ASan; a sleep is never shorter
 * than asked, so the reads after it are past the expiry. */
static void test_store_ttl(void)
{
    ASSERT_EQ(set_int("short", 1, 0.5), 0);
    ASSERT_EQ(set_int("long", 2, 60), 0);
    ASSERT_EQ(get_int("short"), 1);
    sleep_s(0.7);
    ASSERT_EQ(get_int("short"), INT64_MIN);
    ASSERT_EQ(get_int("long"), 2);
    ASSERT_EQ(gn_store_len(), 1);
    /* incr keeps an existing expiry; a missing key gets the ttl given. */
    gn_wbuf_t k, d;
    gn_ref_t ref;
    key_of(&k, "ctr");
    int_of(&d, 1);
    ASSERT_EQ(gn_store_incr(k.buf, k.len, d.buf, d.len, 0.5, &ref, NULL), 0);
    gn_store_unref(&ref);
    ASSERT_EQ(gn_store_incr(k.buf, k.len, d.buf, d.len, 0, &ref, NULL), 0);
    gn_store_unref(&ref);
    ASSERT_EQ(get_int("ctr"), 2);
    sleep_s(0.7);
    ASSERT_EQ(get_int("ctr"), INT64_MIN);
    gn_wbuf_free(&k);
    gn_wbuf_free(&d);
    /* A key nobody reads again still gives its bytes back. */
    size_t before = gn_store_used_bytes();
    set_int("gone", 1, 0.01);
    sleep_s(0.03);
    ASSERT_EQ(gn_store_len(), 1);
    ASSERT_EQ(gn_store_used_bytes(), before);
}

static int set_blob(const char *key, size_t n, char fill, gn_store_err_t *err, double ttl)
{
    gn_wbuf_t k, v;
    key_of(&k, key);
    gn_wbuf_init(&v, SIZE_MAX);
    char *data = malloc(n);
    memset(data, fill, n);
    gn_codec_put_data(&v, GN_TAG_BYTES, data, n);
    free(data);
    int rc = gn_store_set(k.buf, k.len, v.buf, v.len, ttl, err);
    gn_wbuf_free(&k);
    gn_wbuf_free(&v);
    return rc;
}

static char blob_fill(const char *key)
{
    gn_wbuf_t k;
    gn_ref_t ref;
    key_of(&k, key);
    char c = 0;
    if (gn_store_get(k.buf, k.len, &ref)) {
        c = (char)ref.val[ref.len - 1];
        gn_store_unref(&ref);
    }
    gn_wbuf_free(&k);
    return c;
}

static void test_store_bound(void)
{
    gn_store_set_max_bytes(20000);
    gn_store_err_t err;
    char name[32];
    int stored = 0;
    for (;; stored++) {
        snprintf(name, sizeof(name), "k%d", stored);
        if (set_blob(name, 1000, 'a', &err, 0) < 0)
            break;
    }
    ASSERT_EQ(err.code, E2BIG);
    ASSERT_EQ(err.max, 20000);
    ASSERT_TRUE(stored >= 15 && stored < 20);
    ASSERT_TRUE(gn_store_used_bytes() <= 20000);
    /* Nothing stored before is lost, and a failed replacement keeps the old value. */
    for (int i = 0; i < stored; i++) {
        snprintf(name, sizeof(name), "k%d", i);
        CHECK_EQ(blob_fill(name), 'a');
    }
    ASSERT_EQ(set_blob("k0", 5000, 'b', &err, 0), -1);
    ASSERT_EQ(blob_fill("k0"), 'a');
    ASSERT_EQ(set_blob("k0", 500, 'c', &err, 0), 0); /* shrinking always fits */
    ASSERT_EQ(blob_fill("k0"), 'c');
    /* Deleting gives room back; expired keys are reclaimed when full. */
    gn_store_clear();
    ASSERT_EQ(gn_store_used_bytes(), 0);
    for (int i = 0; i < stored; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        ASSERT_EQ(set_blob(name, 1000, 'd', &err, 0.02), 0);
    }
    sleep_s(0.04);
    ASSERT_EQ(set_blob("after", 5000, 'e', &err, 0), 0);
    ASSERT_EQ(blob_fill("after"), 'e');
}

static void test_store_cas_setdefault(void)
{
    gn_wbuf_t k, none, one, two;
    key_of(&k, "c");
    gn_wbuf_init(&none, SIZE_MAX);
    gn_codec_put_tag(&none, GN_TAG_NONE);
    int_of(&one, 1);
    int_of(&two, 2);
    /* A missing key counts as None. */
    ASSERT_EQ(gn_store_cas(k.buf, k.len, one.buf, one.len, two.buf, two.len, 0, NULL), 0);
    ASSERT_EQ(gn_store_cas(k.buf, k.len, none.buf, none.len, one.buf, one.len, 0, NULL), 1);
    ASSERT_EQ(gn_store_cas(k.buf, k.len, none.buf, none.len, two.buf, two.len, 0, NULL), 0);
    ASSERT_EQ(gn_store_cas(k.buf, k.len, one.buf, one.len, two.buf, two.len, 0, NULL), 1);
    ASSERT_EQ(get_int("c"), 2);
    gn_ref_t ref;
    ASSERT_EQ(gn_store_setdefault(k.buf, k.len, one.buf, one.len, 0, &ref, NULL), 0);
    ASSERT_TRUE(ref.len == two.len && memcmp(ref.val, two.buf, two.len) == 0);
    gn_store_unref(&ref);
    /* incr on a value that is not an int: EINVAL, and the value is handed back. */
    gn_store_err_t err;
    ASSERT_EQ(gn_store_set(k.buf, k.len, none.buf, none.len, 0, NULL), 0);
    ASSERT_EQ(gn_store_incr(k.buf, k.len, one.buf, one.len, 0, &ref, &err), -1);
    ASSERT_EQ(err.code, EINVAL);
    ASSERT_EQ(ref.val[0], GN_TAG_NONE);
    gn_store_unref(&ref);
    gn_wbuf_free(&k);
    gn_wbuf_free(&none);
    gn_wbuf_free(&one);
    gn_wbuf_free(&two);
}

#define THREADS 4
#define PER_THREAD 50000

static void *incr_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++)
        incr("hot", 1);
    return NULL;
}

/* A compare-and-set loop, as applications write one. */
static void *cas_worker(void *arg)
{
    (void)arg;
    gn_wbuf_t k;
    key_of(&k, "cas");
    for (int i = 0; i < PER_THREAD / 5; i++) {
        for (;;) {
            int64_t cur = get_int("cas");
            gn_wbuf_t old, new_;
            int_of(&old, cur);
            int_of(&new_, cur + 1);
            int rc = gn_store_cas(k.buf, k.len, old.buf, old.len, new_.buf, new_.len, 0, NULL);
            gn_wbuf_free(&old);
            gn_wbuf_free(&new_);
            if (rc == 1)
                break;
        }
    }
    gn_wbuf_free(&k);
    return NULL;
}

static void test_store_threads(void)
{
    pthread_t t[THREADS * 2];
    set_int("cas", 0, 0);
    for (int i = 0; i < THREADS; i++) {
        pthread_create(&t[i], NULL, incr_worker, NULL);
        pthread_create(&t[THREADS + i], NULL, cas_worker, NULL);
    }
    for (int i = 0; i < THREADS * 2; i++)
        pthread_join(t[i], NULL);
    ASSERT_EQ(get_int("hot"), THREADS * PER_THREAD);
    ASSERT_EQ(get_int("cas"), THREADS * (PER_THREAD / 5));
}

/* Readers keep references while writers replace and delete: the value a
 * reader holds stays intact (ASan would see a use after free). The writers
 * run until both readers are done, and each reader goes on until it has held
 * RW_HITS values and seen the value change RW_CHANGES times, so the test
 * cannot pass on reads that missed the writers (RW_MAX_TRIES only bounds how
 * long a failure takes). */
#define RW_HITS 5000
#define RW_CHANGES 200
#define RW_MAX_TRIES 50000000L
static atomic_int stop_flag;

typedef struct {
    long bad, hits, changes;
} rw_result_t;

static void *rw_writer(void *arg)
{
    intptr_t id = (intptr_t)arg;
    for (int i = 0; !atomic_load(&stop_flag); i++) {
        set_blob("shared", 64 + (size_t)(i % 200), (char)('a' + id), NULL, 0);
        if (i % 7 == 0) {
            gn_wbuf_t k;
            key_of(&k, "shared");
            gn_store_delete(k.buf, k.len);
            gn_wbuf_free(&k);
        }
    }
    return NULL;
}

static void *rw_reader(void *arg)
{
    rw_result_t *res = arg;
    gn_wbuf_t k;
    key_of(&k, "shared");
    size_t last_len = 0;
    char last_fill = 0;
    for (long i = 0; i < RW_MAX_TRIES && (res->hits < RW_HITS || res->changes < RW_CHANGES); i++) {
        gn_ref_t ref;
        if (!gn_store_get(k.buf, k.len, &ref))
            continue;
        res->hits++;
        res->bad += !gn_codec_valid(ref.val, ref.len);
        for (size_t j = 6; j < ref.len; j++)
            res->bad += ref.val[j] != ref.val[5];
        char fill = ref.len > 5 ? ref.val[5] : 0;
        res->changes += ref.len != last_len || fill != last_fill;
        last_len = ref.len;
        last_fill = fill;
        gn_store_unref(&ref);
    }
    gn_wbuf_free(&k);
    return NULL;
}

static void test_store_readers_writers(void)
{
    pthread_t w[2], r[2];
    rw_result_t res[2] = {{0, 0, 0}, {0, 0, 0}};
    atomic_store(&stop_flag, 0);
    for (intptr_t i = 0; i < 2; i++) {
        pthread_create(&w[i], NULL, rw_writer, (void *)i);
        pthread_create(&r[i], NULL, rw_reader, &res[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i], NULL);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(res[i].bad, 0);
        ASSERT_TRUE(res[i].hits >= RW_HITS);
        ASSERT_TRUE(res[i].changes >= RW_CHANGES);
    }
}

/* ---- channels ----------------------------------------------------------- */

static gn_msg_t *msg_int(int64_t v)
{
    gn_wbuf_t w;
    int_of(&w, v);
    gn_msg_t *m = gn_msg_new(w.buf, w.len);
    gn_wbuf_free(&w);
    return m;
}

static int64_t msg_value(gn_msg_t *m)
{
    int64_t v;
    memcpy(&v, m->data + 1, 8);
    free(m);
    return v;
}

static void test_channel_fifo(void)
{
    gn_channel_t *ch = gn_channel_open("fifo", 4, 3);
    ASSERT_TRUE(ch != NULL);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(gn_channel_send(ch, msg_int(i), 0), GN_CH_OK);
    gn_msg_t *extra = msg_int(99), *m;
    ASSERT_EQ(gn_channel_send(ch, extra, 0), GN_CH_FULL);
    ASSERT_EQ(gn_channel_size(ch), 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(gn_channel_recv(ch, &m, 0), GN_CH_OK);
        ASSERT_EQ(msg_value(m), i);
    }
    ASSERT_EQ(gn_channel_recv(ch, &m, 0), GN_CH_EMPTY);
    /* Around the ring a few times. */
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(gn_channel_send(ch, msg_int(i), 0), GN_CH_OK);
        ASSERT_EQ(gn_channel_recv(ch, &m, 0), GN_CH_OK);
        ASSERT_EQ(msg_value(m), i);
    }
    ASSERT_EQ(gn_channel_send(ch, extra, 0), GN_CH_OK);
    gn_channel_close(ch);
    ASSERT_EQ(gn_channel_send(ch, msg_int(1), 0) , GN_CH_CLOSED);
    ASSERT_EQ(gn_channel_recv(ch, &m, 0), GN_CH_OK); /* drained after close */
    ASSERT_EQ(msg_value(m), 99);
    ASSERT_EQ(gn_channel_recv(ch, &m, -1), GN_CH_CLOSED);
    gn_channel_release(ch);
}

static void test_channel_timeouts(void)
{
    gn_channel_t *ch = gn_channel_open("t", 1, 1);
    gn_msg_t *m;
    double t0 = now_s();
    ASSERT_EQ(gn_channel_recv(ch, &m, 0.1), GN_CH_EMPTY);
    double took = now_s() - t0;
    ASSERT_TRUE(took >= 0.099 && took < 5.0); /* waited, and returned */
    ASSERT_EQ(gn_channel_send(ch, msg_int(1), 0.1), GN_CH_OK);
    gn_msg_t *two = msg_int(2);
    t0 = now_s();
    ASSERT_EQ(gn_channel_send(ch, two, 0.1), GN_CH_FULL);
    took = now_s() - t0;
    ASSERT_TRUE(took >= 0.099 && took < 5.0); /* waited, and returned */
    free(two);
    gn_channel_release(ch);
}

static void *close_later(void *arg)
{
    sleep_s(0.05);
    gn_channel_close(arg);
    return NULL;
}

/* close() wakes receivers and senders that wait for ever. */
static void test_channel_close_wakes(void)
{
    gn_channel_t *ch = gn_channel_open("c", 1, 1);
    pthread_t t;
    gn_msg_t *m;
    pthread_create(&t, NULL, close_later, ch);
    ASSERT_EQ(gn_channel_recv(ch, &m, -1), GN_CH_CLOSED);
    pthread_join(t, NULL);
    gn_channel_release(ch);
    ch = gn_channel_open("s", 1, 1);
    ASSERT_EQ(gn_channel_send(ch, msg_int(1), 0), GN_CH_OK);
    gn_msg_t *blocked = msg_int(2);
    pthread_create(&t, NULL, close_later, ch);
    ASSERT_EQ(gn_channel_send(ch, blocked, -1), GN_CH_CLOSED);
    pthread_join(t, NULL);
    free(blocked);
    gn_channel_release(ch);
}

#define MP_PRODUCERS 4
#define MP_CONSUMERS 4
#define MP_EACH 25000
#define MP_TOTAL (MP_PRODUCERS * MP_EACH)

static atomic_int seen[MP_TOTAL];
static atomic_int producers_left;

static void *mp_producer(void *arg)
{
    intptr_t id = (intptr_t)arg;
    gn_channel_t *ch = gn_channel_open("mpmc", 4, 0);
    for (int i = 0; i < MP_EACH; i++) {
        gn_msg_t *m = msg_int(id * MP_EACH + i);
        if (gn_channel_send(ch, m, -1) != GN_CH_OK)
            free(m);
    }
    if (atomic_fetch_sub(&producers_left, 1) == 1)
        gn_channel_close(ch); /* the last producer closes */
    gn_channel_release(ch);
    return NULL;
}

static void *mp_consumer(void *arg)
{
    (void)arg;
    gn_channel_t *ch = gn_channel_open("mpmc", 4, 0);
    gn_msg_t *m;
    long n = 0;
    while (gn_channel_recv(ch, &m, -1) == GN_CH_OK) {
        atomic_fetch_add(&seen[msg_value(m)], 1);
        n++;
    }
    gn_channel_release(ch);
    return (void *)n;
}

static void test_channel_mpmc(void)
{
    gn_channel_t *ch = gn_channel_open("mpmc", 4, 64); /* small: senders wait */
    pthread_t p[MP_PRODUCERS], c[MP_CONSUMERS];
    atomic_store(&producers_left, MP_PRODUCERS);
    for (intptr_t i = 0; i < MP_CONSUMERS; i++)
        pthread_create(&c[i], NULL, mp_consumer, NULL);
    for (intptr_t i = 0; i < MP_PRODUCERS; i++)
        pthread_create(&p[i], NULL, mp_producer, (void *)i);
    long got = 0;
    for (int i = 0; i < MP_PRODUCERS; i++)
        pthread_join(p[i], NULL);
    for (int i = 0; i < MP_CONSUMERS; i++) {
        void *n;
        pthread_join(c[i], &n);
        got += (long)n;
    }
    ASSERT_EQ(got, MP_TOTAL);
    for (int i = 0; i < MP_TOTAL; i++) {
        if (atomic_load(&seen[i]) != 1) {
            TEST_FAIL_("message %d seen %d times", i, atomic_load(&seen[i]));
            return;
        }
    }
    gn_channel_release(ch);
    ASSERT_EQ(gn_channel_count(), 0);
}

static void test_channel_registry(void)
{
    gn_channel_t *a = gn_channel_open("reg", 3, 0), *b = gn_channel_open("reg", 3, 0);
    ASSERT_TRUE(a != NULL && a == b);
    ASSERT_EQ(gn_channel_capacity(a), GN_CHANNEL_DEFAULT_CAPACITY);
    errno = 0;
    ASSERT_TRUE(gn_channel_open("reg", 3, 7) == NULL);
    ASSERT_EQ(errno, EINVAL);
    gn_channel_t *other = gn_channel_open("reg2", 4, 7);
    ASSERT_TRUE(other != a);
    ASSERT_EQ(gn_channel_count(), 2);
    gn_channel_release(other);
    ASSERT_EQ(gn_channel_count(), 1);
    /* A channel holding messages outlives its last holder. */
    ASSERT_EQ(gn_channel_send(a, msg_int(5), 0), GN_CH_OK);
    gn_channel_release(a);
    gn_channel_release(b);
    ASSERT_EQ(gn_channel_count(), 1);
    gn_channel_t *again = gn_channel_open("reg", 3, 0);
    gn_msg_t *m;
    ASSERT_EQ(gn_channel_recv(again, &m, 0), GN_CH_OK);
    ASSERT_EQ(msg_value(m), 5);
    gn_channel_release(again);
    ASSERT_EQ(gn_channel_count(), 0);
}

static int readable(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void test_channel_arm(void)
{
    gn_channel_t *ch = gn_channel_open("arm", 3, 1);
    int fd1, fd2, fd;
    ASSERT_EQ(gn_channel_arm(ch, 0, &fd1), GN_CH_OK);
    ASSERT_EQ(gn_channel_arm(ch, 0, &fd2), GN_CH_OK);
    ASSERT_TRUE(!readable(fd1, 20));
    ASSERT_EQ(gn_channel_send(ch, msg_int(1), 0), GN_CH_OK);
    ASSERT_TRUE(readable(fd1, 0) && readable(fd2, 0)); /* every waiter wakes */
    gn_channel_disarm(ch, fd1);
    gn_channel_disarm(ch, fd2);
    /* Not empty: a receiver need not wait; full: a sender must. */
    ASSERT_EQ(gn_channel_arm(ch, 0, &fd), GN_CH_READY);
    ASSERT_EQ(gn_channel_arm(ch, 1, &fd), GN_CH_OK);
    gn_msg_t *m;
    ASSERT_EQ(gn_channel_recv(ch, &m, 0), GN_CH_OK);
    free(m);
    ASSERT_TRUE(readable(fd, 0));
    gn_channel_disarm(ch, fd);
    /* close() wakes them all; a disarmed fd is never written again. */
    ASSERT_EQ(gn_channel_arm(ch, 0, &fd), GN_CH_OK);
    gn_channel_close(ch);
    ASSERT_TRUE(readable(fd, 0));
    gn_channel_disarm(ch, fd);
    ASSERT_EQ(gn_channel_arm(ch, 0, &fd), GN_CH_READY);
    gn_channel_release(ch);
}

/* ---- the Redis backend's URL and value forms ---------------------------- */

static int str_is(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static void url_ok(const char *url, const char *host, int port, const char *path, const char *user,
                   const char *pw, int db)
{
    gn_redis_url_t u;
    char err[200] = "";
    if (gn_redis_url_parse(url, &u, err, sizeof(err)) < 0) {
        TEST_FAIL_("%s: refused: %s", url, err);
        return;
    }
    if (!str_is(u.host, host) || u.port != port || !str_is(u.path, path) || !str_is(u.user, user) ||
        !str_is(u.password, pw) || u.db != db)
        TEST_FAIL_("%s: host %s port %d path %s user %s password %s db %d", url, u.host ? u.host : "-", u.port,
                   u.path ? u.path : "-", u.user ? u.user : "-", u.password ? u.password : "-", u.db);
    gn_redis_url_free(&u);
}

static void url_bad(const char *url, const char *why)
{
    gn_redis_url_t u;
    char err[200] = "";
    if (gn_redis_url_parse(url, &u, err, sizeof(err)) == 0) {
        TEST_FAIL_("%s: accepted", url);
        gn_redis_url_free(&u);
    } else if (strstr(err, why) == NULL) {
        TEST_FAIL_("%s: said '%s', not '%s'", url, err, why);
    }
}

static void url_tls(const char *url, const char *ca, const char *cert, const char *key)
{
    gn_redis_url_t u;
    char err[200] = "";
    if (gn_redis_url_parse(url, &u, err, sizeof(err)) < 0) {
        TEST_FAIL_("%s: refused: %s", url, err);
        return;
    }
    if (!u.tls || !str_is(u.host, "h") || !str_is(u.ca, ca) || !str_is(u.cert, cert) || !str_is(u.key, key))
        TEST_FAIL_("%s: tls %d host %s ca %s cert %s key %s", url, u.tls, u.host ? u.host : "-", u.ca ? u.ca : "-",
                   u.cert ? u.cert : "-", u.key ? u.key : "-");
    gn_redis_url_free(&u);
}

static void test_redis_url(void)
{
    url_ok("redis://localhost", "localhost", 6379, NULL, NULL, NULL, 0);
    url_ok("redis://127.0.0.1:7000/3", "127.0.0.1", 7000, NULL, NULL, NULL, 3);
    url_ok("redis://[::1]:6380/0", "::1", 6380, NULL, NULL, NULL, 0);
    url_ok("redis://[::1]", "::1", 6379, NULL, NULL, NULL, 0);
    url_ok("redis://u:p%40ss@h:1/2", "h", 1, NULL, "u", "p@ss", 2);
    url_ok("redis://:secret@h", "h", 6379, NULL, NULL, "secret", 0);
    url_ok("redis://secret@h/", "h", 6379, NULL, NULL, "secret", 0);
    url_ok("unix:///run/redis.sock", NULL, 0, "/run/redis.sock", NULL, NULL, 0);
    url_ok("unix:///tmp/r.sock?db=5", NULL, 0, "/tmp/r.sock", NULL, NULL, 5);
    url_bad("http://h", "expected redis://");
    url_bad("rediss://h?x=1", "?ca=FILE");
    url_bad("rediss://h?ca=a&ca=b", "each once");
    url_bad("rediss://h?ca=", "empty");
    url_bad("rediss://h?cert=c", "together");
    url_bad("redis://h?ca=a", "unexpected");
    url_tls("rediss://h", NULL, NULL, NULL);
    url_tls("rediss://u:p@h:7/2?ca=/etc/c%20a.pem", "/etc/c a.pem", NULL, NULL);
    url_tls("rediss://h/?cert=/c.pem&key=/k.pem&ca=/ca.pem", "/ca.pem", "/c.pem", "/k.pem");
    url_bad("redis://", "no host");
    url_bad("redis://h:0", "port");
    url_bad("redis://h:65536", "port");
    url_bad("redis://h:12x", "port");
    url_bad("redis://h/db1", "database");
    url_bad("redis://[::1", "unclosed");
    url_bad("redis://[::1]x", "junk");
    url_bad("redis://u:%zz@h", "escape");
    url_bad("redis://u:%00@h", "escape");
    url_bad("redis://u:%4@h", "escape");
    url_bad("unix://run/redis.sock", "absolute");
    url_bad("unix:///r.sock?x=1", "db=N");
}

/* value -> wire -> value gives the same bytes; ints go as decimal text. */
static void wire_roundtrip(gn_wbuf_t *v, const char *text)
{
    char tmp[24];
    const uint8_t *wire;
    size_t n = gn_redis_wire(v->buf, v->len, tmp, &wire);
    if (text && (n != strlen(text) || memcmp(wire, text, n) != 0))
        TEST_FAIL_("wire form '%.*s', not '%s'", (int)n, (const char *)wire, text);
    if (!text && (n != v->len || wire != v->buf))
        TEST_FAIL_("a non-int value was not kept as it is");
    gn_wbuf_t back;
    gn_wbuf_init(&back, SIZE_MAX);
    CHECK_EQ(gn_redis_unwire(wire, n, &back), 0);
    if (back.len != v->len || memcmp(back.buf, v->buf, v->len) != 0)
        TEST_FAIL_("the value did not come back from its wire form");
    gn_wbuf_free(&back);
    gn_wbuf_free(v);
}

static void test_redis_wire(void)
{
    static const int64_t ints[] = {0, 1, -1, 42, INT64_MAX, INT64_MIN};
    static const char *const texts[] = {"0", "1", "-1", "42", "9223372036854775807", "-9223372036854775808"};
    gn_wbuf_t v;
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        gn_wbuf_init(&v, SIZE_MAX);
        gn_codec_put_int64(&v, ints[i]);
        wire_roundtrip(&v, texts[i]);
    }
    uint8_t big[9] = {0, 0, 0, 0, 0, 0, 0, 0, 1}; /* 2**64 */
    gn_wbuf_init(&v, SIZE_MAX);
    gn_codec_put_bigint(&v, big, sizeof(big));
    wire_roundtrip(&v, NULL);
    gn_wbuf_init(&v, SIZE_MAX);
    gn_codec_put_tuple(&v, 3);
    gn_codec_put_int64(&v, 7);
    gn_codec_put_data(&v, GN_TAG_STR, "12", 2);
    gn_codec_put_float(&v, 1.5);
    wire_roundtrip(&v, NULL);
    gn_wbuf_init(&v, SIZE_MAX);
    gn_codec_put_tag(&v, GN_TAG_NONE);
    wire_roundtrip(&v, "N");

    /* What Redis may hold that gorgon did not write is refused. */
    static const char *const bad[] = {"", "-", "-0", "007", "1x", "+1", "99999999999999999999",
                                      "9223372036854775808", "-9223372036854775809", "hello", "s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gn_wbuf_t out;
        gn_wbuf_init(&out, SIZE_MAX);
        if (gn_redis_unwire((const uint8_t *)bad[i], strlen(bad[i]), &out) != -2)
            TEST_FAIL_("'%s' was taken for a value", bad[i]);
        gn_wbuf_free(&out);
    }
    /* An int in codec form would be a second form of the same value. */
    gn_wbuf_init(&v, SIZE_MAX);
    gn_codec_put_int64(&v, 5);
    gn_wbuf_t out;
    gn_wbuf_init(&out, SIZE_MAX);
    CHECK_EQ(gn_redis_unwire(v.buf, v.len, &out), -2);
    gn_wbuf_free(&out);
    gn_wbuf_free(&v);
}

int main(int argc, char **argv)
{
    static const test_entry_t tests[] = {
        TEST_ENTRY(codec_roundtrip),
        TEST_ENTRY(codec_wbuf_limit),
        TEST_ENTRY(codec_bigint_canonical),
        TEST_ENTRY(codec_int_add),
        TEST_ENTRY(codec_truncated),
        TEST_ENTRY(codec_depth),
        TEST_ENTRY(store_basic),
        TEST_ENTRY(store_ttl),
        TEST_ENTRY(store_bound),
        TEST_ENTRY(store_cas_setdefault),
        TEST_ENTRY(store_threads),
        TEST_ENTRY(store_readers_writers),
        TEST_ENTRY(channel_fifo),
        TEST_ENTRY(channel_timeouts),
        TEST_ENTRY(channel_close_wakes),
        TEST_ENTRY(channel_mpmc),
        TEST_ENTRY(channel_registry),
        TEST_ENTRY(channel_arm),
        TEST_ENTRY(redis_url),
        TEST_ENTRY(redis_wire),
    };
    return test_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
