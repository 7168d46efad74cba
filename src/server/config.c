#include <Python.h>

#include "server/config.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "http/h2.h"
#include "http/proxy.h"
#include "server/log.h"

static PyObject *item(PyObject *dict, const char *key)
{
    PyObject *v = PyDict_GetItemString(dict, key); /* borrowed */
    if (v == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_KeyError, "gorgon config: missing %s", key);
    return v;
}

static int get_str(PyObject *dict, const char *key, char **out)
{
    PyObject *v = item(dict, key);
    const char *s = v ? PyUnicode_AsUTF8(v) : NULL;
    if (s == NULL)
        return -1;
    *out = strdup(s);
    return *out ? 0 : (PyErr_NoMemory(), -1);
}

/* A string that may be absent or None (then NULL). */
static int get_opt_str(PyObject *dict, const char *key, char **out)
{
    PyObject *v = PyDict_GetItemString(dict, key);
    *out = NULL;
    if (v == NULL || v == Py_None)
        return 0;
    const char *s = PyUnicode_AsUTF8(v);
    if (s == NULL)
        return -1;
    *out = strdup(s);
    return *out ? 0 : (PyErr_NoMemory(), -1);
}

static int get_tls(gn_tls_opts_t *t, PyObject *dict, int http)
{
    t->http = http;
    return get_opt_str(dict, "certfile", &t->certfile) || get_opt_str(dict, "keyfile", &t->keyfile) ||
                   get_opt_str(dict, "keyfile_password", &t->password) ||
                   get_opt_str(dict, "ca_certs", &t->ca_certs) || get_opt_str(dict, "cert_reqs", &t->cert_reqs) ||
                   get_opt_str(dict, "ssl_ciphers", &t->ciphers) ||
                   get_opt_str(dict, "ssl_min_version", &t->min_version)
               ? -1
               : 0;
}

