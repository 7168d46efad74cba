#include "server/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "server/log.h"
#include "server/worker.h"
#include "shared/backend.h"
#include "shared/channel.h"
#include "shared/store.h"

/* Worker ids with a gorgon_worker_requests_total series of their own. */
#define MAX_IDS 256
/* Worker processes that publish their gorgon.shared figures. */
#define MAX_PROCS 512
/* gorgon_channel_depth: the deepest channels only, so labels stay bounded. */
#define MAX_CHANNELS 32

enum { MW_FREE, MW_STARTING, MW_SERVING, MW_STOPPING, MW_ENDED };

struct gn_mslot {
    atomic_int used;    /* 0 free, 1 taken (claimed with a compare-and-swap) */
    atomic_int state;   /* MW_* */
    atomic_int stopping;
    atomic_int worker_id;
    atomic_int pid;     /* the process whose worker it is */
    gn_stats_t stats;
};

typedef struct {
    atomic_int pid; /* 0: free */
    atomic_ullong shared_bytes, shared_keys;
} proc_record_t;

/* The shared mapping. */
typedef struct {
    /* Folds in progress: a scrape that saw begun != ended, or begun move,
     * reads again (several processes may fold at once). */
    atomic_ullong fold_begun, fold_ended;
    gn_stats_t retired; /* workers that ended (the gauges stay 0) */
    atomic_ullong retired_by_id[MAX_IDS];
    atomic_ullong restarts[GN_RESTART_REASONS];
    atomic_ullong redis[GN_REDIS_COUNTS]; /* written with atomic adds, from any thread */
    proc_record_t procs[MAX_PROCS];
    int processes; /* workers run in forked processes */
    unsigned n_slots;
    gn_mslot_t slots[];
} region_t;

static region_t *region;
static size_t region_size;

int gn_metrics_enabled(void)
{
    return region != NULL;
}

int gn_metrics__listen(const gn_plan_t *plan); /* metrics_serve.c */

int gn_metrics_open(const gn_plan_t *plan)
{
    if (plan->cfg.metrics_bind == NULL || plan->cfg.metrics_bind[0] == '\0')
        return 0;
    /* Room for every worker, as many replacements beside them, the retired
     * ones still finishing, and worker processes being replaced. */
    unsigned n = (plan->total + 8) * 8;
    region_size = sizeof(region_t) + n * sizeof(gn_mslot_t);
    void *p = mmap(NULL, region_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gn_log(GN_LOG_ERROR, "--metrics-bind: cannot map %zu bytes for the counters: %s", region_size,
               strerror(errno));
        return -1;
    }
    region = p; /* zero-filled: every slot free, every counter 0 */
    region->n_slots = n;
    region->processes = plan->n_procs > 0;
    return gn_metrics__listen(plan);
}

/* ---- slots ---------------------------------------------------------------- */

gn_mslot_t *gn_metrics_slot_take(unsigned worker_id)
{
    if (region == NULL)
        return NULL;
    for (unsigned i = 0; i < region->n_slots; i++) {
        gn_mslot_t *s = &region->slots[i];
        int expected = 0;
        if (atomic_load_explicit(&s->used, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&s->used, &expected, 1)) {
            atomic_store(&s->worker_id, (int)worker_id);
            atomic_store(&s->pid, (int)getpid());
            atomic_store(&s->stopping, 0);
            atomic_store(&s->state, MW_STARTING);
            return s;
        }
    }
    gn_log(GN_LOG_WARNING, "metrics: no free counter slot for worker %u; its requests are not counted", worker_id);
    return NULL;
}

gn_stats_t *gn_metrics_slot_stats(gn_mslot_t *s)
{
    return &s->stats;
}

void gn_metrics_slot_state(gn_mslot_t *s, int worker_state)
{
    if (s == NULL)
        return;
    int st = worker_state == GN_WORKER_STARTING ? MW_STARTING
             : worker_state == GN_WORKER_READY  ? MW_SERVING
             : worker_state == GN_WORKER_STOPPED ? MW_STOPPING
                                                 : MW_ENDED;
    atomic_store(&s->state, st);
}

