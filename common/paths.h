/*
 * paths.h — directories: created with their parents (mkdir -p). Thread-safe.
 */
#ifndef TRACKD_CORE_PATHS_H
#define TRACKD_CORE_PATHS_H

/* Creates `path` and any missing parents with exactly `mode` (the umask does
 * not apply); an existing directory is fine and left as it is. Returns 0 or a
 * trackd_err; on failure errno holds the system's reason. */
int mkdir_parents(const char *path, unsigned mode);

#endif
