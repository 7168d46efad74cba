/* Request-target helpers shared by the bridges (no Python). */
#ifndef GN_HTTP_URI_H
#define GN_HTTP_URI_H

#include <stddef.h>

/*
 * Decodes %XX escapes of in[0..n) into out (which must hold n bytes);
 * malformed escapes are kept as they are. Returns the decoded length.
 */
size_t gn_percent_decode(const char *in, size_t n, char *out);

#endif
