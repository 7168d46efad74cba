/*
 * The Channel type: a handle, in one interpreter, on a process-wide named
 * channel (channel.c). Values are encoded before the channel's lock is
 * taken and decoded after it is released; a blocking call releases this
 * interpreter's GIL while it waits.
 */
#include <errno.h>
#include <time.h>

#include <stdlib.h>
#include <string.h>

#include "shared/backend.h"
#include "shared/channel.h"
#include "shared/py_internal.h"
#include "shared/redis.h"
#include "shared/store.h"

/* A blocked call wakes this often to let the main thread see signals
 * (Ctrl-C in a script); worker threads have none, and the cost is one
 * wake-up per waiter per slice. */
#define WAIT_SLICE 0.1

/* A channel is in this process (ch) or, with --shared-url, a list in
 * Redis (ch NULL; the name and capacity are kept here). */
typedef struct {
    PyObject_HEAD
    gn_channel_t *ch;
    char *rname;
    size_t rlen;
    unsigned rcap;
} channel_object;

#define CH(self) (((channel_object *)(self))->ch)
#define RCH(self) ((channel_object *)(self))

static const char *name_of(PyObject *self)
{
    return CH(self) ? gn_channel_name(CH(self)) : RCH(self)->rname;
}

static unsigned capacity_of(PyObject *self)
{
    return CH(self) ? gn_channel_capacity(CH(self)) : RCH(self)->rcap;
}

static gn_modstate_t *state_of(PyObject *self)
{
    return PyType_GetModuleState(Py_TYPE(self));
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* How long the next wait may be: a slice, less if the deadline (for a
 * timeout > 0) is nearer; -1 once it has passed. */
static double next_slice(double timeout, double deadline)
{
    if (timeout < 0)
        return WAIT_SLICE;
    double left = deadline - mono_now();
    if (left <= 0)
        return -1;
    return left < WAIT_SLICE ? left : WAIT_SLICE;
}

/* Raises the exception that matches a channel result. */
static PyObject *raise_for(PyObject *self, int rc)
{
    gn_modstate_t *st = state_of(self);
    const char *name = name_of(self);
    if (rc == GN_CH_EMPTY)
        PyErr_Format(st->empty, "channel '%s' is empty", name);
    else if (rc == GN_CH_FULL)
        PyErr_Format(st->full, "channel '%s' is full (capacity %u)", name, capacity_of(self));
    else if (rc == GN_CH_CLOSED)
        PyErr_Format(st->closed, "channel '%s' is closed", name);
    else
        gn_py_unavailable(self);
    return NULL;
}

/*
 * One send or receive: first without waiting and with the GIL held (the
 * common case costs no GIL hand-off), then in slices with the GIL released.
 * Returns a GN_CH_* code, or -1 with an exception set (a signal handler
 * raised).
 */
static int transfer(gn_channel_t *ch, int sending, gn_msg_t **msg, double timeout)
{
    int again = sending ? GN_CH_FULL : GN_CH_EMPTY;
    int rc = sending ? gn_channel_send(ch, *msg, 0) : gn_channel_recv(ch, msg, 0);
    double deadline = timeout > 0 ? mono_now() + timeout : 0;
    while (rc == again && timeout != 0) {
        double slice = next_slice(timeout, deadline);
        if (slice < 0)
            break;
        Py_BEGIN_ALLOW_THREADS
        rc = sending ? gn_channel_send(ch, *msg, slice) : gn_channel_recv(ch, msg, slice);
        Py_END_ALLOW_THREADS
        if (rc == again && PyErr_CheckSignals() < 0)
            return -1;
    }
    return rc;
}

/*
 * transfer() for a channel in Redis: a receiver waits in BRPOP (in slices,
 * so that signals and close() are seen), a sender on a full channel polls
 * with a growing pause; every round trip is made with the GIL released.
 * The GN_RCH_* codes are the GN_CH_* ones, plus GN_RCH_ERROR
 * (gorgon.Unavailable).
 */
static int remote_transfer(PyObject *self, int sending, gn_msg_t **msg, double timeout)
{
    channel_object *o = RCH(self);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    if (sending)
        rc = gn_redis_ch_send(o->rname, o->rlen, (*msg)->data, (*msg)->len);
    else
        rc = gn_redis_ch_recv(o->rname, o->rlen, 0, &data, &len);
    Py_END_ALLOW_THREADS
    double deadline = timeout > 0 ? mono_now() + timeout : 0, pause = 0.001;
    while ((rc == GN_RCH_FULL || rc == GN_RCH_EMPTY) && timeout != 0) {
        double slice = next_slice(timeout, deadline);
        if (slice < 0)
            break;
        Py_BEGIN_ALLOW_THREADS
        if (sending) {
            struct timespec ts = {0, (long)((pause < slice ? pause : slice) * 1e9)};
            nanosleep(&ts, NULL);
            pause = pause * 2 < WAIT_SLICE ? pause * 2 : WAIT_SLICE;
            rc = gn_redis_ch_send(o->rname, o->rlen, (*msg)->data, (*msg)->len);
        } else {
            rc = gn_redis_ch_recv(o->rname, o->rlen, slice, &data, &len);
        }
        Py_END_ALLOW_THREADS
        if ((rc == GN_RCH_FULL || rc == GN_RCH_EMPTY) && PyErr_CheckSignals() < 0) {
            free(data);
            return -2;
        }
    }
    if (rc == GN_RCH_OK && !sending) {
        *msg = gn_msg_new(data, len);
        free(data);
        if (*msg == NULL) {
            PyErr_NoMemory();
            return -2;
        }
    }
    return rc;
}

/* The value encoded as a message; NULL with an exception set. */
static gn_msg_t *encode_msg(PyObject *value)
{
    gn_wbuf_t w;
    gn_wbuf_init(&w, gn_store_max_bytes());
    if (gn_py_encode(value, &w) < 0)
        return NULL;
    gn_msg_t *m = gn_msg_new(w.buf, w.len);
    gn_wbuf_free(&w);
    if (m == NULL)
        PyErr_NoMemory();
    return m;
}

static PyObject *do_send(PyObject *self, PyObject *value, double timeout)
{
    gn_msg_t *m = encode_msg(value);
    if (m == NULL)
        return NULL;
    int rc = CH(self) ? transfer(CH(self), 1, &m, timeout) : remote_transfer(self, 1, &m, timeout);
    if (rc == GN_CH_OK && CH(self))
        Py_RETURN_NONE;
    free(m); /* not taken by the channel (Redis took a copy) */
    if (rc == GN_CH_OK)
        Py_RETURN_NONE;
    return rc == -2 || (rc < 0 && CH(self)) ? NULL : raise_for(self, rc);
}

static PyObject *do_recv(PyObject *self, double timeout)
{
    gn_msg_t *m = NULL;
    int rc = CH(self) ? transfer(CH(self), 0, &m, timeout) : remote_transfer(self, 0, &m, timeout);
    if (rc != GN_CH_OK)
        return rc == -2 || (rc < 0 && CH(self)) ? NULL : raise_for(self, rc);
    PyObject *v = gn_py_decode(m->data, m->len);
    free(m);
    return v;
}

/* ---- methods ------------------------------------------------------------ */

static PyObject *ch_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"value", "timeout"};
    PyObject *a[2];
    double timeout;
    if (gn_py_bind("send", args, nargs, kwnames, names, 1, 2, a) < 0 || gn_py_timeout(a[1], &timeout) < 0)
        return NULL;
    return do_send(self, a[0], timeout);
}

