/*
 * start_response, write(), and the response head and body framing.
 */
#include <Python.h>
#include "bridges/fault.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bridges/wsgi_internal.h"
#include "http/loop.h"
#include "http/response.h"


typedef struct {
    PyObject_HEAD
    gn_wsgi_req_t *req; /* NULL once the request is over */
} start_response_t;

/* Latin-1 bytes of a str (PEP 3333 "native strings"), or NULL. */
static const char *latin1(PyObject *s, Py_ssize_t *len)
{
    if (!PyUnicode_Check(s) || PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND)
        return NULL;
    *len = PyUnicode_GET_LENGTH(s);
    return (const char *)PyUnicode_1BYTE_DATA(s);
}

/* CR, LF and NUL would let a value split the response (header injection). */
static int valid_value(const char *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return 0;
    }
    return 1;
}

static int name_is(const char *p, Py_ssize_t n, const char *name)
{
    return (size_t)n == strlen(name) && strncasecmp(p, name, (size_t)n) == 0;
}

static int parse_status(gn_wsgi_req_t *req, PyObject *status)
{
    Py_ssize_t n;
    const char *s = latin1(status, &n);
    if (s == NULL || n < 4 || s[3] != ' ' || !valid_value(s, n)) {
        PyErr_Format(PyExc_ValueError, "invalid WSGI status %R: expected '200 OK'", status);
        return -1;
    }
    int code = 0;
    for (int i = 0; i < 3; i++) {
        if (s[i] < '0' || s[i] > '9') {
            PyErr_Format(PyExc_ValueError, "invalid WSGI status %R", status);
            return -1;
        }
        code = code * 10 + (s[i] - '0');
    }
    if (code < 100) {
        PyErr_Format(PyExc_ValueError, "invalid WSGI status %R", status);
        return -1;
    }
    req->status_code = code;
    return 0;
}

/* What the headers tell the server; taken only once all of them are valid,
 * so that a refused start_response leaves the response as it was. */
typedef struct {
    int64_t length;
    int has_date, has_server, close;
} noted_t;

static int note_header(noted_t *n, const char *name, Py_ssize_t nlen, const char *value, Py_ssize_t vlen)
{
    if (name_is(name, nlen, "content-length")) {
        int64_t v = 0;
        for (Py_ssize_t i = 0; i < vlen; i++) {
            if (value[i] < '0' || value[i] > '9' || v > (INT64_MAX - 9) / 10) {
                PyErr_Format(PyExc_ValueError, "invalid Content-Length %.*s", (int)vlen, value);
                return -1;
            }
            v = v * 10 + (value[i] - '0');
        }
        n->length = vlen ? v : -1;
    } else if (name_is(name, nlen, "date")) {
        n->has_date = 1;
    } else if (name_is(name, nlen, "server")) {
        n->has_server = 1;
    } else if (name_is(name, nlen, "connection")) {
        /* Hop-by-hop: the server writes its own; "close" is honoured. */
        for (Py_ssize_t i = 0; i + 5 <= vlen; i++) {
            if (strncasecmp(value + i, "close", 5) == 0)
                n->close = 1;
        }
    }
    return 0;
}

static int check_headers(gn_wsgi_req_t *req, PyObject *headers)
{
    if (!PyList_Check(headers)) {
        PyErr_Format(PyExc_TypeError, "WSGI headers must be a list, not %.100s", Py_TYPE(headers)->tp_name);
        return -1;
    }
    noted_t n = {.length = -1};
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *t = PyList_GET_ITEM(headers, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 2) {
            PyErr_Format(PyExc_TypeError, "WSGI header %R is not a (name, value) tuple", t);
            return -1;
        }
        Py_ssize_t nlen, vlen;
        const char *name = latin1(PyTuple_GET_ITEM(t, 0), &nlen);
        const char *value = latin1(PyTuple_GET_ITEM(t, 1), &vlen);
        if (name == NULL || value == NULL || !gn_http_token((gn_slice_t){name, (size_t)nlen}) ||
            !valid_value(value, vlen)) {
            PyErr_Format(PyExc_ValueError, "invalid WSGI header %R", t);
            return -1;
        }
        if (note_header(&n, name, nlen, value, vlen) < 0)
            return -1;
    }
    req->length = n.length;
    req->has_date = n.has_date;
    req->has_server = n.has_server;
    if (n.close)
        req->conn->keepalive = 0;
    return 0;
}

