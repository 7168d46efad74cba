/*
 * The ASGI bridge: scope, one asyncio task per request (started eagerly, so
 * a handler that never waits completes without an event-loop round trip),
 * and the asyncio loop that drives the worker's epoll loop.
 */
#include <Python.h>
#include "bridges/fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridges/asgi_internal.h"
#include "bridges/common.h"
#include "http/h2.h"
#include "server/log.h"

#define TICK_SECONDS 0.25

/* ---- the per-request object given to the app as receive/send ---------- */

static PyObject *req_receive(PyObject *self, PyObject *unused)
{
    (void)unused;
    return gn_asgi_receive((gn_asgi_req_t *)self);
}

static PyObject *req_send(PyObject *self, PyObject *msg)
{
    return gn_asgi_send((gn_asgi_req_t *)self, msg);
}

/* --timeout: a 504 if the response has not begun, else the connection
 * closed (an HTTP/2 stream: the stream reset); the app's later sends go
 * nowhere. */
static void answer_timeout(gn_asgi_req_t *r)
{
    gn_conn_t *c = r->conn;
    r->timed_out = 1;
    if (c == NULL || r->ws)
        return;
    const gn_request_t *q = &c->req;
    gn_log(GN_LOG_ERROR, "worker %u: %.*s %.*s ran past --timeout (%gs): %s", r->a->worker_id,
           (int)(q->method.len > 16 ? 16 : q->method.len), q->method.base,
           (int)(q->target.len > 200 ? 200 : q->target.len), q->target.base, r->a->cfg->timeout,
           !r->head_sent ? "answered 504" : c->h2s ? "HTTP/2 stream reset" : "connection closed");
    if (r->head_sent) {
        gn_asgi_detach(r, 0);
        return;
    }
    static const char body[] = "Gateway Timeout\n";
    gn_conn_write_simple(c, 504, body, sizeof(body) - 1, 1);
    gn_asgi_detach(r, 1);
}

/* The app's task ended: whatever it left unanswered is answered here. */
static PyObject *req_done(PyObject *self, PyObject *task)
{
    gn_asgi_req_t *r = (gn_asgi_req_t *)self;
    PyObject *exc = PyObject_CallMethod(task, "exception", NULL);
    if (exc == NULL) { /* cancelled */
        PyErr_Clear();
        exc = Py_NewRef(Py_None);
    }
    if (exc != Py_None && PyErr_GivenExceptionMatches(exc, r->a->st->request_timeout))
        answer_timeout(r); /* interrupted by the watchdog (server/watchdog.h) */
    else if (exc != Py_None && !r->disconnected)
        gn_asgi_log_exception(r->a, "Exception in ASGI application", exc);
    else if (r->ws)
        ; /* a websocket the app leaves open is closed below, normally */
    else if (exc == Py_None && r->conn != NULL && !r->started)
        gn_log(GN_LOG_ERROR, "ASGI application returned without sending a response (worker %u)",
               r->a->worker_id);
    else if (exc == Py_None && r->conn != NULL)
        gn_log(GN_LOG_ERROR, "ASGI application returned before finishing its response (worker %u)",
               r->a->worker_id);
    int failed = exc != Py_None;
    Py_DECREF(exc);
    if (r->ws)
        gn_asgi_ws_finish(r, failed);
    else
        gn_asgi_fail(r); /* no-op when the response was complete */
    Py_CLEAR(r->task);
    Py_RETURN_NONE;
}

