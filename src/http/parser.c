/*
 * gorgon HTTP/1.1 request parser and chunked-body decoder (see parser.h).
 *
 * How it works: gn_parse_request first finds the end of the head by looking
 * only at the bytes that arrived since the last call (every LF is checked
 * for its CR on the way, so a bare-LF client is rejected as soon as the LF
 * arrives instead of waiting for the size limit). Once the head is complete
 * it is parsed in one pass. Because a complete head always ends with
 * CR LF CR LF, the parsing loops need no bounds checks: each one stops at a
 * CR at the latest, and reading the byte after any byte that is not LF is
 * always inside the head.
 *
 * The strict choices follow RFC 9112 and the request smuggling literature
 * (Linhart et al., "HTTP Request Smuggling", 2005; Kettle, "HTTP Desync
 * Attacks", 2019): whenever two implementations could disagree on where a
 * request or a body ends, we answer 400 and the connection is closed.
 */
#include "parser.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

/* ---- character classes ---------------------------------------------------- */

enum {
    C_TOKEN = 1,  /* tchar, RFC 9110 section 5.6.2 */
    C_TARGET = 2, /* VCHAR but '#': what we accept in a request-target */
    C_VALUE = 4,  /* field-vchar / SP / HTAB, RFC 9110 section 5.5 */
    C_AUTHORITY = 8, /* in an authority: see gn_authority_ok */
};

#define IS_ALNUM(c)                                                                  \
    (((c) >= '0' && (c) <= '9') || ((c) >= 'A' && (c) <= 'Z') ||                     \
     ((c) >= 'a' && (c) <= 'z'))