static PyObject *call_locked(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"status", "headers", "exc_info", NULL};
    PyObject *status, *headers, *exc_info = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:start_response", kwlist, &status, &headers, &exc_info))
        return NULL;
    gn_wsgi_req_t *req = ((start_response_t *)self)->req;
    if (req == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "start_response called after the response ended");
        return NULL;
    }
    if (exc_info != Py_None) {
        if (req->head_sent) {
            /* PEP 3333: too late to change the response; re-raise. Only an
             * exception can be raised (sys.exc_info() outside an except
             * block gives (None, None, None)). */
            if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3 ||
                !PyExceptionInstance_Check(PyTuple_GET_ITEM(exc_info, 1))) {
                PyErr_Format(PyExc_TypeError, "exc_info must be a (type, value, traceback) tuple of an exception, "
                             "not %.200R", exc_info);
                return NULL;
            }
            PyErr_SetRaisedException(Py_NewRef(PyTuple_GET_ITEM(exc_info, 1)));
            return NULL;
        }
    } else if (req->started) {
        PyErr_SetString(PyExc_RuntimeError, "start_response called a second time without exc_info");
        return NULL;
    }
    if (parse_status(req, status) < 0 || check_headers(req, headers) < 0)
        return NULL;
    Py_XSETREF(req->status, Py_NewRef(status));
    Py_XSETREF(req->headers, Py_NewRef(headers));
    req->started = 1;
    return PyObject_GetAttr(self, req->w->s_write);
}

static PyObject *sr_write_out(gn_wsgi_req_t *req, PyObject *data)
{
    if (!req->head_sent && gn_wsgi_send_head(req, -1) < 0)
        return NULL;
    if (gn_wsgi_send_body(req, Py_NewRef(data)) < 0)
        return NULL;
    /* write() must not return before the data is on its way (PEP 3333), and
     * the queue must stay bounded: wait while over the high-water mark. */
    gn_conn_t *c = req->conn;
    if (gn_conn_flush_blocking(c, c->loop->limits->write_high_water) < 0)
        return PyErr_Format(PyExc_OSError, "client connection lost while writing the response");
    Py_RETURN_NONE;
}

static PyObject *write_locked(PyObject *self, PyObject *data)
{
    gn_wsgi_req_t *req = ((start_response_t *)self)->req;
    if (req == NULL || !req->started) {
        PyErr_SetString(PyExc_RuntimeError, req ? "write() before start_response" : "write() after the response ended");
        return NULL;
    }
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "write() takes bytes, not %.100s", Py_TYPE(data)->tp_name);
        return NULL;
    }
    /* Out of the application while the connection is written (--timeout:
     * the watchdog answers only a request whose thread is in the app). */
    if (gn_wsgi_app_back(req)) {
        PyErr_SetString(req->w->st->request_timeout, "the request ran past --timeout");
        return NULL;
    }
    PyObject *r = sr_write_out(req, data);
    gn_wsgi_app_enter(req);
    return r;
}

/* start_response and write() run in the object's critical section, and so
 * does the detach at the response's end: on a free-threaded build an
 * application thread that kept them is ordered with the worker thread, as
 * the GIL does elsewhere (the macros are a no-op there). */
static PyObject *sr_call(PyObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *r;
    Py_BEGIN_CRITICAL_SECTION(self);
    r = call_locked(self, args, kwds);
    Py_END_CRITICAL_SECTION();
    return r;
}

static PyObject *sr_write(PyObject *self, PyObject *data)
{
    PyObject *r;
    Py_BEGIN_CRITICAL_SECTION(self);
    r = write_locked(self, data);
    Py_END_CRITICAL_SECTION();
    return r;
}