void gn_metrics_slot_stopping(gn_mslot_t *s)
{
    if (s)
        atomic_store(&s->stopping, 1);
}

static void move_counter(atomic_ullong *to, atomic_ullong *from)
{
    unsigned long long v = atomic_load_explicit(from, memory_order_relaxed);
    if (v) {
        atomic_fetch_add_explicit(to, v, memory_order_release);
        atomic_store_explicit(from, 0, memory_order_release);
    }
}

/* The slot's owner no longer writes to it (its thread or process ended). */
static void fold(gn_mslot_t *s)
{
    /* Sequentially consistent: no write below comes before it. The moves
     * are releases and a scrape's loads acquires, so a scrape that saw one
     * sees this increment when it looks at fold_begun again. */
    atomic_fetch_add(&region->fold_begun, 1);
    gn_stats_t *from = &s->stats, *to = &region->retired;
    int id = atomic_load(&s->worker_id);
    if (id >= 0 && id < MAX_IDS)
        atomic_fetch_add_explicit(&region->retired_by_id[id], atomic_load(&from->served), memory_order_relaxed);
    for (int m = 0; m < GN_M_METHODS; m++) {
        for (int c = 0; c < GN_S_CODES; c++)
            move_counter(&to->requests[m][c], &from->requests[m][c]);
    }
    for (int b = 0; b < GN_M_BUCKETS; b++)
        move_counter(&to->duration[b], &from->duration[b]);
    move_counter(&to->duration_us, &from->duration_us);
    move_counter(&to->served, &from->served);
    move_counter(&to->bytes_in, &from->bytes_in);
    move_counter(&to->bytes_out, &from->bytes_out);
    for (int g = 0; g < GN_CG_STATES; g++)
        atomic_store_explicit(&from->conns[g], 0, memory_order_relaxed);
    atomic_store(&s->state, MW_FREE);
    atomic_fetch_add_explicit(&region->fold_ended, 1, memory_order_release);
    atomic_store(&s->used, 0);
}

void gn_metrics_slot_release(gn_mslot_t *s)
{
    if (s)
        fold(s);
}

void gn_metrics_reap_process(pid_t pid)
{
    if (region == NULL)
        return;
    for (unsigned i = 0; i < region->n_slots; i++) {
        gn_mslot_t *s = &region->slots[i];
        if (atomic_load(&s->used) && atomic_load(&s->pid) == (int)pid)
            fold(s);
    }
    for (unsigned i = 0; i < MAX_PROCS; i++) {
        if (atomic_load(&region->procs[i].pid) == (int)pid)
            atomic_store(&region->procs[i].pid, 0);
    }
}

void gn_metrics_publish_process(void)
{
    static proc_record_t *mine; /* this process's record, once claimed */
    static pid_t mine_for;
    if (region == NULL)
        return;
    pid_t self = getpid();
    if (mine == NULL || mine_for != self) {
        mine = NULL;
        for (unsigned i = 0; i < MAX_PROCS && mine == NULL; i++) {
            int expected = 0;
            if (atomic_compare_exchange_strong(&region->procs[i].pid, &expected, (int)self))
                mine = &region->procs[i];
        }
        mine_for = self;
        if (mine == NULL)
            return;
    }
    atomic_store_explicit(&mine->shared_bytes, gn_store_used_bytes(), memory_order_relaxed);
    atomic_store_explicit(&mine->shared_keys, gn_store_len(), memory_order_relaxed);
}

void gn_metrics_restarted(enum gn_restart_reason why, unsigned n)
{
    if (region && n)
        atomic_fetch_add(&region->restarts[why], n);
}

void gn_metrics_redis(enum gn_redis_count what, unsigned long long n)
{
    if (region)
        atomic_fetch_add_explicit(&region->redis[what], n, memory_order_relaxed);
}

/* ---- a consistent snapshot ------------------------------------------------ */

