/*
 * Python objects <-> the binary form of codec.h. Exact types only: a
 * subclass (an IntEnum, a str subclass) would come back as its base type in
 * another interpreter, so it is refused rather than silently changed.
 */
#include "shared/py_internal.h"

#include <errno.h>
#include <stdint.h>

#define TYPES_ALLOWED "None, bool, int, float, str, bytes, and tuples of these"

/* Turns a codec failure (errno) into the matching Python exception. */
static int put_failed(const gn_wbuf_t *w)
{
    if (errno == E2BIG)
        PyErr_Format(PyExc_MemoryError,
                     "gorgon: value larger than %zu bytes, the bound set by --shared-max-bytes", w->limit);
    else
        PyErr_NoMemory();
    return -1;
}

#define PUT(call) ((call) < 0 ? put_failed(w) : 0)

static int encode_int(PyObject *v, gn_wbuf_t *w)
{
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (!overflow) {
        if (x == -1 && PyErr_Occurred())
            return -1;
        return PUT(gn_codec_put_int64(w, x));
    }
    uint8_t probe;
    Py_ssize_t n = PyLong_AsNativeBytes(v, &probe, 0, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
    if (n < 0)
        return -1;
    if ((size_t)n > w->limit) {
        errno = E2BIG;
        return put_failed(w);
    }
    uint8_t *buf = PyMem_Malloc((size_t)n);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int rc = -1;
    if (PyLong_AsNativeBytes(v, buf, n, Py_ASNATIVEBYTES_LITTLE_ENDIAN) >= 0)
        rc = PUT(gn_codec_put_bigint(w, buf, (size_t)n));
    PyMem_Free(buf);
    return rc;
}

static int encode_str(PyObject *v, gn_wbuf_t *w)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s)
        return PUT(gn_codec_put_data(w, GN_TAG_STR, s, (size_t)n));
    /* Lone surrogates (from os.fsdecode, say) are valid str: keep them. */
    PyErr_Clear();
    PyObject *b = PyUnicode_AsEncodedString(v, "utf-8", "surrogatepass");
    if (b == NULL)
        return -1;
    int rc = PUT(gn_codec_put_data(w, GN_TAG_STR, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b)));
    Py_DECREF(b);
    return rc;
}

static int encode(PyObject *v, gn_wbuf_t *w, unsigned depth);

static int encode_tuple(PyObject *v, gn_wbuf_t *w, unsigned depth)
{
    Py_ssize_t n = PyTuple_GET_SIZE(v);
    if (depth >= GN_CODEC_MAX_DEPTH) {
        PyErr_Format(PyExc_ValueError, "gorgon: tuples nested more than %d deep cannot be shared",
                     GN_CODEC_MAX_DEPTH);
        return -1;
    }
    if ((size_t)n > UINT32_MAX) {
        errno = E2BIG;
        return put_failed(w);
    }
    if (PUT(gn_codec_put_tuple(w, (uint32_t)n)) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (encode(PyTuple_GET_ITEM(v, i), w, depth + 1) < 0)
            return -1;
    }
    return 0;
}

static int encode(PyObject *v, gn_wbuf_t *w, unsigned depth)
{
    PyTypeObject *t = Py_TYPE(v);
    if (v == Py_None)
        return PUT(gn_codec_put_tag(w, GN_TAG_NONE));
    if (t == &PyBool_Type)
        return PUT(gn_codec_put_tag(w, v == Py_True ? GN_TAG_TRUE : GN_TAG_FALSE));
    if (t == &PyLong_Type)
        return encode_int(v, w);
    if (t == &PyFloat_Type)
        return PUT(gn_codec_put_float(w, PyFloat_AS_DOUBLE(v)));
    if (t == &PyUnicode_Type)
        return encode_str(v, w);
    if (t == &PyBytes_Type)
        return PUT(gn_codec_put_data(w, GN_TAG_BYTES, PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v)));
    if (t == &PyTuple_Type)
        return encode_tuple(v, w, depth);
    PyErr_Format(PyExc_TypeError, "gorgon: a value of type '%.200s' cannot be shared (only " TYPES_ALLOWED ")",
                 t->tp_name);
    return -1;
}

int gn_py_encode(PyObject *value, gn_wbuf_t *w)
{
    return encode(value, w, 0);
}

int gn_py_encode_key(PyObject *key, gn_wbuf_t *w)
{
    if (Py_IS_TYPE(key, &PyUnicode_Type) || Py_IS_TYPE(key, &PyBytes_Type))
        return encode(key, w, 0);
    PyErr_Format(PyExc_TypeError, "gorgon.shared keys must be str or bytes, not '%.200s'", Py_TYPE(key)->tp_name);
    return -1;
}

/* ---- decoding ----------------------------------------------------------- */

static PyObject *corrupt(void)
{
    /* Only this module writes these bytes: reaching here is a gorgon bug. */
    PyErr_SetString(PyExc_SystemError, "gorgon: malformed shared value");
    return NULL;
}

static PyObject *decode(const uint8_t **p, const uint8_t *end, unsigned depth);

static PyObject *decode_tuple(const uint8_t **p, const uint8_t *end, size_t n, unsigned depth)
{
    if (depth >= GN_CODEC_MAX_DEPTH || n > (size_t)(end - *p))
        return corrupt();
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    for (size_t i = 0; t && i < n; i++) {
        PyObject *item = decode(p, end, depth + 1);
        if (item == NULL) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, item);
    }
    return t;
}

static PyObject *decode(const uint8_t **p, const uint8_t *end, unsigned depth)
{
    gn_item_t it;
    if (gn_codec_next(p, end, &it) < 0)
        return corrupt();
    switch (it.tag) {
    case GN_TAG_NONE:
        return Py_NewRef(Py_None);
    case GN_TAG_TRUE:
        return Py_NewRef(Py_True);
    case GN_TAG_FALSE:
        return Py_NewRef(Py_False);
    case GN_TAG_INT:
        return PyLong_FromLongLong(it.i);
    case GN_TAG_BIGINT:
        return PyLong_FromNativeBytes(it.data, it.len, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
    case GN_TAG_FLOAT:
        return PyFloat_FromDouble(it.f);
    case GN_TAG_STR:
        return PyUnicode_DecodeUTF8((const char *)it.data, (Py_ssize_t)it.len, "surrogatepass");
    case GN_TAG_BYTES:
        return PyBytes_FromStringAndSize((const char *)it.data, (Py_ssize_t)it.len);
    case GN_TAG_TUPLE:
        return decode_tuple(p, end, it.len, depth);
    default:
        return corrupt();
    }
}

PyObject *gn_py_decode(const uint8_t *p, size_t len)
{
    const uint8_t *q = p;
    PyObject *v = decode(&q, p + len, 0);
    if (v && q != p + len) {
        Py_DECREF(v);
        return corrupt();
    }
    return v;
}

const char *gn_py_type_name(const uint8_t *p, size_t len)
{
    switch (len ? p[0] : 0) {
    case GN_TAG_NONE:
        return "NoneType";
    case GN_TAG_TRUE:
    case GN_TAG_FALSE:
        return "bool";
    case GN_TAG_INT:
    case GN_TAG_BIGINT:
        return "int";
    case GN_TAG_FLOAT:
        return "float";
    case GN_TAG_STR:
        return "str";
    case GN_TAG_BYTES:
        return "bytes";
    case GN_TAG_TUPLE:
        return "tuple";
    default:
        return "?";
    }
}
