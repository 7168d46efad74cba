#include "server/watchdog.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/h2_remote.h"
#include "http/response.h"
#include "server/log.h"

#define STACK_MAX_FRAMES 64

/* Appends to a growing text buffer; gives up quietly when memory runs out. */
static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        char *p = realloc(*buf, *cap * 2 + (size_t)n);
        if (p == NULL)
            return;
        *buf = p;
        *cap = *cap * 2 + (size_t)n;
    }
}

static const char *utf8_attr(PyObject *obj, const char *name, PyObject **keep)
{
    *keep = PyObject_GetAttrString(obj, name);
    const char *s = *keep && PyUnicode_Check(*keep) ? PyUnicode_AsUTF8(*keep) : NULL;
    PyErr_Clear();
    return s ? s : "???";
}

/*
 * With ts's interpreter's GIL held (ts is another thread's, stopped where
 * it waits for the GIL or sits in C): its Python stack, faulthandler's way,
 * most recent call first. A malloc'ed string, or NULL.
 */
static char *format_stack(PyThreadState *ts)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    buf[0] = '\0';
    append(&buf, &len, &cap, "Stack (most recent call first):\n");
    PyFrameObject *f = PyThreadState_GetFrame(ts);
    if (f == NULL)
        append(&buf, &len, &cap, "  <no Python frame>\n");
    for (int depth = 0; f != NULL; depth++) {
        if (depth == STACK_MAX_FRAMES) {
            append(&buf, &len, &cap, "  ...\n");
            break;
        }
        PyCodeObject *code = PyFrame_GetCode(f);
        PyObject *file = NULL, *name = NULL;
        append(&buf, &len, &cap, "  File \"%s\", line %d in %s\n", utf8_attr((PyObject *)code, "co_filename", &file),
               PyFrame_GetLineNumber(f), utf8_attr((PyObject *)code, "co_name", &name));
        Py_XDECREF(file);
        Py_XDECREF(name);
        Py_DECREF(code);
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    Py_XDECREF(f);
    PyErr_Clear();
    return buf;
}

static void probe_done(gn_worker_t *w)
{
    pthread_mutex_lock(w->mu);
    w->probing = 0;
    pthread_cond_broadcast(w->cv);
    pthread_mutex_unlock(w->mu);
}

/*
 * The probe: a thread of its own, since taking an interpreter's GIL cannot
 * be bounded in time (a C extension may hold it for ever). If it never
 * gets it, it stays blocked with the abandoned worker.
 */
static void *probe_main(void *arg)
{
    gn_worker_t *w = arg;
    PyThreadState *ts = PyThreadState_New(w->py_interp);
    if (ts == NULL) {
        probe_done(w);
        return NULL;
    }
    PyEval_RestoreThread(ts);
    atomic_store(&w->probe_has_gil, 1);
    char *stack = NULL;
    /* The worker's thread leaves a call holding the GIL, so while we hold
     * it the call is still the one taken, or is over: never another one. */
    if (atomic_load(&w->loop.app_since_us) == GN_APP_TAKEN) {
        stack = format_stack(w->interp.ts);
        PyThreadState_SetAsyncExc(w->py_thread, w->timeout_exc);
    }
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    if (stack) {
        gn_log(GN_LOG_ERROR, "worker %u: the call past --timeout, where it was; interrupting it (gorgon.RequestTimeout)",
               w->id);
        gn_log_raw(GN_LOG_ERROR, stack, strlen(stack));
        free(stack);
    }
    probe_done(w);
    return NULL;
}

static void start_probe(gn_worker_t *w)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1u << 20);
    pthread_t t;
    w->probing = 1;
    atomic_store(&w->probe_has_gil, 0);
    int rc = pthread_create(&t, &attr, probe_main, w);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        w->probing = 0;
        gn_log(GN_LOG_ERROR, "worker %u: cannot start the --timeout probe: %s", w->id, strerror(rc));
    }
}

/*
 * Under the loop's app_mu, the loop's thread being in the application: a
 * 504 if nothing of the response was queued, else the connection closed.
 * Only the socket is touched: the connection stays the loop's, which
 * drops the answer it may still produce (gn_loop_app_leave).
 */
