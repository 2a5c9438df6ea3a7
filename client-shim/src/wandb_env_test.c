/* wandb_env_test — td_init's reading of W&B's environment variables: unset
 * fields are filled, explicit ones win, the mode and resume only go the way
 * wandb_env.h says, tags are split and bounded. */
#include "check.h"
#include "wandb_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void clear_env(void)
{
	static const char *const names[] = {
	    "WANDB_PROJECT",   "WANDB_ENTITY",   "WANDB_NAME",   "WANDB_NOTES", "WANDB_RUN_ID",
	    "WANDB_RUN_GROUP", "WANDB_JOB_TYPE", "WANDB_TAGS",   "WANDB_MODE",  "WANDB_DISABLED",
	    "WANDB_RESUME",    "WANDB_SILENT",   "WANDB_CONSOLE"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		unsetenv(names[i]);
}

static void test_fills_unset_fields(void)
{
	td_run_options in, out;
	struct tdi_wandb_env env;
	clear_env();
	setenv("WANDB_PROJECT", "envproj", 1);
	setenv("WANDB_ENTITY", "team", 1);
	setenv("WANDB_NAME", "nice-name", 1);
	setenv("WANDB_NOTES", "a note", 1);
	setenv("WANDB_RUN_ID", "abc123", 1);
	setenv("WANDB_RUN_GROUP", "g", 1);
	setenv("WANDB_JOB_TYPE", "train", 1);
	setenv("WANDB_TAGS", " a, b ,,c ", 1);
	td_run_options_init(&in);
	tdi_wandb_env_apply(&in, &out, &env);
	CHECK_STR_EQ(out.project, "envproj");
	CHECK_STR_EQ(out.entity, "team");
	CHECK_STR_EQ(out.display_name, "nice-name");
	CHECK_STR_EQ(out.notes, "a note");
	CHECK_STR_EQ(out.run_id, "abc123");
	CHECK_STR_EQ(out.group, "g");
	CHECK_STR_EQ(out.job_type, "train");
	CHECK_EQ(out.n_tags, 3);
	if (out.n_tags == 3) {
		CHECK_STR_EQ(out.tags[0], "a");
		CHECK_STR_EQ(out.tags[1], "b");
		CHECK_STR_EQ(out.tags[2], "c");
	}
}

static void test_explicit_wins(void)
{
	td_run_options in, out;
	struct tdi_wandb_env env;
	static const char *const tags[] = {"mine"};
	clear_env();
	setenv("WANDB_PROJECT", "envproj", 1);
	setenv("WANDB_TAGS", "x,y", 1);
	setenv("WANDB_NAME", "", 1); /* empty = unset, as in W&B */
	td_run_options_init(&in);
	in.project = "given";
	in.tags = tags;
	in.n_tags = 1;
	tdi_wandb_env_apply(&in, &out, &env);
	CHECK_STR_EQ(out.project, "given");
	CHECK_EQ(out.n_tags, 1);
	CHECK_STR_EQ(out.tags[0], "mine");
	CHECK(out.display_name == NULL);
}

static void test_mode_resume_output(void)
{
	td_run_options in, out;
	struct tdi_wandb_env env;
	clear_env();
	td_run_options_init(&in);
	setenv("WANDB_MODE", "dryrun", 1);
	tdi_wandb_env_apply(&in, &out, &env);
	CHECK_EQ(out.mode, TD_MODE_OFFLINE);
	setenv("WANDB_DISABLED", "true", 1);
	tdi_wandb_env_apply(&in, &out, &env);
	CHECK_EQ(out.mode, TD_MODE_DISABLED);
	/* An offline run stays offline: the environment never turns uploading on. */
	clear_env();
	setenv("WANDB_MODE", "online", 1);
	in.mode = TD_MODE_OFFLINE;
	tdi_wandb_env_apply(&in, &out, &env);
	CHECK_EQ(out.mode, TD_MODE_OFFLINE);

	td_run_options_init(&in);
	setenv("WANDB_RESUME", "auto", 1);
	tdi_wandb_env_apply(&in, &out, &env);
	CHECK_EQ(out.resume, TD_RESUME_ALLOW);
	setenv("WANDB_RESUME", "must", 1);
	tdi_wandb_env_apply(&in, &out, &env);
	CHECK_EQ(out.resume, TD_RESUME_MUST);
	in.resume = TD_RESUME_ALLOW;
	tdi_wandb_env_apply(&in, &out, &env);
	CHECK_EQ(out.resume, TD_RESUME_ALLOW);

	td_run_options_init(&in);
	in.capture_console = true;
	setenv("WANDB_SILENT", "True", 1);
	setenv("WANDB_CONSOLE", "off", 1);
	tdi_wandb_env_apply(&in, &out, &env);
	CHECK(!out.print_footer);
	CHECK(!out.capture_console);
}

/* WANDB_TAGS with n tags "t<i>" (comma-separated), applied: td_init's code. */
static int apply_tags(size_t n, td_run_options *out, struct tdi_wandb_env *env)
{
	static char value[TDI_WANDB_TAGS_MAX_BYTES * 2];
	size_t len = 0;
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(value + len, sizeof value - len, "%st%zu", i ? "," : "", i);
	clear_env();
	setenv("WANDB_TAGS", value, 1);
	td_run_options in;
	td_run_options_init(&in);
	return tdi_wandb_env_apply(&in, out, env);
}

/* At most TDI_WANDB_MAX_TAGS tags: limit-1 and limit are taken whole, limit+1
 * fails naming the variable (never cut). */
static void test_tags_bounded(void)
{
	td_run_options out;
	struct tdi_wandb_env env;
	CHECK_EQ(apply_tags(TDI_WANDB_MAX_TAGS - 1, &out, &env), TD_OK);
	CHECK_EQ(out.n_tags, TDI_WANDB_MAX_TAGS - 1);
	CHECK_EQ(apply_tags(TDI_WANDB_MAX_TAGS, &out, &env), TD_OK);
	CHECK_EQ(out.n_tags, TDI_WANDB_MAX_TAGS);
	CHECK_STR_EQ(out.tags[TDI_WANDB_MAX_TAGS - 1], "t63");
	CHECK_EQ(apply_tags(TDI_WANDB_MAX_TAGS + 1, &out, &env), TD_ERR_INVALID);
	CHECK(strstr(td_last_error(), "WANDB_TAGS") != NULL, "%s", td_last_error());
	/* Empty entries do not count. */
	clear_env();
	setenv("WANDB_TAGS", " a, ,,b ,", 1);
	td_run_options in;
	td_run_options_init(&in);
	CHECK_EQ(tdi_wandb_env_apply(&in, &out, &env), TD_OK);
	CHECK_EQ(out.n_tags, 2);
	CHECK_STR_EQ(out.tags[1], "b");
}

/* At most TDI_WANDB_TAGS_MAX_BYTES - 1 bytes: limit-1, limit, limit+1. */
static void test_tags_bytes_bounded(void)
{
	static char value[TDI_WANDB_TAGS_MAX_BYTES + 2];
	td_run_options in, out;
	struct tdi_wandb_env env;
	td_run_options_init(&in);
	for (size_t len = TDI_WANDB_TAGS_MAX_BYTES - 2; len <= TDI_WANDB_TAGS_MAX_BYTES; len++) {
		memset(value, 'x', len);
		value[len] = '\0';
		clear_env();
		setenv("WANDB_TAGS", value, 1);
		int rc = tdi_wandb_env_apply(&in, &out, &env);
		if (len < TDI_WANDB_TAGS_MAX_BYTES) {
			CHECK_EQ(rc, TD_OK);
			CHECK_EQ(strlen(out.tags[0]), len);
		} else {
			CHECK_EQ(rc, TD_ERR_INVALID);
			CHECK(strstr(td_last_error(), "WANDB_TAGS is") != NULL, "%s",
			      td_last_error());
		}
	}
}

int main(void)
{
	test_fills_unset_fields();
	test_explicit_wins();
	test_mode_resume_output();
	test_tags_bounded();
	test_tags_bytes_bounded();
	return CHECK_SUMMARY("wandb_env_test");
}
