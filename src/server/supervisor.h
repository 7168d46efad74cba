/*
 * The supervisor runs on the main thread of the process, in the main
 * interpreter: it binds the sockets, starts and watches the workers, handles
 * signals and orders the shutdown. It never imports application code.
 */
#ifndef GN_SERVER_SUPERVISOR_H
#define GN_SERVER_SUPERVISOR_H

#include <Python.h>

/* Serves until stopped. Returns the process exit code (0 after a graceful
 * stop), or -1 with a Python exception set for a bad configuration. */
int gn_supervisor_serve(PyObject *config);

#endif