enum { WS_STARTING, WS_IDLE, WS_BUSY, WS_STOPPING, WS_STATES };

typedef struct {
    unsigned long long requests[GN_M_METHODS][GN_S_CODES];
    unsigned long long duration[GN_M_BUCKETS];
    unsigned long long duration_us, served, bytes_in, bytes_out;
    long long conns[GN_CG_STATES];
    unsigned long long by_id[MAX_IDS];
    unsigned char id_seen[MAX_IDS];
    unsigned long long restarts[GN_RESTART_REASONS];
    unsigned workers[WS_STATES];
    unsigned long long shared_bytes, shared_keys;
    pid_t pids[MAX_PROCS]; /* the worker processes, for the process_* sums */
    unsigned n_pids;
} snapshot_t;

/* Acquire: what a fold wrote is seen with its fold_begun (snapshot()). */
static unsigned long long ld(atomic_ullong *v)
{
    return atomic_load_explicit(v, memory_order_acquire);
}

static void add_stats(snapshot_t *sn, gn_stats_t *s)
{
    for (int m = 0; m < GN_M_METHODS; m++) {
        for (int c = 0; c < GN_S_CODES; c++)
            sn->requests[m][c] += ld(&s->requests[m][c]);
    }
    for (int b = 0; b < GN_M_BUCKETS; b++)
        sn->duration[b] += ld(&s->duration[b]);
    sn->duration_us += ld(&s->duration_us);
    sn->served += ld(&s->served);
    sn->bytes_in += ld(&s->bytes_in);
    sn->bytes_out += ld(&s->bytes_out);
    for (int g = 0; g < GN_CG_STATES; g++)
        sn->conns[g] += atomic_load_explicit(&s->conns[g], memory_order_relaxed);
}

static void note_pid(snapshot_t *sn, pid_t pid)
{
    for (unsigned i = 0; i < sn->n_pids; i++) {
        if (sn->pids[i] == pid)
            return;
    }
    if (sn->n_pids < MAX_PROCS)
        sn->pids[sn->n_pids++] = pid;
}

static void add_slot(snapshot_t *sn, gn_mslot_t *s)
{
    add_stats(sn, &s->stats);
    int id = atomic_load_explicit(&s->worker_id, memory_order_relaxed);
    if (id >= 0 && id < MAX_IDS) {
        sn->by_id[id] += ld(&s->stats.served);
        sn->id_seen[id] = 1;
    }
    int st = atomic_load_explicit(&s->state, memory_order_relaxed);
    int stopping = atomic_load_explicit(&s->stopping, memory_order_relaxed);
    if (st == MW_STARTING)
        sn->workers[WS_STARTING]++;
    else if (st == MW_STOPPING || (st == MW_SERVING && stopping))
        sn->workers[WS_STOPPING]++;
    else if (st == MW_SERVING)
        sn->workers[atomic_load_explicit(&s->stats.conns[GN_CG_RESPONDING], memory_order_relaxed) > 0 ? WS_BUSY
                                                                                                      : WS_IDLE]++;
    if (region->processes)
        note_pid(sn, (pid_t)atomic_load_explicit(&s->pid, memory_order_relaxed));
}

static void read_once(snapshot_t *sn)
{
    memset(sn, 0, sizeof(*sn));
    add_stats(sn, &region->retired);
    for (unsigned i = 0; i < MAX_IDS; i++) {
        sn->by_id[i] = ld(&region->retired_by_id[i]);
        sn->id_seen[i] = sn->by_id[i] > 0;
    }
    for (unsigned i = 0; i < region->n_slots; i++) {
        gn_mslot_t *s = &region->slots[i];
        if (atomic_load_explicit(&s->used, memory_order_relaxed) &&
            atomic_load_explicit(&s->state, memory_order_relaxed) != MW_FREE)
            add_slot(sn, s);
    }
    for (int r = 0; r < GN_RESTART_REASONS; r++)
        sn->restarts[r] = ld(&region->restarts[r]);
}

