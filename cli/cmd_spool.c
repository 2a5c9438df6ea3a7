/* trackctl spool flush — delivers the records that clients of this user left in
 * their spool (the agent was unreachable when they finished) to the agent now.
 * The work is libtrackd's td_spool_flush: the same code every td_init runs. */
#include "cli.h"

#include <trackd/trackd.h>

#include <errno.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_spool(int argc, char **argv)
{
	/* argv[0] is "spool" */
	if (argc < 2 || strcmp(argv[1], "flush") != 0 || argc > 3)
		return cli_usage_error("spool takes `flush [SPOOL_DIR]`");
	const char *dir = argc == 3 ? argv[2] : NULL;
	if (dir && dir[0] == '-')
		return cli_usage_error("spool flush: unknown option %s", dir);
	/* A spool dir that is not there is a typo, not an empty spool: "0
	 * delivered" would say all is well. (The default dir may be absent.) */
	struct stat st;
	if (dir && stat(dir, &st) != 0) {
		fprintf(stderr, "trackctl: spool flush: %s: %s\n", dir, strerror(errno));
		return EXIT_FAILURE;
	}
	if (dir && !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "trackctl: spool flush: %s: not a directory\n", dir);
		return EXIT_FAILURE;
	}
	uint64_t delivered = 0;
	int rv = td_spool_flush(NULL, dir, 60000, &delivered);
	if (rv != TD_OK) {
		fprintf(stderr, "trackctl: spool flush: %s (%s); %" PRIu64 " records delivered\n",
		        td_strerror(rv), td_last_error(), delivered);
		return EXIT_FAILURE;
	}
	printf("%" PRIu64 " spooled records delivered\n", delivered);
	return EXIT_SUCCESS;
}
