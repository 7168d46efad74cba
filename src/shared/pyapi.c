/*
 * gorgon.shared (the Shared type, one instance per interpreter, all of them
 * over the one process-wide store), the module wiring for shared data and
 * channels, and the worker facts. Every Python object here belongs to the
 * interpreter that called; only bytes go into the store.
 */
#include "shared/shared.h"

#include <errno.h>
#include <math.h>
#include <time.h>

#include "server/log.h"
#include "shared/backend.h"
#include "shared/py_internal.h"
#include "shared/redis.h"
#include "shared/store.h"

/* A call into the backend. Redis's round trips are made without the GIL, so
 * that the interpreter's other threads (in --mode threads, every worker) run
 * while one waits; the in-process store's calls are too short to be worth
 * the hand-off. */
#define BACKEND_CALL(stmt)                                                                                         \
    do {                                                                                                           \
        const gn_backend_t *b_ = gn_backend();                                                                     \
        if (b_ == &gn_backend_local) {                                                                             \
            stmt;                                                                                                  \
        } else {                                                                                                   \
            Py_BEGIN_ALLOW_THREADS stmt;                                                                           \
            Py_END_ALLOW_THREADS                                                                                   \
        }                                                                                                          \
    } while (0)

/* ---- argument helpers --------------------------------------------------- */

static int bind_keyword(const char *fname, PyObject *name, PyObject *value, const char *const *names, int n_total,
                        PyObject **out)
{
    for (int i = 0; i < n_total; i++) {
        if (PyUnicode_EqualToUTF8(name, names[i])) {
            if (out[i]) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname, names[i]);
                return -1;
            }
            out[i] = value;
            return 0;
        }
    }
    PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, name);
    return -1;
}

int gn_py_bind(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
               const char *const *names, int n_required, int n_total, PyObject **out)
{
    if (nargs > n_total) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname, n_total, nargs);
        return -1;
    }
    for (int i = 0; i < n_total; i++)
        out[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        if (bind_keyword(fname, PyTuple_GET_ITEM(kwnames, k), args[nargs + k], names, n_total, out) < 0)
            return -1;
    }
    for (int i = 0; i < n_required; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

static int seconds(PyObject *obj, const char *what, double *out)
{
    double v = PyFloat_AsDouble(obj);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    if (!(v >= 0) || isinf(v)) {
        PyErr_Format(PyExc_ValueError, "%s must be a non-negative number of seconds", what);
        return -1;
    }
    *out = v;
    return 0;
}

int gn_py_timeout(PyObject *obj, double *out)
{
    if (obj == NULL || obj == Py_None) {
        *out = -1;
        return 0;
    }
    return seconds(obj, "timeout", out);
}

/* None -> 0 (never expires); else a positive number of seconds. */
static int ttl_arg(PyObject *obj, double *out)
{
    *out = 0;
    if (obj == NULL || obj == Py_None)
        return 0;
    if (seconds(obj, "ttl", out) < 0)
        return -1;
    if (*out == 0) {
        PyErr_SetString(PyExc_ValueError, "ttl must be positive (None: the key never expires)");
        return -1;
    }
    return 0;
}

/* ---- store errors ------------------------------------------------------- */

static PyObject *store_error(PyObject *self, const gn_store_err_t *err, PyObject *key)
{
    switch (err->code) {
    case E2BIG:
        PyErr_Format(PyExc_MemoryError,
                     "gorgon.shared is full: storing %.100R needs %zu more bytes, %zu of %zu in use "
                     "(--shared-max-bytes); nothing was changed",
                     key, err->need, err->used, err->max);
        return NULL;
    case ENOSPC:
        PyErr_Format(PyExc_MemoryError, "gorgon.shared is full storing %.100R: %s; nothing was changed", key,
                     gn_backend_error());
        return NULL;
    case EIO:
        return gn_py_unavailable(self);
    case EOVERFLOW:
        PyErr_Format(PyExc_OverflowError,
                     "gorgon.shared.incr() at %.100R: over Redis, incr works on ints that fit 64 bits "
                     "(a delta, a stored value and a result between -2**63 and 2**63-1)",
                     key);
        return NULL;
    case EPROTO:
        PyErr_Format(PyExc_ValueError, "gorgon.shared at %.100R: %s", key, gn_backend_error());
        return NULL;
    default:
        return PyErr_NoMemory();
    }
}

PyObject *gn_py_unavailable(PyObject *self)
{
    gn_modstate_t *st = PyType_GetModuleState(Py_TYPE(self));
    const char *msg = gn_backend_error();
    PyErr_SetString(st->unavailable, msg[0] ? msg : "the --shared-url server is unavailable");
    return NULL;
}

/* Encodes the key, and the value (or NULL) within the store's bound. */
static int encode_kv(PyObject *key, gn_wbuf_t *k, PyObject *value, gn_wbuf_t *v)
{
    gn_wbuf_init(k, gn_store_max_bytes());
    if (v)
        gn_wbuf_init(v, gn_store_max_bytes());
    if (gn_py_encode_key(key, k) < 0 || (v && gn_py_encode(value, v) < 0)) {
        gn_wbuf_free(k);
        if (v)
            gn_wbuf_free(v);
        return -1;
    }
    return 0;
}

static PyObject *decode_ref(gn_ref_t *ref)
{
    PyObject *v = gn_py_decode(ref->val, ref->len);
    gn_store_unref(ref);
    return v;
}

/* ---- gorgon.shared methods ---------------------------------------------- */

static PyObject *shared_get(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "default"};
    PyObject *a[2];
    gn_wbuf_t k;

    if (gn_py_bind("get", args, nargs, kwnames, names, 1, 2, a) < 0 || encode_kv(a[0], &k, NULL, NULL) < 0)
        return NULL;
    gn_ref_t ref;
    gn_store_err_t err = {0};
    int found;
    BACKEND_CALL(found = b_->get(k.buf, k.len, &ref, &err));
    gn_wbuf_free(&k);
    if (found < 0)
        return store_error(self, &err, a[0]);
    if (!found)
        return Py_NewRef(a[1] ? a[1] : Py_None);
    return decode_ref(&ref);
}