static int req_traverse(PyObject *self, visitproc visit, void *arg)
{
    gn_asgi_req_t *r = (gn_asgi_req_t *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(r->recv_waiter);
    Py_VISIT(r->send_waiter);
    Py_VISIT(r->chunks);
    Py_VISIT(r->body_error);
    Py_VISIT(r->headers);
    Py_VISIT(r->task);
    Py_VISIT(r->ws_queue);
    return 0;
}

static int req_clear(PyObject *self)
{
    gn_asgi_req_t *r = (gn_asgi_req_t *)self;
    Py_CLEAR(r->recv_waiter);
    Py_CLEAR(r->send_waiter);
    Py_CLEAR(r->chunks);
    Py_CLEAR(r->body_error);
    Py_CLEAR(r->headers);
    Py_CLEAR(r->task);
    Py_CLEAR(r->ws_queue);
    return 0;
}

static void req_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    req_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef req_methods[] = {
    {"receive", req_receive, METH_NOARGS, "ASGI receive()"},
    {"send", req_send, METH_O, "ASGI send(message)"},
    {"_done", req_done, METH_O, "task done callback"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot req_slots[] = {
    {Py_tp_dealloc, req_dealloc},
    {Py_tp_traverse, req_traverse},
    {Py_tp_clear, req_clear},
    {Py_tp_methods, req_methods},
    {0, NULL},
};

static PyType_Spec req_spec = {
    .name = "gorgon._gorgon.AsgiRequest",
    .basicsize = sizeof(gn_asgi_req_t),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = req_slots,
};

int gn_asgi_add_types(PyObject *module, gn_modstate_t *st)
{
    st->asgi_request_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &req_spec, NULL);
    st->asgi_ready_type = gn_asgi_ready_type_new(module);
    return st->asgi_request_type && st->asgi_ready_type ? 0 : -1;
}

/* ---- scope ------------------------------------------------------------ */

static PyObject *headers_list(const gn_conn_t *c)
{
    PyObject *list = PyList_New((Py_ssize_t)c->req.num_headers);
    for (size_t i = 0; list && i < c->req.num_headers; i++) {
        const gn_header_t *h = &c->headers[i];
        PyObject *name = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)h->name.len);
        PyObject *value = PyBytes_FromStringAndSize(h->value.base, (Py_ssize_t)h->value.len);
        PyObject *pair = name && value ? PyTuple_Pack(2, name, value) : NULL;
        if (name) {
            char *p = PyBytes_AS_STRING(name);
            for (size_t j = 0; j < h->name.len; j++) {
                char ch = h->name.base[j];
                p[j] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
            }
        }
        Py_XDECREF(name);
        Py_XDECREF(value);
        if (pair == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, pair);
    }
    return list;
}

static PyObject *addr_tuple(gn_conn_t *c, int local)
{
    char host[64];
    int port;
    if (local)
        gn_conn_local(c, host, sizeof(host), &port);
    else
        gn_conn_peer(c, host, sizeof(host), &port);
    return Py_BuildValue("(si)", host, port);
}

/* Scope keys, interned once per worker: PyDict_SetItemString would intern
 * its key again on every call (3.13). */
static const char *const scope_key_names[GN_ASGI_SCOPE_KEYS] = {
    "type", "asgi", "http_version", "method", "scheme", "path", "raw_path", "query_string",
    "root_path", "headers", "client", "server", "state", "extensions",
};

static int intern_scope_keys(gn_asgi_t *a)
{
    for (int i = 0; i < GN_ASGI_SCOPE_KEYS; i++) {
        if ((a->scope_keys[i] = PyUnicode_InternFromString(scope_key_names[i])) == NULL)
            return -1;
    }
    a->v_http = PyUnicode_InternFromString("http");
    a->v_http11 = PyUnicode_InternFromString("1.1");
    a->v_http10 = PyUnicode_InternFromString("1.0");
    a->v_http2 = PyUnicode_InternFromString("2");
    a->s_receive = PyUnicode_InternFromString("receive");
    a->s_send = PyUnicode_InternFromString("send");
    a->s_done_cb = PyUnicode_InternFromString("_done");
    a->s_done = PyUnicode_InternFromString("done");
    return a->v_http && a->v_http11 && a->v_http10 && a->v_http2 && a->s_receive && a->s_send && a->s_done_cb && a->s_done
               ? 0
               : -1;
}

