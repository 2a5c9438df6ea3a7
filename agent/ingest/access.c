#include "access.h"

#include "clock.h"
#include "errors.h"
#include "lru.h"

#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CACHE_ENTRIES 1024
#define CACHE_SECONDS 30
#define MAY_LOG       1u
#define IS_ADMIN      2u

struct access_control {
	char *group, *admin_group;
	uid_t self;
	lru *cache; /* (uid, gid) → expiry in seconds << 2 | flags */
};

int access_new(const char *group, const char *admin_group, access_control **out)
{
	access_control *a = calloc(1, sizeof *a);
	if (!a)
		return TRACKD_ENOMEM;
	a->group = strdup(group ? group : "");
	a->admin_group = strdup(admin_group ? admin_group : "");
	int rv = a->group && a->admin_group ? lru_new(CACHE_ENTRIES, &a->cache) : TRACKD_ENOMEM;
	if (rv) {
		access_free(a);
		return rv;
	}
	a->self = geteuid();
	*out = a;
	return TRACKD_OK;
}

void access_free(access_control *a)
{
	if (!a)
		return;
	free(a->group);
	free(a->admin_group);
	lru_free(a->cache);
	free(a);
}

static bool member_of(const char *group, uint32_t uid, uint32_t gid)
{
	char buf[16384];
	struct group gr, *g = NULL;
	if (getgrnam_r(group, &gr, buf, sizeof buf, &g) != 0 || !g)
		return false; /* a group that does not exist has no members */
	if (g->gr_gid == gid)
		return true;
	char pbuf[4096];
	struct passwd pw, *p = NULL;
	if (getpwuid_r(uid, &pw, pbuf, sizeof pbuf, &p) != 0 || !p)
		return false;
	if (p->pw_gid == g->gr_gid)
		return true;
	for (char **m = g->gr_mem; *m; m++)
		if (strcmp(*m, p->pw_name) == 0)
			return true;
	return false;
}

static unsigned flags_of(access_control *a, uint32_t uid, uint32_t gid)
{
	uint8_t key[8];
	memcpy(key, &uid, 4);
	memcpy(key + 4, &gid, 4);
	uint64_t now = (uint64_t)(clock_mono_us() / 1000000), v;
	if (lru_get(a->cache, key, sizeof key, &v) && (v >> 2) > now)
		return (unsigned)(v & 3);
	unsigned flags = 0;
	bool privileged = uid == 0 || uid == (uint32_t)a->self;
	if (privileged || !a->group[0] || member_of(a->group, uid, gid))
		flags |= MAY_LOG;
	if (uid == 0 || (a->admin_group[0] && member_of(a->admin_group, uid, gid)))
		flags |= IS_ADMIN | MAY_LOG;
	lru_put(a->cache, key, sizeof key, ((now + CACHE_SECONDS) << 2) | flags);
	return flags;
}

bool access_may_log(access_control *a, uint32_t uid, uint32_t gid)
{
	return flags_of(a, uid, gid) & MAY_LOG;
}

bool access_is_admin(access_control *a, uint32_t uid, uint32_t gid)
{
	return flags_of(a, uid, gid) & IS_ADMIN;
}
