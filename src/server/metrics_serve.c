/*
 * The metrics listener: a few connections at a time, each one request
 * (GET or HEAD /metrics), answered and closed. It runs on a thread of its
 * own or in the supervisor's poll loop (metrics.h), never in a worker.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/loop.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/metrics.h"

#define MAX_CLIENTS 16
#define HEAD_MAX 4096
#define CLIENT_TIMEOUT 5.0 /* seconds to send a request and read the answer */
#define TAG_LISTEN 1000
#define TAG_WAKE 1001

typedef struct {
    int fd; /* -1: free */
    double deadline;
    size_t len;
    char *out;
    size_t out_len, out_off;
    char in[HEAD_MAX];
} client_t;

static gn_listeners_t listener;
static int epfd = -1, wake_fd = -1;
static client_t clients[MAX_CLIENTS];
static int clients_ready; /* their fds set to -1: only with --metrics-bind */
static pthread_t thread;
static int thread_started;
static atomic_int stop_wanted;

int gn_metrics__listen(const gn_plan_t *plan);

int gn_metrics__listen(const gn_plan_t *plan)
{
    gn_config_t one = plan->cfg; /* one socket, whatever --reuse-port says */
    char *spec = plan->cfg.metrics_bind;
    one.binds = &spec;
    one.n_binds = 1;
    one.reuse_port = 0;
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;
    clients_ready = 1;
    if (gn_listen_open(&listener, &one, 1) < 0) {
        gn_log(GN_LOG_ERROR, "--metrics-bind %s: cannot listen", spec);
        return -1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
    struct epoll_event wake = {.events = EPOLLIN, .data.u64 = TAG_WAKE};
    if (epfd < 0 || wake_fd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, listener.binds[0].fds[0], &ev) < 0 ||
        epoll_ctl(epfd, EPOLL_CTL_ADD, wake_fd, &wake) < 0) {
        gn_log(GN_LOG_ERROR, "--metrics-bind: %s", strerror(errno));
        return -1;
    }
    if (listener.binds[0].is_unix)
        gn_log(GN_LOG_INFO, "Metrics at: %s (path /metrics)", listener.binds[0].url);
    else
        gn_log(GN_LOG_INFO, "Metrics at: %s/metrics", listener.binds[0].url);
    return 0;
}

static void drop_client(client_t *c)
{
    if (c->fd < 0)
        return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    free(c->out);
    c->out = NULL;
}

/* Everything is sent: end it without a reset (unread input would cause one). */
static void finish_client(client_t *c)
{
    char sink[512];
    shutdown(c->fd, SHUT_WR);
    while (read(c->fd, sink, sizeof(sink)) > 0) {
    }
    drop_client(c);
}

static void send_more(client_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)(c - clients)};
            epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
            return;
        }
        drop_client(c);
        return;
    }
    finish_client(c);
}

static void answer(client_t *c, int status, const char *reason, const char *body, size_t len, int head_only)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     status, reason,
                     status == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8", len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "");
    size_t total = (size_t)n + (head_only ? 0 : len);
    c->out = malloc(total);
    if (c->out == NULL) {
        drop_client(c);
        return;
    }
    memcpy(c->out, head, (size_t)n);
    if (!head_only)
        memcpy(c->out + n, body, len);
    c->out_len = total;
    c->out_off = 0;
    send_more(c);
}

static void refuse(client_t *c, int status, const char *reason)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%s\n", reason);
    gn_log(GN_LOG_INFO, "metrics: %d %s", status, reason);
    answer(c, status, reason, body, (size_t)n, 0);
}

/* "METHOD /path HTTP/1.x": method and target, or -1. */
static int parse_line(char *line, char **method, char **target)
{
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || sp1 == line || sp1[1] != '/')
        return -1;
    if (strcmp(sp2 + 1, "HTTP/1.1") != 0 && strcmp(sp2 + 1, "HTTP/1.0") != 0)
        return -1;
    for (char *p = line; p < sp1; p++) {
        if (*p < 'A' || *p > 'Z')
            return -1;
    }
    for (char *p = sp1 + 1; p < sp2; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return -1;
    }
    *sp1 = *sp2 = '\0';
    *method = line;
    *target = sp1 + 1;
    return 0;
}

