/*
 * fmt.h — doubles as the shortest text that reads back to the same double
 * (strtod(text) == d), for every place that shows or stores one as text.
 * The text is defined by a search over printf precisions (below) and must not
 * change: stores and uploads hold it. fmt_double_g computes it directly
 * (Ryu) and searches only in the rare cases where that could differ;
 * fmt_double_e (off the hot paths) still searches. Pure functions;
 * thread-safe. Non-finite values are the caller's business: each output
 * format spells NaN and infinities its own way.
 */
#ifndef TRACKD_COMMON_FMT_H
#define TRACKD_COMMON_FMT_H

#include <stddef.h>

#define FMT_DOUBLE_MAX 32 /* room for any finite double in either form, NUL included */

/* The first of "%.15g", "%.16g", "%.17g" of finite d that reads back to d
 * ("0.1", "1e+100", "3"): what JSON and YAML writers put. At least
 * FMT_DOUBLE_MAX bytes at out. */
void fmt_double_g(char *out, size_t cap, double d);

/* The shortest "%.*e" of finite d that reads back to d ("1e-01", "5e-324"):
 * its digits and exponent are those of Python's repr(d). At least
 * FMT_DOUBLE_MAX bytes at out. */
void fmt_double_e(char *out, size_t cap, double d);

#endif
