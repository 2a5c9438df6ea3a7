#include "proc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

/* Reads /proc/<pid>/stat; returns the text after the command name's ')' (the
 * name may contain spaces and parentheses), or NULL. */
static const char *stat_fields(int32_t pid, char *line, size_t len)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t n = fread(line, 1, len - 1, f);
	fclose(f);
	line[n] = '\0';
	const char *p = strrchr(line, ')');
	return p && p[1] == ' ' && p[2] ? p + 2 : NULL;
}

uint64_t proc_start_ticks(int32_t pid)
{
	char line[1024];
	const char *p = stat_fields(pid, line, sizeof line);
	unsigned long long ticks = 0;
	/* From field 3 (state) on; starttime is field 22. */
	if (!p || sscanf(p,
	                 "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
	                 "%*d %*d %llu",
	                 &ticks) != 1)
		return 0;
	return ticks;
}

bool proc_alive(int32_t pid, uint64_t start_ticks)
{
	if (pid <= 0)
		return false;
	if (kill(pid, 0) != 0 && errno != EPERM)
		return false;
	char line[1024];
	const char *p = stat_fields(pid, line, sizeof line);
	if (!p)
		return false;
	if (*p == 'Z' || *p == 'X')
		return false; /* exited, not yet reaped */
	if (start_ticks && proc_start_ticks(pid) != start_ticks)
		return false; /* the pid now belongs to another process */
	return true;
}
