/*
 * cmd_files.c — `trackctl files RUN [--json]`: the files of a run's files/ dir
 * (media from its rows, saved files) as the agent's local store holds them:
 * name, size, SHA-256 and kind (image, table, file), sorted by name.
 */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int cmd_files(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {0}};
	bool json = false;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'j') {
			cli_bad_option("files", argv);
			return EXIT_USAGE;
		}
		json = true;
	}
	if (argc - optind != 1)
		return cli_usage_error("files takes one RUN (an id or entity/project/id)");
	const char *run = argv[optind];
	char what[512];
	snprintf(what, sizeof what, "run %s", run);
	agent_client *agent;
	if (cli_connect(&agent) != 0)
		return 1;
	Trackd__V1__FilesRequest fr = TRACKD__V1__FILES_REQUEST__INIT;
	fr.run = (char *)run;
	Trackd__V1__Query q = TRACKD__V1__QUERY__INIT;
	q.request_case = TRACKD__V1__QUERY__REQUEST_FILES;
	q.files = &fr;
	struct cli_reply r;
	int code = cli_query(agent, &q, what, &r);
	agent_close(agent);
	if (code != 0)
		return code;
	if (json) {
		code = cli_print_json(&r);
	} else {
		const Trackd__V1__FilesReply *f = r.q->files;
		if (f->n_files == 0)
			printf("%s has no files\n", f->run ? f->run : run);
		for (size_t i = 0; i < f->n_files; i++)
			printf("%-6s %12" PRIu64 "  %.12s  %s\n", f->files[i]->kind,
			       f->files[i]->size, f->files[i]->sha256, f->files[i]->name);
	}
	cli_reply_free(&r);
	return code;
}
