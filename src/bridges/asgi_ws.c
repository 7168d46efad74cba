/*
 * ASGI "websocket" scopes: the handshake (101 with Sec-WebSocket-Accept, or
 * a denial response), messages both ways, and the disconnect. Frames, pings
 * and the close handshake are the connection layer's (http/ws_conn.c).
 */
#include <Python.h>
#include "bridges/fault.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bridges/asgi_internal.h"
#include "bridges/common.h"
#include "http/response.h"
#include "http/ws.h"
#include "http/ws_deflate.h"

#define QUEUE_HIGH 16 /* queued messages before the connection stops reading */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static int value_has_token(const gn_header_t *h, const char *token)
{
    size_t n = strlen(token);
    for (size_t i = 0; h && i + n <= h->value.len; i++) {
        if (strncasecmp(h->value.base + i, token, n) == 0)
            return 1;
    }
    return 0;
}

int gn_asgi_ws_is_upgrade(const gn_conn_t *c)
{
    return (c->req.flags & GN_REQ_CONN_UPGRADE) && value_has_token(gn_conn_header(c, "upgrade"), "websocket");
}

static void answer_400(gn_asgi_req_t *r, const char *why)
{
    char body[128];
    int n = snprintf(body, sizeof(body), "%s\n", why);
    gn_conn_write_simple(r->conn, 400, body, (size_t)n, 1);
    gn_asgi_detach(r, 1);
}

int gn_asgi_ws_check(gn_asgi_req_t *r)
{
    const gn_conn_t *c = r->conn;
    const gn_header_t *key = gn_conn_header(c, "sec-websocket-key");
    const gn_header_t *ver = gn_conn_header(c, "sec-websocket-version");
    const char *why = NULL;
    if (c->req.method.len != 3 || memcmp(c->req.method.base, "GET", 3) != 0 || c->req.minor_version != 1)
        why = "a WebSocket handshake is an HTTP/1.1 GET";
    else if (key == NULL || key->value.len != 24) /* 16 random bytes, base64 */
        why = "missing or malformed Sec-WebSocket-Key";
    else if (ver == NULL || ver->value.len != 2 || memcmp(ver->value.base, "13", 2) != 0)
        why = "unsupported Sec-WebSocket-Version (13 expected)";
    if (why == NULL)
        return 0;
    answer_400(r, why);
    return -1;
}