/* Sets scope[key i] = value, taking the reference to value. */
static int set_key(gn_asgi_t *a, PyObject *d, int i, PyObject *value)
{
    if (value == NULL)
        return -1;
    int rc = PyDict_SetItem(d, a->scope_keys[i], value);
    Py_DECREF(value);
    return rc;
}

static PyObject *build_scope(gn_asgi_t *a, gn_conn_t *c)
{
    const gn_request_t *r = &c->req;
    PyObject *s = PyDict_New();
    if (s == NULL)
        return NULL;
    PyObject *state = a->state ? PyDict_Copy(a->state) : PyDict_New();
    int i = 0;
    if (set_key(a, s, i++, Py_NewRef(a->v_http)) || set_key(a, s, i++, Py_NewRef(a->asgi_info)) ||
        set_key(a, s, i++, Py_NewRef(r->minor_version == GN_HTTP2_VERSION ? a->v_http2 : r->minor_version ? a->v_http11 : a->v_http10)) ||
        set_key(a, s, i++, PyUnicode_DecodeLatin1(r->method.base, (Py_ssize_t)r->method.len, NULL)) ||
        set_key(a, s, i++, gn_conn_https(c) ? PyUnicode_FromString("https") : Py_NewRef(a->v_http)) ||
        set_key(a, s, i++, gn_bridge_decode_path(r->path.base, r->path.len, 1)) ||
        set_key(a, s, i++, PyBytes_FromStringAndSize(r->path.base, (Py_ssize_t)r->path.len)) ||
        set_key(a, s, i++, PyBytes_FromStringAndSize(r->query.base, (Py_ssize_t)r->query.len)) ||
        set_key(a, s, i++, Py_NewRef(a->root_path)) || set_key(a, s, i++, headers_list(c)) ||
        set_key(a, s, i++, addr_tuple(c, 0)) || set_key(a, s, i++, addr_tuple(c, 1)) ||
        set_key(a, s, i++, state) || set_key(a, s, i++, gn_bridge_extensions(r->minor_version ? a->extensions_trl : a->extensions, c))) {
        Py_DECREF(s);
        return NULL;
    }
    return s;
}

/* ---- handler ---------------------------------------------------------- */

void gn_asgi_log_exception(gn_asgi_t *a, const char *what, PyObject *exc)
{
    gn_log(GN_LOG_ERROR, "%s (worker %u)", what, a->worker_id);
    gn_bridge_log_traceback(&a->format_exception, exc);
}

static gn_asgi_req_t *req_new(gn_asgi_t *a, gn_conn_t *c)
{
    PyTypeObject *tp = a->st->asgi_request_type;
    gn_asgi_req_t *r = (gn_asgi_req_t *)GN_FAULT_CALL(tp->tp_alloc(tp, 0)); /* zeroed, tracked */
    if (r == NULL)
        return NULL;
    r->a = a;
    r->conn = c;
    r->length = -1;
    r->chunks = PyList_New(0);
    if (r->chunks == NULL)
        Py_CLEAR(r);
    return r;
}

