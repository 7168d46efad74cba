#include "http/stats.h"

/* Status code (100..599) -> its label slot; 0: counted by class. */
static const unsigned char status_slot[500] = {
#define X(code) [(code) - 100] = GN_S_##code,
    GN_STATUS_CODES
#undef X
};

static const double bucket_bounds[GN_M_BUCKETS - 1] = GN_M_BUCKET_BOUNDS;

int gn_stat_status(int status)
{
    if (status < 100 || status > 599)
        return GN_S_5XX; /* not a code a client could read: counted as a server error */
    int slot = status_slot[status - 100];
    return slot ? slot : GN_S_1XX + status / 100 - 1;
}

void gn_stat_request(gn_stats_t *s, int method, int status, double seconds)
{
    gn_stat_add(&s->requests[method][gn_stat_status(status)], 1);
    unsigned b = 0;
    while (b < GN_M_BUCKETS - 1 && seconds > bucket_bounds[b])
        b++;
    gn_stat_add(&s->duration[b], 1);
    gn_stat_add(&s->duration_us, seconds > 0 ? (unsigned long long)(seconds * 1e6 + 0.5) : 0);
    gn_stat_add(&s->served, 1);
}
