/*
 * The process-wide key/value store behind gorgon.shared: plain C data that
 * every interpreter of the process reaches, so a worker that is restarted
 * finds what was stored. Keys and values are encoded values (codec.h).
 *
 * Locking: the table is split into shards, each with its own mutex, held
 * only to look up, link or unlink entries and to copy bytes; no Python code
 * runs and no GIL is taken under it. Entries are immutable and reference
 * counted, so a reader decodes a value after the lock is released while a
 * writer may already have replaced it.
 *
 * Size: every entry counts its key, value and header against a process-wide
 * bound (gn_store_set_max_bytes); a write that would pass it fails and
 * leaves what was stored untouched.
 */
#ifndef GN_SHARED_STORE_H
#define GN_SHARED_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "shared/codec.h"

#define GN_STORE_DEFAULT_MAX_BYTES ((size_t)64 << 20)

typedef struct gn_entry gn_entry_t;

/* A reference to a stored value, valid until gn_store_unref. A value that
 * came from Redis is a heap copy instead (owned). */
typedef struct {
    gn_entry_t *entry;
    const uint8_t *val;
    size_t len;
    void *owned;
} gn_ref_t;

/* Why a write failed (errno-style codes in gn_store_err_t.code). */
typedef struct {
    int code;      /* E2BIG: the bound; ENOMEM: malloc; EINVAL: not an int; the
                      Redis backend adds EIO (unreachable), ENOSPC (its
                      maxmemory), EOVERFLOW (incr past int64) and EPROTO (a
                      value gorgon did not write); see backend.h */
    size_t need;   /* bytes the write would have added */
    size_t used;   /* bytes in use when it failed */
    size_t max;    /* the bound */
} gn_store_err_t;

/* Sets the bound on the store's total size (thread-safe, any time; a lower
 * bound than what is in use only refuses further growth). */
void gn_store_set_max_bytes(size_t max);
size_t gn_store_max_bytes(void);
/* Bytes in use (entries, keys, values) and live keys. */
size_t gn_store_used_bytes(void);

/* Looks key up; 1 with out filled (the caller must gn_store_unref), 0 if
 * missing or expired. */
int gn_store_get(const uint8_t *key, size_t klen, gn_ref_t *out);
/* Whether key is present and not expired. */
int gn_store_contains(const uint8_t *key, size_t klen);
void gn_store_unref(gn_ref_t *ref);

/* ttl in seconds; 0 (or less) means the key never expires. */
int gn_store_set(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen, double ttl,
                 gn_store_err_t *err);
/* 1 if the key was there (and live), else 0. */
int gn_store_delete(const uint8_t *key, size_t klen);

/* Stores val if key is missing; either way *out refers to the value now
 * stored. Returns 0, or -1 with err filled. */
int gn_store_setdefault(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen, double ttl,
                        gn_ref_t *out, gn_store_err_t *err);

/* Atomically replaces the value with new if it equals expected byte for
 * byte; a missing key equals an encoded None. Returns 1 if replaced, 0 if
 * not, -1 with err filled. */
int gn_store_cas(const uint8_t *key, size_t klen, const uint8_t *expected, size_t elen, const uint8_t *val,
                 size_t vlen, double ttl, gn_store_err_t *err);

/* Atomically adds the encoded int delta to the int at key (a missing key
 * counts as 0, and is created with ttl; an existing key keeps its expiry).
 * Returns 0 with *out referring to the new value, or -1 with err filled
 * (code EINVAL: the stored value is not an int; *out then refers to it). */
int gn_store_incr(const uint8_t *key, size_t klen, const uint8_t *delta, size_t dlen, double ttl,
                  gn_ref_t *out, gn_store_err_t *err);

/* Appends the encoded keys of every live entry, back to back, to out.
 * Returns the number of keys, or -1 (ENOMEM). */
long gn_store_keys(gn_wbuf_t *out);
/* Number of live keys. */
size_t gn_store_len(void);
/* Removes every key. */
void gn_store_clear(void);

#endif