static void answer(gn_worker_t *w, gn_conn_t *c, double timeout)
{
    const gn_request_t *r = &c->req;
    int method_len = (int)(r->method.len > 16 ? 16 : r->method.len);
    int target_len = (int)(r->target.len > 200 ? 200 : r->target.len);
    if (c->h2s) {
        /* An HTTP/2 stream: the connection and its other streams are the
         * loop's, which answers this one (504 or RST_STREAM) once the call
         * is interrupted; a worker stuck in C loses the connection. */
        gn_log(GN_LOG_ERROR, "worker %u: %.*s %.*s ran past --timeout (%gs) on an HTTP/2 stream: cancelled", w->id,
               method_len, r->method.base, target_len, r->target.base, timeout);
        return;
    }
    if (c->status != 0 || c->out_count > 0) {
        shutdown(c->fd, SHUT_RDWR);
        gn_log(GN_LOG_ERROR, "worker %u: %.*s %.*s ran past --timeout (%gs) after its response began: connection closed",
               w->id, method_len, r->method.base, target_len, r->target.base, timeout);
        return;
    }
    static const char body[] = "Gateway Timeout\n";
    int head = r->method.len == 4 && memcmp(r->method.base, "HEAD", 4) == 0;
    gn_framing_t f;
    gn_http_framing(&f, 504, head, r->minor_version, -1, (int64_t)(sizeof(body) - 1), 0);
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n");
    n += (int)gn_http_head_tail(buf + n, sizeof(buf) - (size_t)n, &f, 1, 1, r->minor_version);
    if (!f.no_body && (size_t)n + sizeof(body) <= sizeof(buf)) {
        memcpy(buf + n, body, sizeof(body) - 1);
        n += (int)sizeof(body) - 1;
    }
    /* A fresh response on an idle socket buffer: it fits at once. */
    ssize_t sent = send(c->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(c->fd, sent == n ? SHUT_WR : SHUT_RDWR);
    gn_log(GN_LOG_ERROR, "worker %u: %.*s %.*s ran past --timeout (%gs): answered 504", w->id, method_len,
           r->method.base, target_len, r->target.base, timeout);
}

/* Takes the call under way if it is still the one seen at `since`. */
static int take(gn_worker_t *w, long long since, double timeout)
{
    gn_loop_t *l = &w->loop;
    pthread_mutex_lock(&l->app_mu);
    int took = atomic_compare_exchange_strong(&l->app_since_us, &since, GN_APP_TAKEN);
    if (took && l->app_conn)
        answer(w, l->app_conn, timeout);
    else if (took)
        gn_log(GN_LOG_ERROR, "worker %u: its event loop has been in application code for more than %gs (--timeout)",
               w->id, timeout);
    pthread_mutex_unlock(&l->app_mu);
    return took;
}

/* The call taken from loop l is stuck: if it runs an HTTP/2 stream, a
 * stream of l's own connection loses the connection (no one serves it
 * now); one that l runs for a sibling's connection is answered by that
 * sibling. Under app_mu, the call still taken: l's thread is not back. */
static void abandon_stream(gn_loop_t *l)
{
    pthread_mutex_lock(&l->app_mu);
    gn_conn_t *c = atomic_load(&l->app_since_us) == GN_APP_TAKEN ? l->app_conn : NULL;
    if (c && c->h2s == GN_H2_RUNNER)
        gn_h2r__abandon(c);
    else if (c && c->h2s)
        shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&l->app_mu);
}

int gn_watchdog_look(gn_worker_t *w, double timeout, double now)
{
    int stuck = 0;
    /* Under the pool's lock a serving worker's loop cannot be torn down. */
    pthread_mutex_lock(w->mu);
    gn_loop_t *l = &w->loop;
    if (atomic_load(&w->state) != GN_WORKER_READY || w->stuck || !l->app_watch) {
        pthread_mutex_unlock(w->mu);
        return 0;
    }
    long long since = atomic_load(&l->app_since_us);
    if (w->taken_at > 0) {
        if (since != GN_APP_TAKEN) {
            w->taken_at = 0; /* back: interrupted, or the call ended */
        } else if (now - w->taken_at >= GN_STUCK_GRACE) {
            w->stuck = stuck = 1;
            abandon_stream(l);
            gn_log(GN_LOG_ERROR, "worker %u is stuck in C code past --timeout (%s): it is replaced and abandoned",
                   w->id, atomic_load(&w->probe_has_gil) ? "in a call that does not return to Python, such as "
                                                           "time.sleep or a blocking read"
                                                         : "holding its interpreter's GIL");
        }
    } else if (since > 0 && !w->probing && (double)(gn_loop__us(now) - since) >= timeout * 1e6 &&
               take(w, since, timeout)) {
        w->taken_at = now;
        start_probe(w);
    }
    pthread_mutex_unlock(w->mu);
    return stuck;
}

void gn_watchdog_wait_probe(gn_worker_t *w)
{
    pthread_mutex_lock(w->mu);
    w->loop.app_watch = 0; /* the watchdog takes no call from now on */
    int busy = w->probing;
    pthread_mutex_unlock(w->mu);
    if (!busy)
        return;
    /* The probe needs this interpreter's GIL to finish. */
    PyThreadState *ts = PyEval_SaveThread();
    pthread_mutex_lock(w->mu);
    while (w->probing)
        pthread_cond_wait(w->cv, w->mu);
    pthread_mutex_unlock(w->mu);
    PyEval_RestoreThread(ts);
}