static PyObject *shared_set(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "value", "ttl"};
    PyObject *a[3];
    gn_wbuf_t k, v;
    double ttl;

    if (gn_py_bind("set", args, nargs, kwnames, names, 2, 3, a) < 0 || ttl_arg(a[2], &ttl) < 0 ||
        encode_kv(a[0], &k, a[1], &v) < 0)
        return NULL;
    gn_store_err_t err = {0};
    int rc;
    BACKEND_CALL(rc = b_->set(k.buf, k.len, v.buf, v.len, ttl, &err));
    gn_wbuf_free(&k);
    gn_wbuf_free(&v);
    return rc < 0 ? store_error(self, &err, a[0]) : Py_NewRef(Py_None);
}

static PyObject *shared_delete(PyObject *self, PyObject *key)
{
    gn_wbuf_t k;
    if (encode_kv(key, &k, NULL, NULL) < 0)
        return NULL;
    gn_store_err_t err = {0};
    int found;
    BACKEND_CALL(found = b_->del(k.buf, k.len, &err));
    gn_wbuf_free(&k);
    return found < 0 ? store_error(self, &err, key) : PyBool_FromLong(found);
}

static PyObject *incr_not_int(gn_ref_t *ref, PyObject *key)
{
    PyErr_Format(PyExc_TypeError, "gorgon.shared.incr(): the value at %.100R is a %s, not an int", key,
                 gn_py_type_name(ref->val, ref->len));
    gn_store_unref(ref);
    return NULL;
}

