#include "server/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int threshold = GN_LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};

void gn_log_set_level(int level)
{
    atomic_store(&threshold, level);
}

int gn_log_enabled(int level)
{
    return level >= atomic_load(&threshold);
}

int gn_log_parse_level(const char *name)
{
    for (int i = 0; i <= GN_LOG_CRITICAL; i++) {
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    }
    return -1;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return; /* nowhere to report a failing log */
        p += w;
        n -= (size_t)w;
    }
}

void gn_log(int level, const char *fmt, ...)
{
    if (!gn_log_enabled(level))
        return;
    char line[2048];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(line, sizeof(line), "[%Y-%m-%d %H:%M:%S +0000] ", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, "[%d] [%s] ", (int)getpid(), level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m : sizeof(line) - n - 2;
    line[n++] = '\n';
    write_all(STDERR_FILENO, line, n);
}

void gn_log_access(const char *line, unsigned long len)
{
    write_all(STDOUT_FILENO, line, len);
}

void gn_log_raw(int level, const char *text, unsigned long len)
{
    if (gn_log_enabled(level))
        write_all(STDERR_FILENO, text, len);
}
