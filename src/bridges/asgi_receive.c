/*
 * receive(): the request body, pulled from the connection only while the
 * application waits for it, so a large upload is never buffered whole and a
 * slow application slows its client down (TCP backpressure).
 */
#include <Python.h>
#include "bridges/fault.h"

#include "bridges/asgi_internal.h"
#include "server/log.h"

/*
 * An awaitable that is already complete: `await` gets its value without an
 * asyncio Future, a callback or a loop round trip. Most receive() and send()
 * calls of a request that is not held up end this way.
 */
typedef struct {
    PyObject_HEAD
    PyObject *value;
} ready_t;

static PyObject *ready_await(PyObject *self)
{
    return Py_NewRef(self);
}

static PyObject *ready_next(PyObject *self)
{
    PyObject *v = ((ready_t *)self)->value;
    if (v != NULL && v != Py_None)
        PyErr_SetObject(PyExc_StopIteration, v); /* not a tuple: taken as is */
    return NULL; /* StopIteration: the await's result */
}

static int ready_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(((ready_t *)self)->value);
    return 0;
}

static int ready_clear(PyObject *self)
{
    Py_CLEAR(((ready_t *)self)->value);
    return 0;
}

static void ready_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ready_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot ready_slots[] = {
    {Py_am_await, ready_await},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, ready_next},
    {Py_tp_traverse, ready_traverse},
    {Py_tp_clear, ready_clear},
    {Py_tp_dealloc, ready_dealloc},
    {0, NULL},
};

static PyType_Spec ready_spec = {
    .name = "gorgon._gorgon.Ready",
    .basicsize = sizeof(ready_t),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ready_slots,
};

PyTypeObject *gn_asgi_ready_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &ready_spec, NULL);
}

PyObject *gn_asgi_done_future(gn_asgi_t *a, PyObject *result)
{
    if (result == Py_None && a->ready_none != NULL)
        return Py_NewRef(a->ready_none);
    PyTypeObject *tp = a->st->asgi_ready_type;
    ready_t *r = (ready_t *)GN_FAULT_CALL(tp->tp_alloc(tp, 0));
    if (r)
        r->value = Py_NewRef(result);
    return (PyObject *)r;
}

/* Completes *waiter (if any, and not cancelled meanwhile) and clears it. */
void gn_asgi_resolve(PyObject **waiter, PyObject *result)
{
    PyObject *fut = *waiter;
    if (fut == NULL)
        return;
    *waiter = NULL;
    PyObject *done = PyObject_CallMethod(fut, "done", NULL);
    int ok = done != NULL;
    if (done == Py_False) {
        PyObject *r = PyObject_CallMethod(fut, "set_result", "O", result);
        ok = r != NULL;
        Py_XDECREF(r);
    }
    Py_XDECREF(done);
    if (!ok) {
        /* Else the application would wait for ever: the await raises. */
        PyObject *exc = PyErr_GetRaisedException();
        gn_asgi_reject(fut, exc);
        Py_XDECREF(exc);
    }
    PyErr_Clear();
    Py_DECREF(fut);
}

void gn_asgi_reject(PyObject *fut, PyObject *exc)
{
    PyObject *set = exc ? PyObject_CallMethod(fut, "set_exception", "O", exc) : NULL;
    if (set == NULL) {
        PyErr_Clear();
        gn_log(GN_LOG_ERROR, "%s completing an await of the ASGI application: the await is cancelled",
               exc ? Py_TYPE(exc)->tp_name : "an error");
        set = PyObject_CallMethod(fut, "cancel", NULL);
    }
    Py_XDECREF(set);
    PyErr_Clear();
}

static PyObject *message(gn_asgi_t *a, PyObject *type)
{
    PyObject *m = PyDict_New();
    if (m && PyDict_SetItem(m, a->k_type, type) < 0)
        Py_CLEAR(m);
    return m;
}

