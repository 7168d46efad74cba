/*
 * wsgi.input: a read-only binary stream over the request body that the
 * connection layer has already received (in memory or in a spill file).
 */
#include <Python.h>
#include "bridges/fault.h"

#include "bridges/wsgi.h"

#define LINE_BLOCK 4096

typedef struct {
    PyObject_HEAD
    const gn_body_t *body; /* NULL once the request is over */
    size_t pos;
} input_t;

PyObject *gn_wsgi_input_new(gn_modstate_t *st, const gn_body_t *body)
{
    input_t *in = (input_t *)GN_FAULT_CALL((PyObject *)PyObject_New(input_t, st->input_type));
    if (in == NULL)
        return NULL;
    in->body = body;
    in->pos = 0;
    return (PyObject *)in;
}

/* On a free-threaded build an application thread may still be reading
 * wsgi.input when the worker thread detaches it: the object's critical
 * section orders the two, as the GIL does elsewhere (it is a no-op there). */
void gn_wsgi_input_detach(PyObject *obj)
{
    Py_BEGIN_CRITICAL_SECTION(obj);
    ((input_t *)obj)->body = NULL;
    Py_END_CRITICAL_SECTION();
}

static size_t remaining(const input_t *in)
{
    return in->body && in->pos < in->body->len ? in->body->len - in->pos : 0;
}

static int size_arg(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *size)
{
    *size = -1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "expected at most one argument");
        return -1;
    }
    if (nargs == 0 || args[0] == Py_None)
        return 0;
    *size = PyLong_AsSsize_t(args[0]);
    return *size == -1 && PyErr_Occurred() ? -1 : 0;
}

/* Reads n bytes at the current position into a new bytes object. */
static PyObject *take(input_t *in, size_t n)
{
    const char *mem = in->body ? gn_body_mem(in->body, in->pos) : NULL;
    PyObject *b;
    if (mem != NULL) {
        b = PyBytes_FromStringAndSize(mem, (Py_ssize_t)n);
    } else {
        b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
        if (b && n && gn_body_read(in->body, in->pos, PyBytes_AS_STRING(b), n) != (ssize_t)n) {
            Py_DECREF(b);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    if (b)
        in->pos += n;
    return b;
}

static PyObject *read_locked(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    input_t *in = (input_t *)self;
    Py_ssize_t size;
    if (size_arg(args, nargs, &size) < 0)
        return NULL;
    size_t n = remaining(in);
    if (size >= 0 && (size_t)size < n)
        n = (size_t)size;
    return take(in, n);
}

/* Length of the next line (up to and including '\n'), at most `limit`. */
static ssize_t line_length(const input_t *in, size_t limit)
{
    const char *mem = gn_body_mem(in->body, in->pos);
    if (mem != NULL) {
        const char *nl = memchr(mem, '\n', limit);
        return nl ? nl - mem + 1 : (ssize_t)limit;
    }
    char block[LINE_BLOCK];
    size_t scanned = 0;
    while (scanned < limit) {
        size_t want = limit - scanned < LINE_BLOCK ? limit - scanned : LINE_BLOCK;
        ssize_t got = gn_body_read(in->body, in->pos + scanned, block, want);
        if (got <= 0)
            return got < 0 ? -1 : (ssize_t)scanned;
        const char *nl = memchr(block, '\n', (size_t)got);
        if (nl)
            return (ssize_t)(scanned + (size_t)(nl - block) + 1);
        scanned += (size_t)got;
    }
    return (ssize_t)limit;
}

static PyObject *readline_locked(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    input_t *in = (input_t *)self;
    Py_ssize_t size;
    if (size_arg(args, nargs, &size) < 0)
        return NULL;
    size_t limit = remaining(in);
    if (size >= 0 && (size_t)size < limit)
        limit = (size_t)size;
    if (limit == 0)
        return PyBytes_FromStringAndSize(NULL, 0);
    ssize_t n = line_length(in, limit);
    if (n < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return take(in, (size_t)n);
}

static PyObject *readlines_locked(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t hint;
    if (size_arg(args, nargs, &hint) < 0)
        return NULL;
    PyObject *lines = PyList_New(0);
    size_t total = 0;
    while (lines && remaining((input_t *)self) > 0) {
        PyObject *line = readline_locked(self, NULL, 0);
        if (line == NULL || PyList_Append(lines, line) < 0) {
            Py_XDECREF(line);
            Py_CLEAR(lines);
            break;
        }
        total += (size_t)PyBytes_GET_SIZE(line);
        Py_DECREF(line);
        if (hint > 0 && total >= (size_t)hint)
            break;
    }
    return lines;
}

typedef PyObject *(*reader_fn)(PyObject *, PyObject *const *, Py_ssize_t);

/* Every reader runs in the object's critical section (see detach above). */
static PyObject *locked(reader_fn fn, PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *r;
    Py_BEGIN_CRITICAL_SECTION(self);
    r = fn(self, args, nargs);
    Py_END_CRITICAL_SECTION();
    return r;
}

static PyObject *input_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return locked(read_locked, self, args, nargs);
}

static PyObject *input_readline(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return locked(readline_locked, self, args, nargs);
}

static PyObject *input_readlines(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return locked(readlines_locked, self, args, nargs);
}

static PyObject *next_line_locked(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    if (remaining((input_t *)self) == 0)
        return NULL; /* StopIteration */
    return readline_locked(self, NULL, 0);
}

static PyObject *input_iternext(PyObject *self)
{
    return locked(next_line_locked, self, NULL, 0);
}

static PyObject *input_close(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_RETURN_NONE; /* the server owns the body; closing is a no-op */
}

static PyObject *input_true(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_RETURN_TRUE;
}

static PyObject *input_false(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_RETURN_FALSE;
}

static void input_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static PyMethodDef input_methods[] = {
    {"read", (PyCFunction)(void (*)(void))input_read, METH_FASTCALL, "read(size=-1) -> bytes"},
    {"readline", (PyCFunction)(void (*)(void))input_readline, METH_FASTCALL, "readline(size=-1) -> bytes"},
    {"readlines", (PyCFunction)(void (*)(void))input_readlines, METH_FASTCALL, "readlines(hint=-1) -> list"},
    {"close", input_close, METH_NOARGS, "no-op"},
    {"readable", input_true, METH_NOARGS, "True"},
    {"writable", input_false, METH_NOARGS, "False"},
    {"seekable", input_false, METH_NOARGS, "False"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot input_slots[] = {
    {Py_tp_dealloc, input_dealloc},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, input_iternext},
    {Py_tp_methods, input_methods},
    {Py_tp_doc, "wsgi.input: the request body as a binary stream"},
    {0, NULL},
};

static PyType_Spec input_spec = {
    .name = "gorgon._gorgon.Input",
    .basicsize = sizeof(input_t),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = input_slots,
};

PyTypeObject *gn_wsgi_input_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &input_spec, NULL);
}