/* Runs app(scope, receive, send) as an eagerly started task. */
static int start_task(gn_asgi_t *a, gn_asgi_req_t *r, PyObject *scope)
{
    PyObject *receive = PyObject_GetAttr((PyObject *)r, a->s_receive);
    PyObject *send = PyObject_GetAttr((PyObject *)r, a->s_send);
    PyObject *coro = receive && send ? PyObject_CallFunctionObjArgs(a->app, scope, receive, send, NULL) : NULL;
    Py_XDECREF(receive);
    Py_XDECREF(send);
    if (coro == NULL)
        return -1;
    PyObject *args = PyTuple_Pack(1, coro);
    Py_DECREF(coro);
    PyObject *task = args ? PyObject_Call(a->task_type, args, a->task_kwargs) : NULL;
    Py_XDECREF(args);
    if (task == NULL)
        return -1;
    r->task = task;
    /* A handler that never waited is done already: finish it now rather
     * than through a done-callback on the next loop iteration. */
    PyObject *done = PyObject_CallMethodNoArgs(task, a->s_done);
    if (done == NULL)
        return -1;
    if (done == Py_True) {
        Py_DECREF(done);
        PyObject *res = req_done((PyObject *)r, task);
        Py_XDECREF(res);
        return res ? 0 : -1;
    }
    Py_DECREF(done);
    PyObject *cb = PyObject_GetAttr((PyObject *)r, a->s_done_cb);
    PyObject *res = cb ? PyObject_CallMethod(task, "add_done_callback", "O", cb) : NULL;
    Py_XDECREF(cb);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

static void on_request(gn_conn_t *c, void *ctx)
{
    gn_asgi_t *a = ctx;
    GN_FAULT_REQUEST_START();
    gn_asgi_req_t *r = req_new(a, c);
    if (r == NULL) {
        static const char body[] = "Internal Server Error\n";
        PyObject *exc = PyErr_GetRaisedException();
        gn_asgi_log_exception(a, "Exception starting the ASGI application", exc);
        Py_XDECREF(exc);
        gn_conn_write_simple(c, 500, body, sizeof(body) - 1, 0);
        gn_conn_response_done(c);
        return;
    }
    c->bridge = r; /* the connection's reference */
    r->ws = gn_asgi_ws_is_upgrade(c);
    if (r->ws && gn_asgi_ws_check(r) < 0)
        return;
    gn_conn_watch_hangup(c);
    /* Ours too: an eager task may complete the response (dropping the
     * connection's reference) and end before Task() even returns. */
    Py_INCREF(r);
    r->t0 = c->loop->now;
    PyObject *scope = build_scope(a, c);
    if (scope && r->ws && gn_asgi_ws_scope(a, scope, c) < 0)
        Py_CLEAR(scope);
    gn_loop_t *loop = c->loop; /* c may be gone once the task ran */
    gn_loop_app_enter(loop, NULL);
    int rc = scope ? start_task(a, r, scope) : -1;
    if (gn_loop_app_leave(loop) < 0)
        gn_bridge_clear_interrupt();
    Py_XDECREF(scope);
    if (rc < 0) {
        PyObject *exc = PyErr_GetRaisedException();
        gn_asgi_log_exception(a, "Exception starting the ASGI application", exc);
        Py_XDECREF(exc);
        gn_asgi_fail(r);
    }
    Py_DECREF(r);
}

static void on_writable(gn_conn_t *c, void *ctx)
{
    (void)ctx;
    gn_asgi_req_t *r = c->bridge;
    if (r)
        gn_asgi_resolve(&r->send_waiter, Py_None);
}

static void on_abort(gn_conn_t *c, void *ctx)
{
    (void)ctx;
    gn_asgi_req_t *r = c->bridge; /* set: a response is unfinished (http/conn.h) */
    c->bridge = NULL;
    r->conn = NULL;
    r->disconnected = 1;
    gn_asgi_wake_disconnect(r);
    gn_asgi_resolve(&r->send_waiter, Py_None);
    Py_DECREF(r);
}

static void release(void *owner, void *ctx)
{
    (void)ctx;
    Py_DECREF((PyObject *)owner);
}

/* ---- setup ------------------------------------------------------------ */

static int intern(PyObject **slot, const char *s)
{
    *slot = PyUnicode_InternFromString(s);
    return *slot ? 0 : -1;
}

static int setup_asyncio(gn_asgi_t *a)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL)
        return -1;
    a->loop = PyObject_CallMethod(asyncio, "new_event_loop", NULL);
    PyObject *r = a->loop ? PyObject_CallMethod(asyncio, "set_event_loop", "O", a->loop) : NULL;
    Py_XDECREF(r);
    a->task_type = PyObject_GetAttrString(asyncio, "Task");
    Py_DECREF(asyncio);
    if (r == NULL || a->task_type == NULL)
        return -1;
    a->create_future = PyObject_GetAttrString(a->loop, "create_future");
    a->task_kwargs = Py_BuildValue("{sOsO}", "loop", a->loop, "eager_start", Py_True);
    return a->create_future && a->task_kwargs ? 0 : -1;
}