/* Reads again while a fold moves counters from a slot into the totals, so
 * that none is counted twice or missed. A process that died in the middle
 * of a fold would keep begun != ended: after a while, take what is there. */
static void snapshot(snapshot_t *sn)
{
    for (int tries = 0; tries < 200; tries++) {
        unsigned long long ended = atomic_load_explicit(&region->fold_ended, memory_order_acquire);
        unsigned long long begun = atomic_load_explicit(&region->fold_begun, memory_order_acquire);
        if (begun != ended && tries < 199) {
            struct timespec ts = {0, 500000};
            nanosleep(&ts, NULL);
            continue;
        }
        read_once(sn);
        if (atomic_load_explicit(&region->fold_begun, memory_order_relaxed) == begun || tries == 199)
            return;
    }
}

/* ---- process figures -------------------------------------------------------- */

typedef struct {
    double cpu_seconds;
    unsigned long long rss_bytes, virtual_bytes, fds;
    double start_time;
} proc_figures_t;

/* Adds /proc/<pid>'s figures; 0, or -1 if the process is gone. */
static int add_process(pid_t pid, proc_figures_t *f, int first)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "re");
    if (fp == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields count from
     * the last ')'. Field 3 is the state; 14/15 utime/stime, 22 starttime,
     * 23 vsize, 24 rss (pages). */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long long v[25] = {0};
    int field = 3;
    char *save = NULL;
    for (char *tok = strtok_r(p + 2, " ", &save); tok && field < 25; tok = strtok_r(NULL, " ", &save), field++)
        v[field] = strtoull(tok, NULL, 10);
    double tick = (double)sysconf(_SC_CLK_TCK);
    f->cpu_seconds += (double)(v[14] + v[15]) / tick;
    f->rss_bytes += v[24] * (unsigned long long)sysconf(_SC_PAGESIZE);
    f->virtual_bytes += v[23];
    if (first) {
        FILE *st = fopen("/proc/stat", "re");
        unsigned long long btime = 0;
        char line[256];
        while (st && fgets(line, sizeof(line), st)) {
            if (sscanf(line, "btime %llu", &btime) == 1)
                break;
        }
        if (st)
            fclose(st);
        f->start_time = (double)btime + (double)v[22] / tick;
    }
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            f->fds += e->d_name[0] != '.';
        closedir(d);
        if (pid == getpid())
            f->fds--; /* the one opendir held */
    }
    return 0;
}

