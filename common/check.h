/*
 * check.h — the one assertion harness of the C unit tests (agent, libtrackd,
 * trackctl, common). A failed check is reported as "FAIL file:line: …" with
 * the values involved and counted; the test goes on, so one run shows every
 * failure. main() ends with `return CHECK_SUMMARY("name");`, which prints
 * "name: N passed, M failed" and gives the exit code (non-zero on failure).
 *
 *   CHECK(cond)                   CHECK(cond, "fmt", …)   the message is optional
 *   CHECK_EQ(got, want)           integers (compared as 64-bit), values printed
 *   CHECK_STR_EQ(got, want)       C strings (NULL allowed), both printed
 *   CHECK_FAIL("fmt", …)          a failure found by the test's own logic
 *
 * Messages are printf formats and must be string literals. For test programs
 * only: it defines the counters (check_passed, check_failed) in each file.
 */
#ifndef TRACKD_COMMON_CHECK_H
#define TRACKD_COMMON_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* CHECK(cond) passes "" as the message format: allowed here on purpose. */
#pragma GCC diagnostic ignored "-Wformat-zero-length"

static int check_passed, check_failed;

/* Counts a failure and reports it: the message if any, then the values
 * (`detail`, from CHECK_EQ/CHECK_STR_EQ); a bare CHECK names its condition.
 * `fmt` is empty exactly when the check was given no message. */
__attribute__((format(printf, 5, 6), unused)) static void
check_fail_(const char *file, int line, const char *cond, const char *detail, const char *fmt, ...)
{
	check_failed++;
	fprintf(stderr, "FAIL %s:%d: ", file, line);
	if (fmt[0]) {
		va_list ap;
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		if (detail)
			fprintf(stderr, ": %s", detail);
	} else if (detail) {
		fputs(detail, stderr);
	} else {
		fprintf(stderr, "CHECK(%s) failed", cond);
	}
	fputc('\n', stderr);
	fflush(stderr);
}

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (cond)                                                                          \
			check_passed++;                                                            \
		else                                                                               \
			check_fail_(__FILE__, __LINE__, #cond, NULL, "" __VA_ARGS__);              \
	} while (0)

#define CHECK_FAIL(...) check_fail_(__FILE__, __LINE__, "", NULL, "" __VA_ARGS__)

#define CHECK_EQ(got, want, ...)                                                                   \
	do {                                                                                       \
		long long got_ = (long long)(got), want_ = (long long)(want);                      \
		if (got_ == want_) {                                                               \
			check_passed++;                                                            \
		} else {                                                                           \
			char what_[512];                                                           \
			snprintf(what_, sizeof what_,                                              \
			         "%s == %s: got %lld (%#llx), want %lld (%#llx)", #got, #want,     \
			         got_, (unsigned long long)got_, want_,                            \
			         (unsigned long long)want_);                                       \
			check_fail_(__FILE__, __LINE__, "", what_, "" __VA_ARGS__);                \
		}                                                                                  \
	} while (0)

#define CHECK_STR_EQ(got, want, ...)                                                               \
	do {                                                                                       \
		const char *got_ = (got), *want_ = (want);                                         \
		if (got_ == want_ || (got_ && want_ && strcmp(got_, want_) == 0)) {                \
			check_passed++;                                                            \
		} else {                                                                           \
			char what_[1024];                                                          \
			snprintf(what_, sizeof what_, "%s == %s: got \"%s\", want \"%s\"", #got,   \
			         #want, got_ ? got_ : "(null)", want_ ? want_ : "(null)");         \
			check_fail_(__FILE__, __LINE__, "", what_, "" __VA_ARGS__);                \
		}                                                                                  \
	} while (0)

#define CHECK_SUMMARY(name)                                                                        \
	(printf("%s: %d passed, %d failed\n", (name), check_passed, check_failed),                 \
	 check_failed != 0)

#endif
