/*
 * Tiny test harness for gorgon's C unit tests (libuv style): ASSERT_* print
 * both sides on failure; each test runs in its own process with a timeout,
 * and the runner's last line is "N passed, M failed".
 */
#ifndef GN_TEST_H
#define GN_TEST_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int t_failures; /* failed checks in the current test process */

#define TEST_FAIL_(...)                                                              \
    do {                                                                             \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                              \
        fprintf(stderr, __VA_ARGS__);                                                \
        fputc('\n', stderr);                                                         \
        t_failures++;                                                                \
    } while (0)

/* CHECK_* record a failure and go on; ASSERT_* also return from the test. */
#define CHECK_EQ(a, b)                                                               \
    do {                                                                             \
        long long a_ = (long long)(a), b_ = (long long)(b);                          \
        if (a_ != b_)                                                                \
            TEST_FAIL_("CHECK_EQ(%s, %s): %lld != %lld", #a, #b, a_, b_);            \
    } while (0)

#define ASSERT_EQ(a, b)                                                              \
    do {                                                                             \
        long long a_ = (long long)(a), b_ = (long long)(b);                          \
        if (a_ != b_) {                                                              \
            TEST_FAIL_("ASSERT_EQ(%s, %s): %lld != %lld", #a, #b, a_, b_);           \
            return;                                                                  \
        }                                                                            \
    } while (0)

#define ASSERT_TRUE(e)                                                               \
    do {                                                                             \
        if (!(e)) {                                                                  \
            TEST_FAIL_("ASSERT_TRUE(%s)", #e);                                       \
            return;                                                                  \
        }                                                                            \
    } while (0)

/* Compares a {base, len} slice with a C string (which may hold no NUL). */
#define ASSERT_SLICE(s, str)                                                         \
    do {                                                                             \
        const char *e_ = (str);                                                      \
        size_t n_ = strlen(e_);                                                      \
        if ((s).len != n_ || memcmp((s).base, e_, n_) != 0) {                        \
            TEST_FAIL_("ASSERT_SLICE(%s, %s): \"%.*s\" != \"%s\"", #s, #str,         \
                       (int)(s).len, (s).base, e_);                                  \
            return;                                                                  \
        }                                                                            \
    } while (0)

typedef struct {
    const char *name;
    void (*fn)(void);
} test_entry_t;

#define TEST_ENTRY(name) {#name, test_##name}

#ifdef GN_COVERAGE
/* gcc --coverage writes its counters at exit(); a child that leaves with
 * _exit() writes them here first, or `make coverage` would not see them. */
void __gcov_dump(void);
#define TEST_COVERAGE_DUMP() __gcov_dump()
#else
#define TEST_COVERAGE_DUMP() ((void)0)
#endif

/* Runs one test in a child process so that a crash or a hang (ASan abort,
 * SIGSEGV, 10 s alarm) fails that test only. */
static int test_run_one(const test_entry_t *t)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 0;
    }
    if (pid == 0) {
        alarm(10);
        t_failures = 0;
        t->fn();
        fflush(NULL);
        TEST_COVERAGE_DUMP();
        _exit(t_failures ? 1 : 0);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) {
        perror("waitpid");
        return 0;
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "test %s: killed by signal %d\n", t->name, WTERMSIG(status));
        return 0;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Runs every test (or those whose name contains argv[1]); exit 0 iff all passed. */
static int test_main(const test_entry_t *tests, size_t n, int argc, char **argv)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && strstr(tests[i].name, argv[1]) == NULL)
            continue;
        if (test_run_one(&tests[i])) {
            passed++;
        } else {
            failed++;
            printf("FAIL %s\n", tests[i].name);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