static PyObject *shared_incr(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "delta", "ttl"};
    PyObject *a[3];
    gn_wbuf_t k, d;
    double ttl;

    if (gn_py_bind("incr", args, nargs, kwnames, names, 1, 3, a) < 0 || ttl_arg(a[2], &ttl) < 0)
        return NULL;
    if (a[1] && !PyLong_CheckExact(a[1])) {
        PyErr_Format(PyExc_TypeError, "incr() delta must be an int, not '%.200s'", Py_TYPE(a[1])->tp_name);
        return NULL;
    }
    if (encode_kv(a[0], &k, NULL, NULL) < 0)
        return NULL;
    gn_wbuf_init(&d, gn_store_max_bytes());
    int rc = a[1] ? gn_py_encode(a[1], &d) : gn_codec_put_int64(&d, 1);
    gn_ref_t ref;
    gn_store_err_t err = {0};
    if (rc == 0)
        BACKEND_CALL(rc = b_->incr(k.buf, k.len, d.buf, d.len, ttl, &ref, &err));
    else if (!PyErr_Occurred())
        err.code = ENOMEM; /* the bound is below 9 bytes */
    else
        err.code = -1; /* the exception is already set */
    gn_wbuf_free(&k);
    gn_wbuf_free(&d);
    if (rc == 0)
        return decode_ref(&ref);
    if (err.code == -1)
        return NULL;
    return err.code == EINVAL ? incr_not_int(&ref, a[0]) : store_error(self, &err, a[0]);
}

static PyObject *shared_cas(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "expected", "new", "ttl"};
    PyObject *a[4];
    gn_wbuf_t k, e, v;
    double ttl;

    if (gn_py_bind("cas", args, nargs, kwnames, names, 3, 4, a) < 0 || ttl_arg(a[3], &ttl) < 0 ||
        encode_kv(a[0], &k, a[2], &v) < 0)
        return NULL;
    gn_wbuf_init(&e, gn_store_max_bytes());
    int rc = -2;
    gn_store_err_t err = {0};
    if (gn_py_encode(a[1], &e) == 0)
        BACKEND_CALL(rc = b_->cas(k.buf, k.len, e.buf, e.len, v.buf, v.len, ttl, &err));
    gn_wbuf_free(&k);
    gn_wbuf_free(&e);
    gn_wbuf_free(&v);
    if (rc == -2)
        return NULL;
    return rc < 0 ? store_error(self, &err, a[0]) : PyBool_FromLong(rc);
}

static PyObject *shared_setdefault(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "value", "ttl"};
    PyObject *a[3];
    gn_wbuf_t k, v;
    double ttl;

    if (gn_py_bind("setdefault", args, nargs, kwnames, names, 1, 3, a) < 0 || ttl_arg(a[2], &ttl) < 0 ||
        encode_kv(a[0], &k, a[1] ? a[1] : Py_None, &v) < 0)
        return NULL;
    gn_ref_t ref;
    gn_store_err_t err = {0};
    int rc;
    BACKEND_CALL(rc = b_->setdefault(k.buf, k.len, v.buf, v.len, ttl, &ref, &err));
    gn_wbuf_free(&k);
    gn_wbuf_free(&v);
    return rc < 0 ? store_error(self, &err, a[0]) : decode_ref(&ref);
}

/* The keys come out of the store as bytes under its locks; the str/bytes
 * objects are made afterwards. */
static PyObject *shared_keys(PyObject *self, PyObject *unused)
{
    (void)unused;
    gn_wbuf_t buf;
    gn_wbuf_init(&buf, SIZE_MAX);
    gn_store_err_t err = {0};
    long n;
    BACKEND_CALL(n = b_->keys(&buf, &err));
    PyObject *list = n < 0 ? store_error(self, &err, Py_None) : PyList_New(n);
    const uint8_t *p = buf.buf, *end = buf.buf + buf.len;
    for (long i = 0; list && i < n; i++) {
        size_t len = gn_codec_value_len(p, end);
        PyObject *key = gn_py_decode(p, len);
        if (key == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, key);
        p += len;
    }
    gn_wbuf_free(&buf);
    return list;
}

static PyObject *shared_clear(PyObject *self, PyObject *unused)
{
    (void)unused;
    gn_store_err_t err = {0};
    int rc;
    BACKEND_CALL(rc = b_->clear(&err));
    if (rc < 0)
        return store_error(self, &err, Py_None);
    Py_RETURN_NONE;
}

