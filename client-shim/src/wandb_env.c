/* W&B's environment variables for td_init: see wandb_env.h. */
#include "wandb_env.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A variable's value; NULL when unset or empty (W&B treats "" as unset). */
static const char *env_text(const char *name)
{
	const char *v = getenv(name);
	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* W&B's booleans: true, 1, yes, on (any case). */
static bool env_flag(const char *name)
{
	const char *v = env_text(name);
	return v != NULL && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
	                     strcasecmp(v, "yes") == 0 || strcasecmp(v, "on") == 0);
}

static void fill(const char **field, const char *name)
{
	if (*field == NULL)
		*field = env_text(name);
}

/* WANDB_TAGS split at commas into env, blanks trimmed and empty tags dropped.
 * A value over the bounds is refused whole, naming the variable: cutting it
 * would start a run with tags the user did not ask for. */
static int split_tags(const char *value, struct tdi_wandb_env *env, size_t *n_out)
{
	size_t len = strlen(value), n = 0;
	if (len >= sizeof env->tags_buf)
		return tdi_fail(TD_ERR_INVALID, "td_init: WANDB_TAGS is %zu bytes, limit %zu", len,
		                sizeof env->tags_buf - 1);
	memcpy(env->tags_buf, value, len + 1);
	char *save = NULL;
	for (char *t = strtok_r(env->tags_buf, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ' || *t == '\t')
			t++;
		char *end = t + strlen(t);
		while (end > t && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*t == '\0')
			continue;
		if (n == TDI_WANDB_MAX_TAGS)
			return tdi_fail(TD_ERR_INVALID,
			                "td_init: WANDB_TAGS holds more than %u tags",
			                (unsigned)TDI_WANDB_MAX_TAGS);
		env->tags[n++] = t;
	}
	*n_out = n;
	return TD_OK;
}

int tdi_wandb_env_apply(const td_run_options *in, td_run_options *out, struct tdi_wandb_env *env)
{
	*out = *in;
	fill(&out->project, "WANDB_PROJECT");
	fill(&out->entity, "WANDB_ENTITY");
	fill(&out->display_name, "WANDB_NAME");
	fill(&out->notes, "WANDB_NOTES");
	fill(&out->run_id, "WANDB_RUN_ID");
	fill(&out->group, "WANDB_RUN_GROUP");
	fill(&out->job_type, "WANDB_JOB_TYPE");
	const char *tags = env_text("WANDB_TAGS");
	if (out->n_tags == 0 && tags != NULL) {
		size_t n = 0;
		int rc = split_tags(tags, env, &n);
		if (rc != TD_OK)
			return rc;
		if (n > 0) {
			out->tags = env->tags;
			out->n_tags = n;
		}
	}
	if (out->mode == TD_MODE_ONLINE) {
		const char *mode = env_text("WANDB_MODE");
		if (env_flag("WANDB_DISABLED") || (mode && strcasecmp(mode, "disabled") == 0))
			out->mode = TD_MODE_DISABLED;
		else if (mode &&
		         (strcasecmp(mode, "offline") == 0 || strcasecmp(mode, "dryrun") == 0))
			out->mode = TD_MODE_OFFLINE;
	}
	if (out->resume == TD_RESUME_NEVER) {
		const char *resume = env_text("WANDB_RESUME");
		if (resume && (strcasecmp(resume, "allow") == 0 || strcasecmp(resume, "auto") == 0))
			out->resume = TD_RESUME_ALLOW;
		else if (resume && strcasecmp(resume, "must") == 0)
			out->resume = TD_RESUME_MUST;
	}
	if (env_flag("WANDB_SILENT"))
		out->print_footer = false;
	const char *console = env_text("WANDB_CONSOLE");
	if (console && strcasecmp(console, "off") == 0)
		out->capture_console = false;
	return TD_OK;
}
