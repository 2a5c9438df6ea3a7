/*
 * cmd_files.c — `trackctl files RUN [--json]`: the files of a run's files/ dir
 * (media from its rows, saved files) as the agent's local store holds them:
 * name, size, SHA-256 and kind (image, table, file), sorted by name.
 *
 * `trackctl files RUN --get NAME [-o PATH]`: one file's content (to stdout, or
 * to PATH), read with RunFileRead queries TRACKD_RUN_FILE_READ_MAX bytes at a
 * time (the agent verifies the file's SHA-256 before it answers), and checked
 * again here against the SHA-256 the first answer names.
 */
#include "cli.h"

#include "run_files.h"

#include <openssl/evp.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Writes run `run`'s file `name` to `out`, piece by piece. */
static int get_file(agent_client *agent, const char *run, const char *name, FILE *out,
                    const char *out_name)
{
	char what[1600];
	snprintf(what, sizeof what, "file '%.1024s' of run %.500s", name, run);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(md);
		fprintf(stderr, "trackctl: files: out of memory\n");
		return 1;
	}
	char want[65] = "";
	uint64_t offset = 0;
	int code = 0;
	for (;;) {
		Trackd__V1__RunFileReadRequest rr = TRACKD__V1__RUN_FILE_READ_REQUEST__INIT;
		rr.run = (char *)run;
		rr.name = (char *)name;
		rr.has_offset = rr.has_length = true;
		rr.offset = offset;
		rr.length = TRACKD_RUN_FILE_READ_MAX;
		Trackd__V1__Query q = TRACKD__V1__QUERY__INIT;
		q.request_case = TRACKD__V1__QUERY__REQUEST_RUN_FILE_READ;
		q.run_file_read = &rr;
		struct cli_reply r;
		if ((code = cli_query(agent, &q, what, &r)) != 0)
			break;
		const Trackd__V1__RunFileChunk *c = r.q->run_file_read;
		if (!want[0])
			snprintf(want, sizeof want, "%s", c->sha256 ? c->sha256 : "");
		size_t n = c->data.len;
		bool eof = c->eof || n == 0;
		if (n && fwrite(c->data.data, 1, n, out) != n) {
			fprintf(stderr, "trackctl: files: cannot write %s\n", out_name);
			code = 1;
		}
		EVP_DigestUpdate(md, c->data.data, n);
		offset += n;
		cli_reply_free(&r);
		if (code || eof)
			break;
	}
	if (!code) {
		uint8_t digest[32];
		unsigned int len = 32;
		char got[65];
		EVP_DigestFinal_ex(md, digest, &len);
		files_hex_digest(digest, got);
		if (strcmp(got, want) != 0) {
			fprintf(stderr,
			        "trackctl: files: %s changed while read (SHA-256 %s, listed %s)\n",
			        what, got, want);
			code = 1;
		}
	}
	EVP_MD_CTX_free(md);
	return code;
}

int cmd_files(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
	                                     {"get", required_argument, NULL, 'g'},
	                                     {"output", required_argument, NULL, 'o'},
	                                     {0}};
	bool json = false;
	const char *get = NULL, *output = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		if (c == 'j') {
			json = true;
		} else if (c == 'g') {
			get = optarg;
		} else if (c == 'o') {
			output = optarg;
		} else {
			cli_bad_option("files", argv);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("files takes one RUN (an id or entity/project/id)");
	if (output && !get)
		return cli_usage_error("files: -o PATH goes with --get NAME");
	if (get && json)
		return cli_usage_error("files: --get writes the file's bytes, not JSON");
	const char *run = argv[optind];
	char what[512];
	snprintf(what, sizeof what, "run %s", run);
	agent_client *agent;
	if (cli_connect(&agent) != 0)
		return 1;
	if (get) {
		FILE *out = output ? fopen(output, "wb") : stdout;
		if (!out) {
			perror(output);
			agent_close(agent);
			return 1;
		}
		int code = get_file(agent, run, get, out, output ? output : "stdout");
		agent_close(agent);
		if (output && fclose(out) != 0 && !code) {
			perror(output);
			code = 1;
		}
		if (output && code)
			remove(output); /* never leave a part of the file as if it were the file */
		return code;
	}
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
