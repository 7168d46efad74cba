#include "interp/interp.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/log.h"

int gn_interp_prepare_main(const gn_config_t *cfg)
{
    if (!GN_DATETIME_HAZARD)
        return 0;
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

/* Isolated, with its own GIL: what every worker interpreter is. */
static PyInterpreterConfig worker_config(void)
{
    const PyInterpreterConfig config = {
        .use_main_obmalloc = 0,
        .allow_fork = 0,
        .allow_exec = 0,
        .allow_threads = 1,
        .allow_daemon_threads = 0,
        .check_multi_interp_extensions = 1,
        .gil = PyInterpreterConfig_OWN_GIL,
    };
    return config;
}

int gn_interp_create(gn_interp_t *it, PyInterpreterState *main_interp, char *err, size_t errlen)
{
    /* Py_NewInterpreterFromConfig is called, as _interpreters.create() does,
     * from a thread attached to the main interpreter; it detaches from it and
     * returns attached to the new interpreter, whose GIL this thread holds. */
    it->ts = NULL;
    it->is_main = 0;
    it->main_ts = PyThreadState_New(main_interp);
    if (it->main_ts == NULL) {
        snprintf(err, errlen, "cannot create a thread state");
        return -1;
    }
    PyEval_RestoreThread(it->main_ts);
    const PyInterpreterConfig config = worker_config();
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

int gn_interp_attach_main(gn_interp_t *it, PyInterpreterState *main_interp, char *err, size_t errlen)
{
    it->main_ts = NULL;
    it->is_main = 1;
    it->id = PyInterpreterState_GetID(main_interp);
    it->ts = PyThreadState_New(main_interp);
    if (it->ts == NULL) {
        snprintf(err, errlen, "cannot create a thread state");
        return -1;
    }
    PyEval_RestoreThread(it->ts);
    return 0;
}

int gn_interp_enter_probe(char *err, size_t errlen)
{
    /* Called attached to the main interpreter: returns attached to the new
     * one, as gn_interp_create does on a worker thread. */
    PyThreadState *ts = NULL;
    const PyInterpreterConfig config = worker_config();
    PyStatus st = Py_NewInterpreterFromConfig(&ts, &config);
    if (PyStatus_Exception(st)) {
        snprintf(err, errlen, "cannot create a sub-interpreter: %s", st.err_msg ? st.err_msg : "?");
        return -1;
    }
    return 0;
}

/* "Type: message" of the exception being raised, which is cleared. */
static void take_error(char *err, size_t errlen, const char *what)
{
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *s = exc ? PyObject_Str(exc) : NULL;
    const char *m = s ? PyUnicode_AsUTF8(s) : NULL;
    snprintf(err, errlen, "%s: %s: %s", what, exc ? Py_TYPE(exc)->tp_name : "?", m ? m : "?");
    PyErr_Clear();
    Py_XDECREF(s);
    Py_XDECREF(exc);
}

int gn_interp_install_pure_fallback(char *err, size_t errlen)
{
    PyObject *r = PyImport_ImportModule("gorgon._purefallback");
    PyObject *ok = r ? PyObject_CallMethod(r, "install", NULL) : NULL;
    Py_XDECREF(r);
    if (ok == NULL) {
        take_error(err, errlen, "cannot install the pure-Python fallback");
        return -1;
    }
    Py_DECREF(ok);
    return 0;
}

int gn_interp_pure_fallback_report(char *buf, size_t len)
{
    buf[0] = '\0';
    PyObject *mods = PyImport_GetModuleDict();
    PyObject *m = PyDict_GetItemString(mods, "gorgon._purefallback"); /* borrowed; NULL: never installed */
    PyObject *names = m ? PyObject_CallMethod(m, "loaded", NULL) : NULL;
    int n = 0;
    Py_ssize_t count = names && PyList_Check(names) ? PyList_GET_SIZE(names) : 0;
    size_t used = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        const char *s = PyUnicode_AsUTF8(PyList_GET_ITEM(names, i));
        if (s == NULL)
            break;
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", s);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
        n++;
    }
    Py_XDECREF(names);
    PyErr_Clear();
    return n;
}

int gn_interp_forget_app_modules(char *err, size_t errlen)
{
    PyObject *r = PyImport_ImportModule("gorgon._reload");
    PyObject *n = r ? PyObject_CallMethod(r, "forget_app_modules", NULL) : NULL;
    Py_XDECREF(r);
    if (n == NULL) {
        take_error(err, errlen, "cannot drop the application's modules for a reload");
        return -1;
    }
    Py_DECREF(n);
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
 * stopped, for the stress test that shows why the order matters; where the
 * hazard is gone, each ends so anyway. */
static int end_order_enabled(void)
{
    const char *v = getenv("GORGON_NO_END_ORDER_WORKAROUND");
    return GN_DATETIME_HAZARD && (v == NULL || strcmp(v, "1") != 0);
}

int gn_interp_keep_failed(void)
{
    const char *v = getenv("GORGON_NO_FAILED_IMPORT_WORKAROUND");
    return GN_FAILED_IMPORT_HAZARD && (v == NULL || strcmp(v, "1") != 0);
}

/* Workaround 5 (interp.h): threading.current_thread() on a thread that
 * Python did not start makes a _DummyThread, whose clean-up object sits in a
 * thread-local; dropped only when the interpreter ends, its __del__ runs after
 * the threading module was torn down and prints a TypeError traceback. Drop
 * it now, while threading is whole. */
static void drop_dummy_thread(void)
{
    const char *v = getenv("GORGON_NO_DUMMY_THREAD_WORKAROUND");
    if (!GN_DUMMY_THREAD_HAZARD || (v != NULL && strcmp(v, "1") == 0))
        return;
    PyObject *threading = PyDict_GetItemString(PyImport_GetModuleDict(), "threading"); /* borrowed */
    PyObject *info = threading ? PyObject_GetAttrString(threading, "_thread_local_info") : NULL;
    if (info && PyObject_HasAttrStringWithError(info, "_track_dummy_thread_ref") == 1)
        PyObject_DelAttrString(info, "_track_dummy_thread_ref");
    Py_XDECREF(info);
    PyErr_Clear();
}

/* A main-interpreter worker has nothing to end: it drops its thread state. */
static void detach_main(gn_interp_t *it)
{
    if (it->ts) {
        drop_dummy_thread();
        PyThreadState_Clear(it->ts);
        PyThreadState_DeleteCurrent();
        it->ts = NULL;
    }
}

void gn_interp_end_ordered(gn_interp_t *it, gn_end_order_t *order, int index)
{
    if (it->is_main) {
        detach_main(it);
        pass_turn(order, index);
        return;
    }
    if (it->ts)
        drop_dummy_thread();
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

#ifdef GN_COVERAGE
/* The coverage build (make coverage): _exit() skips the atexit handler that
 * writes gcov's counters, so write them first. */
void __gcov_dump(void);
#endif

long long gn_interp_heap_bytes(void)
{
    /* Exported for memory profilers (guppy3), declared only in an internal
     * header: looked up at run time, so a Python without it still loads
     * the extension. It reports on the current interpreter's obmalloc
     * state, which every own-GIL interpreter has to itself; its first
     * "Total" is the bytes of the arenas it holds. */
    int (*stats)(FILE *) = (int (*)(FILE *))dlsym(RTLD_DEFAULT, "_PyObject_DebugMallocStats");
    if (stats == NULL)
        return -1;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return -1;
    int printed = stats(f);
    fclose(f);
    long long total = -1;
    const char *line = printed && text ? strstr(text, "\nTotal") : NULL;
    const char *eq = line ? strchr(line, '=') : NULL;
    if (eq != NULL) {
        total = 0;
        for (const char *q = eq + 1; *q && *q != '\n'; q++) {
            if (*q >= '0' && *q <= '9')
                total = total * 10 + (*q - '0');
        }
    }
    free(text);
    return total;
}

_Noreturn void gn_interp_abandon_process(int code)
{
    fflush(stdout);
    fflush(stderr);
#ifdef GN_COVERAGE
    __gcov_dump();
#endif
    _exit(code);
}

int gn_interp_threads_running(void)
{
    int kernel = 0;
    DIR *d = opendir("/proc/self/task");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            kernel += e->d_name[0] != '.';
        closedir(d);
    }
    int python = 1;
    /* Only if threading was imported: nothing else can have started one. */
    PyObject *threading = PyDict_GetItemString(PyImport_GetModuleDict(), "threading");
    PyObject *n = threading ? PyObject_CallMethod(threading, "active_count", NULL) : NULL;
    if (n)
        python = (int)PyLong_AsLong(n);
    Py_XDECREF(n);
    PyErr_Clear();
    return kernel > python ? kernel : python;
}

int gn_interp_gil_enabled(void)
{
#ifdef Py_GIL_DISABLED
    /* An extension module that does not declare Py_mod_gil re-enables it. */
    PyObject *fn = PySys_GetObject("_is_gil_enabled"); /* borrowed */
    PyObject *r = fn ? PyObject_CallNoArgs(fn) : NULL;
    int on = r ? PyObject_IsTrue(r) : 1;
    Py_XDECREF(r);
    PyErr_Clear();
    return on != 0;
#else
    return 1;
#endif
}

pid_t gn_interp_fork(void)
{
    fflush(stdout);
    fflush(stderr);
    PyOS_BeforeFork();
    pid_t pid = fork();
    int saved = errno;
    if (pid == 0)
        PyOS_AfterFork_Child();
    else
        PyOS_AfterFork_Parent();
    errno = saved;
    return pid;
}

static void flush_std(const char *name)
{
    PyObject *f = PySys_GetObject(name); /* borrowed */
    PyObject *r = f && f != Py_None ? PyObject_CallMethod(f, "flush", NULL) : NULL;
    Py_XDECREF(r);
    PyErr_Clear();
}

_Noreturn void gn_interp_leave_child(int code)
{
    PyObject *atexit = PyImport_ImportModule("atexit");
    PyObject *r = atexit ? PyObject_CallMethod(atexit, "_run_exitfuncs", NULL) : NULL;
    Py_XDECREF(r);
    Py_XDECREF(atexit);
    PyErr_Clear();
    flush_std("stdout");
    flush_std("stderr");
    gn_interp_abandon_process(code);
}
