/*
 * runenv.h — the process facts of a run's environment (W&B's
 * wandb-metadata.json: program, args, executable, root, git), read the same way
 * by the client library (about its own process, the source that wins) and by
 * the agent (about a run's first process through /proc/<pid>, for clients that
 * do not send them):
 *
 *   runenv_argv     program and arguments from a NUL-separated cmdline; a
 *                   script run by an interpreter ("python train.py") names the
 *                   script as the program, as W&B does;
 *   runenv_git      remote (credentials stripped), commit and branch of the
 *                   repository holding a directory, read from its files: no
 *                   git process (worktrees, packed refs and detached HEADs too);
 *   runenv_git_dirty  whether tracked files differ from HEAD or the index:
 *                   that needs git's own comparison, so one `git status
 *                   --porcelain --untracked-files=no` is spawned, killed when it
 *                   runs past its time bound or when `abort` is set.
 *
 * Bounds: every file is read at most RUNENV_MAX_FILE bytes; the repository
 * search climbs at most RUNENV_MAX_DEPTH directories; argv is cut at
 * RUNENV_MAX_ARGS; git status output beyond its first bytes is discarded (only
 * whether there is any matters). Thread-safe; runenv_git_dirty is safe in a
 * multi-threaded process (posix_spawn, descriptors close-on-exec).
 */
#ifndef TRACKD_COMMON_RUNENV_H
#define TRACKD_COMMON_RUNENV_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define RUNENV_MAX_FILE  (64u << 10)
#define RUNENV_MAX_DEPTH 64
#define RUNENV_MAX_ARGS  256

struct runenv_git {
	char remote[1024], commit[72], branch[256];
};

/* A git remote URL without its credentials ("https://user:token@host/x" →
 * "https://host/x"), into out. */
void runenv_strip_credentials(const char *url, char *out, size_t len);

/* The git facts of the repository holding `dir` (its .git directory or
 * worktree file found by climbing): 0, TRACKD_ENOENT when there is none,
 * TRACKD_ENOMEM. Unknown facts are "". */
int runenv_git(const char *dir, struct runenv_git *out);

/* Splits `cmdline` ([0, len), NUL-separated, as /proc/<pid>/cmdline) into at
 * most RUNENV_MAX_ARGS pointers into it; returns the count, and in *program
 * the index of the program (1 for "python script.py", else 0). The arguments
 * are those after the program. */
int runenv_argv(char *cmdline, size_t len, const char **argv, int *program);

enum runenv_dirty {
	RUNENV_DIRTY_UNKNOWN = -1, /* no git, not a repository, timed out, aborted */
	RUNENV_CLEAN = 0,
	RUNENV_DIRTY = 1,
};

/* Whether the work tree holding `dir` has changes to tracked files, by one
 * `git status` in it, bounded by timeout_ms (then killed) and cut short when
 * *abort becomes true (may be NULL). Waits for the child: never leaves a
 * zombie. */
enum runenv_dirty runenv_git_dirty(const char *dir, int timeout_ms, const atomic_bool *abort);

#endif