/* {"type": "http.request", "body": ..., "more_body": ...} from what came. */
static PyObject *take_body(gn_asgi_req_t *r)
{
    gn_asgi_t *a = r->a;
    PyObject *body;
    Py_ssize_t n = PyList_GET_SIZE(r->chunks);
    if (n == 1) {
        body = Py_NewRef(PyList_GET_ITEM(r->chunks, 0));
    } else {
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        body = empty ? PyObject_CallMethod(empty, "join", "O", r->chunks) : NULL;
        Py_XDECREF(empty);
    }
    if (body == NULL || PyList_SetSlice(r->chunks, 0, n, NULL) < 0) {
        Py_XDECREF(body);
        return NULL;
    }
    int more = !r->body_done;
    r->body_given = !more;
    PyObject *m = message(a, a->v_http_request);
    if (m == NULL || PyDict_SetItem(m, a->k_body, body) < 0 ||
        PyDict_SetItem(m, a->k_more_body, more ? Py_True : Py_False) < 0)
        Py_CLEAR(m);
    Py_DECREF(body);
    return m;
}

void gn_asgi_wake_disconnect(gn_asgi_req_t *r)
{
    if (r->recv_waiter == NULL)
        return;
    PyObject *m = message(r->a, r->a->v_http_disconnect);
    if (m)
        gn_asgi_resolve(&r->recv_waiter, m);
    else
        gn_asgi_input_failed(r);
    Py_XDECREF(m);
    PyErr_Clear();
}

PyObject *gn_asgi_receive(gn_asgi_req_t *r)
{
    gn_asgi_t *a = r->a;
    if (r->recv_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "receive() called again before the previous one completed");
        return NULL;
    }
    if (r->ws)
        return gn_asgi_ws_receive(r);
    if (r->body_error != NULL) {
        PyErr_SetRaisedException(Py_NewRef(r->body_error));
        return NULL;
    }
    if (PyList_GET_SIZE(r->chunks) > 0 || (r->body_done && !r->body_given)) {
        PyObject *m = take_body(r);
        PyObject *fut = m ? gn_asgi_done_future(a, m) : NULL;
        Py_XDECREF(m);
        return fut;
    }
    PyObject *fut = PyObject_CallNoArgs(a->create_future);
    if (fut == NULL)
        return NULL;
    r->recv_waiter = Py_NewRef(fut);
    if (r->disconnected || (r->body_given && r->finished)) {
        gn_asgi_wake_disconnect(r); /* the request is over: http.disconnect */
    } else if (!r->body_given && r->conn != NULL) {
        gn_conn_want_body(r->conn); /* may deliver at once, through on_body */
    }
    /* else: the body was read; a disconnect (or the response's end) wakes it */
    return fut;
}

void gn_asgi_input_failed(gn_asgi_req_t *r)
{
    if (!PyErr_Occurred())
        PyErr_NoMemory();
    PyObject *exc = PyErr_GetRaisedException();
    if (r->body_error == NULL)
        r->body_error = Py_NewRef(exc);
    if (r->recv_waiter != NULL) {
        PyObject *fut = r->recv_waiter;
        r->recv_waiter = NULL;
        gn_asgi_reject(fut, exc);
        Py_DECREF(fut);
    }
    Py_DECREF(exc);
}

void gn_asgi_on_body(gn_conn_t *c, const char *data, size_t len, int done, void *ctx)
{
    (void)ctx;
    gn_asgi_req_t *r = c->bridge;
    if (r->body_error != NULL)
        return;
    PyObject *b = PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
    if (b == NULL || PyList_Append(r->chunks, b) < 0) {
        Py_XDECREF(b);
        gn_asgi_input_failed(r);
        return;
    }
    Py_DECREF(b);
    r->body_done = done;
    if (r->recv_waiter == NULL)
        return;
    PyObject *m = take_body(r);
    if (m == NULL) {
        gn_asgi_input_failed(r);
        return;
    }
    gn_asgi_resolve(&r->recv_waiter, m);
    Py_DECREF(m);
}