/* "a, b" -> ["a", "b"] */
static PyObject *subprotocols(const gn_conn_t *c)
{
    PyObject *list = PyList_New(0);
    const gn_header_t *h = gn_conn_header(c, "sec-websocket-protocol");
    for (size_t i = 0; list && h && i < h->value.len;) {
        size_t j = i;
        while (j < h->value.len && h->value.base[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (h->value.base[a] == ' ' || h->value.base[a] == '\t'))
            a++;
        while (b > a && (h->value.base[b - 1] == ' ' || h->value.base[b - 1] == '\t'))
            b--;
        PyObject *s = b > a ? PyUnicode_DecodeLatin1(h->value.base + a, (Py_ssize_t)(b - a), NULL) : NULL;
        if ((b > a && s == NULL) || (s && PyList_Append(list, s) < 0))
            Py_CLEAR(list);
        Py_XDECREF(s);
        i = j + 1;
    }
    return list;
}

int gn_asgi_ws_scope(gn_asgi_t *a, PyObject *scope, const gn_conn_t *c)
{
    if (a->ws_extensions == NULL && (a->ws_extensions = Py_BuildValue("{s{}}", "websocket.http.response")) == NULL)
        return -1;
    PyObject *type = PyUnicode_FromString("websocket"), *scheme = PyUnicode_FromString(gn_conn_https(c) ? "wss" : "ws");
    PyObject *protos = subprotocols(c), *ext = gn_bridge_extensions(a->ws_extensions, c);
    int rc = type && scheme && protos && ext && PyDict_SetItemString(scope, "type", type) == 0 &&
                     PyDict_SetItemString(scope, "scheme", scheme) == 0 &&
                     PyDict_SetItemString(scope, "subprotocols", protos) == 0 &&
                     PyDict_SetItemString(scope, "extensions", ext) == 0
                 ? 0
                 : -1;
    Py_XDECREF(ext);
    Py_XDECREF(type);
    Py_XDECREF(scheme);
    Py_XDECREF(protos);
    return rc;
}

/* ---- receive ---------------------------------------------------------- */

static PyObject *ws_message(const char *type, const char *key, PyObject *value)
{
    return value ? Py_BuildValue("{sssO}", "type", type, key, value) : Py_BuildValue("{ss}", "type", type);
}

static PyObject *disconnect_message(gn_asgi_req_t *r)
{
    return Py_BuildValue("{sssi}", "type", "websocket.disconnect", "code", r->ws_code ? r->ws_code : 1005);
}

PyObject *gn_asgi_ws_receive(gn_asgi_req_t *r)
{
    gn_asgi_t *a = r->a;
    PyObject *m = NULL;
    if (!r->ws_connect_given) {
        r->ws_connect_given = 1;
        m = ws_message("websocket.connect", NULL, NULL);
    } else if (r->ws_queue && PyList_GET_SIZE(r->ws_queue) > 0) {
        m = Py_NewRef(PyList_GET_ITEM(r->ws_queue, 0));
        if (PySequence_DelItem(r->ws_queue, 0) < 0)
            Py_CLEAR(m);
        if (r->conn && PyList_GET_SIZE(r->ws_queue) < QUEUE_HIGH / 2) {
            gn_conn_ws_pause(r->conn, 0);
            gn_conn_resume(r->conn);
        }
    } else if (r->body_error != NULL) {
        PyErr_SetRaisedException(Py_NewRef(r->body_error));
    } else if (r->ws_state == GN_WS_CLOSED) {
        m = disconnect_message(r);
    }
    if (m != NULL || PyErr_Occurred()) {
        PyObject *fut = m ? gn_asgi_done_future(a, m) : NULL;
        Py_XDECREF(m);
        return fut;
    }
    PyObject *fut = PyObject_CallNoArgs(a->create_future);
    if (fut == NULL)
        return NULL;
    r->recv_waiter = Py_NewRef(fut);
    if (r->conn) /* may fail the connection, resolving fut with the disconnect */
        gn_conn_ws_drained(r->conn);
    return fut;
}

static int deliver(gn_asgi_req_t *r, PyObject *m)
{
    if (r->recv_waiter) {
        gn_asgi_resolve(&r->recv_waiter, m);
        return 0;
    }
    if (r->ws_queue == NULL && (r->ws_queue = PyList_New(0)) == NULL)
        return -1;
    if (PyList_Append(r->ws_queue, m) < 0)
        return -1;
    if (r->conn && PyList_GET_SIZE(r->ws_queue) >= QUEUE_HIGH)
        gn_conn_ws_pause(r->conn, 1); /* the app is behind: stop reading */
    return 0;
}

void gn_asgi_ws_on_message(gn_conn_t *c, int opcode, const char *data, size_t len, void *ctx)
{
    (void)ctx;
    gn_asgi_req_t *r = c->bridge;
    if (r->body_error != NULL)
        return; /* the app hears of the failure first */
    PyObject *v = opcode == GN_WS_TEXT ? PyUnicode_DecodeUTF8(data, (Py_ssize_t)len, NULL)
                                       : PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
    PyObject *m = v ? ws_message("websocket.receive", opcode == GN_WS_TEXT ? "text" : "bytes", v) : NULL;
    Py_XDECREF(v);
    if (m == NULL || deliver(r, m) < 0)
        gn_asgi_input_failed(r);
    Py_XDECREF(m);
}

/* The connection no longer carries this WebSocket. */
static void ws_detach(gn_asgi_req_t *r, int code)
{
    gn_conn_t *c = r->conn;
    r->ws_state = GN_WS_CLOSED;
    if (r->ws_code == 0)
        r->ws_code = code;
    if (c == NULL)
        return;
    r->conn = NULL;
    c->bridge = NULL;
    gn_asgi_resolve(&r->send_waiter, Py_None);
    Py_DECREF(r); /* the connection's reference */
}

void gn_asgi_ws_on_close(gn_conn_t *c, int code, void *ctx)
{
    (void)ctx;
    gn_asgi_req_t *r = c->bridge;
    Py_INCREF(r);
    r->disconnected = 1;
    ws_detach(r, code);
    if (r->recv_waiter) {
        PyObject *m = disconnect_message(r);
        if (m)
            gn_asgi_resolve(&r->recv_waiter, m);
        else
            gn_asgi_input_failed(r);
        Py_XDECREF(m);
        PyErr_Clear();
    }
    Py_DECREF(r);
}

/* ---- send ------------------------------------------------------------- */

static PyObject *accept_key(gn_asgi_t *a, const gn_header_t *key)
{
    if (a->sha1 == NULL || a->b64encode == NULL) {
        /* Both or neither: the next handshake tries again after a failure. */
        PyObject *hashlib = PyImport_ImportModule("hashlib");
        PyObject *sha1 = hashlib ? PyObject_GetAttrString(hashlib, "sha1") : NULL;
        PyObject *base64 = sha1 ? PyImport_ImportModule("base64") : NULL;
        PyObject *b64encode = base64 ? PyObject_GetAttrString(base64, "b64encode") : NULL;
        Py_XDECREF(hashlib);
        Py_XDECREF(base64);
        if (b64encode == NULL) {
            Py_XDECREF(sha1);
            return NULL;
        }
        Py_XSETREF(a->sha1, sha1);
        Py_XSETREF(a->b64encode, b64encode);
    }
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "%.*s%s", (int)key->value.len, key->value.base, WS_GUID);
    PyObject *h = PyObject_CallFunction(a->sha1, "y#", buf, (Py_ssize_t)n);
    PyObject *digest = h ? PyObject_CallMethod(h, "digest", NULL) : NULL;
    PyObject *b64 = digest ? PyObject_CallOneArg(a->b64encode, digest) : NULL;
    Py_XDECREF(h);
    Py_XDECREF(digest);
    return b64;
}