static PyObject *shared_stats(PyObject *self, PyObject *unused)
{
    (void)unused;
    gn_backend_stats_t st;
    gn_store_err_t err = {0};
    int rc;
    BACKEND_CALL(rc = b_->stats(&st, &err));
    if (rc < 0)
        return store_error(self, &err, Py_None);
    return Py_BuildValue("{s:n,s:n,s:n}", "keys", (Py_ssize_t)st.keys, "used_bytes", (Py_ssize_t)st.used_bytes,
                         "max_bytes", (Py_ssize_t)st.max_bytes);
}

static Py_ssize_t shared_len(PyObject *self)
{
    gn_store_err_t err = {0};
    long n;
    BACKEND_CALL(n = b_->len(&err));
    if (n < 0)
        store_error(self, &err, Py_None);
    return (Py_ssize_t)n;
}

static int shared_contains(PyObject *self, PyObject *key)
{
    gn_wbuf_t k;
    if (encode_kv(key, &k, NULL, NULL) < 0)
        return -1;
    gn_store_err_t err = {0};
    int found;
    BACKEND_CALL(found = b_->contains(k.buf, k.len, &err));
    gn_wbuf_free(&k);
    if (found < 0)
        store_error(self, &err, key);
    return found;
}

static PyObject *shared_repr(PyObject *self)
{
    (void)self;
    if (gn_backend() != &gn_backend_local)
        return PyUnicode_FromFormat("<gorgon.shared over %s>", gn_redis_where());
    return PyUnicode_FromFormat("<gorgon.shared: %zu keys, %zu of %zu bytes>", gn_store_len(),
                                gn_store_used_bytes(), gn_store_max_bytes());
}

