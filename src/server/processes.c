#include "server/processes.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http/loop.h"
#include "http/peers.h"
#include "interp/interp.h"
#include "server/log.h"
#include "server/metrics.h"

#define BACKOFF_FIRST 0.1  /* seconds before restarting a child that died quickly */
#define BACKOFF_MAX 10.0
#define QUICK_DEATH 10.0   /* a child that served less than this died "quickly" */
#define KILL_MARGIN 5.0    /* past the graceful timeout, children are SIGKILLed */
/* After a second SIGINT, children still there are SIGKILLed: the signal
 * passed on may have merged with the first one, still pending in a child
 * (signals of one kind do not queue), which then only stops gracefully. */
#define HURRY_KILL_AFTER 1.0
#define MAX_CHILDREN 256   /* the poll set's bound */

typedef struct {
    pid_t pid;            /* 0: not running */
    int fd;               /* read end of its status pipe, -1 once closed */
    int ready;            /* every worker of the child serves */
    double started;
    double ready_at;
    double restart_at;    /* > 0: a restart is due then */
    unsigned quick;       /* consecutive quick deaths: the backoff exponent */
    unsigned start_fails; /* consecutive deaths before being ready */
    int fail_code;        /* what the child said when it could not start */
    int added;            /* started by SIGTTIN, not ready yet */
    char error[1024];
} child_t;

typedef struct {
    gn_plan_t *plan;
    child_t *kids;
    unsigned n;
    /* Replacing one process at a time (SIGHUP, --max-requests): the new
     * one starts as `fresh` beside kids[rolling]; once it serves, the old
     * one joins `old`, is told to retire, and is reaped when it leaves. */
    unsigned char *roll_wanted; /* per slot: 0, or 1 + enum gn_restart_reason */
    int rolling;          /* slot being replaced, -1: none */
    int roll_reason;      /* enum gn_restart_reason of that replacement */
    child_t fresh;
    child_t *old;
    unsigned n_old, cap_old;
    int sfd;              /* signalfd for plan->sigs + SIGCHLD */
    int running;          /* every child was ready once: deaths are restarted */
    int stopping;
    double kill_at;       /* stopping: children still alive then are SIGKILLed */
    int exit_code;
    gn_peers_t peers;     /* the children's table (http/peers.h); shm NULL: none */
} procs_t;

/* ---- in the child ----------------------------------------------------- */

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void child_ready(void *arg)
{
    write_all(*(int *)arg, "R", 1);
}

/* "F<code>:<error>": one write below PIPE_BUF, so it arrives whole. */
/* "M<reason>": the reason a digit (enum gn_restart_reason). */
static void child_replace_me(void *arg, int reason)
{
    char msg[2] = {'M', (char)('0' + reason)};
    write_all(*(int *)arg, msg, 2);
}

