#include "server/probe.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http/loop.h"
#include "interp/interp.h"
#include "shared/shared.h"

/* CPython's words when an extension module refuses an own-GIL interpreter:
 * "module X does not support loading in subinterpreters". */
#define REFUSAL " does not support loading in subinterpreters"

static void report(int fd, char verdict, const char *text)
{
    char msg[1100];
    int n = snprintf(msg, sizeof(msg), "%c%s", verdict, text);
    size_t len = n > 0 && (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
    while (write(fd, msg, len) < 0 && errno == EINTR)
        ;
}

/* In the child: never returns, never finalizes. */
static _Noreturn void probe_child(const gn_config_t *cfg, int sub, unsigned workers, int fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char err[1024];
    if (sub && gn_interp_enter_probe(err, sizeof(err)) < 0) {
        report(fd, 'U', err);
        gn_interp_abandon_process(0);
    }
    /* As a worker would see it: worker 0 of the mode being tried. */
    if (gn_interp_configure(cfg, err, sizeof(err)) < 0 ||
        gn_shared_set_worker_facts(0, workers, sub ? "interpreters" : "processes", err, sizeof(err)) < 0 ||
        (sub && cfg->pure_fallback && gn_interp_install_pure_fallback(err, sizeof(err)) < 0)) {
        report(fd, 'U', err);
        gn_interp_abandon_process(0);
    }
    PyObject *app = gn_interp_import_app(cfg->app, err, sizeof(err));
    report(fd, app ? 'O' : 'E', app ? "" : err);
    gn_interp_abandon_process(0);
}

/* "... module X does not support ..." -> X. Returns 0 if err is no refusal. */
static int refusing_module(const char *err, char *module, size_t len)
{
    const char *end = strstr(err, REFUSAL);
    if (end == NULL)
        return 0;
    const char *start = end;
    while (start > err && start[-1] != ' ')
        start--;
    if (start - err < 7 || strncmp(start - 7, "module ", 7) != 0)
        return 0;
    snprintf(module, len, "%.*s", (int)(end - start), start);
    return 1;
}

static int stop_signal(const sigset_t *sigs)
{
    struct timespec zero = {0, 0};
    int sig = sigtimedwait(sigs, NULL, &zero);
    return sig == SIGINT || sig == SIGTERM || sig == SIGQUIT;
}

/* Reads the child's report until it closes the pipe, a stop signal, or the
 * deadline. Returns 1 on EOF, 0 on timeout, -1 on a stop signal. */
static int collect(int fd, const sigset_t *sigs, double timeout, char *buf, size_t len)
{
    size_t used = 0;
    double deadline = gn_now() + timeout;
    for (;;) {
        if (stop_signal(sigs))
            return -1;
        double left = deadline - gn_now();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, left > 0.05 ? 50 : (int)(left * 1000) + 1);
        if (rc <= 0)
            continue;
        ssize_t n = read(fd, buf + used, len - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (used += (size_t)n) >= len - 1) {
            buf[used] = '\0';
            return 1;
        }
    }
}

static void judge(gn_probe_t *out, const char *msg, int status)
{
    if (msg[0] == 'O') {
        out->verdict = GN_PROBE_LOADS;
    } else if (msg[0] == 'E') {
        snprintf(out->error, sizeof(out->error), "%.1000s", msg + 1);
        out->verdict = refusing_module(msg + 1, out->module, sizeof(out->module)) ? GN_PROBE_REFUSED : GN_PROBE_FAILS;
    } else if (msg[0] == 'U') {
        snprintf(out->error, sizeof(out->error), "%.1000s", msg + 1);
        out->verdict = GN_PROBE_UNKNOWN;
    } else {
        out->verdict = GN_PROBE_UNKNOWN;
        if (WIFSIGNALED(status)) {
            const char *abbrev = sigabbrev_np(WTERMSIG(status));
            snprintf(out->error, sizeof(out->error), "the probe process was killed by signal %d (SIG%s)",
                     WTERMSIG(status), abbrev ? abbrev : "?");
        } else {
            snprintf(out->error, sizeof(out->error), "the probe process exited (status %d) without an answer",
                     WIFEXITED(status) ? WEXITSTATUS(status) : status);
        }
    }
}

void gn_probe_app(const gn_config_t *cfg, int sub, unsigned workers, const sigset_t *sigs, gn_probe_t *out)
{
    memset(out, 0, sizeof(*out));
    out->verdict = GN_PROBE_UNKNOWN;
    int threads = gn_interp_threads_running();
    int fds[2];
    if (threads > 1) {
        snprintf(out->error, sizeof(out->error), "cannot fork a probe: %d threads are running", threads);
        return;
    }
    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(out->error, sizeof(out->error), "cannot make a pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = gn_interp_fork();
    if (pid == 0) {
        close(fds[0]);
        probe_child(cfg, sub, workers, fds[1]);
    }
    close(fds[1]);
    if (pid < 0) {
        snprintf(out->error, sizeof(out->error), "cannot fork a probe: %s", strerror(errno));
        close(fds[0]);
        return;
    }
    char msg[1200] = "";
    int got = collect(fds[0], sigs, cfg->probe_timeout, msg, sizeof(msg));
    close(fds[0]);
    if (got <= 0)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got < 0) {
        out->verdict = GN_PROBE_STOPPED;
    } else if (got == 0) {
        snprintf(out->error, sizeof(out->error), "the import probe took longer than %gs (--probe-timeout)",
                 cfg->probe_timeout);
    } else {
        judge(out, msg, status);
    }
}