static int get_long(PyObject *dict, const char *key, long long *out)
{
    PyObject *v = item(dict, key);
    if (v == NULL)
        return -1;
    *out = PyLong_AsLongLong(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* An integer that may be absent (then def). */
static int get_long_or(PyObject *dict, const char *key, long long def, long long *out)
{
    PyObject *v = PyDict_GetItemString(dict, key);
    *out = v ? PyLong_AsLongLong(v) : def;
    return v && *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int get_double(PyObject *dict, const char *key, double *out)
{
    PyObject *v = item(dict, key);
    if (v == NULL)
        return -1;
    *out = PyFloat_AsDouble(v);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static int get_str_list(PyObject *dict, const char *key, char ***out, unsigned *n)
{
    PyObject *v = item(dict, key);
    if (v == NULL || !PyList_Check(v)) {
        if (v)
            PyErr_Format(PyExc_TypeError, "gorgon config: %s must be a list", key);
        return -1;
    }
    Py_ssize_t len = PyList_GET_SIZE(v);
    *out = calloc((size_t)len + 1, sizeof(char *));
    if (*out == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        const char *s = PyUnicode_AsUTF8(PyList_GET_ITEM(v, i));
        if (s == NULL || ((*out)[i] = strdup(s)) == NULL) {
            if (s)
                PyErr_NoMemory();
            return -1;
        }
        *n = (unsigned)(i + 1);
    }
    return 0;
}

static int positive(long long v, const char *key)
{
    if (v > 0)
        return 0;
    PyErr_Format(PyExc_ValueError, "gorgon config: %s must be positive", key);
    return -1;
}

static int get_limits(gn_limits_t *lim, PyObject *dict)
{
    long long line, fields, field_size, head, body, conns, hw, alog;
    if (get_long(dict, "limit_request_line", &line) || get_long(dict, "limit_request_fields", &fields) ||
        get_long(dict, "limit_request_field_size", &field_size) ||
        get_long(dict, "limit_request_header_size", &head) || get_long(dict, "limit_request_body", &body) ||
        get_long(dict, "max_connections", &conns) || get_long(dict, "write_high_water", &hw) ||
        get_long(dict, "access_log", &alog))
        return -1;
    if (positive(line, "limit_request_line") || positive(fields, "limit_request_fields") ||
        positive(field_size, "limit_request_field_size") || positive(head, "limit_request_header_size") ||
        positive(conns + 1, "max_connections + 1") || positive(hw, "write_high_water") ||
        positive(body + 1, "limit_request_body + 1"))
        return -1;
    lim->max_request_line = (size_t)line;
    lim->max_fields = (size_t)fields;
    lim->max_field_size = (size_t)field_size;
    lim->max_head_size = (size_t)head;
    lim->max_body = (uint64_t)body;
    lim->max_connections = (unsigned)conns;
    long long total = 0;
    if (get_long_or(dict, "max_connections_total", 0, &total) || positive(total + 1, "max_connections_total + 1"))
        return -1;
    lim->max_connections_total = total > UINT_MAX ? UINT_MAX : (unsigned)total;
    lim->write_high_water = (size_t)hw;
    lim->access_log = alog != 0;
    long long ws_max;
    if (get_long(dict, "ws_max_size", &ws_max) || positive(ws_max, "ws_max_size"))
        return -1;
    lim->ws_max_size = (uint64_t)ws_max;
    long long deflate = 0;
    if (PyDict_GetItemString(dict, "ws_per_message_deflate") && get_long(dict, "ws_per_message_deflate", &deflate))
        return -1;
    lim->ws_deflate = deflate != 0;
    long long http = GN_HTTP_AUTO;
    if (PyDict_GetItemString(dict, "http") && get_long(dict, "http", &http))
        return -1;
    if (http != GN_HTTP_AUTO && http != GN_HTTP_ONLY1 && http != GN_HTTP_ONLY2) {
        PyErr_SetString(PyExc_ValueError, "gorgon config: http must be 0 (auto), 1 or 2");
        return -1;
    }
    lim->http = (int)http;
    if (get_double(dict, "ws_ping_interval", &lim->ws_ping_interval) ||
        get_double(dict, "header_timeout", &lim->header_timeout) ||
        get_double(dict, "keep_alive", &lim->keepalive_timeout) ||
        get_double(dict, "io_timeout", &lim->io_timeout))
        return -1;
    return 0;
}

/*
 * The PROXY protocol: which listening sockets (indexes into binds) expect a
 * header, and the peers trusted to send one (--forwarded-allow-ips;
 * 127.0.0.1 when the key is absent, as gunicorn's and uvicorn's default).
 */
static int get_proxy(gn_limits_t *lim, PyObject *dict, unsigned n_binds)
{
    PyObject *which = PyDict_GetItemString(dict, "proxy_listeners");
    PyObject *ips = PyDict_GetItemString(dict, "forwarded_allow_ips");
    const char *spec = ips ? PyUnicode_AsUTF8(ips) : "127.0.0.1";
    if (spec == NULL)
        return -1;
    uint64_t mask = 0;
    Py_ssize_t n = which ? PyList_Size(which) : 0;
    if (n < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        long long k = PyLong_AsLongLong(PyList_GET_ITEM(which, i));
        if (k == -1 && PyErr_Occurred())
            return -1;
        if (k < 0 || k >= (long long)n_binds || k >= 64) {
            PyErr_Format(PyExc_ValueError,
                         "gorgon config: proxy_listeners: %lld is not one of the first 64 binds", k);
            return -1;
        }
        mask |= (uint64_t)1 << k;
    }
    gn_trust_t *t = calloc(1, sizeof(*t));
    char err[200];
    if (t == NULL)
        return PyErr_NoMemory(), -1;
    if (gn_trust_parse(t, spec, err, sizeof(err)) < 0) {
        free(t);
        PyErr_Format(PyExc_ValueError, "--forwarded-allow-ips: %s", err);
        return -1;
    }
    lim->proxy_listeners = mask;
    lim->proxy_trust = t;
    PyObject *headers = PyDict_GetItemString(dict, "proxy_headers");
    lim->proxy_headers = headers ? PyObject_IsTrue(headers) : 0;
    return lim->proxy_headers < 0 ? -1 : 0;
}

int gn_config_from_dict(gn_config_t *cfg, PyObject *dict)
{
    memset(cfg, 0, sizeof(*cfg));
    if (!PyDict_Check(dict)) {
        PyErr_SetString(PyExc_TypeError, "gorgon config must be a dict");
        return -1;
    }
    char *level = NULL;
    long long workers, backlog, reuse, dtw, shared_max, processes, pure, max_req, jitter, max_mem;
    if (get_str(dict, "app", &cfg->app) || get_str(dict, "interface", &cfg->interface) ||
        get_str(dict, "lifespan", &cfg->lifespan) || get_str(dict, "root_path", &cfg->root_path) ||
        get_str_list(dict, "binds", &cfg->binds, &cfg->n_binds) ||
        get_str_list(dict, "sys_path", &cfg->sys_path, &cfg->n_sys_path) ||
        get_long(dict, "workers", &workers) || get_long(dict, "backlog", &backlog) ||
        get_long(dict, "reuse_port", &reuse) || get_long(dict, "datetime_workaround", &dtw) ||
        get_double(dict, "graceful_timeout", &cfg->graceful_timeout) || get_str(dict, "log_level", &level) ||
        get_long(dict, "shared_max_bytes", &shared_max) || get_limits(&cfg->limits, dict) ||
        get_str(dict, "shared_url", &cfg->shared_url) || get_str(dict, "shared_prefix", &cfg->shared_prefix) ||
        get_double(dict, "shared_timeout", &cfg->shared_timeout) ||
        get_double(dict, "shared_wait", &cfg->shared_wait) ||
        get_str(dict, "mode", &cfg->mode) || get_long(dict, "processes", &processes) ||
        get_long(dict, "pure_fallback", &pure) || get_double(dict, "probe_timeout", &cfg->probe_timeout) ||
        get_long(dict, "max_requests", &max_req) || get_double(dict, "timeout", &cfg->timeout) ||
        get_long(dict, "max_worker_memory", &max_mem) || get_long(dict, "max_requests_jitter", &jitter) ||
        get_proxy(&cfg->limits, dict, cfg->n_binds) || get_long_or(dict, "uid", -1, &cfg->uid) ||
        get_long_or(dict, "gid", -1, &cfg->gid) || get_tls(&cfg->tls, dict, cfg->limits.http) ||
        get_str(dict, "metrics_bind", &cfg->metrics_bind))
        goto error;
    if (positive(max_req + 1, "max_requests + 1") || positive(jitter + 1, "max_requests_jitter + 1"))
        goto error;
    cfg->max_requests = (unsigned long long)max_req;
    cfg->max_requests_jitter = (unsigned long long)jitter;
    if (positive(max_mem + 1, "max_worker_memory + 1"))
        goto error;
    cfg->max_worker_memory = (size_t)max_mem;
    if (positive(processes + 1, "processes + 1") || positive((long long)(cfg->probe_timeout * 1000), "probe_timeout"))
        goto error;
    if (strcmp(cfg->mode, "auto") && strcmp(cfg->mode, "interpreters") && strcmp(cfg->mode, "processes") &&
        strcmp(cfg->mode, "threads")) {
        PyErr_Format(PyExc_ValueError, "gorgon config: unknown mode '%s'", cfg->mode);
        goto error;
    }
    cfg->processes = (unsigned)processes;
    cfg->pure_fallback = pure != 0;
    if (positive(workers, "workers") || positive(backlog, "backlog") || positive(shared_max, "shared_max_bytes"))
        goto error;
    cfg->shared_max_bytes = (size_t)shared_max;
    cfg->workers = (unsigned)workers;
    cfg->backlog = (int)backlog;
    cfg->reuse_port = reuse != 0;
    cfg->datetime_workaround = dtw != 0;
    cfg->log_level = gn_log_parse_level(level);
    free(level);
    if (cfg->log_level < 0) {
        PyErr_SetString(PyExc_ValueError, "gorgon config: unknown log_level");
        return -1;
    }
    return 0;
error:
    free(level);
    return -1;
}

static void free_list(char **v, unsigned n)
{
    for (unsigned i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void gn_config_free(gn_config_t *cfg)
{
    free(cfg->app);
    free(cfg->interface);
    free(cfg->lifespan);
    free(cfg->root_path);
    free(cfg->mode);
    free(cfg->shared_url);
    free(cfg->shared_prefix);
    free(cfg->metrics_bind);
    free(cfg->limits.conns_total);
    cfg->limits.conns_total = NULL;
    free_list(cfg->binds, cfg->n_binds);
    free_list(cfg->sys_path, cfg->n_sys_path);
    gn_tls_opts_t *o = &cfg->tls;
    if (o->password) /* a secret: not left in freed memory */
        memset(o->password, 0, strlen(o->password));
    char *strs[] = {o->certfile, o->keyfile, o->password, o->ca_certs, o->cert_reqs, o->ciphers, o->min_version};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        free(strs[i]);
    gn_tls_server_free(cfg->limits.tls);
    if (cfg->limits.proxy_trust) {
        gn_trust_t *t = (gn_trust_t *)cfg->limits.proxy_trust;
        gn_trust_free(t);
        free(t);
    }
    memset(cfg, 0, sizeof(*cfg));
}
