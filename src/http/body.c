#include "http/body.h"
#include "http/fault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void gn_body_init(gn_body_t *b)
{
    b->mem = NULL;
    b->cap = b->len = 0;
    b->fd = -1;
}

void gn_body_reset(gn_body_t *b)
{
    free(b->mem);
    if (b->fd >= 0)
        close(b->fd);
    gn_body_init(b);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* O_TMPFILE gives a file with no name, so nothing is left behind on a crash. */
static int open_spill_file(void)
{
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || *dir == '\0')
        dir = "/tmp";
    int fd = GN_FAIL(GN_FAIL_ERRNO(EMFILE), open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
    if (fd < 0 && strcmp(dir, "/tmp") != 0)
        fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    return fd;
}

static int spill(gn_body_t *b)
{
    int fd = open_spill_file();
    if (fd < 0)
        return -1;
    if (write_all(fd, b->mem, b->len) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    free(b->mem);
    b->mem = NULL;
    b->cap = 0;
    b->fd = fd;
    return 0;
}

static int grow(gn_body_t *b, size_t need)
{
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    char *p = GN_FAIL(NULL, realloc(b->mem, cap));
    if (p == NULL) {
        errno = ENOMEM;
        return -1;
    }
    b->mem = p;
    b->cap = cap;
    return 0;
}

int gn_body_append(gn_body_t *b, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (b->fd < 0 && b->len + n > GN_BODY_MEM_MAX && spill(b) < 0)
        return -1;
    if (b->fd >= 0) {
        if (write_all(b->fd, p, n) < 0)
            return -1;
    } else {
        if (b->len + n > b->cap && grow(b, b->len + n) < 0)
            return -1;
        memcpy(b->mem + b->len, p, n);
    }
    b->len += n;
    return 0;
}

ssize_t gn_body_read(const gn_body_t *b, size_t off, char *dst, size_t n)
{
    if (off >= b->len)
        return 0;
    if (n > b->len - off)
        n = b->len - off;
    if (b->fd < 0) {
        memcpy(dst, b->mem + off, n);
        return (ssize_t)n;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(b->fd, dst + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

const char *gn_body_mem(const gn_body_t *b, size_t off)
{
    if (b->fd >= 0 || off > b->len)
        return NULL;
    return b->mem != NULL ? b->mem + off : ""; /* no arithmetic on NULL */
}
