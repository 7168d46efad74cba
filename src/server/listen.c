#include "server/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "http/loop.h"
#include "server/log.h"

/* Splits "host:port" / "[v6]:port" / ":port" into host and port. */
static int split_host_port(const char *spec, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        snprintf(host, hostlen, "%.*s", (int)(end - spec - 1), spec + 1);
        colon = end + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL) { /* a bare host: gunicorn's default port */
            snprintf(host, hostlen, "%s", spec);
            snprintf(port, portlen, "8000");
            return 0;
        }
        snprintf(host, hostlen, "%.*s", (int)(colon - spec), spec);
    }
    snprintf(port, portlen, "%s", colon + 1);
    return port[0] ? 0 : -1;
}

static int tcp_socket(const struct addrinfo *ai, int reuse_port, int backlog)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* Wake a worker only once the client has sent something (bounded by the
     * kernel to a few seconds, after which the connection is accepted). */
    int defer = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* The address to open; https once --certfile makes TCP listeners serve TLS. */
static void tcp_url(gn_bind_t *b, int fd, const gn_config_t *cfg)
{
    const char *scheme = cfg->tls.certfile ? "https" : "http";
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
        snprintf(b->url, sizeof(b->url), "%s://[%s]:%d", scheme, host, port);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
        snprintf(b->url, sizeof(b->url), "%s://%s:%d", scheme, host, port);
    }
}

/* With port 0 the first socket picks the port and the others follow it. */
static void set_port(struct addrinfo *ai, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &len);
    if (ai->ai_family == AF_INET6)
        ((struct sockaddr_in6 *)ai->ai_addr)->sin6_port = ((struct sockaddr_in6 *)&ss)->sin6_port;
    else
        ((struct sockaddr_in *)ai->ai_addr)->sin_port = ((struct sockaddr_in *)&ss)->sin_port;
}

static int open_tcp(gn_bind_t *b, const gn_config_t *cfg, unsigned n_workers)
{
    char host[256], port[32];
    if (split_host_port(b->spec, host, sizeof(host), port, sizeof(port)) < 0) {
        gn_log(GN_LOG_ERROR, "invalid bind address '%s' (expected HOST:PORT, [IPv6]:PORT or unix:/path)", b->spec);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        gn_log(GN_LOG_ERROR, "cannot resolve bind address '%s': %s", b->spec, gai_strerror(rc));
        return -1;
    }
    b->per_worker = cfg->reuse_port;
    b->n_fds = b->per_worker ? n_workers : 1;
    b->fds = malloc(b->n_fds * sizeof(int));
    for (unsigned i = 0; b->fds && i < b->n_fds; i++) {
        b->fds[i] = tcp_socket(res, b->per_worker, cfg->backlog);
        if (b->fds[i] < 0) {
            gn_log(GN_LOG_ERROR, "cannot listen on %s: %s", b->spec, strerror(errno));
            b->n_fds = i;
            freeaddrinfo(res);
            return -1;
        }
        if (i == 0)
            set_port(res, b->fds[0]);
    }
    freeaddrinfo(res);
    if (b->fds == NULL)
        return -1;
    tcp_url(b, b->fds[0], cfg);
    return 0;
}

