/*
 * procfs.h — parsers of the kernel's text files the sampler reads (/proc and
 * cgroup v2), as pure functions over the file's text so they are tested
 * without a kernel (the files are read with fs_read_prefix, common/fs.h).
 * Thread-safe, no state.
 */
#ifndef TRACKD_SYSMETRICS_PROCFS_H
#define TRACKD_SYSMETRICS_PROCFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* /proc/<pid>/stat: the fields after the command (which may hold spaces and
 * parentheses: parsing starts after its last ')'). */
struct procfs_stat {
	int32_t ppid;
	uint64_t utime, stime; /* clock ticks */
	uint64_t threads;
	uint64_t start_ticks; /* since boot */
	uint64_t rss_pages;
};
bool procfs_parse_stat(const char *text, struct procfs_stat *out);

/* /proc/meminfo: MemTotal and MemAvailable, in bytes. */
bool procfs_parse_meminfo(const char *text, uint64_t *total, uint64_t *available);

/* /proc/net/dev: bytes received and sent, summed over every interface but lo
 * (loopback traffic never leaves the machine). */
bool procfs_parse_net_dev(const char *text, uint64_t *recv, uint64_t *sent);

/* /proc/diskstats: sectors (512 bytes, whatever the device's own size) read
 * and written by the device `major:minor`. */
bool procfs_parse_diskstats(const char *text, unsigned major, unsigned minor, char *name,
                            size_t namelen, uint64_t *read_sectors, uint64_t *write_sectors);

/* cgroup v2 cpu.max ("max 100000" or "QUOTA PERIOD"): the CPUs it allows, or
 * 0 when unlimited (or unreadable). */
double procfs_parse_cpu_max(const char *text);

/* cgroup v2 memory.max / memory.current: bytes, 0 for "max" or bad text. */
uint64_t procfs_parse_bytes(const char *text);

/* /proc/<pid>/cgroup: the v2 path ("0::/user.slice/…"), into out; false
 * when the process is in no v2 hierarchy. */
bool procfs_parse_cgroup(const char *text, char *out, size_t len);

#endif
