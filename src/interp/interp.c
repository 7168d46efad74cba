#include "interp/interp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/log.h"

int gn_interp_prepare_main(const gn_config_t *cfg)
{
    if (!cfg->datetime_workaround) {
        gn_log(GN_LOG_WARNING, "datetime workaround disabled: workers may crash when they end");
        return 0;
    }
    PyObject *m = PyImport_ImportModule("_datetime");
    if (m == NULL) {
        /* Not fatal: a Python built without _datetime cannot hit the bug. */
        PyErr_Clear();
        return 0;
    }
    Py_DECREF(m);
    return 0;
}

int gn_interp_create(gn_interp_t *it, PyInterpreterState *main_interp, char *err, size_t errlen)
{
    /* Py_NewInterpreterFromConfig is called, as _interpreters.create() does,
     * from a thread attached to the main interpreter; it detaches from it and
     * returns attached to the new interpreter, whose GIL this thread holds. */
    it->ts = NULL;
    it->main_ts = PyThreadState_New(main_interp);
    if (it->main_ts == NULL) {
        snprintf(err, errlen, "cannot create a thread state");
        return -1;
    }
    PyEval_RestoreThread(it->main_ts);
    const PyInterpreterConfig config = {
        .use_main_obmalloc = 0,
        .allow_fork = 0,
        .allow_exec = 0,
        .allow_threads = 1,
        .allow_daemon_threads = 0,
        .check_multi_interp_extensions = 1,
        .gil = PyInterpreterConfig_OWN_GIL,
    };
    PyStatus st = Py_NewInterpreterFromConfig(&it->ts, &config);
    if (PyStatus_Exception(st)) {
        snprintf(err, errlen, "cannot create a sub-interpreter: %s", st.err_msg ? st.err_msg : "?");
        it->ts = NULL;
        /* Still attached to the main interpreter: detach and drop its state. */
        PyThreadState_Clear(it->main_ts);
        PyThreadState_DeleteCurrent();
        it->main_ts = NULL;
        return -1;
    }
    it->id = PyInterpreterState_GetID(PyThreadState_GetInterpreter(it->ts));
    return 0;
}

int gn_interp_configure(const gn_config_t *cfg, char *err, size_t errlen)
{
    PyObject *path = PyList_New(0);
    if (path == NULL)
        goto error;
    for (unsigned i = 0; i < cfg->n_sys_path; i++) {
        PyObject *s = PyUnicode_DecodeFSDefault(cfg->sys_path[i]);
        if (s == NULL || PyList_Append(path, s) < 0) {
            Py_XDECREF(s);
            goto error;
        }
        Py_DECREF(s);
    }
    if (PySys_SetObject("path", path) < 0)
        goto error;
    Py_DECREF(path);
    return 0;
error:
    Py_XDECREF(path);
    snprintf(err, errlen, "cannot set sys.path");
    PyErr_Clear();
    return -1;
}

/* "Type: message (file, line N)" for the exception being handled. */
static void describe_exception(PyObject *exc, char *buf, size_t len)
{
    const char *type = Py_TYPE(exc)->tp_name;
    PyObject *msg = PyObject_Str(exc);
    const char *m = msg ? PyUnicode_AsUTF8(msg) : NULL;
    if (m == NULL) {
        PyErr_Clear();
        m = "?";
    }
    int n = snprintf(buf, len, "%s: %s", type, m);
    Py_XDECREF(msg);
    /* The innermost frame tells the user where to look. */
    PyObject *tb = PyException_GetTraceback(exc);
    PyTracebackObject *last = (PyTracebackObject *)tb;
    while (last && last->tb_next)
        last = last->tb_next;
    if (last && n > 0 && (size_t)n < len) {
        PyCodeObject *code = PyFrame_GetCode(last->tb_frame);
        const char *file = PyUnicode_AsUTF8(code->co_filename);
        /* tb_lineno is computed lazily in 3.13: ask the attribute. */
        PyObject *line = PyObject_GetAttrString((PyObject *)last, "tb_lineno");
        long lineno = line ? PyLong_AsLong(line) : -1;
        Py_XDECREF(line);
        if (file && strstr(file, "<frozen") == NULL)
            snprintf(buf + n, len - (size_t)n, " (%s, line %ld)", file, lineno);
        PyErr_Clear();
        Py_DECREF(code);
    }
    Py_XDECREF(tb);
}