static int setup_lifespan(gn_asgi_t *a)
{
    PyObject *mod = PyImport_ImportModule("gorgon._lifespan");
    PyObject *cls = mod ? PyObject_GetAttrString(mod, "Lifespan") : NULL;
    Py_XDECREF(mod);
    if (cls == NULL)
        return -1;
    a->state = PyDict_New();
    a->lifespan = a->state ? PyObject_CallFunction(cls, "OsO", a->app, a->cfg->lifespan, a->state) : NULL;
    Py_DECREF(cls);
    return a->lifespan ? 0 : -1;
}

gn_asgi_t *gn_asgi_new(PyObject *app, const gn_config_t *cfg, unsigned worker_id, char *err, size_t errlen)
{
    gn_asgi_t *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->cfg = cfg;
    a->worker_id = worker_id;
    a->app = Py_NewRef(app);
    a->handler = (gn_handler_t){.on_request = on_request, .on_writable = on_writable, .on_abort = on_abort,
                                .release = release, .on_body = gn_asgi_on_body,
                                .on_ws_message = gn_asgi_ws_on_message, .on_ws_close = gn_asgi_ws_on_close,
                                .ctx = a};
    a->st = gn_modstate_current();
    GN_FAULT_SETUP_BEGIN(); /* ends once lifespan startup is done */
    if (a->st == NULL || (a->ready_none = gn_asgi_done_future(a, Py_None)) == NULL || intern_scope_keys(a) < 0 ||
        setup_asyncio(a) < 0 || setup_lifespan(a) < 0 ||
        (a->root_path = PyUnicode_FromString(cfg->root_path)) == NULL ||
        (a->asgi_info = Py_BuildValue("{ssss}", "version", "3.0", "spec_version", "2.4")) == NULL ||
        (a->extensions = Py_BuildValue("{s{}}", "http.response.pathsend")) == NULL ||
        (a->extensions_trl = Py_BuildValue("{s{}s{}}", "http.response.pathsend", "http.response.trailers")) == NULL ||
        intern(&a->k_trailers, "trailers") || intern(&a->k_more_trailers, "more_trailers") ||
        intern(&a->k_type, "type") || intern(&a->k_body, "body") || intern(&a->k_more_body, "more_body") ||
        intern(&a->k_status, "status") || intern(&a->k_headers, "headers") || intern(&a->k_path, "path") ||
        intern(&a->v_http_request, "http.request") || intern(&a->v_http_disconnect, "http.disconnect")) {
        gn_bridge_setup_error("ASGI", err, errlen);
        GN_FAULT_SETUP_END();
        gn_asgi_free(a);
        return NULL;
    }
    return a;
}

const gn_handler_t *gn_asgi_handler(gn_asgi_t *a)
{
    return &a->handler;
}

/* ---- running: asyncio drives the epoll loop --------------------------- */

static PyObject *run_until_complete(gn_asgi_t *a, const char *method)
{
    PyObject *coro = PyObject_CallMethod(a->lifespan, method, NULL);
    PyObject *r = coro ? PyObject_CallMethod(a->loop, "run_until_complete", "O", coro) : NULL;
    Py_XDECREF(coro);
    return r;
}

int gn_asgi_startup(gn_asgi_t *a, char *err, size_t errlen)
{
    PyObject *r = run_until_complete(a, "startup");
    GN_FAULT_SETUP_END();
    if (r == NULL) {
        PyObject *exc = PyErr_GetRaisedException();
        gn_asgi_log_exception(a, "lifespan startup raised", exc);
        snprintf(err, errlen, "ASGI lifespan startup failed");
        Py_XDECREF(exc);
        return -1;
    }
    int ok = r == Py_None;
    if (!ok) {
        const char *m = PyUnicode_Check(r) ? PyUnicode_AsUTF8(r) : NULL;
        snprintf(err, errlen, "ASGI lifespan startup failed: %s", m ? m : "(no message)");
        PyErr_Clear();
    }
    Py_DECREF(r);
    return ok ? 0 : -1;
}

