/*
 * cmd_artifact.c — `trackctl artifacts` (the versions the caller may read)
 * and `trackctl artifact show|get|alias|delete` (one version: its manifest
 * and lineage; its files materialised in a directory, each checked against
 * its digests by libtrackd's td_artifact_download before it takes its name;
 * aliases added or removed; the version deleted, by its owner or an admin). The agent
 * answers as the calling user (the socket's peer credentials): another
 * user's artifact is refused unless the caller is admin.
 */
#include "cli.h"

#include "trackd/trackd.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void print_aliases(const Trackd__V1__ArtifactInfo *a)
{
	for (size_t i = 0; i < a->n_aliases; i++)
		printf("%s%s", i ? "," : "", a->aliases[i]);
	if (a->n_aliases == 0)
		printf("-");
}

int cmd_artifacts(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
	                                     {"project", required_argument, NULL, 'p'},
	                                     {"type", required_argument, NULL, 't'},
	                                     {"name", required_argument, NULL, 'n'},
	                                     {0}};
	bool json = false;
	Trackd__V1__ArtifactsRequest ar = TRACKD__V1__ARTIFACTS_REQUEST__INIT;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'p': ar.project = optarg; break;
		case 't': ar.type = optarg; break;
		case 'n': ar.name = optarg; break;
		default: cli_bad_option("artifacts", argv); return EXIT_USAGE;
		}
	}
	if (argc != optind)
		return cli_usage_error("artifacts takes no arguments besides its options");
	Trackd__V1__Query q = TRACKD__V1__QUERY__INIT;
	q.request_case = TRACKD__V1__QUERY__REQUEST_ARTIFACTS;
	q.artifacts = &ar;
	struct cli_reply r;
	int code = cli_query_once(&q, "artifacts", &r);
	if (code != 0)
		return code;
	if (json) {
		code = cli_print_json(&r);
	} else {
		const Trackd__V1__ArtifactsReply *l = r.q->artifacts;
		if (l->n_artifacts == 0)
			printf("no artifacts\n");
		for (size_t i = 0; i < l->n_artifacts; i++) {
			const Trackd__V1__ArtifactInfo *a = l->artifacts[i];
			printf("%-40s %-10s %12" PRIu64 " %5" PRIu64 " files  ", a->path, a->type,
			       a->size, a->file_count);
			print_aliases(a);
			printf("\n");
		}
	}
	cli_reply_free(&r);
	return code;
}

static int artifact_show(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'}, {"project", required_argument, NULL, 'p'}, {0}};
	bool json = false;
	Trackd__V1__ArtifactRequest ar = TRACKD__V1__ARTIFACT_REQUEST__INIT;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'p': ar.project = optarg; break;
		default: cli_bad_option("artifact show", argv); return EXIT_USAGE;
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("artifact show takes one NAME[:ALIAS|:vN]");
	ar.artifact = argv[optind];
	Trackd__V1__Query q = TRACKD__V1__QUERY__INIT;
	q.request_case = TRACKD__V1__QUERY__REQUEST_ARTIFACT;
	q.artifact = &ar;
	char what[600];
	snprintf(what, sizeof what, "artifact %.500s", ar.artifact);
	struct cli_reply r;
	int code = cli_query_once(&q, what, &r);
	if (code != 0)
		return code;
	if (json) {
		code = cli_print_json(&r);
		cli_reply_free(&r);
		return code;
	}
	const Trackd__V1__ArtifactReply *rep = r.q->artifact;
	const Trackd__V1__ArtifactInfo *a = rep->artifact;
	char when[64] = "";
	time_t t = (time_t)a->created_at;
	struct tm tm;
	if (gmtime_r(&t, &tm))
		strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
	printf("artifact     %s\n", a->path);
	printf("type         %s\n", a->type);
	printf("digest       %s\n", a->digest);
	printf("aliases      ");
	print_aliases(a);
	printf("\nsize         %" PRIu64 " bytes in %" PRIu64 " files\n", a->size, a->file_count);
	printf("created      %s\n", when);
	if (a->description && *a->description)
		printf("description  %s\n", a->description);
	if (a->metadata_json && strcmp(a->metadata_json, "{}") != 0)
		printf("metadata     %s\n", a->metadata_json);
	printf("logged by    %s\n", a->logged_by && *a->logged_by ? a->logged_by : "-");
	printf("used by      ");
	for (size_t i = 0; i < a->n_used_by; i++)
		printf("%s%s", i ? ", " : "", a->used_by[i]);
	printf("%s\nfiles\n", a->n_used_by ? "" : "-");
	for (size_t i = 0; i < rep->n_entries; i++) {
		const Trackd__V1__ArtifactReply__Entry *e = rep->entries[i];
		if (e->ref)
			printf("  %12s  %-24s  %s -> %s\n", "ref", "", e->path, e->ref);
		else
			printf("  %12" PRIu64 "  %-24s  %s\n", e->size, e->digest, e->path);
	}
	cli_reply_free(&r);
	return 0;
}

