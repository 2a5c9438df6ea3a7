/*
 * artifacts_test.c — W&B's manifest digest against values computed
 * independently (Python's hashlib over the rule in WANDB-FEATURES.md §3),
 * and the version index: same content → same version, one changed file → a
 * new version sharing the unchanged blob's inode, aliases and "latest",
 * lineage, a missing blob (no version), replay (same versions), access.
 */
#include "artifacts.h"
#include "artifact_names.h"
#include "check.h"
#include "errors.h"
#include "manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static void test_digest(void)
{
	char b64[25];
	manifest_md5_b64("hello", 5, b64);
	CHECK_STR_EQ(b64, "XUFAKrxLKna5cZ2REBfFkg==");
	struct manifest_entry e[] = {
	    {.path = "b.txt", .digest = "nf1w/fFaPLHqANd5msZlGw==", .size = 3},
	    {.path = "a/x.bin", .digest = "XUFAKrxLKna5cZ2REBfFkg==", .size = 5}};
	manifest_sort(e, 2);
	CHECK_STR_EQ(e[0].path, "a/x.bin");
	char hex[33];
	manifest_digest(e, 2, hex);
	/* hashlib.md5(b"wandb-artifact-manifest-v1\na/x.bin:XUFA…==\nb.txt:nf1w…==\n") */
	CHECK_STR_EQ(hex, "374b3fff7c6133f347148bce4e84175e");
	manifest_digest(e, 0, hex);
	CHECK_STR_EQ(hex, "64e7c61456b10382e2f3b571ac24b659");
	struct buf j;
	buf_init(&j, 1 << 20);
	CHECK_EQ(manifest_json(e, 2, &j), 0);
	CHECK(strstr(j.data, "\"version\":1,\"storagePolicy\":\"wandb-storage-policy-v1\"") !=
	      NULL);
	CHECK(strstr(j.data, "\"a/x.bin\":{\"digest\":\"XUFAKrxLKna5cZ2REBfFkg==\",\"size\":5}") !=
	      NULL);
	buf_fini(&j);
	e[1].path = "a/x.bin";
	CHECK(manifest_has_duplicate(e, 2));
}

static void test_names(void)
{
	char name[TRACKD_ARTIFACT_MAX_NAME_BYTES + 2];
	memset(name, 'a', sizeof name);
	CHECK(artifact_name_valid(name, TRACKD_ARTIFACT_MAX_NAME_BYTES - 1));
	CHECK(artifact_name_valid(name, TRACKD_ARTIFACT_MAX_NAME_BYTES));
	CHECK(!artifact_name_valid(name, TRACKD_ARTIFACT_MAX_NAME_BYTES + 1));
	CHECK(!artifact_name_valid("..", 2));
	CHECK(!artifact_name_valid("a/b", 3));
	CHECK(!artifact_name_valid("a\0b", 3));
	CHECK(!artifact_alias_valid("v3", 2));
	CHECK(artifact_alias_valid("best", 4));
	char s[256];
	struct artifact_ref r;
	CHECK(artifact_ref_parse("e/p/ds:v2", s, sizeof s, &r));
	CHECK_STR_EQ(r.entity, "e");
	CHECK_STR_EQ(r.project, "p");
	CHECK_STR_EQ(r.name, "ds");
	CHECK_STR_EQ(r.alias, "v2");
	CHECK(artifact_ref_parse("ds", s, sizeof s, &r));
	CHECK_STR_EQ(r.alias, "latest");
	CHECK(!artifact_ref_parse("a/b/c/d:latest", s, sizeof s, &r));
	CHECK(!artifact_ref_parse("../ds", s, sizeof s, &r));
}

static void put_blob(blobs *b, uint32_t uid, const char *text, uint8_t d[32])
{
	blobs_sha256(text, strlen(text), d);
	struct blobs_put_result res;
	char err[256];
	CHECK_EQ(blobs_put(b, uid, "run1", d, strlen(text), 0, text, strlen(text), UINT64_MAX, &res,
	                   err, sizeof err),
	         0);
}

struct fake_log {
	Trackd__V1__ArtifactLog log;
	Trackd__V1__ArtifactEntry e[2], *ep[2];
	uint8_t d[2][32];
	char md5[2][25];
	char *aliases[2];
};

