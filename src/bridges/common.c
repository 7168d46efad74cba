#include "bridges/common.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "http/conn.h"
#include "http/tls.h"
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

/* ---- the ASGI TLS extension ---------------------------------------------- */

static int append_pem(const char *pem, size_t len, void *arg)
{
    PyObject *s = PyUnicode_DecodeASCII(pem, (Py_ssize_t)len, "replace");
    int rc = s ? PyList_Append((PyObject *)arg, s) : -1;
    Py_XDECREF(s);
    return rc;
}

static PyObject *tls_info(const gn_conn_t *c)
{
    PyObject *chain = PyList_New(0);
    if (chain == NULL || gn_tls_peer_chain(c, append_pem, chain) < 0) {
        Py_XDECREF(chain);
        return NULL;
    }
    char name[1024];
    PyObject *subject = gn_tls_peer_name(c, name, sizeof(name)) == 0 ? PyUnicode_FromString(name) : Py_NewRef(Py_None);
    if (subject == NULL) {
        Py_DECREF(chain);
        return NULL;
    }
    /* A client certificate that fails verification fails the handshake:
     * a connection that got this far has no certificate error to report. */
    return Py_BuildValue("{s:O,s:N,s:N,s:O,s:i,s:i}", "server_cert", Py_None, "client_cert_chain", chain,
                         "client_cert_name", subject, "client_cert_error", Py_None, "tls_version",
                         gn_tls_version(c), "cipher_suite", gn_tls_cipher(c));
}

PyObject *gn_bridge_extensions(PyObject *base, const gn_conn_t *c)
{
    if (c->tls == NULL)
        return Py_NewRef(base);
    PyObject *d = PyDict_Copy(base), *tls = d ? tls_info(c) : NULL;
    if (tls == NULL || PyDict_SetItemString(d, "tls", tls) < 0) {
        Py_XDECREF(d);
        d = NULL;
    }
    Py_XDECREF(tls);
    return d;
}

void gn_bridge_setup_error(const char *bridge, char *err, size_t errlen)
{
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *msg = exc ? PyObject_Str(exc) : NULL;
    const char *m = msg ? PyUnicode_AsUTF8(msg) : NULL;
    const char *type = exc ? Py_TYPE(exc)->tp_name : "no exception";
    snprintf(err, errlen, "cannot set up the %s bridge: %s%s%s", bridge, type, m && *m ? ": " : "", m && *m ? m : "");
    Py_XDECREF(msg);
    Py_XDECREF(exc);
    PyErr_Clear();
}

void gn_bridge_clear_interrupt(void)
{
    PyThreadState_SetAsyncExc(PyThread_get_thread_ident(), NULL);
}

#ifdef GN_FAULT
static _Thread_local long fault_armed, fault_countdown, fault_fired;

int gn_fault_hit(const char *file, int line)
{
    if (fault_countdown <= 0 || --fault_countdown > 0)
        return 0;
    fault_fired++;
    fprintf(stderr, "fault injected: MemoryError at %s:%d\n", file, line);
    return 1;
}

void gn_fault_request_start(void)
{
    fault_countdown = fault_armed;
    fault_armed = 0;
}

void gn_fault_setup_begin(void)
{
    static atomic_long setups; /* in this process, the first one 0 */
    long n = atomic_fetch_add(&setups, 1);
    const char *v = getenv("GN_FAULT_START"), *after = getenv("GN_FAULT_START_AFTER");
    fault_countdown = v && n >= (after ? atol(after) : 0) ? atol(v) : 0;
}

void gn_fault_setup_end(void)
{
    fault_countdown = 0;
}

PyObject *gn_fault_arm(PyObject *module, PyObject *n)
{
    (void)module;
    long at = PyLong_AsLong(n);
    if (at == -1 && PyErr_Occurred())
        return NULL;
    fault_armed = at;
    fault_countdown = 0;
    return PyLong_FromLong(fault_fired);
}
#endif
