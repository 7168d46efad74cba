/*
 * The server's configuration as plain C data, built once in the main
 * interpreter from the dict that gorgon/_cli.py makes, then read (never
 * written) by every worker thread. No Python objects cross into workers.
 */
#ifndef GN_SERVER_CONFIG_H
#define GN_SERVER_CONFIG_H

#include "http/conn.h"
#include "http/tls.h"

typedef struct {
    char *app;            /* "module:attr" or "module:factory()" */
    char *interface;      /* "auto", "wsgi" or "asgi" */
    char *lifespan;       /* ASGI lifespan: "auto", "on", "off" */
    char *root_path;      /* ASGI root_path */
    char **binds;
    unsigned n_binds;
    char **sys_path;
    unsigned n_sys_path;
    unsigned workers;     /* workers per process */
    char *mode;           /* "auto", "interpreters", "processes" or "threads" */
    unsigned processes;   /* worker processes (--processes); 0 = not asked for */
    int pure_fallback;    /* load a refused compiled module's .py source instead */
    double probe_timeout; /* seconds the auto-mode import probe may take */
    int log_level;
    int backlog;
    int reuse_port;
    int datetime_workaround;
    double graceful_timeout;
    unsigned long long max_requests;        /* replace a worker after this many; 0 = never */
    unsigned long long max_requests_jitter; /* plus a random 0..jitter per worker */
    size_t max_worker_memory; /* bytes; replace a worker above it; 0 = never */
    double timeout;       /* --timeout: seconds one call into the application may run; 0 = off */
    size_t shared_max_bytes; /* bound on gorgon.shared's total size */
    char *shared_url;        /* --shared-url: "" = the in-process store */
    char *shared_prefix;     /* --shared-prefix: of every Redis key */
    double shared_timeout;   /* --shared-timeout: seconds per connect or call */
    double shared_wait;      /* --shared-wait: seconds to wait for Redis at start */
    char *metrics_bind;   /* --metrics-bind: "" for none */
    long long uid, gid;   /* --user / --group: switched to once bound; -1 = stay */
    gn_limits_t limits;
    gn_tls_opts_t tls;    /* --certfile and the rest; certfile NULL: no TLS */
} gn_config_t;

typedef struct _object PyObject;

/* Fills cfg from the dict; returns 0, or -1 with a Python exception set. */
int gn_config_from_dict(gn_config_t *cfg, PyObject *dict);
/* Frees what gn_config_from_dict allocated; safe on a half-filled config. */
void gn_config_free(gn_config_t *cfg);

#endif