static void make_log(struct fake_log *f, blobs *b, uint32_t uid, const char *a, const char *bee,
                     char *alias)
{
	memset(f, 0, sizeof *f);
	trackd__v1__artifact_log__init(&f->log);
	f->log.name = "ds";
	f->log.type = "dataset";
	const char *texts[2] = {a, bee};
	const char *paths[2] = {"a/x.bin", "b.txt"};
	for (int i = 0; i < 2; i++) {
		put_blob(b, uid, texts[i], f->d[i]);
		manifest_md5_b64(texts[i], strlen(texts[i]), f->md5[i]);
		trackd__v1__artifact_entry__init(&f->e[i]);
		f->e[i].path = (char *)paths[i];
		f->e[i].has_sha256 = f->e[i].has_size = true;
		f->e[i].sha256.data = f->d[i];
		f->e[i].sha256.len = 32;
		f->e[i].size = strlen(texts[i]);
		f->e[i].md5_b64 = f->md5[i];
		f->ep[i] = &f->e[i];
	}
	f->log.entries = f->ep;
	f->log.n_entries = 2;
	f->aliases[0] = alias;
	f->log.aliases = f->aliases;
	f->log.n_aliases = alias ? 1 : 0;
}

static void test_versions(void)
{
	struct blobs_options bo = {
	    .state_dir = root, .max_file_bytes = 1 << 20, .max_run_bytes = 1 << 22};
	blobs *b = NULL;
	CHECK_EQ(blobs_open(&bo, &b), 0);
	struct artifacts_options ao = {.state_dir = root, .blobs = b};
	artifacts *a = NULL;
	CHECK_EQ(artifacts_open(&ao, &a), 0);
	struct artifacts_origin o = {.uid = 1000,
	                             .entity = "me",
	                             .project = "p",
	                             .run_id = "run1",
	                             .time_us = 1000000,
	                             .index = 1};
	char err[512];
	uint32_t v = 99;
	struct fake_log f;
	make_log(&f, b, 1000, "hello", "bee", "best");
	CHECK_EQ(artifacts_apply_log(a, &o, &f.log, &v, err, sizeof err), 0, "%s", err);
	CHECK_EQ(v, 0);
	/* A replay of that record: nothing changes. The same content logged
	 * again (a later record): v0 again. */
	CHECK_EQ(artifacts_apply_log(a, &o, &f.log, &v, err, sizeof err), 0);
	CHECK_EQ(v, 0);
	o.index = 2;
	CHECK_EQ(artifacts_apply_log(a, &o, &f.log, &v, err, sizeof err), 0);
	CHECK_EQ(v, 0);
	o.index = 3;
	/* One file changed: v1, latest moves, "best" stays on v0. */
	struct fake_log g;
	make_log(&g, b, 1000, "hello", "bee2", NULL);
	CHECK_EQ(artifacts_apply_log(a, &o, &g.log, &v, err, sizeof err), 0, "%s", err);
	CHECK_EQ(v, 1);
	char p0[600], p1[600];
	snprintf(p0, sizeof p0, "%s/artifacts/1000/me/p/ds/v0/files/a/x.bin", root);
	snprintf(p1, sizeof p1, "%s/artifacts/1000/me/p/ds/v1/files/a/x.bin", root);
	struct stat s0, s1;
	CHECK(stat(p0, &s0) == 0 && stat(p1, &s1) == 0 && s0.st_ino == s1.st_ino,
	      "the unchanged file is one inode");

	Trackd__V1__ArtifactRequest q = TRACKD__V1__ARTIFACT_REQUEST__INIT;
	q.artifact = "ds:latest";
	Trackd__V1__ArtifactReply *r = NULL;
	CHECK_EQ(artifacts_query_one(a, &q, 1000, false, &r, err, sizeof err), 0, "%s", err);
	CHECK(r && r->artifact->version == 1);
	CHECK(r && r->n_entries == 2 && strcmp(r->entries[0]->path, "a/x.bin") == 0);
	trackd__v1__artifact_reply__free_unpacked(r, NULL);
	q.artifact = "me/p/ds:best";
	r = NULL;
	CHECK_EQ(artifacts_query_one(a, &q, 1000, false, &r, err, sizeof err), 0, "%s", err);
	CHECK(r && r->artifact->version == 0);
	trackd__v1__artifact_reply__free_unpacked(r, NULL);
	/* Another uid: refused; admin: answered. */
	r = NULL;
	CHECK_EQ(artifacts_query_one(a, &q, 1001, false, &r, err, sizeof err),
	         TRACKD__V1__ERROR_CODE__ERROR_PERMISSION_DENIED);
	CHECK_EQ(artifacts_query_one(a, &q, 1001, true, &r, err, sizeof err), 0);
	trackd__v1__artifact_reply__free_unpacked(r, NULL);
	q.artifact = "ds:v7";
	r = NULL;
	CHECK_EQ(artifacts_query_one(a, &q, 1000, false, &r, err, sizeof err),
	         TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND);

	/* Lineage. */
	Trackd__V1__ArtifactUse use = TRACKD__V1__ARTIFACT_USE__INIT;
	use.artifact = "me/p/ds:v0";
	struct artifacts_origin o2 = o;
	o2.run_id = "run2";
	o2.index = 4;
	CHECK_EQ(artifacts_apply_use(a, &o2, &use, err, sizeof err), 0, "%s", err);
	CHECK_EQ(artifacts_apply_use(a, &o2, &use, err, sizeof err), 0);
	Trackd__V1__ArtifactsRequest lq = TRACKD__V1__ARTIFACTS_REQUEST__INIT;
	Trackd__V1__ArtifactsReply *lr = NULL;
	CHECK_EQ(artifacts_query_list(a, &lq, 1000, false, 1 << 20, &lr, err, sizeof err), 0);
	CHECK(lr && lr->n_artifacts == 2);
	if (lr && lr->n_artifacts == 2) {
		CHECK_EQ(lr->artifacts[0]->n_used_by, 1);
		CHECK_STR_EQ(lr->artifacts[0]->logged_by, "me/p/run1");
		CHECK_EQ(lr->artifacts[1]->n_aliases, 1);
		CHECK_STR_EQ(lr->artifacts[1]->aliases[0], "latest");
	}
	trackd__v1__artifacts_reply__free_unpacked(lr, NULL);
	lr = NULL;
	CHECK_EQ(artifacts_query_list(a, &lq, 1001, false, 1 << 20, &lr, err, sizeof err), 0);
	CHECK(lr && lr->n_artifacts == 0);
	trackd__v1__artifacts_reply__free_unpacked(lr, NULL);

	/* Changes: an alias moved to v1, then v1 deleted (latest back on v0),
	 * a replay of the delete changes nothing, and the next version is v2. */
	Trackd__V1__ArtifactChange ch = TRACKD__V1__ARTIFACT_CHANGE__INIT;
	char *best[] = {"best"};
	ch.artifact = "me/p/ds:v1";
	ch.has_uid = true;
	ch.uid = 1000;
	ch.add_aliases = best;
	ch.n_add_aliases = 1;
	o.index = 5;
	CHECK_EQ(artifacts_apply_change(a, &o, &ch, err, sizeof err), 0, "%s", err);
	q.artifact = "ds:best";
	r = NULL;
	CHECK_EQ(artifacts_query_one(a, &q, 1000, false, &r, err, sizeof err), 0);
	CHECK(r && r->artifact->version == 1);
	trackd__v1__artifact_reply__free_unpacked(r, NULL);
	Trackd__V1__ArtifactChange del = TRACKD__V1__ARTIFACT_CHANGE__INIT;
	del.artifact = "me/p/ds:v1";
	del.has_uid = del.has_delete_ = del.delete_ = true;
	del.uid = 1000;
	o.index = 6;
	CHECK_EQ(artifacts_apply_change(a, &o, &del, err, sizeof err), 0, "%s", err);
	CHECK(access(p1, F_OK) != 0, "the deleted version's files are gone");
	CHECK(stat(p0, &s0) == 0 && s0.st_nlink == 2, "v0 and the blob store hold the inode");
	/* A replay: the version is gone, nothing to do (the sink logs it). */
	CHECK_EQ(artifacts_apply_change(a, &o, &del, err, sizeof err), TRACKD_ENOENT);
	q.artifact = "ds:latest";
	r = NULL;
	CHECK_EQ(artifacts_query_one(a, &q, 1000, false, &r, err, sizeof err), 0);
	CHECK(r && r->artifact->version == 0);
	trackd__v1__artifact_reply__free_unpacked(r, NULL);
	/* The replay of v1's log (before the delete in the log): nothing. */
	o.index = 3;
	CHECK_EQ(artifacts_apply_log(a, &o, &g.log, &v, err, sizeof err), 0);
	lr = NULL;
	CHECK_EQ(artifacts_query_list(a, &lq, 1000, false, 1 << 20, &lr, err, sizeof err), 0);
	CHECK(lr && lr->n_artifacts == 1);
	trackd__v1__artifacts_reply__free_unpacked(lr, NULL);
	/* Logged anew later: v2, never v1 again. */
	o.index = 7;
	CHECK_EQ(artifacts_apply_log(a, &o, &g.log, &v, err, sizeof err), 0);
	CHECK_EQ(v, 2);
	o.index = 8;

	/* A blob the store lacks: no version. */
	struct fake_log h;
	make_log(&h, b, 1000, "hello", "bee3", NULL);
	h.d[1][0] ^= 1;
	CHECK_EQ(artifacts_apply_log(a, &o, &h.log, &v, err, sizeof err), TRACKD_ENOENT);
	/* A bad entry path and too many aliases. */
	make_log(&h, b, 1000, "hello", "bee4", NULL);
	h.e[0].path = "../x";
	o.index = 9;
	CHECK_EQ(artifacts_apply_log(a, &o, &h.log, &v, err, sizeof err), TRACKD_EINVAL);
	artifacts_free(a);
	blobs_free(b);
}

int main(void)
{
	snprintf(root, sizeof root, "/tmp/artifacts_test.XXXXXX");
	if (!mkdtemp(root))
		return 1;
	test_digest();
	test_names();
	test_versions();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
	return CHECK_SUMMARY("artifacts_test");
}
