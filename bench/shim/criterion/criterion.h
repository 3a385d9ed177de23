// A minimal stand-in for Criterion's <criterion/criterion.h>, enough for
// tests/unit/test_cuda.c, so that the GPU parity tests can run on the GPU machine, which
// has none of our Debian packages (no libcriterion, no libvips): bench/gpu.sh builds
// tests/unit/test_cuda.c against this header and bench/shim/runner.c into one small
// executable. Same semantics as Criterion where test_cuda.c relies on them: each test
// runs in its own forked process; cr_assert* ends the test as failed, cr_expect* marks it
// failed and goes on, cr_skip_test ends it as skipped. Test options (.timeout = N) are
// accepted; the runner enforces the timeout (it kills the test's process).
#ifndef WSML_CRITERION_SHIM_H
#define WSML_CRITERION_SHIM_H

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *suite, *name;
    void (*fn)(void);
    int timeout; // seconds, 0: the runner's default
} shim_test;

struct shim_test_options {
    int timeout;
    int disabled;
};

void shim_register(const char *suite, const char *name, void (*fn)(void),
                   struct shim_test_options opts);
void shim_check(int ok, int fatal, const char *file, int line, const char *expr, const char *fmt,
                ...) __attribute__((format(printf, 6, 7)));
void shim_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define Test(suite, name, ...)                                                                     \
    static void shim_fn_##suite##_##name(void);                                                    \
    __attribute__((constructor)) static void shim_reg_##suite##_##name(void) {                     \
        shim_register(#suite, #name, shim_fn_##suite##_##name,                                     \
                      (struct shim_test_options){__VA_ARGS__});                                    \
    }                                                                                              \
    static void shim_fn_##suite##_##name(void)

// The optional message is a format plus arguments; "" __VA_ARGS__ turns "no message" into "".
#define SHIM_CHECK(ok, fatal, expr, ...)                                                           \
    shim_check(!!(ok), fatal, __FILE__, __LINE__, expr, "" __VA_ARGS__)
#define cr_assert(cond, ...) SHIM_CHECK(cond, 1, #cond, __VA_ARGS__)
#define cr_expect(cond, ...) SHIM_CHECK(cond, 0, #cond, __VA_ARGS__)
#define cr_assert_eq(a, b, ...) SHIM_CHECK((a) == (b), 1, #a " == " #b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) SHIM_CHECK((a) == (b), 0, #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) SHIM_CHECK((a) != (b), 1, #a " != " #b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) SHIM_CHECK((a) != (b), 0, #a " != " #b, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) SHIM_CHECK(!strcmp((a), (b)), 1, #a " == " #b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) SHIM_CHECK(!strcmp((a), (b)), 0, #a " == " #b, __VA_ARGS__)
#define cr_skip_test(...) shim_skip("" __VA_ARGS__)

#endif