static void child_failed(void *arg, const char *error, int code)
{
    char msg[1100];
    int n = snprintf(msg, sizeof(msg), "F%d:%s", code, error);
    write_all(*(int *)arg, msg, n > 0 && (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
}

static _Noreturn void child_main(procs_t *ps, unsigned k, int fd, pid_t parent)
{
    close(ps->sfd);
    gn_metrics_forget_listener();
    for (unsigned i = 0; i < ps->n; i++) {
        if (ps->kids[i].fd >= 0)
            close(ps->kids[i].fd);
    }
    for (unsigned i = 0; i < ps->n_old; i++) {
        if (ps->old[i].fd >= 0)
            close(ps->old[i].fd);
    }
    if (ps->fresh.fd >= 0 && ps->fresh.fd != fd)
        close(ps->fresh.fd);
    /* Never outlive the supervisor: a graceful stop if it dies. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        gn_interp_abandon_process(0);
    /* plan->sigs stay blocked (the pool takes them with sigtimedwait);
     * SIGCHLD is the application's again. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_UNBLOCK, &chld, NULL);
    gn_listen_disown(&ps->plan->listeners); /* unix socket files are the supervisor's */
    gn_limits_t *lim = &ps->plan->cfg.limits;
    if (lim->peers && (lim->peer_slot = gn_peers_claim(&ps->peers)) < 0) {
        gn_log(GN_LOG_WARNING, "worker process %u: no free slot in the table of processes: at its "
               "--max-connections it closes idle connections even while others have room", k);
        lim->peers = NULL;
    }
    gn_pool_hooks_t hooks = {child_ready, child_failed, child_replace_me, &fd};
    int rc = gn_pool_serve(ps->plan, k * ps->plan->per_proc, &hooks);
    gn_listen_close(&ps->plan->listeners);
    close(fd);
    gn_interp_leave_child(rc);
}

/* ---- in the supervisor ------------------------------------------------- */

/* Forks the child for slot k into kid. */
static int spawn_into(procs_t *ps, unsigned k, child_t *kid)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        gn_log(GN_LOG_ERROR, "worker process %u: cannot make a pipe: %s", k, strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = gn_interp_fork();
    if (pid < 0) {
        gn_log(GN_LOG_ERROR, "worker process %u: cannot fork: %s", k, strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(ps, k, fds[1], parent);
    }
    close(fds[1]);
    kid->pid = pid;
    kid->fd = fds[0];
    kid->ready = 0;
    kid->started = gn_now();
    kid->restart_at = 0;
    kid->fail_code = 0;
    kid->error[0] = '\0';
    return 0;
}

static int spawn(procs_t *ps, unsigned k)
{
    return spawn_into(ps, k, &ps->kids[k]);
}

static void describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status)) {
        snprintf(buf, len, "exited with code %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *abbrev = sigabbrev_np(sig);
        snprintf(buf, len, "was killed by signal %d (SIG%s)%s", sig, abbrev ? abbrev : "?",
                 WCOREDUMP(status) ? ", core dumped" : "");
    } else {
        snprintf(buf, len, "ended with status %d", status);
    }
}

/* The retiring children are already stopping gracefully: they get only the
 * signals that end them at once (a second SIGINT or SIGQUIT, SIGKILL). */
static void signal_children(procs_t *ps, int sig, int retiring_too)
{
    for (unsigned i = 0; i < ps->n; i++) {
        if (ps->kids[i].pid > 0)
            kill(ps->kids[i].pid, sig);
    }
    if (ps->fresh.pid > 0)
        kill(ps->fresh.pid, sig);
    for (unsigned i = 0; i < ps->n_old && retiring_too; i++) {
        if (ps->old[i].pid > 0)
            kill(ps->old[i].pid, sig);
    }
}

static void begin_stop(procs_t *ps, int sig)
{
    if (!ps->stopping) {
        ps->stopping = 1;
        ps->kill_at = gn_now() + ps->plan->cfg.graceful_timeout + KILL_MARGIN;
        /* New connections are refused at once; each child takes what its
         * workers' queues hold before it closes its own copies. */
        gn_listen_refuse(&ps->plan->listeners);
        gn_listen_close(&ps->plan->listeners);
    }
    for (unsigned i = 0; i < ps->n; i++)
        ps->kids[i].restart_at = 0;
    signal_children(ps, sig, 0);
}

static void add_process(procs_t *ps);
static void remove_process(procs_t *ps);

/* SIGTERM/SIGINT/SIGQUIT go to every child, which stops gracefully (a second
 * SIGINT or SIGQUIT: at once, a second SIGTERM: without waiting for in-flight
 * requests, as in one process). SIGHUP replaces the children one at a time
 * (each new one imports the application afresh). */
static void on_signal(procs_t *ps, int sig)
{
    if (sig == SIGCHLD)
        return;
    if (sig == SIGHUP) {
        if (ps->stopping || !ps->running)
            return;
        gn_log(GN_LOG_INFO, "SIGHUP received: reloading the application, one worker process at a time");
        /* Children forked from now on inherit the new context; the old
         * ones serve with theirs until they are replaced. */
        gn_plan_reload_tls(ps->plan);
        memset(ps->roll_wanted, 1 + GN_RESTART_RELOAD, ps->n);
        return;
    }
    if (sig == SIGUSR1) {
        gn_log(GN_LOG_INFO, "SIGUSR1 received: the logs go to stderr and stdout, there is no log file to reopen");
        return;
    }
    if (sig == SIGTTIN || sig == SIGTTOU) {
        if (!ps->stopping && ps->running && sig == SIGTTIN)
            add_process(ps);
        else if (!ps->stopping && ps->running)
            remove_process(ps);
        return;
    }
    if (ps->stopping && (sig == SIGINT || sig == SIGQUIT)) {
        gn_log(GN_LOG_WARNING, "second %s: stopping the worker processes at once", sigabbrev_np(sig));
        ps->exit_code = 130;
        signal_children(ps, sig, 1);
        if (ps->kill_at > gn_now() + HURRY_KILL_AFTER)
            ps->kill_at = gn_now() + HURRY_KILL_AFTER;
        return;
    }
    if (!ps->stopping)
        gn_log(GN_LOG_INFO, "SIG%s received: worker processes finish their in-flight requests (up to %gs)",
               sigabbrev_np(sig), ps->plan->cfg.graceful_timeout);
    begin_stop(ps, sig);
}

static void on_message(procs_t *ps, child_t *kid, unsigned k)
{
    char buf[1200];
    ssize_t n = read(kid->fd, buf, sizeof(buf) - 1);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) { /* the child is leaving: its exit status says the rest */
        close(kid->fd);
        kid->fd = -1;
        return;
    }
    buf[n] = '\0';
    if (buf[0] == 'M' && kid == &ps->kids[k]) { /* --max-requests, --max-worker-memory, --timeout */
        int reason = buf[1] >= '0' && buf[1] < '0' + GN_RESTART_REASONS ? buf[1] - '0' : GN_RESTART_MAX_REQUESTS;
        gn_log(GN_LOG_INFO, "worker process %u (pid %d) asks to be replaced: replacing it", k, (int)kid->pid);
        ps->roll_wanted[k] = (unsigned char)(1 + reason);
    } else if (buf[0] == 'R') {
        kid->ready = 1;
        kid->ready_at = gn_now();
        kid->start_fails = 0;
        if (ps->running && kid == &ps->kids[k])
            gn_log(GN_LOG_INFO, "worker process %u (pid %d) %s", k, (int)kid->pid,
                   kid->added ? "serves" : "serving again");
        kid->added = 0;
    } else if (buf[0] == 'F') {
        char *colon = strchr(buf, ':');
        kid->fail_code = atoi(buf + 1);
        snprintf(kid->error, sizeof(kid->error), "%s", colon ? colon + 1 : "?");
    }
}

