/*
 * The PROXY protocol on a connection: before its first request, a connection
 * accepted with --proxy-protocol must start with a PROXY header (http/proxy.h)
 * from a trusted peer. The header's addresses replace the socket's for the
 * bridges and the logs; anything else closes the connection with one log
 * line, without an HTTP answer (the peer is a proxy, not an HTTP client).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "http/conn.h"
#include "http/loop.h"
#include "http/proxy.h"
#include "server/log.h"

static void refuse(gn_conn_t *c, const char *why)
{
    char host[64];
    int port;
    gn_conn_peer(c, host, sizeof(host), &port);
    gn_log(GN_LOG_WARNING, "PROXY protocol: closing the connection from %s port %d: %s", host, port, why);
    gn_conn_close(c);
}

int gn_conn__proxy_header(gn_conn_t *c)
{
    const gn_limits_t *lim = c->loop->limits;
    /* Checked on the first bytes, not at accept: the log line then says
     * what the peer tried, and accepting stays as cheap as without. */
    if (!gn_trust_match(lim->proxy_trust, (const struct sockaddr *)&c->peer)) {
        refuse(c, "peer not in --forwarded-allow-ips");
        return -1;
    }
    gn_proxy_header_t h;
    int n = gn_proxy_parse(c->rbuf, c->rlen, &h);
    if (n == GN_PROXY_INCOMPLETE)
        return 0;
    if (n < 0) {
        refuse(c, h.error);
        return -1;
    }
    if (h.has_addrs) {
        /* A unix address keeps only its family (gn_addr_t). */
        c->peer_len = h.src_len < sizeof(c->peer) ? h.src_len : sizeof(c->peer);
        memcpy(&c->peer, &h.src, c->peer_len);
        memset(&c->local, 0, sizeof(c->local));
        memcpy(&c->local, &h.dst, h.dst_len < sizeof(c->local) ? h.dst_len : sizeof(c->local));
        c->local_known = 1;
        c->peer_trust = 0; /* the client's now, not the proxy's */
    }
    memmove(c->rbuf, c->rbuf + n, c->rlen - (size_t)n);
    c->rlen -= (size_t)n;
    c->parsed_len = 0;
    c->proxy_wait = 0;
    return 1;
}

void gn_conn__proxy_timeout(gn_conn_t *c)
{
    refuse(c, c->rlen ? "incomplete PROXY header at the header timeout"
                      : "no PROXY header within the header timeout");
}

/*
 * Over TLS the header comes in the clear and the handshake right after it,
 * so the header is read without reading past it: the waiting bytes are
 * peeked at, and only those that belong to the header are taken. While the
 * header is incomplete every byte that came is part of it (a v1 line up to
 * its LF, a v2 block up to the length its first 16 bytes give), so each
 * round takes all it peeked and a level-triggered event never fires again
 * for bytes left in the socket.
 */
ssize_t gn_conn__proxy_read(gn_conn_t *c)
{
    size_t room = c->rcap - c->rlen;
    ssize_t n;
    do
        n = recv(c->fd, c->rbuf + c->rlen, room, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return 0;
    if (n <= 0)
        return -1;
    gn_proxy_header_t h;
    int whole = gn_proxy_parse(c->rbuf, c->rlen + (size_t)n, &h);
    size_t take = whole > 0 ? (size_t)whole - c->rlen : (size_t)n; /* an invalid one is refused on it */
    do
        n = recv(c->fd, c->rbuf + c->rlen, take, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1; /* the bytes just peeked are there: only an error ends here */
    c->rlen += (size_t)n;
    return n;
}