static PyObject *ch_send_nowait(PyObject *self, PyObject *value)
{
    return do_send(self, value, 0);
}

static PyObject *ch_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"timeout"};
    PyObject *a[1];
    double timeout;
    if (gn_py_bind("recv", args, nargs, kwnames, names, 0, 1, a) < 0 || gn_py_timeout(a[0], &timeout) < 0)
        return NULL;
    return do_recv(self, timeout);
}

static PyObject *ch_recv_nowait(PyObject *self, PyObject *unused)
{
    (void)unused;
    return do_recv(self, 0);
}

static PyObject *ch_close(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (CH(self) == NULL) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = gn_redis_ch_close(RCH(self)->rname, RCH(self)->rlen);
        Py_END_ALLOW_THREADS
        if (rc != GN_RCH_OK)
            return gn_py_unavailable(self);
        Py_RETURN_NONE;
    }
    gn_channel_close(CH(self));
    Py_RETURN_NONE;
}

/* gorgon._shared_aio, imported once per interpreter (a new reference). The
 * threads of --mode threads share the module state: on a free-threaded
 * build the module's critical section orders them (the import may suspend
 * it, hence the second look). */
static PyObject *shared_aio(PyObject *self)
{
    gn_modstate_t *st = state_of(self);
    PyObject *aio = NULL;
    Py_BEGIN_CRITICAL_SECTION(PyType_GetModule(Py_TYPE(self)));
    if (st->aio == NULL) {
        PyObject *m = PyImport_ImportModule("gorgon._shared_aio");
        if (st->aio == NULL) {
            st->aio = m; /* NULL on failure, with the exception set */
        } else {         /* another thread imported it meanwhile */
            Py_XDECREF(m);
            PyErr_Clear();
        }
    }
    aio = Py_XNewRef(st->aio);
    Py_END_CRITICAL_SECTION();
    return aio;
}

