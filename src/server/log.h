/*
 * The server's log: one line per event on stderr, written with a single
 * write(2) so lines from different worker threads never interleave.
 * Format: "[2026-11-27 05:40:01 +0000] [PID] [LEVEL] message".
 */
#ifndef GN_SERVER_LOG_H
#define GN_SERVER_LOG_H

enum gn_log_level { GN_LOG_DEBUG, GN_LOG_INFO, GN_LOG_WARNING, GN_LOG_ERROR, GN_LOG_CRITICAL };

/* Sets the threshold; messages below it are dropped. */
void gn_log_set_level(int level);
int gn_log_enabled(int level);
/* Parses "debug", "info", ... Returns -1 for an unknown name. */
int gn_log_parse_level(const char *name);

void gn_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Text written as is to stderr when level is enabled (a traceback after
 * the gn_log line that introduces it). */
void gn_log_raw(int level, const char *text, unsigned long len);
/* One access-log line on stdout (the caller formats it, newline included). */
void gn_log_access(const char *line, unsigned long len);

#endif