static double backoff(unsigned quick)
{
    double d = BACKOFF_FIRST;
    for (unsigned i = 1; i < quick && d < BACKOFF_MAX; i++)
        d *= 2;
    return d < BACKOFF_MAX ? d : BACKOFF_MAX;
}

/* A child that dies before it is ready at start-up ends the server, as one
 * failing worker does in a single process: the application cannot load. */
static void startup_failed(procs_t *ps, unsigned k, const char *status)
{
    child_t *kid = &ps->kids[k];
    if (kid->error[0])
        gn_log(GN_LOG_CRITICAL, "worker process %u: %s", k, kid->error);
    else
        gn_log(GN_LOG_CRITICAL, "worker process %u (pid %d) %s before it was ready", k, (int)kid->pid, status);
    if (ps->exit_code == 0)
        ps->exit_code = kid->fail_code ? kid->fail_code : 1;
    begin_stop(ps, SIGTERM);
}

static void on_exit_status(procs_t *ps, unsigned k, int status)
{
    child_t *kid = &ps->kids[k];
    char what[160];
    describe_status(status, what, sizeof(what));
    if (kid->fd >= 0) { /* read what it said before it left */
        on_message(ps, kid, k);
        if (kid->fd >= 0)
            close(kid->fd);
        kid->fd = -1;
    }
    if (ps->stopping) {
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) && ps->exit_code == 0 && !ps->running)
            ps->exit_code = 1;
        kid->pid = 0;
        return;
    }
    double t = gn_now();
    if (!ps->running) {
        startup_failed(ps, k, what);
        kid->pid = 0;
        return;
    }
    int was_ready = kid->ready;
    kid->start_fails = was_ready ? 0 : kid->start_fails + 1;
    kid->quick = !was_ready || t - kid->ready_at < QUICK_DEATH ? kid->quick + 1 : 0;
    double delay = kid->quick ? backoff(kid->quick) : 0;
    if (kid->start_fails >= GN_PROCESSES_GIVE_UP) {
        gn_log(GN_LOG_CRITICAL, "worker process %u could not start %u times in a row, giving up: %s", k,
               kid->start_fails, kid->error[0] ? kid->error : what);
        kid->pid = 0;
        ps->exit_code = 1;
        begin_stop(ps, SIGTERM);
        return;
    }
    gn_metrics_restarted(GN_RESTART_CRASH, 1);
    if (was_ready)
        gn_log(GN_LOG_WARNING, "worker process %u (pid %d) %s after %.1f s; restarting it in %.1f s", k,
               (int)kid->pid, what, t - kid->started, delay);
    else
        gn_log(GN_LOG_WARNING, "worker process %u (pid %d) %s before it was ready (%u of %u): %s; restarting it in "
               "%.1f s", k, (int)kid->pid, what, kid->start_fails, GN_PROCESSES_GIVE_UP,
               kid->error[0] ? kid->error : "no message", delay);
    kid->pid = 0;
    kid->restart_at = t + delay;
}