static int artifact_get(int argc, char **argv)
{
	static const struct option opts[] = {{"project", required_argument, NULL, 'p'}, {0}};
	const char *project = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'p') {
			cli_bad_option("artifact get", argv);
			return EXIT_USAGE;
		}
		project = optarg;
	}
	if (argc - optind != 2)
		return cli_usage_error("artifact get takes NAME[:ALIAS|:vN] and a DIR");
	char *json = NULL;
	int rv = td_artifact_download(NULL, argv[optind], project, argv[optind + 1], 60000, &json);
	if (rv != TD_OK) {
		fprintf(stderr, "trackctl: artifact get %s: %s: %s\n", argv[optind],
		        td_strerror(rv), td_last_error());
		return 1;
	}
	td_free(json);
	printf("%s: files written to %s\n", argv[optind], argv[optind + 1]);
	return 0;
}

/* alias NAME:vN ALIAS… [--remove], delete NAME:vN: an ArtifactChangeRequest. */
static int artifact_change(int argc, char **argv, bool del)
{
	static const struct option opts[] = {
	    {"project", required_argument, NULL, 'p'}, {"remove", no_argument, NULL, 'r'}, {0}};
	Trackd__V1__ArtifactChangeRequest cr = TRACKD__V1__ARTIFACT_CHANGE_REQUEST__INIT;
	bool remove = false;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p': cr.project = optarg; break;
		case 'r': remove = true; break;
		default:
			cli_bad_option(del ? "artifact delete" : "artifact alias", argv);
			return EXIT_USAGE;
		}
	}
	int left = argc - optind;
	if (del ? left != 1 : left < 2)
		return cli_usage_error(del ? "artifact delete takes one NAME:vN"
		                           : "artifact alias takes NAME[:ALIAS|:vN] and ALIAS...");
	cr.artifact = argv[optind];
	if (del) {
		cr.has_delete_ = cr.delete_ = true;
	} else if (remove) {
		cr.remove_aliases = argv + optind + 1;
		cr.n_remove_aliases = (size_t)left - 1;
	} else {
		cr.add_aliases = argv + optind + 1;
		cr.n_add_aliases = (size_t)left - 1;
	}
	Trackd__V1__Query q = TRACKD__V1__QUERY__INIT;
	q.request_case = TRACKD__V1__QUERY__REQUEST_ARTIFACT_CHANGE;
	q.artifact_change = &cr;
	char what[600];
	snprintf(what, sizeof what, "artifact %.500s", cr.artifact);
	struct cli_reply r;
	int code = cli_query_once(&q, what, &r);
	if (code != 0)
		return code;
	printf("%s: %s\n", r.q->artifact_change->path,
	       del      ? "deleted (its files are released once no other version holds them)"
	       : remove ? "aliases removed"
	                : "aliases set");
	cli_reply_free(&r);
	return 0;
}

int cmd_artifact(int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("artifact takes show, get, alias or delete");
	if (strcmp(argv[1], "show") == 0)
		return artifact_show(argc - 1, argv + 1);
	if (strcmp(argv[1], "get") == 0)
		return artifact_get(argc - 1, argv + 1);
	if (strcmp(argv[1], "alias") == 0)
		return artifact_change(argc - 1, argv + 1, false);
	if (strcmp(argv[1], "delete") == 0)
		return artifact_change(argc - 1, argv + 1, true);
	return cli_usage_error("artifact: unknown subcommand '%s' (show, get, alias, delete)",
	                       argv[1]);
}