#define IS_AUTHORITY(c)                                                              \
    (IS_ALNUM(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' || (c) == '%' ||  \
     (c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' ||  \
     (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=' || (c) == ':' ||   \
     (c) == '[' || (c) == ']')
#define IS_TCHAR(c)                                                                  \
    (IS_ALNUM(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||          \
     (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' ||          \
     (c) == '.' || (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
/*
 * obs-text (>= 0x80) is allowed in values (RFC 9110 5.5) but not in targets.
 * '#' starts a fragment, which a client never sends (RFC 9112 3.2, RFC 3986
 * 3.5): a target holding one is refused, not cut or passed on.
 */
#define CLASS(c)                                                                     \
    ((IS_TCHAR(c) ? C_TOKEN : 0) | ((c) > 0x20 && (c) < 0x7f && (c) != '#' ? C_TARGET : 0) | \
     ((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f) ? C_VALUE : 0) | (IS_AUTHORITY(c) ? C_AUTHORITY : 0))
#define HEXVAL(c)                                                                    \
    ((c) >= '0' && (c) <= '9'   ? (c) - '0'                                          \
     : (c) >= 'a' && (c) <= 'f' ? (c) - 'a' + 10                                     \
     : (c) >= 'A' && (c) <= 'F' ? (c) - 'A' + 10                                     \
                                : -1)

#define X4(F, b) F(b), F(b + 1), F(b + 2), F(b + 3)
#define X16(F, b) X4(F, b), X4(F, b + 4), X4(F, b + 8), X4(F, b + 12)
#define X64(F, b) X16(F, b), X16(F, b + 16), X16(F, b + 32), X16(F, b + 48)
#define X256(F) X64(F, 0), X64(F, 64), X64(F, 128), X64(F, 192)

static const uint8_t cls[256] = {X256(CLASS)};
static const int8_t hexval[256] = {X256(HEXVAL)};

static inline bool is(unsigned char c, unsigned klass)
{
    return (cls[c] & klass) != 0;
}

/*
 * Word-at-a-time scanning ("hasless" from Bit Twiddling Hacks): tells whether
 * any of 8 bytes is < n (exact for n <= 128). Used to skip long runs of
 * ordinary bytes in values and targets; the byte loop then finds the exact
 * stop, so HTAB (< 0x20 but allowed) only costs a fallback.
 */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline uint64_t has_less(uint64_t x, unsigned n)
{
    return (x - ONES * n) & ~x & HIGHS;
}

static inline uint64_t has_byte(uint64_t x, unsigned b)
{
    return has_less(x ^ (ONES * b), 1);
}

static inline uint64_t load8(const char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* Advances over field-value bytes; stops at the first CTL (CR at the latest). */
static const char *scan_value(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x = load8(p);
        if (has_less(x, 0x20) | has_byte(x, 0x7f))
            break;
        p += 8;
    }
    while (is((unsigned char)*p, C_VALUE))
        p++;
    return p;
}

/*
 * Advances over target bytes; stops at SP, '#', a CTL or a byte >= 0x80.
 * The word loop stops at any byte < 0x24 ('#' is 0x23): this also stops it
 * at the rare '!' and '"', which the byte loop then accepts, and costs
 * nothing over the plain "< 0x21" test, unlike a separate test for '#'.
 */
static const char *scan_target(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x = load8(p);
        if (has_less(x, 0x24) | has_byte(x, 0x7f) | (x & HIGHS))
            break;
        p += 8;
    }
    while (is((unsigned char)*p, C_TARGET))
        p++;
    return p;
}

static const char *scan_token(const char *p)
{
    while (is((unsigned char)*p, C_TOKEN))
        p++;
    return p;
}

/* Whether all of s is in klass (bounded: s need not end in a stop byte). */
static bool all_in(gn_slice_t s, unsigned klass)
{
    for (size_t i = 0; i < s.len; i++)
        if (!is((unsigned char)s.base[i], klass))
            return false;
    return true;
}

static inline gn_slice_t slice(const char *from, const char *to)
{
    gn_slice_t s = {from, (size_t)(to - from)};
    return s;
}

/* Case-insensitive compare with a lowercase literal of the same length. */
static bool ieq(gn_slice_t s, const char *lit, size_t n)
{
    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.base[i];
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != (unsigned char)lit[i])
            return false;
    }
    return true;
}

#define IEQ(s, lit) ieq((s), lit, sizeof(lit) - 1)

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* ---- finding the end of the head ----------------------------------------- */

/*
 * RFC 9112 section 2.2: a server SHOULD ignore at least one empty line
 * received before the request-line. We skip any number of CRLFs (the
 * connection layer bounds the head size), but a CR that is not followed by
 * LF is a bare CR and rejected right away.
 */
static int skip_empty_lines(const char *buf, size_t len, size_t *skip)
{
    size_t i = 0;
    while (i < len && buf[i] == '\r') {
        if (i + 1 == len)
            return GN_PARSE_INCOMPLETE;
        if (buf[i + 1] != '\n')
            return GN_PARSE_ERR_400;
        i += 2;
    }
    *skip = i;
    return 0;
}

/*
 * Looks at each LF in buf[from..len) (the bytes earlier calls have not
 * seen): it must follow a CR, because a bare LF line ending is read
 * differently by different servers (RFC 9112 section 2.2 lets a recipient
 * accept it; we do not, which removes the ambiguity). The head ends at the
 * first LF that closes an empty line.
 */
static int find_head_end(const char *buf, size_t len, size_t skip, size_t from,
                         size_t *head_len)
{
    const char *p = buf + from, *stop = buf + len;
    while ((p = memchr(p, '\n', (size_t)(stop - p))) != NULL) {
        size_t i = (size_t)(p - buf);
        if (i == skip || buf[i - 1] != '\r')
            return GN_PARSE_ERR_400;
        /* The LF at i - 2, if any, was itself checked for its CR. */
        if (i >= skip + 3 && buf[i - 2] == '\n') {
            *head_len = i + 1;
            return 0;
        }
        p++;
    }
    return GN_PARSE_INCOMPLETE;
}

/* ---- request line ---------------------------------------------------------- */

/* Splits path-and-query (origin-form, or the tail of absolute-form) at '?'. */
static void split_path(gn_request_t *req, gn_slice_t pq)
{
    const char *q = memchr(pq.base, '?', pq.len), *end = pq.base + pq.len;
    req->path = slice(pq.base, q ? q : end);
    req->query = q ? slice(q + 1, end) : slice(end, end);
}

/* ---- request-target forms (RFC 9112 section 3.2) ------------------------- */

/* Methods are case-sensitive (RFC 9110 9.1). */
static inline bool method_is(gn_slice_t m, const char *lit, size_t n)
{
    return m.len == n && memcmp(m.base, lit, n) == 0;
}

#define METHOD_IS(m, lit) method_is((m), lit, sizeof(lit) - 1)

/*
 * authority = host [ ":" port ] with host a reg-name, IPv4 or "[" IPv6 "]"
 * (RFC 3986 3.2): unreserved, pct-encoded, sub-delims, ":" "[" "]". No
 * userinfo: RFC 9110 4.2.4 asks a recipient to treat "user@" in an http(s)
 * URI as an error, and it is a classic way to make two hops see different
 * hosts.
 */
bool gn_authority_ok(gn_slice_t a)
{
    return a.len > 0 && all_in(a, C_AUTHORITY);
}

bool gn_http_token(gn_slice_t s)
{
    return s.len > 0 && all_in(s, C_TOKEN);
}

/* authority-form = uri-host ":" port (RFC 9112 3.2.3): the port is required. */
static bool authority_form_ok(gn_slice_t t)
{
    const char *colon = memrchr(t.base, ':', t.len);
    if (!gn_authority_ok(t) || colon == NULL || colon == t.base || colon + 1 == t.base + t.len)
        return false;
    for (const char *p = colon + 1; p < t.base + t.len; p++)
        if (!is_digit(*p))
            return false;
    return true;
}

/*
 * absolute-form (RFC 9112 3.2.2): an origin server MUST accept it, take the
 * path and query from it, and use its authority instead of Host. Only the
 * http and https schemes name something we can serve; both require a
 * non-empty host (RFC 9110 4.2). An empty path means "/": the slice is the
 * second slash of "//", so every output stays inside the caller's buffer.
 */
static int parse_absolute_form(gn_request_t *req)
{
    gn_slice_t t = req->target;
    size_t skip;
    if (t.len >= 7 && ieq(slice(t.base, t.base + 7), "http://", 7))
        skip = 7;
    else if (t.len >= 8 && ieq(slice(t.base, t.base + 8), "https://", 8))
        skip = 8;
    else
        return GN_PARSE_ERR_400;
    const char *a = t.base + skip, *end = t.base + t.len, *e = a;
    while (e < end && *e != '/' && *e != '?')
        e++;
    req->authority = slice(a, e);
    if (!gn_authority_ok(req->authority))
        return GN_PARSE_ERR_400;
    split_path(req, slice(e, end));
    if (req->path.len == 0)
        req->path = slice(a - 1, a);
    return 0;
}

/*
 * Which form the target has decides whether it is acceptable (RFC 9112
 * 3.2): origin-form for every method but CONNECT; "*" for OPTIONS only;
 * authority-form for CONNECT only; absolute-form for every method but
 * CONNECT. The common case costs one look at the first byte and one at the
 * method's length. CONNECT asks for a tunnel, which an application server
 * does not make: a well-formed one gets 501 (no Allow header to offer, as
 * 405 would need), a malformed one 400.
 */
static int check_target_form(gn_request_t *req)
{
    gn_slice_t t = req->target;
    bool connect = req->method.len == 7 && METHOD_IS(req->method, "CONNECT");
    req->authority = slice(t.base, t.base);
    if (t.base[0] == '/') {
        split_path(req, t);
        return connect ? GN_PARSE_ERR_400 : 0;
    }
    split_path(req, t);
    if (connect)
        return authority_form_ok(t) ? GN_PARSE_ERR_501 : GN_PARSE_ERR_400;
    if (t.base[0] == '*')
        return t.len == 1 && METHOD_IS(req->method, "OPTIONS") ? 0 : GN_PARSE_ERR_400;
    return parse_absolute_form(req);
}

/*
 * HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 2.3).
 * A well-formed version other than 1.0 or 1.1 gets 505; anything else is
 * not HTTP/1.x at all and gets 400. The && chain stops at the first
 * mismatch, which is what keeps it inside the head.
 */
static int parse_version(const char **pp, int *minor)
{
    const char *p = *pp;
    if (!(p[0] == 'H' && p[1] == 'T' && p[2] == 'T' && p[3] == 'P' && p[4] == '/' &&
          is_digit(p[5]) && p[6] == '.' && is_digit(p[7]) && p[8] == '\r' &&
          p[9] == '\n'))
        return GN_PARSE_ERR_400;
    if (p[5] != '1' || p[7] > '1')
        return GN_PARSE_ERR_505;
    *minor = p[7] - '0';
    *pp = p + 10;
    return 0;
}

/*
 * request-line = method SP request-target SP HTTP-version CRLF, with exactly
 * one SP each time (RFC 9112 section 3): a lenient split on "whitespace" is
 * how some servers came to see a different target than their proxy.
 */
static int parse_request_line(const char **pp, const char *end, gn_request_t *req)
{
    const char *p = *pp, *start = p;

    p = scan_token(p);
    if (p == start || *p != ' ')
        return GN_PARSE_ERR_400;
    req->method = slice(start, p);

    start = ++p;
    p = scan_target(p, end);
    if (p == start || *p != ' ')
        return GN_PARSE_ERR_400;
    req->target = slice(start, p);

    p++;
    int r = parse_version(&p, &req->minor_version);
    if (r != 0)
        return r;
    *pp = p;
    return check_target_form(req);
}

/* ---- header fields --------------------------------------------------------- */

/*
 * field-line = field-name ":" OWS field-value OWS CRLF (RFC 9112 section 5).
 * Rejected: a line starting with SP/HTAB (obs-fold, 5.2: we may reject it,
 * and joining lines is a classic desync), whitespace between the name and
 * the colon (5.1: MUST be rejected with 400, because some proxies strip it
 * and others keep it in the name), and any CTL or NUL in the value (a NUL
 * truncates the value for C-string consumers downstream).
 */
static int parse_field_line(const char **pp, const char *end, gn_header_t *h)
{
    const char *p = *pp, *name = p;

    p = scan_token(p);
    if (p == name || *p != ':')
        return GN_PARSE_ERR_400;
    h->name = slice(name, p);

    p++;
    while (is_ows(*p))
        p++;
    const char *value = p;
    p = scan_value(p, end);
    if (p[0] != '\r' || p[1] != '\n')
        return GN_PARSE_ERR_400;
    const char *vend = p;
    while (vend > value && is_ows(vend[-1]))
        vend--;
    h->value = slice(value, vend);
    *pp = p + 2;
    return 0;
}

/*
 * Content-Length = 1*DIGIT (RFC 9110 section 8.6). Signs, hex, embedded
 * spaces and lists ("5, 5") are all rejected rather than interpreted, since
 * a proxy that reads them differently is the CL.CL desync (Node.js read
 * "1 2" as 12: CVE-2018-7159).
 */
static int parse_content_length(gn_slice_t v, int64_t *out)
{
    int64_t n = 0;
    if (v.len == 0)
        return GN_PARSE_ERR_400;
    for (size_t i = 0; i < v.len; i++) {
        unsigned d = (unsigned char)v.base[i] - (unsigned)'0';
        if (d > 9 || n > (INT64_MAX - (int64_t)d) / 10)
            return GN_PARSE_ERR_400;
        n = n * 10 + (int64_t)d;
    }
    *out = n;
    return 0;
}

/* Connection = #connection-option: a comma list of tokens, any case. */
static unsigned connection_flags(gn_slice_t v)
{
    unsigned flags = 0;
    const char *p = v.base, *end = v.base + v.len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        gn_slice_t opt = slice(p, e);
        while (opt.len && is_ows(opt.base[0]))
            opt.base++, opt.len--;
        while (opt.len && is_ows(opt.base[opt.len - 1]))
            opt.len--;
        if (IEQ(opt, "close"))
            flags |= GN_REQ_CONN_CLOSE;
        else if (IEQ(opt, "keep-alive"))
            flags |= GN_REQ_CONN_KEEPALIVE;
        else if (IEQ(opt, "upgrade"))
            flags |= GN_REQ_CONN_UPGRADE;
        p = e + 1;
    }
    return flags;
}

/*
 * Transfer-Encoding = #transfer-coding (RFC 9112 6.1), a repeated field
 * being one list. chunked must be there, exactly once, and last (6.3: else
 * the body's length is unknowable, 400): accepting "chunked, chunked",
 * "chunked, gzip" or "gzip" alone is the TE.TE desync (one hop honours the
 * header, the other ignores it). A well-formed list that ends in chunked but
 * also names a coding we do not implement ("gzip, chunked") is 501 (RFC 9110
 * 15.6.2), decided in check_framing so that any 400 in a later field wins.
 * Empty elements and codings with parameters are refused as malformed. RFC
 * 9112 6.1 also forbids honouring TE in an HTTP/1.0 request, because a 1.0
 * hop in front of us would have ignored it and framed the body otherwise.
 */
static int apply_transfer_encoding(gn_request_t *req, gn_slice_t v)
{
    if (req->minor_version == 0)
        return GN_PARSE_ERR_400;
    const char *p = v.base, *end = v.base + v.len;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        gn_slice_t c = slice(p, comma ? comma : end);
        while (c.len && is_ows(c.base[0]))
            c.base++, c.len--;
        while (c.len && is_ows(c.base[c.len - 1]))
            c.len--;
        /* Nothing may follow chunked; the element must be one token. */
        if (c.len == 0 || (req->flags & GN_REQ_CHUNKED) || !all_in(c, C_TOKEN))
            return GN_PARSE_ERR_400;
        req->flags |= IEQ(c, "chunked") ? GN_REQ_CHUNKED : GN_REQ_TE_OTHER;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

/* Records what the connection layer needs from the framing-related fields. */
static int apply_field(gn_request_t *req, const gn_header_t *h)
{
    switch (h->name.len) {
    case 4:
        if (!IEQ(h->name, "host"))
            return 0;
        /* RFC 9112 3.2: more than one Host line MUST get a 400. */
        if (req->flags & GN_REQ_HAS_HOST)
            return GN_PARSE_ERR_400;
        req->flags |= GN_REQ_HAS_HOST;
        return 0;
    case 6:
        if (IEQ(h->name, "expect") && IEQ(h->value, "100-continue"))
            req->flags |= GN_REQ_EXPECT_CONTINUE;
        return 0;
    case 10:
        if (IEQ(h->name, "connection"))
            req->flags |= connection_flags(h->value);
        return 0;
    case 12:
        if (!IEQ(h->name, "content-type"))
            return 0;
        /* One body, one media type: a proxy in front may have used the
         * first of two while the app would see the last. */
        if (req->flags & GN_REQ_HAS_CONTENT_TYPE)
            return GN_PARSE_ERR_400;
        req->flags |= GN_REQ_HAS_CONTENT_TYPE;
        return 0;
    case 14:
        if (!IEQ(h->name, "content-length"))
            return 0;
        /* Even equal duplicates are refused: RFC 9110 8.6 only allows
         * merging them, and a hop that keeps the first while we keep the
         * last is the CL.CL desync. */
        if (req->content_length != -1)
            return GN_PARSE_ERR_400;
        return parse_content_length(h->value, &req->content_length);
    case 17:
        if (!IEQ(h->name, "transfer-encoding"))
            return 0;
        return apply_transfer_encoding(req, h->value);
    default:
        return 0;
    }
}

static int parse_fields(const char **pp, const char *end, gn_request_t *req,
                        gn_header_t *headers, size_t max_headers)
{
    const char *p = *pp;
    int r;
    while (*p != '\r') {
        if (req->num_headers == max_headers)
            return GN_PARSE_ERR_431;
        gn_header_t *h = &headers[req->num_headers];
        if ((r = parse_field_line(&p, end, h)) != 0 || (r = apply_field(req, h)) != 0)
            return r;
        req->num_headers++;
    }
    if (p[1] != '\n')
        return GN_PARSE_ERR_400;
    *pp = p + 2;
    return 0;
}

/*
 * RFC 9112 6.1: a message with both Content-Length and Transfer-Encoding
 * "ought to be handled as an error"; it is the CL.TE / TE.CL smuggling
 * vector, so we refuse it. A Transfer-Encoding without a final chunked is
 * 400 (6.3); one that also names an unknown coding is 501 (see
 * apply_transfer_encoding). RFC 9112 3.2: an HTTP/1.1 request without Host
 * MUST get a 400.
 */
static int check_framing(const gn_request_t *req)
{
    unsigned te = req->flags & (GN_REQ_CHUNKED | GN_REQ_TE_OTHER);
    if (te && req->content_length != -1)
        return GN_PARSE_ERR_400;
    if (te && !(req->flags & GN_REQ_CHUNKED))
        return GN_PARSE_ERR_400;
    if (req->minor_version == 1 && !(req->flags & GN_REQ_HAS_HOST))
        return GN_PARSE_ERR_400;
    return te & GN_REQ_TE_OTHER ? GN_PARSE_ERR_501 : 0;
}

/* absolute-form: the target's authority replaces Host (RFC 9112 3.2.2). */
static void use_target_authority(const gn_request_t *req, gn_header_t *headers)
{
    for (size_t i = 0; i < req->num_headers; i++) {
        if (headers[i].name.len == 4 && IEQ(headers[i].name, "host")) {
            headers[i].value = req->authority;
            return;
        }
    }
}

/* Parses a complete head [p, end); end[-4..-1] is "\r\n\r\n". */
static int parse_head(const char *p, const char *end, gn_request_t *req,
                      gn_header_t *headers, size_t max_headers)
{
    int r;
    req->content_length = -1;
    req->flags = 0;
    req->num_headers = 0;
    /* A CONNECT (501) still has its fields checked: a 400 there wins. */
    int line = parse_request_line(&p, end, req);
    if (line != 0 && line != GN_PARSE_ERR_501)
        return line;
    if ((r = parse_fields(&p, end, req, headers, max_headers)) != 0)
        return r;
    if ((r = check_framing(req)) != 0 || (r = line) != 0)
        return r;
    if (req->authority.len)
        use_target_authority(req, headers);
    return 0;
}

int gn_parse_fields(gn_request_t *req, gn_header_t *headers, size_t n)
{
    int r;
    req->content_length = -1;
    req->flags = 0;
    req->num_headers = 0;
    req->minor_version = 1;
    /* What parse_request_line would have refused in "method SP target SP". */
    if (req->method.len == 0 || !all_in(req->method, C_TOKEN) || req->target.len == 0 ||
        !all_in(req->target, C_TARGET))
        return GN_PARSE_ERR_400;
    int line = check_target_form(req);
    if (line != 0 && line != GN_PARSE_ERR_501)
        return line;
    for (size_t i = 0; i < n; i++) {
        gn_header_t *h = &headers[i];
        /* As parse_field_line: a token name, OWS around the value dropped,
         * no CTL in it. */
        while (h->value.len && is_ows(h->value.base[0]))
            h->value.base++, h->value.len--;
        while (h->value.len && is_ows(h->value.base[h->value.len - 1]))
            h->value.len--;
        if (h->name.len == 0 || !all_in(h->name, C_TOKEN) || !all_in(h->value, C_VALUE))
            return GN_PARSE_ERR_400;
        if ((r = apply_field(req, h)) != 0)
            return r;
        req->num_headers++;
    }
    if ((r = check_framing(req)) != 0 || (r = line) != 0)
        return r;
    if (req->authority.len)
        use_target_authority(req, headers);
    return 0;
}

int gn_parse_request(const char *buf, size_t len, size_t last_len, gn_request_t *req,
                     gn_header_t *headers, size_t max_headers)
{
    size_t skip = 0, head_len = 0;
    int r = skip_empty_lines(buf, len, &skip);
    if (r != 0)
        return r;
    size_t from = last_len > skip && last_len <= len ? last_len : skip;
    if ((r = find_head_end(buf, len, skip, from, &head_len)) != 0)
        return r;
    /* Only reachable if the caller's head limit is absurd; the status that
     * fits is "header fields too large". */
    if (head_len > INT_MAX)
        return GN_PARSE_ERR_431;
    if ((r = parse_head(buf + skip, buf + head_len, req, headers, max_headers)) != 0)
        return r;
    return (int)head_len;
}

/* ---- chunked body (RFC 9112 section 7.1) --------------------------------- */

enum {
    CH_SIZE = 0,  /* chunk-size digits; 0 so that a zeroed struct is ready */
    CH_SIZE_WS,   /* BWS after the size, only allowed before a ';' */
    CH_EXT,       /* chunk-ext, up to CR */
    CH_SIZE_LF,   /* LF closing the size line */
    CH_DATA,      /* chunk-data, d->remaining bytes */
    CH_DATA_CR,   /* CRLF after the data */
    CH_DATA_LF,
    CH_TR_START,  /* start of a trailer line, or of the final CRLF */
    CH_TR_NAME,
    CH_TR_VALUE,
    CH_TR_LF,
    CH_END_LF,    /* LF of the final CRLF */
};

#define CH_MAX_LINE 4096
#define CH_MAX_TRAILERS 8192
#define CH_MAX_DIGITS 16

void gn_chunked_init(gn_chunked_t *d)
{
    memset(d, 0, sizeof(*d));
}

/*
 * chunk-size = 1*HEXDIG. No sign, no "0x", at most 16 digits and at most
 * INT64_MAX: a size that one hop truncates or wraps and another does not
 * desyncs them, and the connection layer counts body bytes in int64.
 */
static int size_byte(gn_chunked_t *d, unsigned char c)
{
    int v = hexval[c];
    if (v >= 0) {
        if (d->line_len == CH_MAX_DIGITS)
            return GN_PARSE_ERR_400;
        d->size_acc = d->size_acc << 4 | (uint64_t)v;
        d->line_len++;
        return d->size_acc > INT64_MAX ? GN_PARSE_ERR_400 : 0;
    }
    if (d->line_len == 0)
        return GN_PARSE_ERR_400;
    if (c == '\r') {
        d->state = CH_SIZE_LF;
        return 0;
    }
    if (c == ';')
        d->state = CH_EXT;
    else if (c == ' ' || c == '\t')
        d->state = CH_SIZE_WS;
    else
        return GN_PARSE_ERR_400;
    d->line_len++;
    return 0;
}

/*
 * chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ). We ignore
 * extensions but refuse every CTL in them (HTAB aside), so their end is
 * unambiguous: servers that ended the size line at a bare LF inside an
 * extension could be desynced from proxies that did not. The line is
 * bounded so extensions cannot make us read without end (Node.js,
 * CVE-2024-22019).
 */
static int ext_byte(gn_chunked_t *d, unsigned char c)
{
    if (d->state == CH_EXT && c == '\r') {
        d->state = CH_SIZE_LF;
        return 0;
    }
    if (++d->line_len > CH_MAX_LINE)
        return GN_PARSE_ERR_400;
    if (d->state == CH_EXT)
        return is(c, C_VALUE) ? 0 : GN_PARSE_ERR_400;
    /* CH_SIZE_WS */
    if (c == ';')
        d->state = CH_EXT;
    else if (c != ' ' && c != '\t')
        return GN_PARSE_ERR_400;
    return 0;
}

/* The size line is over: a data chunk follows, or the last-chunk's trailers. */
static int size_lf(gn_chunked_t *d, unsigned char c)
{
    if (c != '\n')
        return GN_PARSE_ERR_400;
    d->remaining = d->size_acc;
    d->state = d->size_acc ? CH_DATA : CH_TR_START;
    d->size_acc = 0;
    d->line_len = 0;
    return 0;
}

/*
 * trailer-section = *( field-line CRLF ), validated with the same rules as
 * header fields (no obs-fold, no space before the colon, no CTL), then
 * discarded: nothing downstream merges trailers into headers, so they
 * cannot smuggle a header in.
 */
static int trailer_byte(gn_chunked_t *d, unsigned char c)
{
    if (d->state == CH_TR_START && c == '\r') {
        d->state = CH_END_LF;
        return 0;
    }
    if (++d->trailer_bytes > CH_MAX_TRAILERS)
        return GN_PARSE_ERR_400;
    switch (d->state) {
    case CH_TR_START:
        if (!is(c, C_TOKEN))
            return GN_PARSE_ERR_400;
        d->state = CH_TR_NAME;
        return 0;
    case CH_TR_NAME:
        if (c == ':')
            d->state = CH_TR_VALUE;
        else if (!is(c, C_TOKEN))
            return GN_PARSE_ERR_400;
        return 0;
    case CH_TR_VALUE:
        if (c == '\r')
            d->state = CH_TR_LF;
        else if (!is(c, C_VALUE))
            return GN_PARSE_ERR_400;
        return 0;
    default: /* CH_TR_LF */
        if (c != '\n')
            return GN_PARSE_ERR_400;
        d->state = CH_TR_START;
        return 0;
    }
}

/* Feeds one framing byte (anything but chunk data) to the state machine. */
static int framing_byte(gn_chunked_t *d, unsigned char c)
{
    switch (d->state) {
    case CH_SIZE:
        return size_byte(d, c);
    case CH_SIZE_WS:
    case CH_EXT:
        return ext_byte(d, c);
    case CH_SIZE_LF:
        return size_lf(d, c);
    case CH_DATA_CR:
        /* Data must be followed by exactly CRLF: a hop that trusts the
         * size while another looks for the next line is the TE.TE desync. */
        if (c != '\r')
            return GN_PARSE_ERR_400;
        d->state = CH_DATA_LF;
        return 0;
    case CH_DATA_LF:
        if (c != '\n')
            return GN_PARSE_ERR_400;
        d->state = CH_SIZE;
        return 0;
    case CH_END_LF:
        if (c != '\n')
            return GN_PARSE_ERR_400;
        d->done = 1;
        return 0;
    default:
        return trailer_byte(d, c);
    }
}

ssize_t gn_chunked_step(gn_chunked_t *d, const char *buf, size_t len, gn_slice_t *data)
{
    size_t i = 0;
    data->base = buf;
    data->len = 0;
    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    while (i < len && !d->done) {
        if (d->state == CH_DATA) {
            if (data->len != 0)
                break; /* one run of data per call */
            size_t n = len - i;
            if (n > d->remaining)
                n = (size_t)d->remaining;
            data->base = buf + i;
            data->len = n;
            d->remaining -= n;
            i += n;
            if (d->remaining == 0)
                d->state = CH_DATA_CR;
            continue;
        }
        if (framing_byte(d, (unsigned char)buf[i]) != 0)
            return GN_PARSE_ERR_400;
        i++;
    }
    return (ssize_t)i;
}
