/* The countdown behind GN_FAIL (http/fault.h); test builds only. */
#include "http/fault.h"

#ifdef GN_FAULT
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_long countdown, armed, fired;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Once, at the first site or accept of the process (inherited by worker
 * processes, which fork after it): the start's countdown. */
static void read_start(void)
{
    const char *v = getenv("GN_FAULT_HTTP_START");
    if (v)
        atomic_store(&countdown, atol(v));
}

int gn_http_fault_hit(const char *file, int line)
{
    pthread_once(&once, read_start);
    if (atomic_load_explicit(&countdown, memory_order_relaxed) <= 0 || atomic_fetch_sub(&countdown, 1) != 1)
        return 0;
    atomic_fetch_add(&fired, 1);
    fprintf(stderr, "fault injected: %s:%d\n", file, line);
    return 1;
}

void gn_http_fault_accepted(void)
{
    pthread_once(&once, read_start);
    atomic_store(&countdown, atomic_exchange(&armed, 0));
}

long gn_http_fault_arm(long n)
{
    atomic_store(&armed, n);
    return atomic_load(&fired);
}
#else
typedef int gn_http_fault_unused; /* ISO C: a translation unit declares something */
#endif