/* The coroutines are Python (gorgon/_shared_aio.py): an event loop is a
 * Python object, and add_reader on an eventfd is how it waits. */
static PyObject *aio_call(PyObject *self, const char *fn, PyObject *value, PyObject *timeout)
{
    PyObject *aio = shared_aio(self);
    if (aio == NULL)
        return NULL;
    if (timeout == NULL)
        timeout = Py_None;
    PyObject *r = value ? PyObject_CallMethod(aio, fn, "OOO", self, value, timeout)
                        : PyObject_CallMethod(aio, fn, "OO", self, timeout);
    Py_DECREF(aio);
    return r;
}

static PyObject *ch_recv_async(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"timeout"};
    PyObject *a[1];
    double timeout;
    if (gn_py_bind("recv_async", args, nargs, kwnames, names, 0, 1, a) < 0 || gn_py_timeout(a[0], &timeout) < 0)
        return NULL;
    return aio_call(self, "recv", NULL, a[0]);
}

static PyObject *ch_send_async(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"value", "timeout"};
    PyObject *a[2];
    double timeout;
    if (gn_py_bind("send_async", args, nargs, kwnames, names, 1, 2, a) < 0 || gn_py_timeout(a[1], &timeout) < 0)
        return NULL;
    return aio_call(self, "send", a[0], a[1]);
}

/* Whether the channel is in Redis: _shared_aio.py then polls instead of
 * arming an eventfd. */
static PyObject *ch_get_remote(PyObject *self, void *unused)
{
    (void)unused;
    return PyBool_FromLong(CH(self) == NULL);
}

