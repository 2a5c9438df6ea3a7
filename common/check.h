/*
 * check.h — the agent's unit tests' one assertion: CHECK(cond, fmt, …) counts a
 * pass, or prints "FAIL file:line: message" and counts a failure; the test ends
 * with CHECK_SUMMARY("name"), which prints "name: N passed, M failed" and gives
 * the exit code. For test files only (it defines the counters).
 */
#ifndef TRACKD_CORE_CHECK_H
#define TRACKD_CORE_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (cond) {                                                  \
			passed++;                                            \
		} else {                                                     \
			failed++;                                            \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                        \
			fprintf(stderr, "\n");                               \
		}                                                            \
	} while (0)

#define CHECK_SUMMARY(name) \
	(printf("%s: %d passed, %d failed\n", (name), passed, failed), failed != 0)

#endif
