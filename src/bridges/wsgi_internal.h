/* Internal to the WSGI bridge: the per-worker and per-request state. */
#ifndef GN_BRIDGES_WSGI_INTERNAL_H
#define GN_BRIDGES_WSGI_INTERNAL_H

#include "bridges/wsgi.h"

typedef struct {
    const char *lower; /* header name, lower case */
    size_t len;
    PyObject *key;     /* interned environ key, e.g. "HTTP_USER_AGENT" */
} gn_wsgi_hkey_t;

#define GN_WSGI_COMMON_HEADERS 16

struct gn_wsgi {
    gn_handler_t handler;
    gn_modstate_t *st;
    PyObject *app;
    PyObject *environ_template;
    PyObject *format_exception; /* traceback.format_exception, loaded lazily */
    PyObject *s_write;
    /* Interned environ keys and common values: one lookup-free SetItem each. */
    PyObject *k_url_scheme;
    PyObject *k_method, *k_path, *k_query, *k_raw_uri, *k_protocol, *k_server_name,
        *k_server_port, *k_remote_addr, *k_remote_port, *k_content_type, *k_content_length,
        *k_input;
    PyObject *v_get, *v_post, *v_head, *v_http10, *v_http11, *v_http2;
    gn_wsgi_hkey_t common[GN_WSGI_COMMON_HEADERS];
    unsigned worker_id;
    struct gn_wsgi_req *free_reqs;
};

typedef struct gn_wsgi_req {
    struct gn_wsgi *w;
    gn_conn_t *conn;
    PyObject *sr;      /* the StartResponse object given to the app */
    PyObject *input;   /* wsgi.input, detached at the end */
    PyObject *result;  /* the app's iterable */
    PyObject *iter;    /* iterator over it, unless it is a list or tuple */
    Py_ssize_t seq_pos;
    PyObject *status;  /* from start_response */
    PyObject *headers;
    int status_code;
    int started;       /* start_response was called */
    int head_sent;
    int chunked;
    int no_body;       /* HEAD, 1xx, 204, 304 */
    int has_date, has_server;
    int file_queued;   /* a sendfile range is queued: finish once sent */
    int timed_out;     /* --timeout: the watchdog answered the request */
    int64_t length;    /* Content-Length of the response; -1 unknown */
    uint64_t sent;     /* body bytes produced */
    struct gn_wsgi_req *next_free;
} gn_wsgi_req_t;

/* wsgi.c: around every call into the application (--timeout, http/loop.h).
 * app_back returns 1 once the watchdog took the request. */
void gn_wsgi_app_enter(gn_wsgi_req_t *req);
int gn_wsgi_app_back(gn_wsgi_req_t *req);

/* wsgi_response.c */
PyTypeObject *gn_wsgi_start_response_type_new(PyObject *module);
PyObject *gn_wsgi_start_response_new(gn_wsgi_req_t *req);
void gn_wsgi_start_response_detach(PyObject *sr);
/* Queues the status line and headers; known_length >= 0 adds Content-Length
 * when the app gave none. Returns 0, or -1 with an exception set. */
int gn_wsgi_send_head(gn_wsgi_req_t *req, int64_t known_length);
/* Queues one body item with the response's framing; steals `item`. */
int gn_wsgi_send_body(gn_wsgi_req_t *req, PyObject *item);

#endif