static PyObject *ch_arm(PyObject *self, PyObject *for_send)
{
    if (CH(self) == NULL)
        Py_RETURN_NONE; /* nothing to arm: try again */
    int fd, want = PyObject_IsTrue(for_send);
    if (want < 0)
        return NULL;
    int rc = gn_channel_arm(CH(self), want, &fd);
    if (rc < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (rc == GN_CH_READY)
        Py_RETURN_NONE;
    return PyLong_FromLong(fd);
}

static PyObject *ch_disarm(PyObject *self, PyObject *fd_obj)
{
    int fd = PyLong_AsInt(fd_obj);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (CH(self))
        gn_channel_disarm(CH(self), fd);
    Py_RETURN_NONE;
}

static PyObject *ch_get_name(PyObject *self, void *unused)
{
    (void)unused;
    return PyUnicode_FromString(name_of(self));
}

static PyObject *ch_get_capacity(PyObject *self, void *unused)
{
    (void)unused;
    return PyLong_FromUnsignedLong(capacity_of(self));
}

/* Closed: 1, 0, or -1 with gorgon.Unavailable set. */
static int is_closed(PyObject *self)
{
    if (CH(self))
        return gn_channel_closed(CH(self));
    int c;
    Py_BEGIN_ALLOW_THREADS
    c = gn_redis_ch_closed(RCH(self)->rname, RCH(self)->rlen);
    Py_END_ALLOW_THREADS
    if (c < 0)
        gn_py_unavailable(self);
    return c;
}

static PyObject *ch_get_closed(PyObject *self, void *unused)
{
    (void)unused;
    int c = is_closed(self);
    return c < 0 ? NULL : PyBool_FromLong(c);
}

static Py_ssize_t ch_len(PyObject *self)
{
    if (CH(self))
        return (Py_ssize_t)gn_channel_size(CH(self));
    long n;
    Py_BEGIN_ALLOW_THREADS
    n = gn_redis_ch_len(RCH(self)->rname, RCH(self)->rlen);
    Py_END_ALLOW_THREADS
    if (n < 0)
        gn_py_unavailable(self);
    return (Py_ssize_t)n;
}

static PyObject *ch_repr(PyObject *self)
{
    Py_ssize_t n = ch_len(self);
    int c = n < 0 ? -1 : is_closed(self);
    if (c < 0)
        return NULL;
    return PyUnicode_FromFormat("<gorgon.Channel '%s': %zd of %u%s>", name_of(self), n, capacity_of(self),
                                c ? ", closed" : "");
}

static void ch_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (CH(self))
        gn_channel_release(CH(self));
    free(RCH(self)->rname);
    tp->tp_free(self);
    Py_DECREF(tp);
}

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)
static PyMethodDef ch_methods[] = {
    {"send", (PyCFunction)(void (*)(void))ch_send, FASTKW,
     "send(value, timeout=None): queue a copy of value; waits while the channel is full "
     "(raises Full after timeout seconds, Closed once closed)"},
    {"send_nowait", ch_send_nowait, METH_O, "send_nowait(value): send without waiting (raises Full)"},
    {"recv", (PyCFunction)(void (*)(void))ch_recv, FASTKW,
     "recv(timeout=None): the next value; waits while the channel is empty (raises Empty after "
     "timeout seconds, Closed once closed and drained)"},
    {"recv_nowait", ch_recv_nowait, METH_NOARGS, "recv_nowait(): the next value, or raises Empty"},
    {"close", ch_close, METH_NOARGS, "close(): refuse further sends and wake every waiter"},
    {"recv_async", (PyCFunction)(void (*)(void))ch_recv_async, FASTKW,
     "await recv_async(timeout=None): recv() that never blocks the event loop"},
    {"send_async", (PyCFunction)(void (*)(void))ch_send_async, FASTKW,
     "await send_async(value, timeout=None): send() that never blocks the event loop"},
    {"_arm", ch_arm, METH_O, "_arm(for_send) -> eventfd to wait on, or None: no need to wait"},
    {"_disarm", ch_disarm, METH_O, "_disarm(fd): forget and close an fd from _arm()"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ch_getset[] = {
    {"name", ch_get_name, NULL, "the channel's name", NULL},
    {"capacity", ch_get_capacity, NULL, "most values it queues", NULL},
    {"closed", ch_get_closed, NULL, "whether close() was called", NULL},
    {"_remote", ch_get_remote, NULL, "whether the channel is in Redis (--shared-url)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot ch_slots[] = {
    {Py_tp_doc, "A named channel shared by every worker; gorgon.channel(name) returns one."},
    {Py_tp_methods, ch_methods},
    {Py_tp_getset, ch_getset},
    {Py_tp_repr, ch_repr},
    {Py_tp_dealloc, ch_dealloc},
    {Py_sq_length, ch_len},
    {0, NULL},
};

static PyType_Spec ch_spec = {
    .name = "gorgon.Channel",
    .basicsize = sizeof(channel_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = ch_slots,
};

PyTypeObject *gn_py_channel_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &ch_spec, NULL);
}

static int capacity_arg(PyObject *obj, unsigned *out)
{
    *out = 0; /* the existing channel's, or the default */
    if (obj == NULL || obj == Py_None)
        return 0;
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 1 || v > (long)GN_CHANNEL_MAX_CAPACITY) {
        PyErr_Format(PyExc_ValueError, "channel capacity must be between 1 and %u", GN_CHANNEL_MAX_CAPACITY);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static PyObject *open_failed(const char *name, Py_ssize_t len)
{
    if (errno != EINVAL)
        return PyErr_NoMemory();
    gn_channel_t *ch = gn_channel_open(name, (size_t)len, 0);
    unsigned cap = ch ? gn_channel_capacity(ch) : 0;
    if (ch)
        gn_channel_release(ch);
    PyErr_Format(PyExc_ValueError, "channel '%s' already exists with capacity %u", name, cap);
    return NULL;
}

static PyObject *remote_open(channel_object *obj, const char *name, size_t len, unsigned cap)
{
    obj->rlen = len;
    obj->rname = malloc(len + 1);
    if (obj->rname == NULL) {
        Py_DECREF(obj);
        return PyErr_NoMemory();
    }
    memcpy(obj->rname, name, len + 1);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = gn_redis_ch_open(name, len, cap, GN_CHANNEL_DEFAULT_CAPACITY, &obj->rcap);
    Py_END_ALLOW_THREADS
    if (rc == GN_RCH_OK)
        return (PyObject *)obj;
    if (rc == -2)
        PyErr_Format(PyExc_ValueError, "channel '%s' already exists with capacity %u", name, obj->rcap);
    else
        gn_py_unavailable((PyObject *)obj);
    Py_DECREF(obj);
    return NULL;
}

PyObject *gn_py_channel_open(gn_modstate_t *st, PyObject *name, PyObject *capacity)
{
    unsigned cap;
    Py_ssize_t len;
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "channel name must be a str, not '%.200s'", Py_TYPE(name)->tp_name);
        return NULL;
    }
    const char *s = PyUnicode_AsUTF8AndSize(name, &len);
    if (s == NULL || capacity_arg(capacity, &cap) < 0)
        return NULL;
    channel_object *obj = PyObject_New(channel_object, st->channel_type);
    if (obj == NULL)
        return NULL;
    obj->ch = NULL;
    obj->rname = NULL;
    if (gn_backend() != &gn_backend_local)
        return remote_open(obj, s, (size_t)len, cap);
    obj->ch = gn_channel_open(s, (size_t)len, cap);
    if (obj->ch == NULL) {
        int saved = errno;
        Py_DECREF(obj);
        errno = saved;
        return open_failed(s, len);
    }
    return (PyObject *)obj;
}