static void close_child_fd(child_t *kid)
{
    if (kid->fd >= 0)
        close(kid->fd);
    kid->fd = -1;
}

/* The replacement for slot `rolling` could not start: the old process goes
 * on serving, and no other slot is replaced for this reload. */
static void fresh_failed(procs_t *ps, const char *status)
{
    child_t *f = &ps->fresh;
    if (f->fd >= 0)
        on_message(ps, f, (unsigned)ps->rolling);
    if (!ps->stopping)
        gn_log(GN_LOG_ERROR, "reload failed, the old worker processes go on serving: worker process %d: %s",
               ps->rolling, f->error[0] ? f->error : status);
    close_child_fd(f);
    f->pid = 0;
    memset(ps->roll_wanted, 0, ps->n);
    ps->rolling = -1;
}

/* A retiring child left (or the replacement did): 1 if pid was one. */
static int reap_rolled(procs_t *ps, pid_t pid, int status)
{
    char what[160];
    describe_status(status, what, sizeof(what));
    if (ps->fresh.pid == pid) {
        fresh_failed(ps, what);
        return 1;
    }
    for (unsigned i = 0; i < ps->n_old; i++) {
        if (ps->old[i].pid != pid)
            continue;
        close_child_fd(&ps->old[i]);
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            gn_log(GN_LOG_WARNING, "replaced worker process (pid %d) %s", (int)pid, what);
        ps->old[i] = ps->old[--ps->n_old];
        return 1;
    }
    return 0;
}

static void reap(procs_t *ps)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        gn_metrics_reap_process(pid); /* what its workers counted stays */
        if (ps->peers.shm) /* it no longer counts as having room */
            gn_peers_release(&ps->peers, pid);
        if (reap_rolled(ps, pid, status))
            continue;
        for (unsigned k = 0; k < ps->n; k++) {
            if (ps->kids[k].pid == pid) {
                on_exit_status(ps, k, status);
                break;
            }
        }
    }
}

/* The child retires (SIGHUP: it stops accepting and finishes its
 * requests, leaving the sockets to the others) and is reaped as an old one
 * when it leaves. Returns 0, or -1 when out of memory (nothing changed). */
static int retire_child(procs_t *ps, child_t *kid)
{
    if (ps->n_old == ps->cap_old) {
        unsigned cap = ps->cap_old ? 2 * ps->cap_old : 8;
        child_t *more = realloc(ps->old, cap * sizeof(child_t));
        if (more == NULL)
            return -1;
        ps->old = more;
        ps->cap_old = cap;
    }
    kill(kid->pid, SIGHUP);
    ps->old[ps->n_old++] = *kid;
    return 0;
}