/* ---- the exposition text ----------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} text_t;

static void out(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(text_t *t, const char *fmt, ...)
{
    for (int round = 0; round < 2 && !t->failed; round++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n) * 2;
        char *q = realloc(t->p, cap);
        if (q == NULL) {
            t->failed = 1;
            return;
        }
        t->p = q;
        t->cap = cap;
    }
}

static void family(text_t *t, const char *name, const char *type, const char *help)
{
    out(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *const method_names[GN_M_METHODS] = {"GET",   "HEAD",    "POST",    "PUT",   "DELETE",
                                                       "PATCH", "OPTIONS", "CONNECT", "TRACE", "other"};

static void code_name(int slot, char *buf, size_t len)
{
    static const int codes[] = {0,
#define X(code) code,
                                GN_STATUS_CODES
#undef X
    };
    if (slot >= GN_S_1XX)
        snprintf(buf, len, "%dxx", slot - GN_S_1XX + 1);
    else
        snprintf(buf, len, "%d", codes[slot]);
}

static void render_requests(text_t *t, const snapshot_t *sn)
{
    family(t, "gorgon_requests_total", "counter",
           "Requests answered, by method (the standard ones, else other) and status code (common codes, "
           "else the class, e.g. 5xx).");
    for (int m = 0; m < GN_M_METHODS; m++) {
        for (int c = 1; c < GN_S_CODES; c++) {
            if (sn->requests[m][c] == 0)
                continue;
            char code[8];
            code_name(c, code, sizeof(code));
            out(t, "gorgon_requests_total{method=\"%s\",code=\"%s\"} %llu\n", method_names[m], code,
                sn->requests[m][c]);
        }
    }
    static const double bounds[GN_M_BUCKETS - 1] = GN_M_BUCKET_BOUNDS;
    family(t, "gorgon_request_duration_seconds", "histogram",
           "Seconds from a request's complete head to the last byte of its response handed to the kernel.");
    unsigned long long cum = 0;
    for (int b = 0; b < GN_M_BUCKETS; b++) {
        cum += sn->duration[b];
        if (b < GN_M_BUCKETS - 1)
            out(t, "gorgon_request_duration_seconds_bucket{le=\"%g\"} %llu\n", bounds[b], cum);
        else
            out(t, "gorgon_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    }
    out(t, "gorgon_request_duration_seconds_sum %.6f\n", (double)sn->duration_us / 1e6);
    out(t, "gorgon_request_duration_seconds_count %llu\n", cum);
    family(t, "gorgon_request_bytes_total", "counter",
           "Bytes read from clients (request heads and bodies as sent, WebSocket frames).");
    out(t, "gorgon_request_bytes_total %llu\n", sn->bytes_in);
    family(t, "gorgon_response_bytes_total", "counter",
           "Bytes written to clients (response heads and bodies as sent, WebSocket frames).");
    out(t, "gorgon_response_bytes_total %llu\n", sn->bytes_out);
}

static void render_workers(text_t *t, const snapshot_t *sn)
{
    static const char *const conn_names[GN_CG_STATES] = {NULL, "idle", "reading", "active", "active",
                                                         "websocket", "closing"};
    family(t, "gorgon_connections", "gauge",
           "Open client connections: idle (keep-alive, between requests), reading (a request), active (being "
           "answered), websocket, closing.");
    long long active = sn->conns[GN_CG_RESPONDING] + sn->conns[GN_CG_SENDING];
    for (int g = 1; g < GN_CG_STATES; g++) {
        if (g == GN_CG_SENDING)
            continue;
        out(t, "gorgon_connections{state=\"%s\"} %lld\n", conn_names[g], g == GN_CG_RESPONDING ? active : sn->conns[g]);
    }
    static const char *const worker_names[WS_STATES] = {"starting", "idle", "busy", "stopping"};
    family(t, "gorgon_workers", "gauge",
           "Workers: starting, idle, busy (in a request), stopping (retiring or stopped).");
    for (int w = 0; w < WS_STATES; w++)
        out(t, "gorgon_workers{state=\"%s\"} %u\n", worker_names[w], sn->workers[w]);
    static const char *const reasons[GN_RESTART_REASONS] = {"max-requests", "reload", "crash", "memory",
                                                                    "timeout"};
    family(t, "gorgon_worker_restarts_total", "counter",
           "Workers (or worker processes) replaced: --max-requests, reload (SIGHUP), crash (a worker process "
           "that died), memory (--max-worker-memory), timeout (stuck past --timeout).");
    for (int r = 0; r < GN_RESTART_REASONS; r++)
        out(t, "gorgon_worker_restarts_total{reason=\"%s\"} %llu\n", reasons[r], sn->restarts[r]);
    family(t, "gorgon_worker_requests_total", "counter",
           "Requests answered by each worker id (worker ids below 256), its replacements included.");
    for (int id = 0; id < MAX_IDS; id++) {
        if (sn->id_seen[id])
            out(t, "gorgon_worker_requests_total{worker=\"%d\"} %llu\n", id, sn->by_id[id]);
    }
}

/* A label value: backslash, double quote and newline escaped. */
static void label_value(text_t *t, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' || c == '"')
            out(t, "\\%c", c);
        else if (c == '\n')
            out(t, "\\n");
        else
            out(t, "%c", c);
    }
}