static gn_asgi_t *from_capsule(PyObject *self)
{
    return PyCapsule_GetPointer(self, "gorgon.asgi");
}

/* Once the epoll loop has finished, the tick still scheduled must not stop
 * asyncio's loop again: lifespan shutdown runs on it next, and may await. */
static void stop_when_finished(gn_asgi_t *a, int finished)
{
    if (!finished)
        return;
    a->serving = 0;
    PyObject *r = PyObject_CallMethod(a->loop, "stop", NULL);
    Py_XDECREF(r);
    PyErr_Clear();
}

/*
 * --timeout: between two of these callbacks the asyncio loop runs the
 * application's tasks, one call into the application as the watchdog sees
 * it (server/watchdog.h): a loop that does not come back to them within
 * the timeout is blocked by code that does not wait.
 */
static void back_from_app(gn_asgi_t *a)
{
    if (gn_loop_app_leave(a->gloop) < 0)
        gn_bridge_clear_interrupt(); /* it landed in some task, or nowhere */
}

/* --timeout, on a loop that runs: a request whose response has not begun
 * within the timeout is answered 504 and its task cancelled. */
static void expire_request(gn_asgi_t *a, gn_conn_t *c, double now)
{
    gn_asgi_req_t *r = c->state == GN_CONN_RESPOND ? c->bridge : NULL;
    if (r == NULL || r->ws || r->head_sent || now - r->t0 < a->cfg->timeout)
        return;
    Py_INCREF(r);
    answer_timeout(r);
    PyObject *res = r->task ? PyObject_CallMethod(r->task, "cancel", NULL) : NULL;
    Py_XDECREF(res);
    PyErr_Clear();
    Py_DECREF(r);
}

/* Every request of the loop: its connections', and the streams of its
 * HTTP/2 connections. */
static void expire_requests(gn_asgi_t *a)
{
    gn_loop_t *loop = a->gloop;
    double now = gn_now();
    for (gn_conn_t *c = loop->conns, *next; c; c = next) {
        next = c->next;
        for (gn_conn_t *sc = gn_h2_stream_next(c, NULL), *snext; sc; sc = snext) {
            snext = gn_h2_stream_next(c, sc);
            expire_request(a, sc, now);
        }
        expire_request(a, c, now);
    }
}

static PyObject *poll_cb(PyObject *self, PyObject *unused)
{
    (void)unused;
    gn_asgi_t *a = from_capsule(self);
    if (!a->serving)
        Py_RETURN_NONE;
    back_from_app(a);
    stop_when_finished(a, gn_loop_poll(a->gloop));
    gn_loop_app_enter(a->gloop, NULL);
    Py_RETURN_NONE;
}

static PyObject *tick_cb(PyObject *self, PyObject *unused)
{
    (void)unused;
    gn_asgi_t *a = from_capsule(self);
    if (!a->serving)
        Py_RETURN_NONE; /* not scheduled again */
    back_from_app(a);
    if (a->cfg->timeout > 0)
        expire_requests(a);
    stop_when_finished(a, gn_loop_tick(a->gloop));
    PyObject *h = PyObject_CallMethod(a->loop, "call_later", "dO", TICK_SECONDS, a->tick_cb);
    Py_XDECREF(h);
    gn_loop_app_enter(a->gloop, NULL);
    return h ? Py_NewRef(Py_None) : NULL;
}

static PyMethodDef poll_def = {"_gorgon_poll", poll_cb, METH_NOARGS, NULL};
static PyMethodDef tick_def = {"_gorgon_tick", tick_cb, METH_NOARGS, NULL};