/* The replacement serves: the old process retires. */
static void fresh_ready(procs_t *ps)
{
    unsigned k = (unsigned)ps->rolling;
    child_t *kid = &ps->kids[k];
    if (kid->pid > 0) {
        pid_t was = kid->pid;
        if (retire_child(ps, kid) < 0) { /* keep the old one; the new one is told to go */
            kill(ps->fresh.pid, SIGHUP);
            ps->fresh.ready = 0;
            return;
        }
        gn_metrics_restarted((enum gn_restart_reason)ps->roll_reason, 1);
        gn_log(GN_LOG_INFO, "worker process %u: pid %d serves, pid %d finishes its requests and ends", k,
               (int)ps->fresh.pid, (int)was);
    }
    *kid = ps->fresh;
    kid->quick = 0;
    memset(&ps->fresh, 0, sizeof(ps->fresh));
    ps->fresh.fd = -1;
    ps->rolling = -1;
}

/* SIGTTIN: one worker process more, in a new slot (its workers take the
 * next ids). */
static void add_process(procs_t *ps)
{
    unsigned k = ps->n;
    child_t *kids = k < MAX_CHILDREN ? realloc(ps->kids, (k + 1) * sizeof(child_t)) : NULL;
    if (kids)
        ps->kids = kids;
    unsigned char *wanted = kids ? realloc(ps->roll_wanted, k + 1) : NULL;
    if (wanted == NULL) {
        gn_log(GN_LOG_WARNING, "SIGTTIN received: %s", k < MAX_CHILDREN ? "out of memory" : "no room for more "
               "worker processes");
        return;
    }
    ps->roll_wanted = wanted;
    wanted[k] = 0;
    memset(&kids[k], 0, sizeof(child_t));
    kids[k].fd = -1;
    if (spawn(ps, k) < 0)
        return;
    kids[k].added = 1;
    ps->n++;
    gn_log(GN_LOG_INFO, "SIGTTIN received: starting worker process %u (pid %d)", k, (int)kids[k].pid);
}

/* --reuse-port: 1 when each socket the workers of process k accept from
 * (its workers' ids are k * per_proc on) is also another process's. */
static int sockets_shared(procs_t *ps, unsigned k)
{
    unsigned pp = ps->plan->per_proc;
    for (unsigned a = k * pp; a < (k + 1) * pp; a++) {
        int shared = 0;
        for (unsigned b = 0; b < ps->n * pp && !shared; b++)
            shared = b / pp != k && gn_listen_same_sockets(&ps->plan->listeners, a, b);
        if (!shared)
            return 0;
    }
    return 1;
}

/* SIGTTOU: the newest worker process retires, unless it is the last one,
 * or the only one on its --reuse-port sockets (pool.c says why). */
static void remove_process(procs_t *ps)
{
    unsigned k = ps->n - 1;
    child_t *kid = &ps->kids[k];
    if (ps->n <= 1) {
        gn_log(GN_LOG_WARNING, "SIGTTOU received: one worker process left, keeping it");
        return;
    }
    if (ps->rolling == (int)k) {
        gn_log(GN_LOG_WARNING, "SIGTTOU received: worker process %u is being replaced; send it again after", k);
        return;
    }
    if (!sockets_shared(ps, k)) {
        gn_log(GN_LOG_WARNING, "SIGTTOU received: with --reuse-port worker process %u is the only one accepting "
               "from its listening sockets, which the kernel goes on sending clients to: keeping it", k);
        return;
    }
    if (kid->pid > 0 && retire_child(ps, kid) < 0) {
        gn_log(GN_LOG_WARNING, "SIGTTOU received: out of memory");
        return;
    }
    if (kid->pid > 0)
        gn_log(GN_LOG_INFO, "SIGTTOU received: worker process %u (pid %d) finishes its requests and ends", k,
               (int)kid->pid);
    else
        close_child_fd(kid); /* it was waiting for a restart */
    ps->n--;
}

