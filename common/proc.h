/*
 * proc.h — facts about other processes, from /proc: whether a process is still
 * the one we saw (pid + start time, so a reused pid is not mistaken for it).
 * Thread-safe, no state.
 */
#ifndef TRACKD_CORE_PROC_H
#define TRACKD_CORE_PROC_H

#include <stdbool.h>
#include <stdint.h>

/* /proc/<pid>/stat starttime (clock ticks since boot), 0 if unknown. */
uint64_t proc_start_ticks(int32_t pid);

/* Whether `pid` runs and is not a zombie, and — when start_ticks is non-zero —
 * started at that time. */
bool proc_alive(int32_t pid, uint64_t start_ticks);

#endif
