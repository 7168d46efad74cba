#include "bridges/common.h"

#include <stdlib.h>

#include "http/uri.h"
#include "server/log.h"

void gn_bridge_log_traceback(PyObject **cache, PyObject *exc)
{
    if (*cache == NULL) {
        PyObject *tb = PyImport_ImportModule("traceback");
        *cache = tb ? PyObject_GetAttrString(tb, "format_exception") : NULL;
        Py_XDECREF(tb);
    }
    PyObject *lines = *cache ? PyObject_CallOneArg(*cache, exc) : NULL;
    PyObject *empty = lines ? PyUnicode_FromString("") : NULL;
    PyObject *text = empty ? PyUnicode_Join(empty, lines) : NULL;
    Py_ssize_t len;
    const char *utf8 = text ? PyUnicode_AsUTF8AndSize(text, &len) : NULL;
    if (utf8)
        gn_log_raw(GN_LOG_ERROR, utf8, (unsigned long)len);
    else
        PyErr_DisplayException(exc);
    PyErr_Clear();
    Py_XDECREF(text);
    Py_XDECREF(empty);
    Py_XDECREF(lines);
}

PyObject *gn_bridge_decode_path(const char *path, size_t len, int utf8)
{
    char stack[512];
    char *buf = len <= sizeof(stack) ? stack : malloc(len);
    if (buf == NULL)
        return PyErr_NoMemory();
    size_t n = gn_percent_decode(path, len, buf);
    PyObject *s = utf8 ? PyUnicode_DecodeUTF8(buf, (Py_ssize_t)n, "replace")
                       : PyUnicode_DecodeLatin1(buf, (Py_ssize_t)n, NULL);
    if (buf != stack)
        free(buf);
    return s;
}

void gn_bridge_clear_interrupt(void)
{
    PyThreadState_SetAsyncExc(PyThread_get_thread_ident(), NULL);
}
