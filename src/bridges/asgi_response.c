/*
 * send(): http.response.start, http.response.body (streamed with
 * more_body), http.response.pathsend (sendfile), http.response.trailers
 * (HTTP/2, and HTTP/1.1's chunked trailer section); framing as for WSGI.
 */
#include <Python.h>
#include "bridges/fault.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "bridges/asgi_internal.h"
#include "http/h2.h"
#include "http/response.h"
#include "server/log.h"

static int put(gn_asgi_req_t *r, const char *p, size_t n)
{
    if (gn_conn_write(r->conn, p, n) < 0) {
        r->broken = r->head_sent; /* nothing is out before the head's first bytes */
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int name_is(const char *p, Py_ssize_t n, const char *name)
{
    return (size_t)n == strlen(name) && strncasecmp(p, name, (size_t)n) == 0;
}

int gn_asgi__bad_octets(const char *p, Py_ssize_t n, int name)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '\r' || ch == '\n' || ch == 0 || (name && (ch <= ' ' || ch == ':' || ch >= 0x7f)))
            return 1;
    }
    return name && n == 0;
}

/* What the headers tell the server; taken only once all of them are valid,
 * so that a refused http.response.start leaves the response as it was. */
typedef struct {
    int64_t length;
    int has_date, has_server, close;
} noted_t;

/* Checks one [name, value] pair of byte strings; notes what matters. */
static int note_header(noted_t *nt, PyObject *pair)
{
    PyObject *seq = PySequence_Fast(pair, "ASGI headers must be [name, value] pairs");
    if (seq == NULL)
        return -1;
    int rc = -1;
    if (PySequence_Fast_GET_SIZE(seq) != 2 || !PyBytes_Check(PySequence_Fast_GET_ITEM(seq, 0)) ||
        !PyBytes_Check(PySequence_Fast_GET_ITEM(seq, 1))) {
        PyErr_SetString(PyExc_TypeError, "ASGI headers must be [bytes, bytes] pairs");
        goto done;
    }
    PyObject *name = PySequence_Fast_GET_ITEM(seq, 0), *value = PySequence_Fast_GET_ITEM(seq, 1);
    const char *n = PyBytes_AS_STRING(name), *v = PyBytes_AS_STRING(value);
    Py_ssize_t nl = PyBytes_GET_SIZE(name), vl = PyBytes_GET_SIZE(value);
    if (gn_asgi__bad_octets(n, nl, 1) || gn_asgi__bad_octets(v, vl, 0)) {
        PyErr_Format(PyExc_ValueError, "invalid ASGI header %R: %R", name, value);
        goto done;
    }
    if (name_is(n, nl, "content-length")) {
        /* Digits only, as WSGI's: the field goes out as given, and beside
         * a framing of the server's own it would contradict it. */
        int64_t len = vl > 0 ? 0 : -1;
        for (Py_ssize_t i = 0; i < vl && len >= 0; i++)
            len = v[i] >= '0' && v[i] <= '9' && len < INT64_MAX / 10 ? len * 10 + (v[i] - '0') : -1;
        if (len < 0) {
            PyErr_Format(PyExc_ValueError, "invalid Content-Length %.*s", (int)vl, v);
            goto done;
        }
        nt->length = len;
    } else if (name_is(n, nl, "date")) {
        nt->has_date = 1;
    } else if (name_is(n, nl, "server")) {
        nt->has_server = 1;
    } else if (name_is(n, nl, "connection") && vl >= 5 && strncasecmp(v, "close", 5) == 0) {
        nt->close = 1;
    }
    rc = 0;
done:
    Py_DECREF(seq);
    return rc;
}

int gn_asgi__response_start(gn_asgi_req_t *r, PyObject *msg)
{
    if (r->started) {
        PyErr_SetString(PyExc_RuntimeError, "http.response.start sent twice");
        return -1;
    }
    PyObject *status = PyDict_GetItemWithError(msg, r->a->k_status);
    if (status == NULL || !PyLong_Check(status)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "http.response.start needs an int 'status'");
        return -1;
    }
    int code = PyLong_AsInt(status);
    if (code == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear(); /* out of range: said below */
    }
    if (code < 100 || code > 999) {
        PyErr_Format(PyExc_ValueError, "invalid HTTP status %R", status);
        return -1;
    }
    PyObject *headers = PyDict_GetItemWithError(msg, r->a->k_headers);
    if (headers == NULL && PyErr_Occurred())
        return -1;
    PyObject *list = headers ? PySequence_List(headers) : PyList_New(0);
    if (list == NULL)
        return -1;
    noted_t nt = {.length = -1};
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        if (note_header(&nt, PyList_GET_ITEM(list, i)) < 0) {
            Py_DECREF(list);
            return -1;
        }
    }
    r->length = nt.length;
    r->has_date = nt.has_date;
    r->has_server = nt.has_server;
    if (nt.close)
        r->conn->keepalive = 0;
    r->status = code;
    r->headers = list;
    r->started = 1;
    /* Only where the extension is in the scope: HTTP/1.1 and HTTP/2. */
    PyObject *trailers = r->conn->req.minor_version ? PyDict_GetItemWithError(msg, r->a->k_trailers) : NULL;
    r->trailers = trailers != NULL && PyObject_IsTrue(trailers) == 1;
    return PyErr_Occurred() ? -1 : 0;
}

