/*
 * Fault injection for src/http's own failure paths, in test builds only
 * (make coverage and make test-asan define GN_FAULT; in a release build
 * GN_FAIL(fail, call) is the call and nothing else). A site wraps a call
 * that can fail, an allocation, a system call or an nghttp2 or OpenSSL
 * call: GN_FAIL(NULL, malloc(n)). When the site is the armed one, the call
 * is not made and the site's failure value (errno set as the call would,
 * where the caller reads it) stands for its result.
 *
 * One countdown for the whole process, counted by every thread that
 * passes a site (1-based; one fault per arming):
 *  - GN_FAULT_HTTP_START=n in the environment: the n-th site the process
 *    passes before it accepts its first connection fails (the start: TLS
 *    context, worker loops). The first connection accepted ends it.
 *  - gn_http_fault_arm(n) (_gorgon._fault_http(n) in Python): the n-th
 *    site passed from the next accepted connection on fails. Each accepted
 *    connection starts the countdown afresh from what is armed then (none
 *    once it was used), so an arming covers the next connection and what
 *    happens on any thread until another one is accepted.
 * Each fault writes one line to stderr: "fault injected: file:line".
 */
#ifndef GN_HTTP_FAULT_H
#define GN_HTTP_FAULT_H

#ifdef GN_FAULT

/* 1 when this site is the armed one: counts it as fired and says where. */
int gn_http_fault_hit(const char *file, int line);
/* A connection was accepted: the start's countdown ends, an armed one begins. */
void gn_http_fault_accepted(void);
/* Arms the next accepted connection (n = 0: nothing); returns the faults
 * fired so far in the process. */
long gn_http_fault_arm(long n);

#define GN_FAIL(fail, call) (gn_http_fault_hit(__FILE__, __LINE__) ? (fail) : (call))
#define GN_FAULT_ACCEPTED() gn_http_fault_accepted()
#else
#define GN_FAIL(fail, call) (call)
#define GN_FAULT_ACCEPTED() ((void)0)
#endif

/* The failure values of the usual sites, errno set as the call sets it. */
#define GN_FAIL_ERRNO(e) (errno = (e), -1)

#endif
