/*
 * Request body storage. The connection layer reads the whole body before the
 * application is called, so a slow uploader never holds a worker hostage.
 * Small bodies stay in memory; past a threshold the body is spilled to an
 * anonymous temporary file, so a large upload costs disk, not RAM.
 */
#ifndef GN_HTTP_BODY_H
#define GN_HTTP_BODY_H

#include <stddef.h>
#include <sys/types.h>

#define GN_BODY_MEM_MAX (1u << 20) /* spill to a temp file beyond 1 MiB */

typedef struct {
    char *mem;      /* in-memory bytes while fd < 0 */
    size_t cap;
    size_t len;     /* total body bytes stored */
    int fd;         /* temp file once spilled, else -1 */
} gn_body_t;

void gn_body_init(gn_body_t *b);
/* Frees memory and closes the file; the body is empty and reusable after. */
void gn_body_reset(gn_body_t *b);
/* Appends n bytes; returns 0, or -1 with errno set (ENOMEM, ENOSPC...). */
int gn_body_append(gn_body_t *b, const char *p, size_t n);
/*
 * Copies up to n bytes starting at offset off into dst. Returns the number
 * copied (0 at the end), or -1 with errno set.
 */
ssize_t gn_body_read(const gn_body_t *b, size_t off, char *dst, size_t n);
/* Pointer to the bytes at off when the body is in memory, else NULL. */
const char *gn_body_mem(const gn_body_t *b, size_t off);

#endif