static int put(gn_conn_t *c, const char *p, size_t n)
{
    return gn_conn_write(c, p, n) < 0 ? (PyErr_NoMemory(), -1) : 0;
}

/* The app's extra handshake headers as a list of (name, value) tuples,
 * checked whole before a byte of the 101 is queued, so that a refusal is a
 * clean 403 and never a half-written head. */
static PyObject *extra_headers(PyObject *msg)
{
    PyObject *headers = PyDict_GetItemString(msg, "headers");
    PyObject *it = headers ? PyObject_GetIter(headers) : NULL, *item;
    PyObject *list = PyList_New(0);
    if ((headers && it == NULL) || list == NULL)
        goto fail;
    while (it && (item = PyIter_Next(it)) != NULL) {
        PyObject *seq = PySequence_Fast(item, "websocket.accept headers must be [bytes, bytes] pairs"), *pair = NULL;
        Py_DECREF(item);
        if (seq == NULL)
            goto fail;
        PyObject *name = PySequence_Fast_GET_SIZE(seq) == 2 ? PySequence_Fast_GET_ITEM(seq, 0) : NULL;
        PyObject *value = name ? PySequence_Fast_GET_ITEM(seq, 1) : NULL;
        if (name == NULL || !PyBytes_Check(name) || !PyBytes_Check(value))
            PyErr_SetString(PyExc_TypeError, "websocket.accept headers must be [bytes, bytes] pairs");
        else if (gn_asgi__bad_octets(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), 1) ||
                 gn_asgi__bad_octets(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), 0))
            PyErr_Format(PyExc_ValueError, "invalid websocket.accept header %R: %R", name, value);
        else
            pair = PyTuple_Pack(2, name, value);
        Py_DECREF(seq);
        if (pair == NULL || PyList_Append(list, pair) < 0) {
            Py_XDECREF(pair);
            goto fail;
        }
        Py_DECREF(pair);
    }
    if (PyErr_Occurred())
        goto fail;
    Py_XDECREF(it);
    return list;