static void respond(client_t *c)
{
    char *eol = memchr(c->in, '\n', c->len);
    if (eol == NULL || eol == c->in || eol[-1] != '\r') {
        refuse(c, 400, "Bad Request");
        return;
    }
    eol[-1] = '\0';
    char *method, *target;
    if (parse_line(c->in, &method, &target) < 0) {
        refuse(c, 400, "Bad Request");
        return;
    }
    target[strcspn(target, "?")] = '\0';
    if (strcmp(target, "/metrics") != 0) {
        refuse(c, 404, "Not Found");
        return;
    }
    int head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0) {
        refuse(c, 405, "Method Not Allowed");
        return;
    }
    size_t len = 0;
    char *text = gn_metrics__render(&len);
    if (text == NULL) {
        refuse(c, 503, "Service Unavailable");
        return;
    }
    answer(c, 200, "OK", text, len, head);
    free(text);
}

static void on_readable(client_t *c)
{
    for (;;) {
        ssize_t n = read(c->fd, c->in + c->len, sizeof(c->in) - 1 - c->len);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            drop_client(c);
            return;
        }
        if (n < 0)
            return; /* wait for more */
        c->len += (size_t)n;
        c->in[c->len] = '\0';
        /* The end of a head, or what cannot be one: a bare LF line end
         * or a NUL (answered 400 at once, not when the client gives up). */
        if (strstr(c->in, "\n\n") || strstr(c->in, "\n\r\n") || memchr(c->in, '\0', c->len)) {
            respond(c);
            return;
        }
        if (c->len == sizeof(c->in) - 1) {
            refuse(c, 431, "Request Header Fields Too Large");
            return;
        }
    }
}

static void on_accept(void)
{
    for (;;) {
        int fd = accept4(listener.binds[0].fds[0], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        client_t *c = NULL;
        for (int i = 0; i < MAX_CLIENTS && c == NULL; i++)
            c = clients[i].fd < 0 ? &clients[i] : NULL;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = c ? (uint64_t)(c - clients) : 0};
        if (c == NULL || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd); /* more scrapers at once than anyone needs */
            continue;
        }
        c->fd = fd;
        c->len = 0;
        c->deadline = gn_now() + CLIENT_TIMEOUT;
    }
}

static void handle(int timeout_ms)
{
    struct epoll_event ev[MAX_CLIENTS + 2];
    int n = epoll_wait(epfd, ev, MAX_CLIENTS + 2, timeout_ms);
    for (int i = 0; i < n; i++) {
        uint64_t tag = ev[i].data.u64;
        if (tag == TAG_LISTEN) {
            on_accept();
        } else if (tag == TAG_WAKE) {
            uint64_t v;
            if (read(wake_fd, &v, sizeof(v)) < 0) {
                /* nothing to drain */
            }
        } else if (tag < MAX_CLIENTS && clients[tag].fd >= 0) {
            client_t *c = &clients[tag];
            if (c->out)
                send_more(c);
            else
                on_readable(c);
        }
    }
    double now = gn_now();
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (clients[i].fd >= 0 && now > clients[i].deadline)
            drop_client(&clients[i]);
    }
}

static void *serve_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_wanted))
        handle(1000);
    return NULL;
}

int gn_metrics_start_thread(void)
{
    if (epfd < 0)
        return 0;
    int rc = pthread_create(&thread, NULL, serve_thread, NULL);
    if (rc != 0) {
        gn_log(GN_LOG_ERROR, "--metrics-bind: cannot start its thread: %s", strerror(rc));
        return -1;
    }
    thread_started = 1;
    return 0;
}

int gn_metrics_fd(void)
{
    return epfd;
}

void gn_metrics_serve_ready(void)
{
    if (epfd >= 0)
        handle(0);
}

/* in_child: the epoll set is the supervisor's too (a forked copy shares
 * it), so nothing is removed from it; closing our copies is enough. */
static void close_all(int in_child)
{
    if (!clients_ready)
        return; /* metrics are off: nothing was opened */
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (in_child && clients[i].fd >= 0) {
            close(clients[i].fd);
            clients[i].fd = -1;
            free(clients[i].out);
            clients[i].out = NULL;
        }
        drop_client(&clients[i]);
    }
    if (epfd >= 0)
        close(epfd);
    if (wake_fd >= 0)
        close(wake_fd);
    epfd = wake_fd = -1;
    gn_listen_close(&listener);
}

void gn_metrics_close(void)
{
    if (thread_started) {
        atomic_store(&stop_wanted, 1);
        uint64_t one = 1;
        if (write(wake_fd, &one, sizeof(one)) < 0) {
            /* the thread wakes within a second anyway */
        }
        pthread_join(thread, NULL);
        thread_started = 0;
    }
    close_all(0);
}

void gn_metrics_forget_listener(void)
{
    gn_listen_disown(&listener);
    close_all(1);
}