static void shared_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)
static PyMethodDef shared_methods[] = {
    {"get", (PyCFunction)(void (*)(void))shared_get, FASTKW, "get(key, default=None): the value, or default"},
    {"set", (PyCFunction)(void (*)(void))shared_set, FASTKW, "set(key, value, ttl=None): store a copy of value"},
    {"delete", shared_delete, METH_O, "delete(key) -> bool: whether the key was there"},
    {"incr", (PyCFunction)(void (*)(void))shared_incr, FASTKW,
     "incr(key, delta=1, ttl=None) -> int: atomic add; a missing key counts as 0 (and gets ttl)"},
    {"cas", (PyCFunction)(void (*)(void))shared_cas, FASTKW,
     "cas(key, expected, new, ttl=None) -> bool: atomic compare-and-set; a missing key counts as None"},
    {"setdefault", (PyCFunction)(void (*)(void))shared_setdefault, FASTKW,
     "setdefault(key, value=None, ttl=None): the stored value, storing value first if the key is missing"},
    {"keys", shared_keys, METH_NOARGS, "keys() -> list of the keys"},
    {"clear", shared_clear, METH_NOARGS, "clear(): remove every key"},
    {"stats", shared_stats, METH_NOARGS, "stats() -> {'keys', 'used_bytes', 'max_bytes'}"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot shared_slots[] = {
    {Py_tp_doc, "The process-wide key/value store shared by every worker (gorgon.shared)."},
    {Py_tp_methods, shared_methods},
    {Py_tp_repr, shared_repr},
    {Py_tp_dealloc, shared_dealloc},
    {Py_sq_length, shared_len},
    {Py_sq_contains, shared_contains},
    {0, NULL},
};

static PyType_Spec shared_spec = {
    .name = "gorgon.Shared",
    .basicsize = sizeof(PyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = shared_slots,
};

/* ---- module wiring ------------------------------------------------------ */

static PyObject *channel_fn(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"name", "capacity"};
    PyObject *a[2];
    if (gn_py_bind("channel", args, nargs, kwnames, names, 1, 2, a) < 0)
        return NULL;
    /* In the processes mode every worker is a process of its own: a channel
     * would connect a worker to nobody but itself. Say so rather than hang. */
    PyObject *mode = PyObject_GetAttrString(module, "mode");
    int alone = mode && PyUnicode_Check(mode) && PyUnicode_CompareWithASCIIString(mode, "processes") == 0 &&
                gn_backend() == &gn_backend_local;
    Py_XDECREF(mode);
    PyErr_Clear();
    if (alone) {
        PyErr_SetString(PyExc_RuntimeError,
                        "gorgon channels connect the interpreters of one process; in --mode processes "
                        "each worker is a process of its own (use --mode interpreters, or --processes "
                        "with interpreters, to share a channel between workers, or --shared-url to "
                        "put channels in Redis)");
        return NULL;
    }
    return gn_py_channel_open(PyModule_GetState(module), a[0], a[1]);
}

/* For a script that runs outside the server (a cron job reading the
 * counters the workers keep, a test): the same store the server uses with
 * --shared-url. Call it before the first use of gorgon.shared. */
static PyObject *shared_connect(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"url", "prefix", "timeout"};
    PyObject *a[3];
    double timeout = GN_SHARED_DEFAULT_TIMEOUT;
    (void)module;
    if (gn_py_bind("_shared_connect", args, nargs, kwnames, names, 1, 3, a) < 0 ||
        (a[2] && gn_py_timeout(a[2], &timeout) < 0))
        return NULL;
    const char *url = PyUnicode_AsUTF8(a[0]);
    const char *prefix = a[1] ? PyUnicode_AsUTF8(a[1]) : GN_SHARED_DEFAULT_PREFIX;
    if (url == NULL || prefix == NULL)
        return NULL;
    char err[256];
    if (gn_redis_configure(url, prefix, timeout, err, sizeof(err)) < 0) {
        PyErr_Format(PyExc_ValueError, "--shared-url: %s", err);
        return NULL;
    }
    gn_backend_use(&gn_backend_redis);
    Py_RETURN_NONE;
}

static PyMethodDef module_functions[] = {
    {"_shared_connect", (PyCFunction)(void (*)(void))shared_connect, FASTKW,
     "_shared_connect(url, prefix='gorgon:', timeout=2.0): use a Redis for gorgon.shared and channels"},
    {"channel", (PyCFunction)(void (*)(void))channel_fn, FASTKW,
     "channel(name, capacity=1024) -> the channel of that name, the same one in every worker"},
    {NULL, NULL, 0, NULL},
};

static PyObject *new_exception(PyObject *module, const char *name, const char *doc)
{
    PyObject *exc = PyErr_NewExceptionWithDoc(name, doc, NULL, NULL);
    if (exc && PyModule_AddObjectRef(module, strrchr(name, '.') + 1, exc) < 0)
        Py_CLEAR(exc);
    return exc;
}

static int add_exceptions(PyObject *module, gn_modstate_t *st)
{
    st->empty = new_exception(module, "gorgon.Empty", "recv_nowait() or recv(timeout) found no message.");
    st->full = new_exception(module, "gorgon.Full", "send(timeout) found no room in the channel.");
    st->closed = new_exception(module, "gorgon.Closed", "The channel is closed (and, for recv, drained).");
    st->unavailable = PyErr_NewExceptionWithDoc(
        "gorgon.Unavailable",
        "The Redis named by --shared-url did not answer in time, or refused the call; the call changed "
        "nothing that can be relied on. A ConnectionError.",
        PyExc_ConnectionError, NULL);
    if (st->unavailable && PyModule_AddObjectRef(module, "Unavailable", st->unavailable) < 0)
        Py_CLEAR(st->unavailable);
    return st->empty && st->full && st->closed && st->unavailable ? 0 : -1;
}

static int set_facts(PyObject *module, int worker_id, unsigned worker_count, const char *mode)
{
    PyObject *id = worker_id < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(worker_id);
    int rc = -1;
    if (id && PyModule_AddObjectRef(module, "worker_id", id) == 0 &&
        PyModule_Add(module, "worker_count", PyLong_FromUnsignedLong(worker_count)) == 0 &&
        PyModule_Add(module, "mode", PyUnicode_FromString(mode)) == 0)
        rc = 0;
    Py_XDECREF(id);
    return rc;
}

int gn_shared_add_to_module(PyObject *module, gn_modstate_t *st)
{
    st->shared_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &shared_spec, NULL);
    st->channel_type = gn_py_channel_type_new(module);
    if (st->shared_type == NULL || st->channel_type == NULL || add_exceptions(module, st) < 0)
        return -1;
    PyObject *shared = PyType_GenericAlloc(st->shared_type, 0);
    if (PyModule_Add(module, "shared", shared) < 0 || PyModule_AddFunctions(module, module_functions) < 0 ||
        PyModule_Add(module, "_redis_tls", PyBool_FromLong(gn_redis_tls_built())) < 0)
        return -1;
    /* Until a worker (or serve()) says otherwise. */
    int main = PyInterpreterState_Get() == PyInterpreterState_Main();
    return set_facts(module, -1, 0, main ? "main" : "interpreters");
}

