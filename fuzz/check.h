/* The fuzz drivers' invariant check: a broken one aborts, which libFuzzer
 * reports as a crash with the input saved. */
#ifndef GN_FUZZ_CHECK_H
#define GN_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__,     \
                    #cond);                                                          \
            abort();                                                                 \
        }                                                                            \
    } while (0)

#endif