static int arm(gn_asgi_t *a)
{
    a->capsule = PyCapsule_New(a, "gorgon.asgi", NULL);
    a->poll_cb = a->capsule ? PyCFunction_New(&poll_def, a->capsule) : NULL;
    a->tick_cb = a->capsule ? PyCFunction_New(&tick_def, a->capsule) : NULL;
    if (a->poll_cb == NULL || a->tick_cb == NULL)
        return -1;
    PyObject *r = PyObject_CallMethod(a->loop, "add_reader", "iO", a->gloop->epfd, a->poll_cb);
    PyObject *h = r ? PyObject_CallMethod(a->loop, "call_later", "dO", TICK_SECONDS, a->tick_cb) : NULL;
    Py_XDECREF(r);
    Py_XDECREF(h);
    return h ? 0 : -1;
}

/* Tasks still running after the last response (background work) are
 * cancelled before the interpreter ends. */
static void cancel_leftovers(gn_asgi_t *a)
{
    PyObject *asyncio = PyImport_ImportModule("gorgon._lifespan");
    PyObject *r = asyncio ? PyObject_CallMethod(asyncio, "cancel_all", "O", a->loop) : NULL;
    Py_XDECREF(r);
    Py_XDECREF(asyncio);
    PyErr_Clear();
}

void gn_asgi_run(gn_asgi_t *a, gn_loop_t *loop)
{
    a->gloop = loop;
    a->serving = 1;
    PyObject *r = arm(a) == 0 ? PyObject_CallMethod(a->loop, "run_forever", NULL) : NULL;
    a->serving = 0;
    back_from_app(a);
    if (r == NULL) {
        PyObject *exc = PyErr_GetRaisedException();
        gn_asgi_log_exception(a, "the worker's event loop failed", exc);
        Py_XDECREF(exc);
    }
    Py_XDECREF(r);
    r = PyObject_CallMethod(a->loop, "remove_reader", "i", loop->epfd);
    Py_XDECREF(r);
    PyErr_Clear();
    r = run_until_complete(a, "shutdown");
    if (r == NULL) {
        PyObject *exc = PyErr_GetRaisedException();
        gn_asgi_log_exception(a, "lifespan shutdown raised", exc);
        Py_XDECREF(exc);
    } else if (r != Py_None && PyUnicode_Check(r)) {
        const char *m = PyUnicode_AsUTF8(r);
        gn_log(GN_LOG_ERROR, "worker %u: ASGI lifespan shutdown failed: %s", a->worker_id, m ? m : "(no message)");
    }
    Py_XDECREF(r);
    PyErr_Clear();
    cancel_leftovers(a);
    a->gloop = NULL;
}

void gn_asgi_free(gn_asgi_t *a)
{
    if (a == NULL)
        return;
    if (a->loop) {
        PyObject *r = PyObject_CallMethod(a->loop, "close", NULL);
        Py_XDECREF(r);
        PyErr_Clear();
    }
    PyObject **objs[] = {&a->app, &a->loop, &a->create_future, &a->task_type, &a->task_kwargs,
                         &a->lifespan, &a->state, &a->root_path, &a->asgi_info, &a->extensions,
                         &a->format_exception, &a->poll_cb, &a->tick_cb, &a->capsule, &a->k_type,
                         &a->sha1, &a->b64encode, &a->ws_extensions, &a->ready_none,
                         &a->k_body, &a->k_more_body, &a->k_status, &a->k_headers, &a->k_path,
                         &a->v_http_request, &a->v_http_disconnect, &a->extensions_trl, &a->k_trailers,
                         &a->k_more_trailers};
    for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++)
        Py_CLEAR(*objs[i]);
    for (int i = 0; i < GN_ASGI_SCOPE_KEYS; i++)
        Py_CLEAR(a->scope_keys[i]);
    Py_CLEAR(a->v_http);
    Py_CLEAR(a->v_http11);
    Py_CLEAR(a->v_http10);
    Py_CLEAR(a->v_http2);
    Py_CLEAR(a->s_receive);
    Py_CLEAR(a->s_send);
    Py_CLEAR(a->s_done_cb);
    Py_CLEAR(a->s_done);
    free(a);
}