static int put_headers(gn_asgi_req_t *r)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(r->headers); i++) {
        PyObject *seq = PySequence_Fast(PyList_GET_ITEM(r->headers, i), "");
        if (seq == NULL)
            return -1;
        PyObject *name = PySequence_Fast_GET_ITEM(seq, 0), *value = PySequence_Fast_GET_ITEM(seq, 1);
        const char *n = PyBytes_AS_STRING(name);
        Py_ssize_t nl = PyBytes_GET_SIZE(name);
        int skip = name_is(n, nl, "connection") || name_is(n, nl, "transfer-encoding") ||
                   (r->no_body == 2 && name_is(n, nl, "content-length"));
        int rc = skip ? 0
                      : put(r, n, (size_t)nl) || put(r, ": ", 2) ||
                            put(r, PyBytes_AS_STRING(value), (size_t)PyBytes_GET_SIZE(value)) ||
                            put(r, "\r\n", 2);
        Py_DECREF(seq);
        if (rc)
            return -1;
    }
    return 0;
}

static int send_head(gn_asgi_req_t *r, int64_t known_length)
{
    gn_conn_t *c = r->conn;
    gn_framing_t f;
    gn_http_framing(&f, r->status, gn_conn_is_head(c), c->req.minor_version, r->length, known_length,
                    c->keepalive && !gn_conn_stopping(c));
    r->no_body = f.no_body;
    r->chunked = f.chunked;
    r->length = f.length;
    if (f.close)
        c->keepalive = 0;
    char line[64], tail[256];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", r->status, gn_http_reason(r->status));
    size_t tlen = gn_http_head_tail(tail, sizeof(tail), &f, !r->has_date, !r->has_server, c->req.minor_version);
    if (put(r, line, (size_t)n))
        return -1;
    r->head_sent = r->broken = 1; /* part of it is out: from here a failure cuts the response */
    if (put_headers(r) || put(r, tail, tlen))
        return -1;
    r->broken = 0;
    c->status = r->status;
    return 0;
}

