/*
 * The binary form of shareable values (gorgon.shared and channels): plain
 * bytes that any interpreter can turn back into its own objects. Pure C: the
 * Python side lives in pycodec.c.
 *
 * A value is a tag byte and a payload:
 *   'N' None, 'T' True, 'F' False
 *   'i' int that fits int64: 8 bytes, native order
 *   'I' any other int: u32 length, then two's complement little-endian bytes,
 *       minimal length (always more than 8)
 *   'f' float: 8 bytes (a native double)
 *   's' str (UTF-8, surrogates passed through), 'b' bytes: u32 length + data
 *   't' tuple: u32 count, then that many values
 * Bytes never leave the process, so native order is fine. The form is
 * canonical (one encoding per value and type), so equal bytes mean equal
 * values of equal types: compare-and-set and key lookup compare bytes.
 */
#ifndef GN_SHARED_CODEC_H
#define GN_SHARED_CODEC_H

#include <stddef.h>
#include <stdint.h>

enum {
    GN_TAG_NONE = 'N',
    GN_TAG_TRUE = 'T',
    GN_TAG_FALSE = 'F',
    GN_TAG_INT = 'i',
    GN_TAG_BIGINT = 'I',
    GN_TAG_FLOAT = 'f',
    GN_TAG_STR = 's',
    GN_TAG_BYTES = 'b',
    GN_TAG_TUPLE = 't',
};

/* Deepest tuple nesting accepted (the decoder recurses once per level). */
#define GN_CODEC_MAX_DEPTH 64

/* A growable output buffer that starts in inline storage, so encoding a key
 * or a small value costs no allocation. */
typedef struct {
    uint8_t *buf;
    size_t len;
    size_t cap;
    size_t limit; /* most bytes it may hold; SIZE_MAX for none */
    uint8_t inline_[256];
} gn_wbuf_t;

/* Starts an empty buffer that refuses to grow beyond limit bytes. */
void gn_wbuf_init(gn_wbuf_t *w, size_t limit);
/* Frees heap storage; the buffer may be initialised again. */
void gn_wbuf_free(gn_wbuf_t *w);
/* Appends n bytes. Returns 0, or -1 with errno ENOMEM or E2BIG (limit). */
int gn_wbuf_put(gn_wbuf_t *w, const void *p, size_t n);

/* Each appends one encoded value (or a tuple header); 0, or -1 as above. */
int gn_codec_put_tag(gn_wbuf_t *w, uint8_t tag); /* None, True, False */
int gn_codec_put_int64(gn_wbuf_t *w, int64_t v);
/* An int given as n two's complement little-endian bytes (n > 0); written
 * in canonical form ('i' when it fits int64). */
int gn_codec_put_bigint(gn_wbuf_t *w, const uint8_t *le, size_t n);
int gn_codec_put_float(gn_wbuf_t *w, double v);
/* 's' or 'b' with its data; n must fit in 32 bits (else E2BIG). */
int gn_codec_put_data(gn_wbuf_t *w, uint8_t tag, const void *p, size_t n);
int gn_codec_put_tuple(gn_wbuf_t *w, uint32_t count);

/* One decoded item. For 'I', 's', 'b': data/len point into the input; for
 * 't': len is the item count and the items follow in the input. */
typedef struct {
    uint8_t tag;
    int64_t i;
    double f;
    const uint8_t *data;
    size_t len;
} gn_item_t;

/* Reads the next item at *p (before end) and moves *p past its header and
 * data (not past a tuple's items). Returns 0, or -1 if the bytes are not a
 * well-formed item. */
int gn_codec_next(const uint8_t **p, const uint8_t *end, gn_item_t *out);

/* Whether buf[0..len) holds exactly one well-formed value, nested at most
 * GN_CODEC_MAX_DEPTH deep, in canonical form. */
int gn_codec_valid(const uint8_t *buf, size_t len);

/* Length of the one value that starts at p, or 0 if it is malformed. */
size_t gn_codec_value_len(const uint8_t *p, const uint8_t *end);

/* Whether an encoded value is an int ('i' or 'I'). */
int gn_codec_is_int(const uint8_t *p, size_t len);

/* Writes the encoded sum of two encoded ints to out (any size: int64 sums
 * that overflow become big ints). Returns 0, -1 with errno (ENOMEM, E2BIG),
 * or -2 if either input is not an int. */
int gn_codec_int_add(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, gn_wbuf_t *out);

#endif