int gn_shared_set_worker_facts(int worker_id, unsigned worker_count, const char *mode, char *err,
                               size_t errlen)
{
    PyObject *m = PyImport_ImportModule("gorgon._gorgon");
    if (m && set_facts(m, worker_id, worker_count, mode) == 0) {
        Py_DECREF(m);
        return 0;
    }
    Py_XDECREF(m);
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *s = exc ? PyObject_Str(exc) : NULL;
    const char *msg = s ? PyUnicode_AsUTF8(s) : NULL;
    if (err)
        snprintf(err, errlen, "cannot set up the gorgon module: %s", msg ? msg : "?");
    PyErr_Clear();
    Py_XDECREF(s);
    Py_XDECREF(exc);
    return -1;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Redis did not answer at start (err says why): with --shared-wait, keep
 * trying, backing off from 0.1 s to 2 s, until it answers or the time is
 * up. One line when the wait begins, one when it ends either way. A signal
 * (Ctrl-C) ends the wait. 0 once Redis answers, else -1 (logged). */
static int wait_for_redis(double wait, char *err, size_t errlen)
{
    if (wait <= 0) {
        gn_log(GN_LOG_ERROR, "--shared-url: %s", err);
        return -1;
    }
    gn_log(GN_LOG_WARNING, "--shared-url: %s; trying again for up to %gs (--shared-wait)", err, wait);
    double start = mono_now(), deadline = start + wait, backoff = 0.1;
    for (;;) {
        double pause = fmin(backoff, deadline - mono_now());
        while (pause > 0) { /* in slices, so that a signal is seen soon */
            double slice = fmin(pause, 0.05);
            struct timespec ts = {0, (long)(slice * 1e9)};
            nanosleep(&ts, NULL);
            pause -= slice;
            if (PyErr_CheckSignals() < 0) {
                PyErr_Clear();
                gn_log(GN_LOG_ERROR, "--shared-url: stopped by a signal while waiting for Redis at %s",
                       gn_redis_where());
                return -1;
            }
        }
        if (gn_redis_check(err, errlen) == 0) {
            gn_log(GN_LOG_INFO, "--shared-url: Redis at %s answers after %.1fs", gn_redis_where(),
                   mono_now() - start);
            return 0;
        }
        if (mono_now() >= deadline) {
            gn_log(GN_LOG_ERROR, "--shared-url: %s (gave up after %gs, --shared-wait)", err, wait);
            return -1;
        }
        backoff = fmin(backoff * 2, 2.0);
    }
}

int gn_shared_serve_start(const gn_config_t *cfg)
{
    gn_store_set_max_bytes(cfg->shared_max_bytes);
    char err[256];
    if (gn_shared_set_worker_facts(-1, cfg->workers, "main", err, sizeof(err)) < 0)
        gn_log(GN_LOG_WARNING, "%s", err);
    if (cfg->shared_url == NULL || cfg->shared_url[0] == '\0')
        return 0;
    /* A Redis that is not there at start is a configuration error: say so
     * and stop, rather than serve requests that can only fail. */
    if (gn_redis_configure(cfg->shared_url, cfg->shared_prefix, cfg->shared_timeout, err, sizeof(err)) < 0) {
        gn_log(GN_LOG_ERROR, "--shared-url: %s", err);
        return -1;
    }
    if (gn_redis_check(err, sizeof(err)) < 0 && wait_for_redis(cfg->shared_wait, err, sizeof(err)) < 0)
        return -1;
    gn_backend_use(&gn_backend_redis);
    gn_log(GN_LOG_INFO, "gorgon.shared and channels: Redis at %s, keys under '%s'", gn_redis_where(),
           cfg->shared_prefix);
    return 0;
}