static int send_bytes(gn_asgi_req_t *r, PyObject *body)
{
    gn_conn_t *c = r->conn;
    size_t n = (size_t)PyBytes_GET_SIZE(body);
    if (r->length >= 0 && r->sent + n > (uint64_t)r->length)
        n = (size_t)((uint64_t)r->length - r->sent);
    r->sent += n;
    if (r->no_body || n == 0)
        return 0;
    c->sent_body += n;
    if (gn_conn_write_body(c, r->chunked, PyBytes_AS_STRING(body), n, Py_NewRef(body)) < 0) {
        r->broken = 1;
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* The response is complete: the connection may carry the next request. */
static void complete(gn_asgi_req_t *r)
{
    gn_conn_t *c = r->conn;
    /* The trailer section's end; without it the close tells the client the
     * body is cut. */
    if (r->chunked && !r->no_body && put(r, r->trl_open ? "\r\n" : "0\r\n\r\n", r->trl_open ? 2 : 5) < 0)
        c->keepalive = 0;
    PyErr_Clear();
    if (r->length >= 0 && r->sent < (uint64_t)r->length && !r->no_body)
        c->keepalive = 0;
    r->finished = 1;
    gn_asgi_detach(r, 1);
}

int gn_asgi__response_body(gn_asgi_req_t *r, PyObject *msg)
{
    if (!r->started) {
        PyErr_SetString(PyExc_RuntimeError, "http.response.body before http.response.start");
        return -1;
    }
    PyObject *body = PyDict_GetItemWithError(msg, r->a->k_body);
    PyObject *more = PyDict_GetItemWithError(msg, r->a->k_more_body);
    if (PyErr_Occurred())
        return -1;
    if (body != NULL && !PyBytes_Check(body)) {
        PyErr_Format(PyExc_TypeError, "http.response.body 'body' must be bytes, not %.100s", Py_TYPE(body)->tp_name);
        return -1;
    }
    int more_body = more != NULL ? PyObject_IsTrue(more) : 0;
    if (more_body < 0)
        return -1;
    Py_ssize_t len = body ? PyBytes_GET_SIZE(body) : 0;
    /* Trailers over HTTP/1.1 need chunks: no Content-Length of the server's. */
    int unknown = more_body || (r->trailers && !r->conn->h2s);
    if (!r->head_sent && send_head(r, unknown ? -1 : (int64_t)(r->sent + (uint64_t)len)) < 0)
        return -1;
    if (body != NULL && send_bytes(r, body) < 0)
        return -1;
    if (!more_body && r->trailers)
        r->body_ended = 1; /* complete with the last http.response.trailers */
    else if (!more_body)
        complete(r);
    return 0;
}

/* One trailer field over HTTP/1.1: a line of the trailer section after the
 * last chunk (RFC 9112 7.1.2), but none that frames or routes the message
 * (RFC 9110 6.5.1). A response that is not chunked (the application gave a
 * Content-Length, HEAD, a 204) has no room for them: they are dropped. */
static int put_trailer(gn_asgi_req_t *r, const char *n, size_t nl, const char *v, size_t vl)
{
    if (gn_http_connection_field(n, nl) || name_is(n, (Py_ssize_t)nl, "content-length"))
        return 0;
    if (!r->chunked || r->no_body) {
        if (!r->trl_open) {
            const gn_request_t *q = &r->conn->req;
            gn_log(GN_LOG_DEBUG, "%.*s %.*s: response trailers dropped (the response is not chunked)",
                   (int)(q->method.len > 16 ? 16 : q->method.len), q->method.base,
                   (int)(q->target.len > 200 ? 200 : q->target.len), q->target.base);
        }
        r->trl_open = 1; /* logged once (complete() looks at it only when chunked) */
        return 0;
    }
    if (!r->trl_open && put(r, "0\r\n", 3))
        return -1;
    r->trl_open = 1;
    return put(r, n, nl) || put(r, ": ", 2) || put(r, v, vl) || put(r, "\r\n", 2) ? -1 : 0;
}

static int add_trailer(gn_asgi_req_t *r, PyObject *name, PyObject *value)
{
    const char *n = PyBytes_AS_STRING(name), *v = PyBytes_AS_STRING(value);
    size_t nl = (size_t)PyBytes_GET_SIZE(name), vl = (size_t)PyBytes_GET_SIZE(value);
    return r->conn->h2s ? gn_h2_trailer(r->conn, n, nl, v, vl) : put_trailer(r, n, nl, v, vl);
}

/* http.response.trailers (the ASGI extension): fields for the HEADERS frame
 * that ends an HTTP/2 stream after the body, or for HTTP/1.1's trailer
 * section. */
static int response_trailers(gn_asgi_req_t *r, PyObject *msg)
{
    if (!r->trailers || !r->body_ended) {
        PyErr_SetString(PyExc_RuntimeError, "http.response.trailers without 'trailers': True in "
                                            "http.response.start, or before the last http.response.body");
        return -1;
    }
    PyObject *headers = PyDict_GetItemWithError(msg, r->a->k_headers);
    PyObject *more = PyDict_GetItemWithError(msg, r->a->k_more_trailers);
    PyObject *list = headers ? PySequence_List(headers) : PyErr_Occurred() ? NULL : PyList_New(0);
    if (list == NULL)
        return -1;
    noted_t nt = {.length = -1};
    int rc = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list) && rc == 0; i++)
        rc = note_header(&nt, PyList_GET_ITEM(list, i)); /* all checked before any is taken */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list) && rc == 0; i++) {
        PyObject *name = PySequence_GetItem(PyList_GET_ITEM(list, i), 0);
        PyObject *value = PySequence_GetItem(PyList_GET_ITEM(list, i), 1);
        rc = name && value && add_trailer(r, name, value) == 0 ? 0 : -1;
        if (rc < 0 && !PyErr_Occurred())
            PyErr_NoMemory();
        Py_XDECREF(name);
        Py_XDECREF(value);
    }
    Py_DECREF(list);
    int more_trailers = rc == 0 && more != NULL ? PyObject_IsTrue(more) : 0;
    if (more_trailers < 0)
        return -1;
    if (rc == 0 && !more_trailers)
        complete(r);
    return rc;
}