fail:
    Py_XDECREF(it);
    Py_XDECREF(list);
    return NULL;
}

static int put_extra_headers(gn_conn_t *c, PyObject *list)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *name = PyTuple_GET_ITEM(PyList_GET_ITEM(list, i), 0);
        PyObject *value = PyTuple_GET_ITEM(PyList_GET_ITEM(list, i), 1);
        if (put(c, PyBytes_AS_STRING(name), (size_t)PyBytes_GET_SIZE(name)) || put(c, ": ", 2) ||
            put(c, PyBytes_AS_STRING(value), (size_t)PyBytes_GET_SIZE(value)) || put(c, "\r\n", 2))
            return -1;
    }
    return 0;
}

static int ws_accept(gn_asgi_req_t *r, PyObject *msg)
{
    gn_conn_t *c = r->conn;
    if (r->ws_state != GN_WS_CONNECTING) {
        PyErr_SetString(PyExc_RuntimeError, "websocket.accept after the handshake");
        return -1;
    }
    PyObject *extra = extra_headers(msg);
    PyObject *key = extra ? accept_key(r->a, gn_conn_header(c, "sec-websocket-key")) : NULL;
    if (key == NULL) {
        Py_XDECREF(extra);
        return -1;
    }
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n", PyBytes_AS_STRING(key));
    Py_DECREF(key);
    PyObject *proto = PyDict_GetItemString(msg, "subprotocol");
    const char *p = proto && proto != Py_None ? PyUnicode_AsUTF8(proto) : NULL;
    if (p && gn_asgi__bad_octets(p, (Py_ssize_t)strlen(p), 1))
        PyErr_Format(PyExc_ValueError, "invalid websocket.accept subprotocol %R", proto);
    if (proto && proto != Py_None && (p == NULL || PyErr_Occurred())) {
        Py_DECREF(extra);
        return -1;
    }
    /* permessage-deflate, when enabled and offered (first header line only:
     * browsers send one). The app sees plain messages either way. */
    gn_ws_deflate_params_t dp;
    const gn_header_t *offer = c->loop->limits->ws_deflate ? gn_conn_header(c, "sec-websocket-extensions") : NULL;
    int deflate = offer && gn_ws_deflate_negotiate(offer->value.base, offer->value.len, &dp);
    char ext[160];
    size_t elen = deflate ? gn_ws_deflate_response(&dp, ext, sizeof(ext)) : 0;
    size_t dlen;
    const char *ds = gn_http_date_server(1, &dlen);
    int rc = put(c, head, (size_t)n);
    if (rc == 0) {
        r->head_sent = r->broken = 1; /* part of it is out: from here a failure cuts the connection */
        rc = (p && (put(c, "Sec-WebSocket-Protocol: ", 24) || put(c, p, strlen(p)) || put(c, "\r\n", 2))) ||
             (deflate && (put(c, "Sec-WebSocket-Extensions: ", 26) || put(c, ext, elen) || put(c, "\r\n", 2))) ||
             put_extra_headers(c, extra) || put(c, ds, dlen) || put(c, "\r\n", 2);
    }
    Py_DECREF(extra);
    if (rc)
        return -1;
    r->broken = 0;
    c->status = 101;
    r->started = 1;
    if (gn_conn_upgrade_ws(c) < 0 || (deflate && gn_conn_ws_deflate(c, &dp) < 0)) {
        PyErr_NoMemory();
        return -1;
    }
    r->ws_state = GN_WS_ACCEPTED;
    return 0;
}