static void render_shared(text_t *t, snapshot_t *sn)
{
    if (strcmp(gn_backend()->name, "redis") == 0) {
        family(t, "gorgon_shared_redis_round_trips_total", "counter",
               "Round trips to Redis by gorgon.shared and channels (commands sent together count once).");
        out(t, "gorgon_shared_redis_round_trips_total %llu\n", ld(&region->redis[GN_REDIS_ROUND_TRIPS]));
        family(t, "gorgon_shared_redis_errors_total", "counter",
               "Connects and round trips to Redis that failed (not reached, no answer within --shared-timeout, "
               "connection lost) and error replies.");
        out(t, "gorgon_shared_redis_errors_total %llu\n", ld(&region->redis[GN_REDIS_ERRORS]));
        family(t, "gorgon_shared_redis_reconnects_total", "counter",
               "Connections to Redis made again after a failure.");
        out(t, "gorgon_shared_redis_reconnects_total %llu\n", ld(&region->redis[GN_REDIS_RECONNECTS]));
        return; /* the store and the channels are in Redis: its own INFO tells their size */
    }
    if (region->processes) {
        for (unsigned i = 0; i < MAX_PROCS; i++) {
            if (atomic_load(&region->procs[i].pid) == 0)
                continue;
            sn->shared_bytes += ld(&region->procs[i].shared_bytes);
            sn->shared_keys += ld(&region->procs[i].shared_keys);
        }
    } else {
        sn->shared_bytes = gn_store_used_bytes();
        sn->shared_keys = gn_store_len();
    }
    family(t, "gorgon_shared_bytes", "gauge", "Bytes held by gorgon.shared (keys, values and overhead).");
    out(t, "gorgon_shared_bytes %llu\n", sn->shared_bytes);
    family(t, "gorgon_shared_keys", "gauge", "Keys in gorgon.shared.");
    out(t, "gorgon_shared_keys %llu\n", sn->shared_keys);
    if (region->processes)
        return; /* each worker process has channels of its own */
    gn_channel_depth_t ch[MAX_CHANNELS];
    size_t n = gn_channel_depths(ch, MAX_CHANNELS);
    family(t, "gorgon_channel_depth", "gauge", "Messages waiting in a channel (the 32 deepest channels).");
    for (size_t i = 0; i < n; i++) {
        out(t, "gorgon_channel_depth{name=\"");
        label_value(t, ch[i].name, ch[i].name_len);
        out(t, "\"} %zu\n", ch[i].depth);
    }
}

static void render_process(text_t *t, const snapshot_t *sn)
{
    proc_figures_t f;
    memset(&f, 0, sizeof(f));
    add_process(getpid(), &f, 1);
    for (unsigned i = 0; i < sn->n_pids; i++) {
        if (sn->pids[i] != getpid())
            add_process(sn->pids[i], &f, 0);
    }
    const char *which = region->processes ? " (the supervisor and its worker processes, summed)" : "";
    out(t, "# HELP process_cpu_seconds_total User and system CPU time spent, in seconds%s.\n", which);
    out(t, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n", f.cpu_seconds);
    out(t, "# HELP process_resident_memory_bytes Resident memory size in bytes%s.\n", which);
    out(t, "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n", f.rss_bytes);
    out(t, "# HELP process_virtual_memory_bytes Virtual memory size in bytes%s.\n", which);
    out(t, "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n", f.virtual_bytes);
    out(t, "# HELP process_open_fds Open file descriptors%s.\n", which);
    out(t, "# TYPE process_open_fds gauge\nprocess_open_fds %llu\n", f.fds);
    family(t, "process_start_time_seconds", "gauge",
           "Start time of the (supervisor) process since the Unix epoch, in seconds.");
    out(t, "process_start_time_seconds %.2f\n", f.start_time);
}

char *gn_metrics__render(size_t *len)
{
    snapshot_t *sn = malloc(sizeof(*sn));
    text_t t = {malloc(16384), 0, 16384, 0};
    if (sn == NULL || t.p == NULL) {
        free(sn);
        free(t.p);
        return NULL;
    }
    snapshot(sn);
    render_requests(&t, sn);
    render_workers(&t, sn);
    render_shared(&t, sn);
    render_process(&t, sn);
    free(sn);
    if (t.failed) {
        free(t.p);
        return NULL;
    }
    *len = t.len;
    return t.p;
}