/* http.response.pathsend: the kernel sends the file (sendfile). */
static int response_pathsend(gn_asgi_req_t *r, PyObject *msg)
{
    PyObject *path = PyDict_GetItemWithError(msg, r->a->k_path);
    if (!r->started || r->head_sent || path == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "http.response.pathsend needs a 'path', after start, before any body");
        return -1;
    }
    PyObject *io = PyImport_ImportModule("io");
    PyObject *f = io ? PyObject_CallMethod(io, "FileIO", "Os", path, "rb") : NULL;
    Py_XDECREF(io);
    if (f == NULL)
        return -1;
    PyObject *fdobj = PyObject_CallMethod(f, "fileno", NULL);
    int fd = fdobj ? PyLong_AsInt(fdobj) : -1;
    Py_XDECREF(fdobj);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "pathsend: %R is not a regular file", path);
        Py_DECREF(f);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    if (r->length >= 0 && (uint64_t)r->length < len)
        len = (size_t)r->length;
    if (send_head(r, (int64_t)len) < 0) {
        Py_DECREF(f);
        return -1;
    }
    r->sent = len;
    if (!r->no_body && len > 0) {
        r->conn->sent_body = len;
        gn_conn_write_file(r->conn, fd, 0, len, f); /* f closes the fd when released */
    } else {
        Py_DECREF(f);
    }
    complete(r);
    return 0;
}

PyObject *gn_asgi_send(gn_asgi_req_t *r, PyObject *msg)
{
    gn_asgi_t *a = r->a;
    if (!PyDict_Check(msg)) {
        PyErr_Format(PyExc_TypeError, "ASGI messages are dicts, not %.100s", Py_TYPE(msg)->tp_name);
        return NULL;
    }
    if (r->conn == NULL) /* the client left, or the response is over: harmless */
        return gn_asgi_done_future(a, Py_None);
    PyObject *type = PyDict_GetItemWithError(msg, a->k_type);
    if (type == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "ASGI message has no 'type'");
        return NULL;
    }
    const char *t = PyUnicode_Check(type) ? PyUnicode_AsUTF8(type) : NULL;
    if (t == NULL && PyErr_Occurred())
        return NULL;
    int rc;
    if (r->ws)
        rc = gn_asgi_ws_send(r, msg, t ? t : "");
    else if (t && strcmp(t, "http.response.body") == 0)
        rc = gn_asgi__response_body(r, msg);
    else if (t && strcmp(t, "http.response.start") == 0)
        rc = gn_asgi__response_start(r, msg);
    else if (t && strcmp(t, "http.response.pathsend") == 0)
        rc = response_pathsend(r, msg);
    else if (t && strcmp(t, "http.response.trailers") == 0)
        rc = response_trailers(r, msg);
    else {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "unexpected ASGI message type %R for http", type);
        rc = -1;
    }
    if (rc < 0) {
        /* Part of a head (a response's or a 101's), a chunk or a trailer
         * went out, the rest could not: the connection is cut now,
         * whatever the app sends after catching the exception. */
        if (r->broken && r->conn != NULL)
            gn_asgi_detach(r, 0);
        return NULL;
    }
    gn_conn_t *c = r->conn;
    if (c == NULL)
        return gn_asgi_done_future(a, Py_None);
    gn_conn_resume(c); /* flush now; registers for writability if needed */
    if (r->conn == NULL || !gn_conn_out_full(r->conn))
        return gn_asgi_done_future(a, Py_None);
    /* Backpressure: the app waits until the client has read enough. */
    PyObject *fut = PyObject_CallNoArgs(a->create_future);
    if (fut == NULL)
        return NULL;
    r->send_waiter = Py_NewRef(fut);
    gn_conn_want_writable(r->conn); /* may resolve it at once, if drained */
    return fut;
}

void gn_asgi_fail(gn_asgi_req_t *r)
{
    if (r->conn == NULL)
        return;
    if (!r->head_sent) {
        static const char body[] = "Internal Server Error\n";
        gn_conn_write_simple(r->conn, 500, body, sizeof(body) - 1, 0);
        gn_asgi_detach(r, 1);
    } else {
        gn_asgi_detach(r, 0);
    }
}

void gn_asgi_detach(gn_asgi_req_t *r, int complete_ok)
{
    gn_conn_t *c = r->conn; /* every caller has checked it is set */
    r->conn = NULL;
    c->bridge = NULL;
    if (complete_ok)
        gn_conn_response_done(c);
    else
        gn_conn_response_abort(c);
    gn_asgi_resolve(&r->send_waiter, Py_None);
    if (r->body_given || r->finished)
        gn_asgi_wake_disconnect(r);
    gn_conn_resume(c);
    Py_DECREF(r); /* the connection's reference */
}
