/*
 * The WSGI bridge: environ, calling the application, and driving its
 * iterable from the worker's event loop. A response that cannot be sent at
 * once (a slow reader, a streamed generator) is resumed from on_writable, so
 * one client never holds the worker while others wait.
 */
#include <Python.h>
#include "bridges/fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridges/common.h"
#include "bridges/wsgi_internal.h"
#include "http/loop.h"
#include "http/response.h"
#include "http/h2.h"
#include "server/log.h"

static const char *const common_headers[GN_WSGI_COMMON_HEADERS] = {
    "host", "user-agent", "accept", "accept-encoding", "accept-language", "connection",
    "cookie", "referer", "cache-control", "origin", "authorization", "x-forwarded-for",
    "x-forwarded-proto", "x-request-id", "if-none-match", "if-modified-since",
};

/* ---- per-worker setup ----------------------------------------------- */

static int intern(PyObject **slot, const char *s)
{
    *slot = PyUnicode_InternFromString(s);
    return *slot ? 0 : -1;
}

static int make_keys(gn_wsgi_t *w)
{
    if (intern(&w->k_method, "REQUEST_METHOD") || intern(&w->k_path, "PATH_INFO") ||
        intern(&w->k_query, "QUERY_STRING") || intern(&w->k_raw_uri, "RAW_URI") ||
        intern(&w->k_protocol, "SERVER_PROTOCOL") || intern(&w->k_server_name, "SERVER_NAME") ||
        intern(&w->k_server_port, "SERVER_PORT") || intern(&w->k_remote_addr, "REMOTE_ADDR") ||
        intern(&w->k_remote_port, "REMOTE_PORT") || intern(&w->k_content_type, "CONTENT_TYPE") ||
        intern(&w->k_content_length, "CONTENT_LENGTH") || intern(&w->k_input, "wsgi.input") ||
        intern(&w->k_url_scheme, "wsgi.url_scheme") ||
        intern(&w->v_get, "GET") || intern(&w->v_post, "POST") || intern(&w->v_head, "HEAD") ||
        intern(&w->v_http10, "HTTP/1.0") || intern(&w->v_http11, "HTTP/1.1") || intern(&w->v_http2, "HTTP/2") || intern(&w->s_write, "write"))
        return -1;
    for (int i = 0; i < GN_WSGI_COMMON_HEADERS; i++) {
        char key[64] = "HTTP_";
        size_t n = strlen(common_headers[i]);
        for (size_t j = 0; j < n; j++) {
            char ch = common_headers[i][j];
            key[5 + j] = ch == '-' ? '_' : (char)(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
        }
        key[5 + n] = '\0';
        w->common[i].lower = common_headers[i];
        w->common[i].len = n;
        if (intern(&w->common[i].key, key))
            return -1;
    }
    return 0;
}

static int template_set(PyObject *d, const char *key, PyObject *value)
{
    PyObject *k = PyUnicode_InternFromString(key);
    int rc = k && value ? PyDict_SetItem(d, k, value) : -1;
    Py_XDECREF(k);
    Py_XDECREF(value);
    return rc;
}

/* The keys every request shares; each environ starts as a copy of it. */
static PyObject *make_template(gn_wsgi_t *w, int multithread, int multiprocess)
{
    PyObject *d = PyDict_New();
    PyObject *errors = PySys_GetObject("stderr"); /* borrowed */
    if (d == NULL || errors == NULL ||
        template_set(d, "wsgi.version", Py_BuildValue("(ii)", 1, 0)) ||
        template_set(d, "wsgi.url_scheme", PyUnicode_FromString("http")) ||
        template_set(d, "wsgi.errors", Py_NewRef(errors)) ||
        template_set(d, "wsgi.multithread", PyBool_FromLong(multithread)) ||
        template_set(d, "wsgi.multiprocess", PyBool_FromLong(multiprocess)) ||
        template_set(d, "wsgi.run_once", Py_NewRef(Py_False)) ||
        template_set(d, "wsgi.input_terminated", Py_NewRef(Py_True)) ||
        template_set(d, "wsgi.file_wrapper", Py_NewRef((PyObject *)w->st->file_wrapper_type)) ||
        template_set(d, "SCRIPT_NAME", PyUnicode_FromString("")) ||
        template_set(d, "SERVER_SOFTWARE", PyUnicode_FromString("gorgon")) ||
        template_set(d, "gorgon.worker_id", PyLong_FromUnsignedLong(w->worker_id))) {
        Py_XDECREF(d);
        return NULL;
    }
    return d;
}

static void on_request(gn_conn_t *c, void *ctx);
static void on_writable(gn_conn_t *c, void *ctx);
static void on_abort(gn_conn_t *c, void *ctx);

static void release(void *owner, void *ctx)
{
    (void)ctx;
    Py_DECREF((PyObject *)owner);
}

gn_wsgi_t *gn_wsgi_new(PyObject *app, unsigned worker_id, int multithread,
                       int multiprocess, char *err, size_t errlen)
{
    gn_wsgi_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->worker_id = worker_id;
    w->app = Py_NewRef(app);
    w->handler = (gn_handler_t){.on_request = on_request, .on_writable = on_writable, .on_abort = on_abort,
                                .release = release, .ctx = w};
    w->st = gn_modstate_current();
    GN_FAULT_SETUP_BEGIN();
    int ok = w->st && make_keys(w) == 0 &&
             (w->environ_template = make_template(w, multithread, multiprocess)) != NULL;
    GN_FAULT_SETUP_END();
    if (!ok) {
        gn_bridge_setup_error("WSGI", err, errlen);
        gn_wsgi_free(w);
        return NULL;
    }
    return w;
}

const gn_handler_t *gn_wsgi_handler(gn_wsgi_t *w)
{
    return &w->handler;
}

void gn_wsgi_free(gn_wsgi_t *w)
{
    if (w == NULL)
        return;
    PyObject **objs[] = {&w->app, &w->environ_template, &w->format_exception, &w->s_write,
                         &w->k_method, &w->k_path, &w->k_query, &w->k_raw_uri, &w->k_protocol,
                         &w->k_server_name, &w->k_server_port, &w->k_remote_addr,
                         &w->k_remote_port, &w->k_content_type, &w->k_content_length,
                         &w->k_input, &w->k_url_scheme, &w->v_get, &w->v_post, &w->v_head, &w->v_http10, &w->v_http11, &w->v_http2};
    for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++)
        Py_CLEAR(*objs[i]);
    for (int i = 0; i < GN_WSGI_COMMON_HEADERS; i++)
        Py_CLEAR(w->common[i].key);
    while (w->free_reqs) {
        gn_wsgi_req_t *r = w->free_reqs;
        w->free_reqs = r->next_free;
        free(r);
    }
    free(w);
}

