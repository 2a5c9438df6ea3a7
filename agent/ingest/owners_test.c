#include "owners.h"

#include "errors.h"

#include "trackd/v1/limits.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

static void test_first_note_wins(void)
{
	run_owners *o;
	CHECK(run_owners_new(4, &o) == 0, "new");
	uint32_t uid = 7;
	CHECK(!run_owners_get(o, "r1", 2, &uid) && uid == 7, "unknown run");
	CHECK(run_owners_note(o, "r1", 2, 1000) == 0, "note");
	CHECK(run_owners_note(o, "r1", 2, 2000) == 0, "a second note is not an error");
	CHECK(run_owners_get(o, "r1", 2, &uid) && uid == 1000, "first wins: %u", uid);
	CHECK(!run_owners_get(o, "r", 1, &uid) && !run_owners_get(o, "r12", 3, &uid),
	      "prefixes and extensions are other runs");
	CHECK(run_owners_note(o, "", 0, 1) == TRACKD_EINVAL, "empty id");
	char big[TRACKD_MAX_RUN_ID_BYTES + 1];
	memset(big, 'a', sizeof big);
	CHECK(run_owners_note(o, big, sizeof big, 1) == TRACKD_EINVAL, "over-long id");
	CHECK(run_owners_note(o, big, sizeof big - 1, 3) == 0, "longest id");
	CHECK(run_owners_get(o, big, sizeof big - 1, &uid) && uid == 3, "longest id found");
	run_owners_free(o);
	run_owners_free(NULL);
}

static void test_limit(void)
{
	run_owners *o;
	run_owners_new(3, &o);
	CHECK(run_owners_note(o, "a", 1, 1) == 0 && run_owners_note(o, "b", 1, 2) == 0 &&
	          run_owners_note(o, "c", 1, 3) == 0,
	      "up to the limit");
	CHECK(run_owners_note(o, "d", 1, 4) == TRACKD_ETOOBIG, "refused at the limit");
	CHECK(run_owners_note(o, "a", 1, 9) == 0, "a known run is still fine at the limit");
	uint32_t uid;
	CHECK(run_owners_get(o, "c", 1, &uid) && uid == 3 && !run_owners_get(o, "d", 1, &uid),
	      "nothing evicted, nothing added");
	CHECK(run_owners_count(o) == 3 && run_owners_refused(o) == 1 && run_owners_max(o) == 3,
	      "counted");
	run_owners_free(o);
	CHECK(run_owners_new(0, &o) == TRACKD_EINVAL, "a zero limit is refused");
}

/* Growth past the first table and arena keeps every owner. */
static void test_many(void)
{
	run_owners *o;
	enum { N = 200000 };
	run_owners_new(N, &o);
	char id[32];
	for (uint32_t i = 0; i < N; i++) {
		int n = snprintf(id, sizeof id, "run%08x", i);
		if (run_owners_note(o, id, (size_t)n, i) != 0) {
			CHECK(0, "note %u", i);
			break;
		}
	}
	size_t wrong = 0;
	for (uint32_t i = 0; i < N; i++) {
		int n = snprintf(id, sizeof id, "run%08x", i);
		uint32_t uid;
		if (!run_owners_get(o, id, (size_t)n, &uid) || uid != i)
			wrong++;
	}
	CHECK(wrong == 0 && run_owners_count(o) == N, "%zu of %d wrong", wrong, N);
	run_owners_free(o);
}

int main(void)
{
	test_first_note_wins();
	test_limit();
	test_many();
	return CHECK_SUMMARY("owners_test");
}
