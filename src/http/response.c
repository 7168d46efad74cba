#include "http/response.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int gn_http_connection_field(const char *name, size_t len)
{
    /* Once per field of every HTTP/2 response: the length picks the name. */
    const char *want;
    switch (len) {
    case 7: want = "upgrade"; break;
    case 10: want = (name[0] | 0x20) == 'c' ? "connection" : "keep-alive"; break;
    case 16: want = "proxy-connection"; break;
    case 17: want = "transfer-encoding"; break;
    default: return 0;
    }
    return strncasecmp(name, want, len) == 0;
}

const char *gn_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* Per thread, so workers never share (or lock) the cache. */
static _Thread_local struct {
    time_t when;
    char text[96];
    size_t date_len; /* length of the Date line alone */
    size_t len;
} date_cache;

const char *gn_http_date_server(int with_server, size_t *len)
{
    time_t now = time(NULL);
    if (now != date_cache.when) {
        struct tm tm;
        gmtime_r(&now, &tm);
        date_cache.date_len = strftime(date_cache.text, sizeof(date_cache.text),
                                       "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        static const char server[] = "Server: gorgon\r\n";
        memcpy(date_cache.text + date_cache.date_len, server, sizeof(server));
        date_cache.len = date_cache.date_len + sizeof(server) - 1;
        date_cache.when = now;
    }
    *len = with_server ? date_cache.len : date_cache.date_len;
    return date_cache.text;
}

void gn_http_log_time(char *buf, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, len, "%d/%b/%Y:%H:%M:%S +0000", &tm);
}

void gn_http_framing(gn_framing_t *f, int status, int is_head, int minor_version, int64_t app_length,
                     int64_t known_length, int keepalive)
{
    f->no_body = 0;
    f->chunked = 0;
    f->add_length = 0;
    f->length = app_length;
    f->close = !keepalive;
    /* 1xx and 204 have no body and no Content-Length; 304 and HEAD have no
     * body but describe the one they stand for (RFC 9110 6.4.1, 8.6). */
    if (status < 200 || status == 204) {
        f->no_body = 2;
        f->length = -1;
        return;
    }
    if (status == 304 || is_head)
        f->no_body = 1;
    if (app_length >= 0)
        return;
    if (known_length >= 0) {
        f->length = known_length;
        f->add_length = 1;
    } else if (!f->no_body) {
        if (minor_version == 1)
            f->chunked = 1;
        else if (minor_version == 0)
            f->close = 1;
        /* else HTTP/2 (http/h2.h): the stream's end ends the body */
    }
}

size_t gn_fmt_u64(char *dst, unsigned long long v)
{
    char d[20];
    size_t k = sizeof(d);
    do {
        d[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(dst, d + k, sizeof(d) - k);
    return sizeof(d) - k;
}

/* buf[n..cap) gets s[0..len), cut to fit; the new length. */
static size_t put(char *buf, size_t cap, size_t n, const char *s, size_t len)
{
    if (len > cap - n)
        len = cap - n;
    memcpy(buf + n, s, len);
    return n + len;
}

#define PUT(lit) (n = put(buf, cap, n, lit, sizeof(lit) - 1))

size_t gn_http_head_tail(char *buf, size_t cap, const gn_framing_t *f, int add_date, int add_server,
                         int minor_version)
{
    size_t dlen, n = 0;
    const char *ds = gn_http_date_server(add_server, &dlen);
    if (add_date)
        n = put(buf, cap, n, ds, dlen);
    else if (add_server)
        PUT("Server: gorgon\r\n");
    if (f->add_length) {
        char num[20];
        PUT("Content-Length: ");
        n = put(buf, cap, n, num, gn_fmt_u64(num, (unsigned long long)f->length));
        PUT("\r\n");
    } else if (f->chunked) {
        PUT("Transfer-Encoding: chunked\r\n");
    }
    if (f->close)
        PUT("Connection: close\r\n");
    else if (minor_version == 0)
        PUT("Connection: keep-alive\r\n");
    PUT("\r\n");
    return n;
}