/* ---- environ -------------------------------------------------------- */

static int set_item(PyObject *env, PyObject *key, PyObject *value)
{
    if (value == NULL)
        return -1;
    int rc = PyDict_SetItem(env, key, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *latin1_str(const char *p, size_t n)
{
    return PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
}

static PyObject *method_str(gn_wsgi_t *w, gn_slice_t m)
{
    if (m.len == 3 && memcmp(m.base, "GET", 3) == 0)
        return Py_NewRef(w->v_get);
    if (m.len == 4 && memcmp(m.base, "POST", 4) == 0)
        return Py_NewRef(w->v_post);
    if (m.len == 4 && memcmp(m.base, "HEAD", 4) == 0)
        return Py_NewRef(w->v_head);
    return latin1_str(m.base, m.len);
}

/* "HTTP_" + upper-cased name with '-' as '_'; a common one is interned. */
static PyObject *header_key(gn_wsgi_t *w, gn_slice_t name)
{
    for (int i = 0; i < GN_WSGI_COMMON_HEADERS; i++) {
        if (w->common[i].len == name.len && strncasecmp(w->common[i].lower, name.base, name.len) == 0)
            return Py_NewRef(w->common[i].key);
    }
    char stack[256];
    char *buf = name.len + 5 <= sizeof(stack) ? stack : malloc(name.len + 5);
    if (buf == NULL)
        return PyErr_NoMemory();
    memcpy(buf, "HTTP_", 5);
    for (size_t i = 0; i < name.len; i++) {
        char ch = name.base[i];
        buf[5 + i] = ch == '-' ? '_' : (char)(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
    }
    PyObject *key = PyUnicode_FromStringAndSize(buf, (Py_ssize_t)name.len + 5);
    if (buf != stack)
        free(buf);
    return key;
}

static int slice_is(gn_slice_t s, const char *name)
{
    size_t n = strlen(name);
    return s.len == n && strncasecmp(s.base, name, n) == 0;
}

/* Repeated fields are joined (RFC 9110 5.3); cookies with "; " (RFC 6265). */
static int add_header(gn_wsgi_t *w, PyObject *env, const gn_header_t *h)
{
    if (memchr(h->name.base, '_', h->name.len))
        return 0; /* "X_Foo" would alias "X-Foo" in environ: drop, as nginx does */
    PyObject *key = header_key(w, h->name);
    if (key == NULL)
        return -1;
    PyObject *value = latin1_str(h->value.base, h->value.len);
    PyObject *old = value ? PyDict_GetItemWithError(env, key) : NULL;
    if (old == NULL && PyErr_Occurred()) {
        Py_CLEAR(value); /* the lookup failed: nothing is stored over its exception */
    } else if (old != NULL) {
        const char *sep = slice_is(h->name, "cookie") ? "; " : ",";
        PyObject *joined = PyUnicode_FromFormat("%U%s%U", old, sep, value);
        Py_SETREF(value, joined);
    }
    int rc = value ? PyDict_SetItem(env, key, value) : -1;
    Py_DECREF(key);
    Py_XDECREF(value);
    return rc;
}

static int add_headers(gn_wsgi_t *w, PyObject *env, gn_conn_t *c)
{
    for (size_t i = 0; i < c->req.num_headers; i++) {
        const gn_header_t *h = &c->headers[i];
        if (slice_is(h->name, "content-type")) {
            if (set_item(env, w->k_content_type, latin1_str(h->value.base, h->value.len)) < 0)
                return -1;
        } else if (!slice_is(h->name, "content-length") && add_header(w, env, h) < 0) {
            return -1;
        }
    }
    return 0;
}

static PyObject *port_str(int port)
{
    char buf[20];
    size_t n = gn_fmt_u64(buf, (unsigned long long)(port > 0 ? port : 0));
    return PyUnicode_FromStringAndSize(buf, (Py_ssize_t)n);
}

/* SERVER_NAME/PORT from Host, as gunicorn does (the parser has put an
 * absolute-form target's authority there; an HTTP/1.0 request may carry
 * that authority and no Host); else the local address. */
static int add_server(gn_wsgi_t *w, PyObject *env, gn_conn_t *c)
{
    const gn_header_t *h = gn_conn_header(c, "host");
    gn_slice_t v = h != NULL ? h->value : c->req.authority;
    if (v.len > 0) {
        const char *p = v.base, *end = p + v.len;
        const char *colon = p[0] == '[' ? memchr(p, ']', v.len) : p;
        colon = colon ? memchr(colon, ':', (size_t)(end - colon)) : NULL;
        size_t hostlen = colon ? (size_t)(colon - p) : v.len;
        int fwd_port = gn_conn_forwarded_port(c);
        PyObject *port = fwd_port ? port_str(fwd_port)
                         : colon  ? latin1_str(colon + 1, (size_t)(end - colon - 1))
                                  : PyUnicode_FromString(gn_conn_https(c) ? "443" : "80");
        if (set_item(env, w->k_server_name, latin1_str(p, hostlen)) < 0 ||
            set_item(env, w->k_server_port, port) < 0)
            return -1;
        return 0;
    }
    char host[64];
    int port;
    gn_conn_local(c, host, sizeof(host), &port);
    if (set_item(env, w->k_server_name, PyUnicode_FromString(host)) < 0 ||
        set_item(env, w->k_server_port, port_str(port)) < 0)
        return -1;
    return 0;
}

static PyObject *build_environ(gn_wsgi_t *w, gn_wsgi_req_t *req)
{
    gn_conn_t *c = req->conn;
    const gn_request_t *r = &c->req;
    PyObject *env = PyDict_Copy(w->environ_template);
    if (env == NULL)
        return NULL;
    char host[64];
    int port;
    gn_conn_peer(c, host, sizeof(host), &port);
    int has_body = r->content_length >= 0 || (r->flags & GN_REQ_CHUNKED) || c->body.len > 0; /* HTTP/2: END_STREAM ends it */
    if (set_item(env, w->k_method, method_str(w, r->method)) < 0 ||
        set_item(env, w->k_path, gn_bridge_decode_path(r->path.base, r->path.len, 0)) < 0 ||
        set_item(env, w->k_query, latin1_str(r->query.base, r->query.len)) < 0 ||
        set_item(env, w->k_raw_uri, latin1_str(r->target.base, r->target.len)) < 0 ||
        PyDict_SetItem(env, w->k_protocol, r->minor_version == GN_HTTP2_VERSION ? w->v_http2 : r->minor_version ? w->v_http11 : w->v_http10) < 0 ||
        set_item(env, w->k_remote_addr, PyUnicode_FromString(host)) < 0 ||
        set_item(env, w->k_remote_port, port_str(port)) < 0 || add_server(w, env, c) < 0 ||
        add_headers(w, env, c) < 0 ||
        (gn_conn_https(c) && set_item(env, w->k_url_scheme, PyUnicode_FromString("https")) < 0) ||
        (has_body && set_item(env, w->k_content_length, PyUnicode_FromFormat("%zu", c->body.len)) < 0) ||
        PyDict_SetItem(env, w->k_input, req->input) < 0) {
        Py_DECREF(env);
        return NULL;
    }
    return env;
}

/* ---- requests ------------------------------------------------------- */

static gn_wsgi_req_t *req_new(gn_wsgi_t *w, gn_conn_t *c)
{
    gn_wsgi_req_t *req = w->free_reqs;
    if (req)
        w->free_reqs = req->next_free;
    else if ((req = malloc(sizeof(*req))) == NULL)
        return NULL;
    memset(req, 0, sizeof(*req));
    req->w = w;
    req->conn = c;
    req->length = -1;
    req->seq_pos = -1;
    c->bridge = req;
    return req;
}

static void req_free(gn_wsgi_req_t *req)
{
    if (req->sr)
        gn_wsgi_start_response_detach(req->sr);
    if (req->input)
        gn_wsgi_input_detach(req->input);
    Py_CLEAR(req->sr);
    Py_CLEAR(req->input);
    Py_CLEAR(req->result);
    Py_CLEAR(req->iter);
    Py_CLEAR(req->status);
    Py_CLEAR(req->headers);
    req->next_free = req->w->free_reqs;
    req->w->free_reqs = req;
}

void gn_wsgi_app_enter(gn_wsgi_req_t *req)
{
    gn_loop_app_enter(req->conn->loop, req->conn);
}

int gn_wsgi_app_back(gn_wsgi_req_t *req)
{
    if (gn_loop_app_leave(req->conn->loop) < 0)
        req->timed_out = 1;
    return req->timed_out;
}

/* Logs the current exception with its traceback, as one block. */
static void log_app_error(gn_wsgi_req_t *req, const char *what)
{
    const gn_request_t *r = &req->conn->req;
    PyObject *exc = PyErr_GetRaisedException();
    gn_log(GN_LOG_ERROR, "%s %.*s %.*s (worker %u)", what, (int)r->method.len, r->method.base,
           (int)(r->target.len > 200 ? 200 : r->target.len), r->target.base, req->w->worker_id);
    gn_bridge_log_traceback(&req->w->format_exception, exc);
    Py_DECREF(exc);
}

/* PEP 3333: close() is called whatever happened, if the iterable has it. */
static void call_close(gn_wsgi_req_t *req)
{
    /* The response is over: start_response and write() called from close()
     * raise instead of writing after its end. */
    if (req->sr)
        gn_wsgi_start_response_detach(req->sr);
    PyObject *result = req->result;
    if (result == NULL || PyList_CheckExact(result) || PyTuple_CheckExact(result))
        return;
    gn_wsgi_app_enter(req);
    PyObject *r = PyObject_CallMethod(result, "close", NULL);
    if (gn_wsgi_app_back(req)) {
        PyErr_Clear();
        gn_bridge_clear_interrupt();
    } else if (r == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError))
            PyErr_Clear();
        else
            log_app_error(req, "Error closing the response of");
    }
    Py_XDECREF(r);
}

static void send_500(gn_conn_t *c)
{
    static const char body[] = "Internal Server Error\n";
    gn_conn_write_simple(c, 500, body, sizeof(body) - 1, 0);
}

/* The app failed (exception set): 500 if nothing was sent, else cut. */
static void app_failed(gn_wsgi_req_t *req)
{
    gn_conn_t *c = req->conn;
    log_app_error(req, "Error handling request");
    call_close(req);
    int sent = req->head_sent;
    req_free(req);
    if (sent) {
        gn_conn_response_abort(c);
    } else {
        send_500(c);
        gn_conn_response_done(c);
    }
}

/* The watchdog left an HTTP/2 connection alone (its other streams go on):
 * the stream gets the 504 if its response had not begun, else it is reset
 * (gn_conn_response_abort). */
static void timed_out_h2(gn_wsgi_req_t *req)
{
    static const char body[] = "Gateway Timeout\n";
    gn_conn_t *c = req->conn;
    int began = req->head_sent;
    call_close(req);
    req_free(req);
    if (began) {
        gn_conn_response_abort(c);
        return;
    }
    gn_conn_write_simple(c, 504, body, sizeof(body) - 1, 0);
    gn_conn_response_done(c);
}

/* --timeout: the watchdog answered the client (a 504, or the connection
 * closed) and may have interrupted the application: whatever it produced
 * is dropped, and the connection ends. An HTTP/2 stream is answered here
 * instead, and only the stream ends (timed_out_h2). */
static void timed_out(gn_wsgi_req_t *req)
{
    gn_conn_t *c = req->conn;
    PyErr_Clear();
    gn_bridge_clear_interrupt();
    gn_log(GN_LOG_WARNING, "worker %u: back from the request past --timeout", req->w->worker_id);
    if (c->h2s) {
        timed_out_h2(req);
        return;
    }
    if (c->status == 0)
        c->status = 504; /* for the access log, and the watchdog: answered */
    c->sent_body = 0;
    call_close(req);
    req_free(req);
    gn_conn_response_abort(c);
}

static void finish(gn_wsgi_req_t *req)
{
    gn_conn_t *c = req->conn;
    if (!req->started) {
        PyErr_SetString(PyExc_RuntimeError, "the application returned without calling start_response");
        app_failed(req);
        return;
    }
    if (!req->head_sent && gn_wsgi_send_head(req, (int64_t)req->sent) < 0) {
        app_failed(req);
        return;
    }
    if (req->chunked && !req->no_body && gn_conn_write(c, "0\r\n\r\n", 5) < 0)
        c->keepalive = 0; /* no last chunk: the close tells the client the body is cut */
    if (req->length >= 0 && req->sent < (uint64_t)req->length && !req->no_body)
        c->keepalive = 0; /* the body is shorter than promised: the close ends it */
    call_close(req);
    req_free(req);
    gn_conn_response_done(c);
}

/* Total length of a list/tuple of bytes, or -1 if an item is not bytes. */
static int64_t seq_length(PyObject *seq)
{
    int64_t total = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_Check(item))
            return -1;
        total += PyBytes_GET_SIZE(item);
    }
    return total;
}

