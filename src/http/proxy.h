/*
 * The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's
 * "The PROXY protocol" specification has them: the header a TCP-level proxy
 * sends before the client's own bytes, carrying the client's address and
 * the one it connected to. And the list of peers trusted to send one
 * (--forwarded-allow-ips).
 *
 * Pure C, no Python, no allocation while parsing. Whether a connection must
 * start with a header, and what happens to it, is the connection layer's
 * business (http/proxy_conn.c).
 */
#ifndef GN_HTTP_PROXY_H
#define GN_HTTP_PROXY_H

#include <stddef.h>
#include <sys/socket.h>

enum {
    GN_PROXY_INCOMPLETE = -2, /* a valid prefix so far: need more bytes */
    GN_PROXY_INVALID = -1,    /* not a PROXY header, or a malformed one */
};

/* The longest v1 line, "PROXY" to CRLF included (specification 2.1). */
#define GN_PROXY_V1_MAX 107
/* The largest v2 address-and-TLV block accepted (the format allows 65535;
 * real proxies send a few dozen bytes, a few hundred with TLS TLVs). */
#define GN_PROXY_V2_MAX_LEN 4096

typedef struct {
    int version;   /* 1 or 2 */
    int has_addrs; /* 0 for a v2 LOCAL or UNSPEC header or a v1 UNKNOWN one:
                      the connection keeps the socket's own addresses */
    /* When has_addrs: the client (src) and the address it connected to
     * (dst), AF_INET, AF_INET6 or AF_UNIX (v2 only). */
    struct sockaddr_storage src, dst;
    socklen_t src_len, dst_len;
    const char *error; /* after GN_PROXY_INVALID: why, a static string */
} gn_proxy_header_t;

/*
 * Parses a PROXY header at the start of buf[0..len), v1 or v2 told apart by
 * their signatures. Returns the header's length (> 0) with *out filled,
 * GN_PROXY_INCOMPLETE when buf is a proper prefix of a header that may still
 * be valid, or GN_PROXY_INVALID with out->error set. Stateless: call again
 * with the whole buffer once more bytes came. Bytes after the header (the
 * client's request) are never looked at.
 *
 * Refused: any other first bytes (as soon as they differ from both
 * signatures); v1 longer than 107 bytes, without CRLF, with other than one
 * SP between fields, an address that is not in the family's textual form, a
 * port that is not 0..65535 without leading zeros; v2 with a version other
 * than 2, a command other than LOCAL/PROXY, an unknown family or transport,
 * DGRAM, an address block shorter than the family needs, more than
 * GN_PROXY_V2_MAX_LEN bytes, or TLVs that overrun the block.
 */
int gn_proxy_parse(const char *buf, size_t len, gn_proxy_header_t *out);

/* Peers allowed to send a PROXY header: a list of networks, or everyone. */
typedef struct gn_trust {
    int any;          /* "*" was given */
    size_t n;
    struct gn_trust_net {
        int family;   /* AF_INET or AF_INET6 */
        unsigned char addr[16];
        unsigned prefix; /* bits */
    } *nets;
} gn_trust_t;

/*
 * Parses a comma-separated list of addresses, CIDR networks ("10.0.0.0/8",
 * "fd00::/8") and "*" (everyone) into t (zeroed first). Spaces around the
 * items are ignored; an empty list trusts no one. Returns 0, or -1 with a
 * message in err (t is then empty). Release with gn_trust_free.
 */
int gn_trust_parse(gn_trust_t *t, const char *spec, char *err, size_t errlen);
/*
 * Whether the peer address sa is trusted. An IPv4-mapped IPv6 peer
 * (::ffff:a.b.c.d, from a dual-stack socket) matches IPv4 entries. A unix
 * socket peer is always trusted: who may connect is the socket file's
 * permissions' business, as with gunicorn.
 */
int gn_trust_match(const gn_trust_t *t, const struct sockaddr *sa);
void gn_trust_free(gn_trust_t *t);

#endif