static PyObject *resolve_attr(PyObject *module, const char *attr, char *err, size_t errlen)
{
    char name[256];
    size_t n = strlen(attr);
    int call = n > 2 && strcmp(attr + n - 2, "()") == 0;
    snprintf(name, sizeof(name), "%.*s", (int)(call ? n - 2 : n), attr);
    PyObject *obj = PyObject_GetAttrString(module, name);
    if (obj == NULL) {
        PyErr_Clear();
        snprintf(err, errlen, "module '%s' has no attribute '%s'", PyModule_GetName(module), name);
        return NULL;
    }
    if (!call)
        return obj;
    PyObject *app = PyObject_CallNoArgs(obj);
    Py_DECREF(obj);
    return app;
}

PyObject *gn_interp_import_app(const char *spec, char *err, size_t errlen)
{
    const char *colon = strrchr(spec, ':');
    char modname[512];
    if (colon == NULL || colon == spec || colon[1] == '\0') {
        snprintf(err, errlen, "application '%s' is not of the form MODULE:ATTRIBUTE", spec);
        return NULL;
    }
    snprintf(modname, sizeof(modname), "%.*s", (int)(colon - spec), spec);
    PyObject *module = PyImport_ImportModule(modname);
    PyObject *app = module ? resolve_attr(module, colon + 1, err, errlen) : NULL;
    Py_XDECREF(module);
    if (app == NULL && PyErr_Occurred()) {
        PyObject *exc = PyErr_GetRaisedException();
        char why[768];
        describe_exception(exc, why, sizeof(why));
        snprintf(err, errlen, "cannot import application '%s': %s", spec, why);
        Py_DECREF(exc);
    }
    return app;
}

static int is_coroutine_function(PyObject *inspect, PyObject *obj)
{
    PyObject *r = PyObject_CallMethod(inspect, "iscoroutinefunction", "O", obj);
    int yes = r ? PyObject_IsTrue(r) : 0;
    Py_XDECREF(r);
    PyErr_Clear();
    return yes > 0;
}

int gn_interp_is_asgi(PyObject *app)
{
    PyObject *inspect = PyImport_ImportModule("inspect");
    if (inspect == NULL) {
        PyErr_Clear();
        return 0;
    }
    int yes = is_coroutine_function(inspect, app);
    if (!yes && !PyFunction_Check(app) && !PyMethod_Check(app)) {
        PyObject *call = PyObject_GetAttrString(app, "__call__");
        if (call)
            yes = is_coroutine_function(inspect, call);
        Py_XDECREF(call);
        PyErr_Clear();
    }
    Py_DECREF(inspect);
    return yes;
}

static void wait_turn(gn_end_order_t *order, int index)
{
    pthread_mutex_lock(&order->mu);
    while (order->turn != index)
        pthread_cond_wait(&order->cv, &order->mu);
    pthread_mutex_unlock(&order->mu);
}

static void pass_turn(gn_end_order_t *order, int index)
{
    pthread_mutex_lock(&order->mu);
    order->turn = index - 1;
    pthread_cond_broadcast(&order->cv);
    pthread_mutex_unlock(&order->mu);
}

/* GORGON_NO_END_ORDER_WORKAROUND=1 lets each worker end as soon as it has
 * stopped, for the stress test that shows why the order matters. */
static int end_order_enabled(void)
{
    const char *v = getenv("GORGON_NO_END_ORDER_WORKAROUND");
    return v == NULL || strcmp(v, "1") != 0;
}

void gn_interp_end_ordered(gn_interp_t *it, gn_end_order_t *order, int index)
{
    PyThreadState *saved = it->ts ? PyEval_SaveThread() : NULL;
    if (end_order_enabled())
        wait_turn(order, index);
    if (it->ts) {
        PyEval_RestoreThread(saved);
        Py_EndInterpreter(it->ts);
        it->ts = NULL;
    }
    if (it->main_ts) {
        /* Drop the main-interpreter state this thread used to create it. */
        PyEval_RestoreThread(it->main_ts);
        PyThreadState_Clear(it->main_ts);
        PyThreadState_DeleteCurrent();
        it->main_ts = NULL;
    }
    pass_turn(order, index);
}

_Noreturn void gn_interp_abandon_process(int code)
{
    fflush(stdout);
    fflush(stderr);
    _exit(code);
}
