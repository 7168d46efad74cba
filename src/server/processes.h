/*
 * Worker processes: mode processes (N children, one worker each, the
 * application in each child's main interpreter) and --processes P with
 * interpreters or threads (P children, N workers each). The supervisor binds
 * the sockets, then forks every child from its main thread while it has no
 * other thread; it never runs application code. It watches the children,
 * forwards SIGTERM/SIGINT/SIGQUIT to them, restarts one that dies (with
 * exponential backoff when it dies quickly), and gives up, exit code 1, when
 * a child fails to start GN_PROCESSES_GIVE_UP times in a row.
 *
 * SIGHUP, and a child whose worker served --max-requests, replace children
 * one at a time: a new child for the same slot is forked (the supervisor
 * never imported the application, so it is imported afresh), and once it
 * serves, the old one gets SIGHUP, which makes its pool retire: it stops
 * accepting, finishes its requests and leaves, the sockets untouched.
 * SIGTTIN forks one child more in a new slot; SIGTTOU retires the newest
 * child the same way (never the last one).
 */
#ifndef GN_SERVER_PROCESSES_H
#define GN_SERVER_PROCESSES_H

#include "server/pool.h"

#define GN_PROCESSES_GIVE_UP 5

/* Main thread, main GIL held, plan->sigs blocked, listeners open, no other
 * thread in the process. Returns the exit code for the supervisor. */
int gn_processes_serve(gn_plan_t *plan);

#endif
