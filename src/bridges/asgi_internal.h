/* Internal to the ASGI bridge: per-worker and per-request state. */
#ifndef GN_BRIDGES_ASGI_INTERNAL_H
#define GN_BRIDGES_ASGI_INTERNAL_H

#include "bridges/asgi.h"

#define GN_ASGI_SCOPE_KEYS 14

struct gn_asgi {
    gn_handler_t handler;
    gn_modstate_t *st;
    const gn_config_t *cfg;
    unsigned worker_id;
    PyObject *app;
    PyObject *loop;          /* the worker's asyncio event loop */
    PyObject *create_future; /* loop.create_future */
    PyObject *task_type;     /* asyncio.Task */
    PyObject *task_kwargs;   /* {"loop": loop, "eager_start": True} */
    PyObject *lifespan;      /* gorgon._lifespan.Lifespan */
    PyObject *state;         /* lifespan state, copied into each scope */
    PyObject *root_path;
    PyObject *asgi_info;     /* {"version": "3.0", "spec_version": "2.4"} */
    PyObject *extensions;    /* {"http.response.pathsend": {}} */
    PyObject *extensions_trl; /* the same and {"http.response.trailers": {}} (HTTP/1.1, HTTP/2) */
    PyObject *format_exception;
    PyObject *capsule;       /* self for the loop callbacks */
    gn_loop_t *gloop;        /* the epoll loop, while running */
    int serving;             /* the epoll loop drives asyncio's (poll and tick) */
    PyObject *poll_cb, *tick_cb;
    PyObject *sha1, *b64encode; /* for Sec-WebSocket-Accept, loaded lazily */
    PyObject *ready_none;       /* an awaitable already done with None */
    PyObject *scope_keys[GN_ASGI_SCOPE_KEYS]; /* interned, see asgi.c */
    PyObject *v_http, *v_http11, *v_http10, *v_http2;
    PyObject *s_receive, *s_send, *s_done_cb, *s_done; /* names looked up per request */
    PyObject *ws_extensions;    /* {"websocket.http.response": {}} */
    /* interned keys */
    PyObject *k_type, *k_body, *k_more_body, *k_status, *k_headers, *k_path, *v_http_request,
        *v_http_disconnect, *k_trailers, *k_more_trailers;
};

typedef struct {
    PyObject_HEAD
    struct gn_asgi *a;
    gn_conn_t *conn;      /* NULL once the response is over or the client left */
    PyObject *recv_waiter; /* a Future a receive() waits on */
    PyObject *send_waiter; /* a Future a send() waits on (backpressure) */
    PyObject *chunks;     /* body bytes received, not yet given to the app */
    PyObject *body_error; /* the body could not be handed over: receive() raises it */
    int body_done;        /* the connection delivered the last body bytes */
    int body_given;       /* the app saw more_body=False */
    int disconnected;
    int started, head_sent, finished, chunked, no_body, has_date, has_server;
    int trailers;         /* http.response.trailers come after the body */
    int body_ended;       /* ... and the last body message came */
    int trl_open;         /* HTTP/1.1: the trailer section began (after the last chunk) */
    int broken;           /* what is queued stops inside a head or a chunk: the
                           * connection is cut at the end of the send */
    int status;
    int64_t length;
    uint64_t sent;
    PyObject *headers;    /* from http.response.start */
    PyObject *task;
    double t0;            /* when the request was handed to the app (--timeout) */
    int timed_out;        /* answered 504 (or cut) for --timeout */
    /* WebSocket */
    int ws;               /* a websocket scope */
    int ws_state;         /* GN_WS_CONNECTING, _ACCEPTED, _CLOSED */
    int ws_connect_given;
    int ws_code;          /* close code for websocket.disconnect */
    PyObject *ws_queue;   /* messages received, not yet given to the app */
} gn_asgi_req_t;

enum { GN_WS_CONNECTING, GN_WS_ACCEPTED, GN_WS_CLOSED };

/* asgi_receive.c */
PyObject *gn_asgi_receive(gn_asgi_req_t *r);
void gn_asgi_on_body(gn_conn_t *c, const char *data, size_t len, int done, void *ctx);
/* A body chunk or WebSocket message could not be handed over (exception
 * set): the app's receive() raises the exception (now, or once what came
 * before it is received), and the request fails as when the app raises. */
void gn_asgi_input_failed(gn_asgi_req_t *r);
/* Resolves a pending receive() with http.disconnect (client gone, or the
 * response is over). */
void gn_asgi_wake_disconnect(gn_asgi_req_t *r);
/* An awaitable already complete with result (no asyncio Future). */
PyObject *gn_asgi_done_future(gn_asgi_t *a, PyObject *result);
PyTypeObject *gn_asgi_ready_type_new(PyObject *module);
void gn_asgi_resolve(PyObject **waiter, PyObject *result);
/* Fails fut with exc (or cancels it, logged, when even that fails). */
void gn_asgi_reject(PyObject *fut, PyObject *exc);

/* asgi_response.c */
PyObject *gn_asgi_send(gn_asgi_req_t *r, PyObject *message);
/* A 500 before anything was sent, else cut the connection. */
void gn_asgi_fail(gn_asgi_req_t *r);
/* The response is over for the connection (r->conn, which must be set):
 * detach and let it go on. */
void gn_asgi_detach(gn_asgi_req_t *r, int complete);

/* asgi_response.c, also for the WebSocket denial response */
int gn_asgi__response_start(gn_asgi_req_t *r, PyObject *msg);
/* 1 if p[0..n) may not go on the wire as a header name (name != 0: a token,
 * not empty) or value (no CR, LF or NUL). */
int gn_asgi__bad_octets(const char *p, Py_ssize_t n, int name);
int gn_asgi__response_body(gn_asgi_req_t *r, PyObject *msg);

/* asgi_ws.c */
int gn_asgi_ws_is_upgrade(const gn_conn_t *c);
/* Valid handshake (RFC 6455 4.2.1)? 0, or -1 after answering 400. */
int gn_asgi_ws_check(gn_asgi_req_t *r);
int gn_asgi_ws_scope(gn_asgi_t *a, PyObject *scope, const gn_conn_t *c);
PyObject *gn_asgi_ws_receive(gn_asgi_req_t *r);
int gn_asgi_ws_send(gn_asgi_req_t *r, PyObject *msg, const char *type);
/* The app's task ended: close what it left open. */
void gn_asgi_ws_finish(gn_asgi_req_t *r, int failed);
void gn_asgi_ws_on_message(gn_conn_t *c, int opcode, const char *data, size_t len, void *ctx);
void gn_asgi_ws_on_close(gn_conn_t *c, int code, void *ctx);

/* asgi.c */
void gn_asgi_log_exception(gn_asgi_t *a, const char *what, PyObject *exc);

#endif
