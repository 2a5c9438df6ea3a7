#include "run_metadata.h"

#include "errors.h"
#include "runenv.h"

#include "trackd/v1/limits.h"

#include <json-c/json.h>

#include <stdlib.h>
#include <string.h>

static void add_str(json_object *o, const char *key, const char *v)
{
	if (v && *v)
		json_object_object_add(o, key, json_object_new_string(v));
}

int run_environment_json(const Trackd__V1__RunEnvironment *env, char **out)
{
	*out = NULL;
	json_object *client = json_object_new_object();
	if (!client)
		return TRACKD_ENOMEM;
	add_str(client, "program", env->program);
	if (env->n_args || env->program) {
		json_object *args = json_object_new_array();
		for (size_t i = 0; args && i < env->n_args; i++)
			json_object_array_add(args, json_object_new_string(env->args[i]));
		if (args)
			json_object_object_add(client, "args", args);
	}
	add_str(client, "executable", env->executable);
	add_str(client, "root", env->root);
	add_str(client, "python", env->python);
	if (env->git_remote || env->git_commit || env->git_branch || env->has_git_dirty) {
		json_object *git = json_object_new_object();
		if (git) {
			if (env->git_remote && *env->git_remote) {
				char remote[TRACKD_MAX_ENV_STRING + 1];
				runenv_strip_credentials(env->git_remote, remote, sizeof remote);
				add_str(git, "remote", remote);
			}
			add_str(git, "commit", env->git_commit);
			add_str(git, "branch", env->git_branch);
			if (env->has_git_dirty)
				json_object_object_add(git, "dirty",
				                       json_object_new_boolean(env->git_dirty));
			json_object_object_add(client, "git", git);
		}
	}
	const char *text = json_object_to_json_string_ext(
	    client, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	*out = text ? strdup(text) : NULL;
	json_object_put(client);
	return *out ? TRACKD_OK : TRACKD_ENOMEM;
}

/* The JSON object in text, or NULL (none, too long, not an object). */
static json_object *parse_object(const char *text)
{
	if (!text || strlen(text) > RUN_METADATA_MAX_BYTES)
		return NULL;
	json_object *o = json_tokener_parse(text);
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

int run_metadata_merge(const char *agent_json, const char *client_json, struct buf *out)
{
	json_object *base = parse_object(agent_json);
	if (!base)
		base = json_object_new_object();
	if (!base)
		return TRACKD_ENOMEM;
	json_object *client = parse_object(client_json);
	if (client) {
		json_object_object_foreach(client, key, value)
		{
			json_object_object_add(base, key, json_object_get(value));
		}
	}
	const char *text = json_object_to_json_string_ext(base, JSON_C_TO_STRING_PLAIN |
	                                                            JSON_C_TO_STRING_NOSLASHESCAPE);
	int rv = text ? buf_append(out, text, strlen(text)) : TRACKD_ENOMEM;
	if (!rv)
		rv = buf_append(out, "\n", 1);
	json_object_put(client);
	json_object_put(base);
	return rv;
}