static PyObject *next_item(gn_wsgi_req_t *req)
{
    if (req->seq_pos < 0) {
        gn_wsgi_app_enter(req);
        PyObject *item = PyIter_Next(req->iter);
        if (gn_wsgi_app_back(req))
            Py_CLEAR(item);
        return item;
    }
    if (req->seq_pos >= PySequence_Fast_GET_SIZE(req->result))
        return NULL;
    return Py_NewRef(PySequence_Fast_GET_ITEM(req->result, req->seq_pos++));
}

/* Produces body items until done or the output queue is full. */
static void produce(gn_wsgi_req_t *req)
{
    gn_conn_t *c = req->conn;
    while (!gn_conn_out_full(c)) {
        /* A generator may take its time over the next item: what it already
         * yielded goes to the client first. A list is sent in one writev. */
        if (req->seq_pos < 0 && c->out_bytes > 0)
            gn_conn_flush(c);
        PyObject *item = next_item(req);
        if (req->timed_out) {
            timed_out(req);
            return;
        }
        if (item == NULL) {
            if (PyErr_Occurred())
                app_failed(req);
            else
                finish(req);
            return;
        }
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "WSGI body items must be bytes, not %.100s", Py_TYPE(item)->tp_name);
            Py_DECREF(item);
            app_failed(req);
            return;
        }
        if (PyBytes_GET_SIZE(item) == 0) { /* headers wait for the first real byte */
            Py_DECREF(item);
            continue;
        }
        if (!req->started) {
            Py_DECREF(item);
            PyErr_SetString(PyExc_RuntimeError, "the application yielded body bytes before start_response");
            app_failed(req);
            return;
        }
        if (!req->head_sent) {
            int64_t known = req->seq_pos >= 0 ? seq_length(req->result) : -1;
            if (gn_wsgi_send_head(req, known) < 0) {
                Py_DECREF(item);
                app_failed(req);
                return;
            }
        }
        if (gn_wsgi_send_body(req, item) < 0) {
            app_failed(req);
            return;
        }
    }
}

