#include "environment.h"

#include "errors.h"
#include "files.h"
#include "run_metadata.h"
#include "store_layout.h"

#include <json-c/json.h>

#include <stdlib.h>
#include <string.h>

/* The file's text, or NULL (none, unreadable, too long). */
static char *read_text(const char *dir, const char *name)
{
	char *text = NULL;
	size_t len = 0;
	if (file_read(dir, name, ENVIRONMENT_MAX_BYTES, &text, &len) != 0)
		return NULL;
	return text;
}

/* wandb-metadata.json from base (the agent's facts, or the file as it is)
 * with the client's facts laid over it (run_metadata.h), written atomically. */
static int write_merged(const char *dir, const char *base, const char *client)
{
	struct buf b;
	buf_init(&b, 2 * (size_t)ENVIRONMENT_MAX_BYTES + 64);
	int rv = run_metadata_merge(base, client, &b);
	if (!rv)
		rv = file_write_atomic(dir, ENVIRONMENT_FILE, b.data, b.len, false);
	buf_fini(&b);
	return rv;
}

int environment_apply_agent(const char *dir, const char *json)
{
	char *client = read_text(dir, CLIENT_ENV_FILE);
	int rv = write_merged(dir, json, client);
	free(client);
	return rv;
}

int environment_apply_client(const char *dir, const Trackd__V1__RunEnvironment *env)
{
	char *client = NULL;
	int rv = run_environment_json(env, &client);
	if (!rv)
		rv = file_write_atomic(dir, CLIENT_ENV_FILE, client, strlen(client), false);
	if (!rv) {
		/* What the agent wrote so far (machine facts), else a start. */
		char *base = read_text(dir, ENVIRONMENT_FILE);
		rv = write_merged(dir, base, client);
		free(base);
	}
	free(client);
	return rv;
}

static json_object *read_object(const char *dir, const char *name)
{
	char *text = read_text(dir, name);
	json_object *o = text ? json_tokener_parse(text) : NULL;
	free(text);
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

char *environment_client_root(const char *dir)
{
	json_object *client = read_object(dir, CLIENT_ENV_FILE), *root;
	char *out = NULL;
	if (client && json_object_object_get_ex(client, "root", &root) &&
	    json_object_is_type(root, json_type_string) && json_object_get_string(root)[0] == '/')
		out = strdup(json_object_get_string(root));
	json_object_put(client);
	return out;
}
