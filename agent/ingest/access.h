/*
 * access.h — who may talk to the agent (contract 1, multi-user machines).
 *
 * A peer (the uid/gid the kernel reports for its socket connection) may log when
 * it is root, the agent's own user, or a member of the configured group (its gid
 * is the group's, or its user is listed in the group). An empty group lets in
 * anyone the socket file's permissions let in. Members of the admin group (and
 * root) may read and append to every user's runs; everyone else only to their
 * own. Group membership is looked up through NSS and cached for 30 s per
 * (uid, gid), so a change to /etc/group takes effect within that time.
 *
 * Not thread-safe: used by the ingest worker only.
 */
#ifndef TRACKD_INGEST_ACCESS_H
#define TRACKD_INGEST_ACCESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct access_control access_control;

int access_new(const char *group, const char *admin_group, access_control **out);
void access_free(access_control *a);

bool access_may_log(access_control *a, uint32_t uid, uint32_t gid);
bool access_is_admin(access_control *a, uint32_t uid, uint32_t gid);

#endif
