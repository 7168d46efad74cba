/* Pieces of HTTP responses shared by the bridges and the connection layer. */
#ifndef GN_HTTP_RESPONSE_H
#define GN_HTTP_RESPONSE_H

#include <stddef.h>

/* The reason phrase for a status code ("Not Found"); "Unknown" if none. */
const char *gn_http_reason(int status);

/*
 * "Date: <IMF-fixdate>\r\nServer: gorgon\r\n" (server line omitted when
 * with_server is 0), cached per thread and rebuilt once a second.
 * Returns a pointer to thread-local storage and sets *len.
 */
const char *gn_http_date_server(int with_server, size_t *len);

/* The current time as an access-log timestamp, "27/Nov/2026:05:40:01 +0000". */
void gn_http_log_time(char *buf, size_t len);

#endif
