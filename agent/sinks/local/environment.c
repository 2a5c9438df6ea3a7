#include "environment.h"

#include "errors.h"
#include "files.h"
#include "runenv.h"
#include "store_layout.h"

#include <json-c/json.h>

#include <stdlib.h>
#include <string.h>

/* The file's JSON object, or NULL (none, unreadable, not an object). */
static json_object *read_object(const char *dir, const char *name)
{
	char *text = NULL;
	size_t len = 0;
	if (file_read(dir, name, ENVIRONMENT_MAX_BYTES, &text, &len) != 0)
		return NULL;
	json_object *o = json_tokener_parse(text);
	free(text);
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

static int write_object(const char *dir, const char *name, json_object *o)
{
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	                                                         JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text)
		return TRACKD_ENOMEM;
	size_t n = strlen(text);
	char *line = malloc(n + 1);
	if (!line)
		return TRACKD_ENOMEM;
	memcpy(line, text, n);
	line[n] = '\n';
	int rv = file_write_atomic(dir, name, line, n + 1, false);
	free(line);
	return rv;
}

/* base with the client's keys laid over it (both borrowed), written out. */
static int write_merged(const char *dir, json_object *base, json_object *client)
{
	if (client) {
		json_object_object_foreach(client, key, value)
		{
			json_object_object_add(base, key, json_object_get(value));
		}
	}
	return write_object(dir, ENVIRONMENT_FILE, base);
}

int environment_apply_agent(const char *dir, const char *json)
{
	json_object *base = json_tokener_parse(json);
	if (!base || !json_object_is_type(base, json_type_object)) {
		json_object_put(base);
		base = json_object_new_object();
		if (!base)
			return TRACKD_ENOMEM;
	}
	json_object *client = read_object(dir, CLIENT_ENV_FILE);
	int rv = write_merged(dir, base, client);
	json_object_put(client);
	json_object_put(base);
	return rv;
}

static void add_str(json_object *o, const char *key, const char *v)
{
	if (v && *v)
		json_object_object_add(o, key, json_object_new_string(v));
}

int environment_apply_client(const char *dir, const Trackd__V1__RunEnvironment *env)
{
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
	int rv = write_object(dir, CLIENT_ENV_FILE, client);
	if (rv == 0) {
		/* What the agent wrote so far (machine facts), else a start. */
		json_object *base = read_object(dir, ENVIRONMENT_FILE);
		if (!base)
			base = json_object_new_object();
		rv = base ? write_merged(dir, base, client) : TRACKD_ENOMEM;
		json_object_put(base);
	}
	json_object_put(client);
	return rv;
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