static void sr_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static PyMethodDef sr_methods[] = {
    {"write", sr_write, METH_O, "write(data): the WSGI write() callable"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot sr_slots[] = {
    {Py_tp_call, sr_call},
    {Py_tp_dealloc, sr_dealloc},
    {Py_tp_methods, sr_methods},
    {Py_tp_doc, "start_response(status, headers, exc_info=None) -> write"},
    {0, NULL},
};

static PyType_Spec sr_spec = {
    .name = "gorgon._gorgon.StartResponse",
    .basicsize = sizeof(start_response_t),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = sr_slots,
};

PyTypeObject *gn_wsgi_start_response_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &sr_spec, NULL);
}

PyObject *gn_wsgi_start_response_new(gn_wsgi_req_t *req)
{
    start_response_t *sr =
        (start_response_t *)GN_FAULT_CALL((PyObject *)PyObject_New(start_response_t, req->w->st->start_response_type));
    if (sr)
        sr->req = req;
    return (PyObject *)sr;
}

void gn_wsgi_start_response_detach(PyObject *sr)
{
    Py_BEGIN_CRITICAL_SECTION(sr);
    ((start_response_t *)sr)->req = NULL;
    Py_END_CRITICAL_SECTION();
}

/* ---- the head ------------------------------------------------------- */

static int put(gn_wsgi_req_t *req, const char *p, size_t n)
{
    if (gn_conn_write(req->conn, p, n) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int put_app_headers(gn_wsgi_req_t *req)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(req->headers); i++) {
        PyObject *t = PyList_GET_ITEM(req->headers, i);
        Py_ssize_t nlen, vlen;
        const char *name = latin1(PyTuple_GET_ITEM(t, 0), &nlen);
        const char *value = latin1(PyTuple_GET_ITEM(t, 1), &vlen);
        /* Framing and connection headers are the server's to write. */
        if (name_is(name, nlen, "connection") || name_is(name, nlen, "transfer-encoding") ||
            (req->no_body == 2 && name_is(name, nlen, "content-length")))
            continue;
        if (put(req, name, (size_t)nlen) || put(req, ": ", 2) || put(req, value, (size_t)vlen) ||
            put(req, "\r\n", 2))
            return -1;
    }
    return 0;
}

int gn_wsgi_send_head(gn_wsgi_req_t *req, int64_t known_length)
{
    gn_conn_t *c = req->conn;
    gn_framing_t f;
    gn_http_framing(&f, req->status_code, gn_conn_is_head(c), c->req.minor_version, req->length,
                    known_length, c->keepalive && !gn_conn_stopping(c));
    req->no_body = f.no_body;
    req->chunked = f.chunked;
    req->length = f.length;
    if (f.close)
        c->keepalive = 0;
    Py_ssize_t slen;
    const char *status = latin1(req->status, &slen);
    char tail[256];
    size_t tlen = gn_http_head_tail(tail, sizeof(tail), &f, !req->has_date, !req->has_server,
                                    c->req.minor_version);
    if (put(req, "HTTP/1.1 ", 9))
        return -1;
    req->head_sent = 1; /* part of it is out: from here a failure cuts the response */
    if (put(req, status, (size_t)slen) || put(req, "\r\n", 2) || put_app_headers(req) || put(req, tail, tlen))
        return -1;
    c->status = req->status_code;
    return 0;
}

/* ---- the body ------------------------------------------------------- */

int gn_wsgi_send_body(gn_wsgi_req_t *req, PyObject *item)
{
    gn_conn_t *c = req->conn;
    size_t n = (size_t)PyBytes_GET_SIZE(item);
    if (req->length >= 0 && req->sent + n > (uint64_t)req->length)
        n = (size_t)((uint64_t)req->length - req->sent); /* never more than promised */
    req->sent += n;
    if (req->no_body || n == 0) {
        Py_DECREF(item);
        return 0;
    }
    c->sent_body += n;
    if (gn_conn_write_body(c, req->chunked, PyBytes_AS_STRING(item), n, item) < 0) { /* takes item */
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}