/* One replacement at a time: the next slot that wants one. */
static void roll_next(procs_t *ps)
{
    if (ps->stopping || !ps->running || ps->rolling >= 0)
        return;
    for (unsigned k = 0; k < ps->n; k++) {
        if (!ps->roll_wanted[k] || ps->kids[k].pid <= 0 || !ps->kids[k].ready)
            continue;
        ps->roll_reason = ps->roll_wanted[k] - 1;
        ps->roll_wanted[k] = 0;
        if (spawn_into(ps, k, &ps->fresh) < 0)
            return;
        ps->rolling = (int)k;
        return;
    }
}

static void restart_due(procs_t *ps)
{
    double t = gn_now();
    for (unsigned k = 0; k < ps->n && !ps->stopping; k++) {
        child_t *kid = &ps->kids[k];
        if (kid->pid == 0 && kid->restart_at > 0 && t >= kid->restart_at && spawn(ps, k) < 0)
            kid->restart_at = t + BACKOFF_MAX; /* fork failed: try again later */
    }
}

/* Waits up to `timeout` seconds, then handles what happened. */
static void step(procs_t *ps, double timeout)
{
    struct pollfd pfd[2 + 256];
    unsigned idx[2 + 256];
    unsigned n = 0;
    pfd[n++] = (struct pollfd){.fd = ps->sfd, .events = POLLIN};
    for (unsigned k = 0; k < ps->n && n < 1 + 256; k++) {
        if (ps->kids[k].fd >= 0) {
            idx[n] = k;
            pfd[n++] = (struct pollfd){.fd = ps->kids[k].fd, .events = POLLIN};
        }
    }
    int fresh_at = -1;
    if (ps->fresh.fd >= 0 && n < 1 + 256) {
        fresh_at = (int)n;
        pfd[n++] = (struct pollfd){.fd = ps->fresh.fd, .events = POLLIN};
    }
    int metrics_at = -1;
    if (gn_metrics_fd() >= 0 && n < 2 + 256) {
        metrics_at = (int)n;
        pfd[n++] = (struct pollfd){.fd = gn_metrics_fd(), .events = POLLIN};
    }
    double t = gn_now();
    for (unsigned k = 0; k < ps->n; k++) {
        double at = ps->kids[k].restart_at;
        if (at > 0 && at - t < timeout)
            timeout = at > t ? at - t : 0;
    }
    int rc = poll(pfd, n, (int)(timeout * 1000) + 1);
    if (rc > 0 && (pfd[0].revents & POLLIN)) {
        struct signalfd_siginfo si;
        while (read(ps->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            on_signal(ps, (int)si.ssi_signo);
    }
    gn_metrics_serve_ready(); /* what is ready, and its connections' timeouts */
    for (unsigned i = 1; rc > 0 && i < n; i++) {
        if ((int)i == metrics_at)
            continue;
        if ((int)i == fresh_at) {
            if (pfd[i].revents && ps->fresh.fd == pfd[i].fd)
                on_message(ps, &ps->fresh, (unsigned)ps->rolling);
        } else if (pfd[i].revents && ps->kids[idx[i]].fd == pfd[i].fd) {
            on_message(ps, &ps->kids[idx[i]], idx[i]);
        }
    }
    if (ps->rolling >= 0 && ps->fresh.ready && !ps->stopping)
        fresh_ready(ps);
    reap(ps);
    restart_due(ps);
    roll_next(ps);
    if (ps->stopping && gn_now() > ps->kill_at) {
        signal_children(ps, SIGKILL, 1);
        ps->kill_at = gn_now() + ps->plan->cfg.graceful_timeout + KILL_MARGIN; /* once more at most, after a while */
    }
}

static unsigned live(procs_t *ps)
{
    unsigned n = ps->n_old + (ps->fresh.pid > 0);
    for (unsigned k = 0; k < ps->n; k++)
        n += ps->kids[k].pid > 0;
    return n;
}

/* Starts children [from, to) and waits until they are all ready, or one
 * fails (then the server stops). Returns 0 or -1. */
static int start_children(procs_t *ps, unsigned from, unsigned to)
{
    for (unsigned k = from; k < to; k++) {
        if (spawn(ps, k) < 0) {
            if (ps->exit_code == 0)
                ps->exit_code = 1;
            begin_stop(ps, SIGTERM);
            return -1;
        }
    }
    for (;;) {
        unsigned ready = 0;
        for (unsigned k = from; k < to; k++)
            ready += ps->kids[k].ready;
        if (ps->stopping)
            return -1;
        if (ready == to - from)
            return 0;
        step(ps, 0.5);
    }
}

/* Logged when the first worker process serves; the others join after. */
static void log_listening(procs_t *ps)
{
    gn_plan_t *plan = ps->plan;
    for (unsigned i = 0; i < plan->listeners.n_binds; i++)
        gn_log(GN_LOG_INFO, "Listening at: %s (%u workers)", plan->listeners.binds[i].url, plan->total);
}

static void log_started(procs_t *ps, double t0)
{
    gn_plan_t *plan = ps->plan;
    gn_log(GN_LOG_INFO, "%u worker processes ready (%u worker%s each) in %.0f ms", ps->n, plan->per_proc,
           plan->per_proc == 1 ? "" : "s", (gn_now() - t0) * 1000);
}

static int setup(procs_t *ps, gn_plan_t *plan, sigset_t *old)
{
    memset(ps, 0, sizeof(*ps));
    ps->plan = plan;
    ps->peers.wake_fd = -1;
    ps->n = plan->n_procs > MAX_CHILDREN ? MAX_CHILDREN : plan->n_procs;
    ps->sfd = -1;
    ps->rolling = -1;
    ps->fresh.fd = -1;
    ps->kids = calloc(ps->n, sizeof(child_t));
    ps->roll_wanted = calloc(ps->n ? ps->n : 1, 1);
    if (ps->kids == NULL || ps->roll_wanted == NULL)
        return -1;
    for (unsigned k = 0; k < ps->n; k++)
        ps->kids[k].fd = -1;
    /* On one shared socket, a full process passes new clients to one with
     * room: room for as many children as SIGTTIN may add, and as many
     * replacing them or retiring meanwhile (64 bytes each). */
    if (plan->listeners.exclusive) {
        if (gn_peers_init(&ps->peers, 2 * MAX_CHILDREN) == 0)
            plan->cfg.limits.peers = &ps->peers;
        else
            gn_log(GN_LOG_WARNING, "worker processes: cannot share connection counts (%s): a process at its "
                   "--max-connections closes idle connections even while others have room", strerror(errno));
    }
    sigset_t set = plan->sigs;
    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &set, old);
    ps->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return ps->sfd < 0 ? -1 : 0;
}

int gn_processes_serve(gn_plan_t *plan)
{
    procs_t procs;
    procs_t *ps = &procs;
    sigset_t old;
    if (setup(ps, plan, &old) < 0) {
        gn_log(GN_LOG_ERROR, "cannot set up the worker processes: %s", strerror(errno));
        plan->cfg.limits.peers = NULL;
        gn_peers_destroy(&ps->peers);
        free(ps->kids);
        free(ps->roll_wanted);
        return 1;
    }
    double t0 = gn_now();
    /* The first child loads the application alone: one clear failure. */
    int first = start_children(ps, 0, 1);
    if (first == 0)
        log_listening(ps);
    if (first == 0 && start_children(ps, 1, ps->n) == 0) {
        ps->running = 1;
        log_started(ps, t0);
    }
    while (live(ps) > 0 || (!ps->stopping && ps->running))
        step(ps, ps->stopping ? 0.2 : 1.0);
    if (ps->running && ps->exit_code == 0)
        gn_log(GN_LOG_INFO, "stopped");
    close(ps->sfd);
    plan->cfg.limits.peers = NULL;
    gn_peers_destroy(&ps->peers);
    free(ps->kids);
    free(ps->roll_wanted);
    free(ps->old);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ps->exit_code;
}
