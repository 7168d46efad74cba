/* Listening sockets: parsing --bind addresses, binding them before any
 * worker starts, and handing each worker its own descriptors. */
#ifndef GN_SERVER_LISTEN_H
#define GN_SERVER_LISTEN_H

#include <stdint.h>

#include "server/config.h"

typedef struct {
    char *spec;      /* as given: "127.0.0.1:8000", "[::1]:0", "unix:/p", "fd://3" */
    char url[300];   /* what to open: "http://127.0.0.1:8000", "unix:/p" */
    int is_unix;     /* a socket file of ours, removed at the stop */
    int inherited;   /* fd://N (systemd socket activation): its owner keeps it
                        after we stop, so it is left as it was given */
    int per_worker;  /* one SO_REUSEPORT socket per worker */
    int *fds;        /* per_worker ? workers : 1 */
    unsigned n_fds;
} gn_bind_t;

typedef struct {
    gn_bind_t *binds;
    unsigned n_binds;
    int exclusive;   /* some socket is shared between workers */
} gn_listeners_t;

/* Binds every address; with --reuse-port, one socket per worker for each of
 * the n_workers workers of all processes. Returns 0, or -1 after logging why. */
int gn_listen_open(gn_listeners_t *ls, const gn_config_t *cfg, unsigned n_workers);
/* Bit i: bind i is an inherited socket (fd://N), left as it is at the stop. */
uint64_t gn_listen_inherited(const gn_listeners_t *ls);
/*
 * The descriptors worker w listens on (one per bind, each a copy that the
 * worker closes; with --reuse-port, a worker added beyond the first ones
 * shares the socket of worker w modulo their number). Returns a malloc'd
 * array or NULL.
 */
int *gn_listen_for_worker(gn_listeners_t *ls, unsigned w, unsigned *n);
/* 1 when workers a and b accept from the same sockets: always, but with
 * --reuse-port, where each worker has its own (by its id). */
int gn_listen_same_sockets(const gn_listeners_t *ls, unsigned a, unsigned b);
/*
 * A stop begins: every socket refuses new connections (the unix socket files
 * are removed), while the workers accept what is already queued. Call
 * gn_listen_close() next: each worker holds its own copy.
 */
void gn_listen_refuse(gn_listeners_t *ls);
/* Closes what is still open and removes unix socket files. */
void gn_listen_close(gn_listeners_t *ls);
/* In a forked child: gn_listen_close() will leave the unix socket files,
 * which belong to the supervisor. */
void gn_listen_disown(gn_listeners_t *ls);

#endif