static int open_unix(gn_bind_t *b, const gn_config_t *cfg)
{
    const char *path = b->spec + 5;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) == 0 || strlen(path) >= sizeof(sa.sun_path)) {
        gn_log(GN_LOG_ERROR, "invalid unix socket path '%s'", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path); /* a stale socket from an earlier run */
    b->fds = malloc(sizeof(int));
    if (b->fds == NULL)
        return -1;
    b->n_fds = 1;
    b->fds[0] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (b->fds[0] < 0 || bind(b->fds[0], (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(b->fds[0], cfg->backlog) < 0) {
        gn_log(GN_LOG_ERROR, "cannot listen on %s: %s", b->spec, strerror(errno));
        return -1;
    }
    b->is_unix = 1;
    snprintf(b->url, sizeof(b->url), "unix:%s", path);
    return 0;
}

/*
 * fd://N: a listening socket this process was given (systemd's socket
 * activation hands them over as 3, 4, ...). Shared by every worker, even
 * with --reuse-port. Its owner keeps listening after we stop, so at the stop
 * it is neither filtered nor unlinked: clients that arrive then wait in its
 * queue for the next start.
 */
static int open_fd(gn_bind_t *b, const gn_config_t *cfg)
{
    const char *num = b->spec + 5;
    char *end;
    long fd = strtol(num, &end, 10);
    int listening = 0, type = 0;
    socklen_t len = sizeof(int);
    if (*num == '\0' || *end != '\0' || fd < 0 || fd > 1 << 20) {
        gn_log(GN_LOG_ERROR, "invalid bind address '%s' (expected fd://N)", b->spec);
        return -1;
    }
    if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 ||
        getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || !listening || type != SOCK_STREAM) {
        gn_log(GN_LOG_ERROR, "cannot listen on %s: not an open, listening stream socket", b->spec);
        return -1;
    }
    fcntl((int)fd, F_SETFL, fcntl((int)fd, F_GETFL) | O_NONBLOCK);
    fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    b->fds = malloc(sizeof(int));
    if (b->fds == NULL)
        return -1;
    b->fds[0] = (int)fd;
    b->n_fds = 1;
    b->inherited = 1;
    struct sockaddr_un sa;
    socklen_t salen = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    if (getsockname((int)fd, (struct sockaddr *)&sa, &salen) == 0 && sa.sun_family == AF_UNIX)
        snprintf(b->url, sizeof(b->url), "unix:%s (%s)", sa.sun_path, b->spec);
    else {
        tcp_url(b, (int)fd, cfg);
        size_t used = strlen(b->url);
        snprintf(b->url + used, sizeof(b->url) - used, " (%s)", b->spec);
    }
    return 0;
}

int gn_listen_open(gn_listeners_t *ls, const gn_config_t *cfg, unsigned n_workers)
{
    ls->binds = calloc(cfg->n_binds, sizeof(gn_bind_t));
    if (ls->binds == NULL)
        return -1;
    ls->n_binds = cfg->n_binds;
    ls->exclusive = 0;
    for (unsigned i = 0; i < cfg->n_binds; i++) {
        gn_bind_t *b = &ls->binds[i];
        b->spec = cfg->binds[i];
        int rc = strncmp(b->spec, "unix:", 5) == 0  ? open_unix(b, cfg)
                 : strncmp(b->spec, "fd://", 5) == 0 ? open_fd(b, cfg)
                                                      : open_tcp(b, cfg, n_workers);
        if (rc < 0)
            return -1;
        if (!b->per_worker)
            ls->exclusive = 1;
    }
    return 0;
}

uint64_t gn_listen_inherited(const gn_listeners_t *ls)
{
    uint64_t mask = 0;
    for (unsigned i = 0; i < ls->n_binds && i < 64; i++)
        mask |= (uint64_t)(ls->binds[i].inherited != 0) << i;
    return mask;
}

/* Which of the bind's sockets worker w accepts from: with --reuse-port its
 * own, a worker added beyond the first ones sharing by its id. */
static unsigned socket_of(const gn_bind_t *b, unsigned w)
{
    return b->per_worker && b->n_fds ? w % b->n_fds : 0;
}

int *gn_listen_for_worker(gn_listeners_t *ls, unsigned w, unsigned *n)
{
    int *fds = malloc((ls->n_binds ? ls->n_binds : 1) * sizeof(int));
    if (fds == NULL)
        return NULL;
    for (unsigned i = 0; i < ls->n_binds; i++) {
        gn_bind_t *b = &ls->binds[i];
        /* A copy: the supervisor keeps its own, to refuse new connections
         * on every socket the moment a stop begins. */
        fds[i] = fcntl(b->fds[socket_of(b, w)], F_DUPFD_CLOEXEC, 0);
    }
    *n = ls->n_binds;
    return fds;
}

int gn_listen_same_sockets(const gn_listeners_t *ls, unsigned a, unsigned b)
{
    for (unsigned i = 0; i < ls->n_binds; i++) {
        if (socket_of(&ls->binds[i], a) != socket_of(&ls->binds[i], b))
            return 0;
    }
    return 1;
}

void gn_listen_refuse(gn_listeners_t *ls)
{
    for (unsigned i = 0; ls->binds && i < ls->n_binds; i++) {
        gn_bind_t *b = &ls->binds[i];
        if (b->is_unix) { /* no new client finds the path; queued ones stay */
            unlink(b->spec + 5);
            b->is_unix = 0;
        }
        for (unsigned j = 0; b->fds && j < b->n_fds && !b->inherited; j++) {
            if (b->fds[j] >= 0)
                gn_listener_refuse_new(b->fds[j]);
        }
    }
}

void gn_listen_disown(gn_listeners_t *ls)
{
    for (unsigned i = 0; ls->binds && i < ls->n_binds; i++)
        ls->binds[i].is_unix = 0;
}

void gn_listen_close(gn_listeners_t *ls)
{
    for (unsigned i = 0; ls->binds && i < ls->n_binds; i++) {
        gn_bind_t *b = &ls->binds[i];
        for (unsigned j = 0; b->fds && j < b->n_fds; j++) {
            if (b->fds[j] >= 0)
                close(b->fds[j]);
        }
        free(b->fds);
        if (b->is_unix)
            unlink(b->spec + 5);
    }
    free(ls->binds);
    ls->binds = NULL;
    ls->n_binds = 0;
}
