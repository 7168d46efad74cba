/* Pieces of HTTP responses shared by the bridges and the connection layer. */
#ifndef GN_HTTP_RESPONSE_H
#define GN_HTTP_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

/* The reason phrase for a status code ("Not Found"); "Unknown" if none. */
const char *gn_http_reason(int status);

/* Whether a field name (any case) is connection-specific: Connection,
 * Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade. HTTP/2 has no
 * place for them (RFC 9113 8.2.2), nor has a trailer section (RFC 9110
 * 6.5.1). */
int gn_http_connection_field(const char *name, size_t len);

/*
 * "Date: <IMF-fixdate>\r\nServer: gorgon\r\n" (server line omitted when
 * with_server is 0), cached per thread and rebuilt once a second.
 * Returns a pointer to thread-local storage and sets *len.
 */
const char *gn_http_date_server(int with_server, size_t *len);

/* The current time as an access-log timestamp, "27/Nov/2026:05:40:01 +0000". */
void gn_http_log_time(char *buf, size_t len);

/* How a response's body is delimited, decided once before its head. */
typedef struct {
    int no_body;        /* 0; 1: HEAD or 304 (keep Content-Length); 2: 1xx/204 (none at all) */
    int chunked;        /* Transfer-Encoding: chunked */
    int64_t length;     /* Content-Length to send or honour; -1 if none */
    int add_length;     /* the server writes Content-Length itself */
    int close;          /* the connection ends after this response */
} gn_framing_t;

/*
 * app_length: the Content-Length the application gave (-1 if none);
 * known_length: the body length if the server knows it whole (-1 if not).
 * A body of unknown length is chunked for HTTP/1.1 and ends with the close
 * of the connection for HTTP/1.0.
 */
void gn_http_framing(gn_framing_t *f, int status, int is_head, int minor_version, int64_t app_length,
                     int64_t known_length, int keepalive);

/* v in decimal at dst (room for 20 digits), no NUL; the digits written.
 * printf costs more than the rest of a small response's head. */
size_t gn_fmt_u64(char *dst, unsigned long long v);

/*
 * Writes the server's part of a head after the application's headers:
 * Date and Server (each unless the app gave it), the framing header, the
 * Connection header, and the empty line. Returns the length written.
 */
size_t gn_http_head_tail(char *buf, size_t cap, const gn_framing_t *f, int add_date, int add_server,
                         int minor_version);

#endif
