// common/cli.h: the strict number parsing every wsml program's options go through.
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>

#include "common/cli.h"

Test(cli, integers_whole_string_in_range) {
    int64_t v = 7;
    cr_assert_eq(wsml_parse_i64("42", 0, 100, &v), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(wsml_parse_i64("-1", -1, 1, &v), 0);
    cr_assert_eq(v, -1);
    cr_assert_eq(wsml_parse_i64("4294967295", 0, UINT32_MAX, &v), 0);
    cr_assert_eq(v, 4294967295LL);
    const char *bad[] = {"", "12x", "1.5", "101", "-1", "99999999999999999999", " "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = 7;
        cr_assert_eq(wsml_parse_i64(bad[i], 0, 100, &v), -1, "'%s' accepted", bad[i]);
        cr_assert_eq(v, 7, "'%s' changed the output", bad[i]);
    }
    int n = 3;
    cr_assert_eq(wsml_parse_int("2147483648", 0, 2147483647, &n), -1);
    cr_assert_eq(wsml_parse_int("16", 1, 65536, &n), 0);
    cr_assert_eq(n, 16);
}

Test(cli, numbers_finite_and_in_range) {
    double d = 7;
    cr_assert_eq(wsml_parse_double("1e-4", 0, 1, &d), 0);
    cr_assert(d == 1e-4);
    cr_assert_eq(wsml_parse_double("100", 0, 100, &d), 0);
    cr_assert(d == 100);
    const char *bad[] = {"", "abc", "0.5x", "nan", "inf", "-inf", "100.5", "-0.1", "1e999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        d = 7;
        cr_assert_eq(wsml_parse_double(bad[i], 0, 100, &d), -1, "'%s' accepted", bad[i]);
        cr_assert(d == 7, "'%s' changed the output", bad[i]);
    }
    // an open bound is the caller's: (0, inf) = [0, HUGE_VAL] and then > 0
    cr_assert_eq(wsml_parse_double("0", 0, HUGE_VAL, &d), 0);
    // infinities only where the range holds them; NaN never
    cr_assert_eq(wsml_parse_double("-inf", -HUGE_VAL, HUGE_VAL, &d), 0);
    cr_assert(isinf(d) && d < 0);
    cr_assert_eq(wsml_parse_double("inf", 0, 1e308, &d), -1);
    cr_assert_eq(wsml_parse_double("nan", -HUGE_VAL, HUGE_VAL, &d), -1);
}
