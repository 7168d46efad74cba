/*
 * The auto mode's probe: does the application import in an own-GIL
 * sub-interpreter? Asked in a throwaway forked child that imports it there,
 * reports over a pipe and leaves with _exit() (a failed import may leave the
 * process unable to finalize: workaround 3 in interp.h), so neither a crash
 * nor a hang of the import can take the server down: the supervisor waits
 * with a timeout and kills the child after it.
 */
#ifndef GN_SERVER_PROBE_H
#define GN_SERVER_PROBE_H

#include <signal.h>

#include "server/config.h"

enum gn_probe_verdict {
    GN_PROBE_LOADS,    /* imported */
    GN_PROBE_REFUSED,  /* a module refuses sub-interpreters: module[] names it */
    GN_PROBE_FAILS,    /* the import raised something else: error[] */
    GN_PROBE_UNKNOWN,  /* crashed, timed out, or could not fork: error[] says which */
    GN_PROBE_STOPPED,  /* a stop signal came meanwhile */
};

typedef struct {
    int verdict;
    char module[256];
    char error[1024];
} gn_probe_t;

/*
 * Main thread, main GIL held, `sigs` blocked. Imports cfg->app in a forked
 * child, in a new sub-interpreter (sub = 1, with the pure-Python fallback if
 * configured) or in the child's main interpreter (sub = 0), and fills out.
 * `workers` is what gorgon.worker_count says during the probe.
 */
void gn_probe_app(const gn_config_t *cfg, int sub, unsigned workers, const sigset_t *sigs, gn_probe_t *out);

#endif