static int ws_send_data(gn_asgi_req_t *r, PyObject *msg)
{
    if (r->ws_state != GN_WS_ACCEPTED) {
        PyErr_SetString(PyExc_RuntimeError, "websocket.send before websocket.accept");
        return -1;
    }
    PyObject *bytes = PyDict_GetItemString(msg, "bytes");
    PyObject *text = PyDict_GetItemString(msg, "text");
    int rc;
    if (bytes && bytes != Py_None && PyBytes_Check(bytes)) {
        rc = gn_conn_ws_send(r->conn, GN_WS_BINARY, PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes));
    } else if (text && text != Py_None && PyUnicode_Check(text)) {
        Py_ssize_t n;
        const char *u = PyUnicode_AsUTF8AndSize(text, &n);
        if (u == NULL)
            return -1;
        rc = gn_conn_ws_send(r->conn, GN_WS_TEXT, u, (size_t)n);
    } else {
        PyErr_SetString(PyExc_TypeError, "websocket.send needs 'bytes' (bytes) or 'text' (str)");
        return -1;
    }
    (void)rc; /* a send after the close handshake began is dropped */
    return 0;
}

static int ws_close(gn_asgi_req_t *r, PyObject *msg)
{
    PyObject *code_obj = PyDict_GetItemString(msg, "code");
    int code = code_obj ? PyLong_AsInt(code_obj) : 1000;
    if (code == -1 && PyErr_Occurred())
        return -1;
    if (r->ws_state == GN_WS_CONNECTING) {
        /* Closing before accepting denies the handshake: HTTP 403. */
        gn_conn_write_simple(r->conn, 403, "", 0, 1);
        r->ws_code = code;
        r->ws_state = GN_WS_CLOSED;
        gn_asgi_detach(r, 1);
        return 0;
    }
    PyObject *reason = PyDict_GetItemString(msg, "reason");
    Py_ssize_t n = 0;
    const char *u = reason && reason != Py_None ? PyUnicode_AsUTF8AndSize(reason, &n) : "";
    if (u == NULL)
        return -1;
    gn_conn_t *c = r->conn;
    gn_conn_ws_close(c, code, u, (size_t)n);
    ws_detach(r, code);
    gn_conn_resume(c);
    return 0;
}

int gn_asgi_ws_send(gn_asgi_req_t *r, PyObject *msg, const char *type)
{
    if (strcmp(type, "websocket.send") == 0)
        return ws_send_data(r, msg);
    if (strcmp(type, "websocket.accept") == 0)
        return ws_accept(r, msg);
    if (strcmp(type, "websocket.close") == 0)
        return ws_close(r, msg);
    if (r->ws_state == GN_WS_CONNECTING && strcmp(type, "websocket.http.response.start") == 0)
        return gn_asgi__response_start(r, msg);
    if (r->ws_state == GN_WS_CONNECTING && strcmp(type, "websocket.http.response.body") == 0) {
        int rc = gn_asgi__response_body(r, msg);
        if (r->conn == NULL) /* the denial response is complete */
            r->ws_state = GN_WS_CLOSED;
        return rc;
    }
    PyErr_Format(PyExc_ValueError, "unexpected ASGI message type '%s' for a websocket", type);
    return -1;
}

void gn_asgi_ws_finish(gn_asgi_req_t *r, int failed)
{
    if (r->conn == NULL)
        return;
    if (r->ws_state == GN_WS_ACCEPTED) {
        gn_conn_t *c = r->conn;
        gn_conn_ws_close(c, failed ? GN_WS_CLOSE_INTERNAL : GN_WS_CLOSE_NORMAL, "", 0);
        ws_detach(r, failed ? GN_WS_CLOSE_INTERNAL : GN_WS_CLOSE_NORMAL);
        gn_conn_resume(c);
        return;
    }
    if (r->head_sent) { /* a denial response left unfinished */
        gn_asgi_fail(r);
        return;
    }
    /* Returned or raised before accepting: the handshake is denied (403). */
    PyObject *msg = Py_BuildValue("{sssi}", "type", "websocket.close", "code", 1000);
    if (msg == NULL || ws_close(r, msg) < 0)
        gn_asgi_fail(r);
    Py_XDECREF(msg);
    PyErr_Clear();
}