/* wsgi.file_wrapper over a regular file: the kernel sends it (sendfile). */
static int try_sendfile(gn_wsgi_req_t *req)
{
    int fd;
    off_t off;
    size_t len;
    if (!req->started || req->head_sent || !gn_wsgi_file_wrapper_range(req->result, req->w->st, &fd, &off, &len))
        return 0;
    if (req->length >= 0 && (uint64_t)req->length < len)
        len = (size_t)req->length;
    if (gn_wsgi_send_head(req, (int64_t)len) < 0) {
        app_failed(req);
        return 1;
    }
    req->sent = len;
    if (!req->no_body && len > 0) {
        req->conn->sent_body = len;
        gn_conn_write_file(req->conn, fd, off, len, Py_NewRef(req->result));
    }
    req->file_queued = 1;
    return 1;
}

static void on_request(gn_conn_t *c, void *ctx)
{
    gn_wsgi_t *w = ctx;
    GN_FAULT_REQUEST_START();
    gn_wsgi_req_t *req = req_new(w, c);
    if (req == NULL) {
        send_500(c);
        gn_conn_response_done(c);
        return;
    }
    req->input = gn_wsgi_input_new(w->st, &c->body);
    req->sr = req->input ? gn_wsgi_start_response_new(req) : NULL;
    PyObject *env = req->sr ? build_environ(w, req) : NULL;
    if (env == NULL) {
        app_failed(req);
        return;
    }
    PyObject *args[2] = {env, req->sr};
    gn_wsgi_app_enter(req);
    req->result = PyObject_Vectorcall(w->app, args, 2, NULL);
    int late = gn_wsgi_app_back(req);
    Py_DECREF(env);
    if (late) {
        timed_out(req);
        return;
    }
    if (req->result == NULL) {
        app_failed(req);
        return;
    }
    if (try_sendfile(req))
        return;
    if (PyList_CheckExact(req->result) || PyTuple_CheckExact(req->result)) {
        req->seq_pos = 0;
    } else if ((req->iter = PyObject_GetIter(req->result)) == NULL) {
        app_failed(req);
        return;
    }
    produce(req);
}

static void on_writable(gn_conn_t *c, void *ctx)
{
    (void)ctx;
    gn_wsgi_req_t *req = c->bridge;
    if (!req->file_queued)
        produce(req);
    else if (c->out_bytes == 0)
        finish(req);
    /* else an HTTP/2 stream, which calls whenever its queue has room: the
     * file is still to be read, and closing it (finish) must wait. */
}

static void on_abort(gn_conn_t *c, void *ctx)
{
    (void)ctx;
    gn_wsgi_req_t *req = c->bridge;
    call_close(req);
    req_free(req);
    c->bridge = NULL;
}

int gn_wsgi_add_types(PyObject *module, gn_modstate_t *st)
{
    st->input_type = gn_wsgi_input_type_new(module);
    st->start_response_type = gn_wsgi_start_response_type_new(module);
    st->file_wrapper_type = gn_wsgi_file_wrapper_type_new(module);
    if (!st->input_type || !st->start_response_type || !st->file_wrapper_type)
        return -1;
    return PyModule_AddType(module, st->file_wrapper_type);
}
