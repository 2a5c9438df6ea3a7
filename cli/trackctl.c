/*
 * trackctl — the command line of trackd.
 *
 *   trackctl status [--json]                  the agent: version, counters, backlog
 *   trackctl runs [--project P] [--state S] [--json]
 *   trackctl show RUN [--json]                 one run, with W&B's history/summary footer
 *   trackctl history RUN [--keys K,…] [--format csv|jsonl] [--json] [--stream events]
 *   trackctl tail RUN [--keys K,…] [-n N]      follow new rows until the run ends
 *   trackctl rename RUN NAME [--json]
 *   trackctl update RUN [--name NAME] [--tags A,B] [--notes TEXT] [--json]
 *   trackctl retry [RUN]                       upload a parked run again (wandb sink)
 *   trackctl sync [RUN… | --all] [--entity E] [--project P] [--force]
 *                                              upload offline runs (wandb sink)
 *   trackctl import [--entity E] [--project P] PATH…
 *                                              W&B transaction files as offline runs
 *   trackctl spool flush [SPOOL_DIR]           deliver records clients spooled
 *   trackctl dump [--state-dir DIR] [--run ID] [--history] [--after N]
 *   trackctl ui [--listen ADDR:PORT] [--allow-remote] [--open]
 *                                              the web UI (ui.h)
 *   trackctl run [--] COMMAND [ARG...]         COMMAND with `import wandb` = trackd's
 *   trackctl --version
 *
 * Everything but `dump` asks the running agent over its socket (TRACKD_SOCKET,
 * else the default path); `dump` reads the log files directly. This file only
 * dispatches; each command lives in cmd_*.c (see cli.h for the conventions).
 * Exit codes: 0 ok, 1 failure (agent down, no such run, unreadable log), 2 usage.
 */
#include "cli.h"
#include "ui.h"

#ifndef TRACKD_VERSION
#define TRACKD_VERSION "0.0.0"
#endif

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* One row per command: its runner and its usage text, which is both the
 * command's part of `trackctl --help` and all of `trackctl CMD --help`. */
static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
} commands[] = {
    {"status", cmd_status,
     "  trackctl status [--json]\n"
     "      The running agent: version, clients, active runs, log and sink counters.\n"
     "      With --json and no agent: {\"agent\":\"down\",...} and exit status 1.\n"},
    {"runs", cmd_runs,
     "  trackctl runs [--project [ENTITY/]PROJECT] [--state STATE] [--json]\n"
     "      The runs the agent knows, oldest first. STATE: running, finished,\n"
     "      failed, crashed, killed.\n"},
    {"show", cmd_show,
     "  trackctl show RUN [--json]\n"
     "      One run: identity, state, config, then its history sparklines and\n"
     "      summary as W&B prints them at the end of a run.\n"},
    {"files", cmd_files,
     "  trackctl files RUN [--json]\n"
     "  trackctl files RUN --get NAME [-o PATH]\n"
     "      The run's files (media from its rows, saved files) in its files/ dir:\n"
     "      kind, size, SHA-256 and name. --get: one file's bytes (SHA-256\n"
     "      checked), to stdout or PATH.\n"},
    {"artifacts", cmd_artifacts,
     "  trackctl artifacts [--project [ENTITY/]PROJECT] [--type TYPE] [--name NAME] [--json]\n"
     "      The artifact versions you may read: path, type, size, files, aliases.\n"},
    {"artifact", cmd_artifact,
     "  trackctl artifact show [--project [ENTITY/]PROJECT] NAME[:ALIAS|:vN] [--json]\n"
     "      One version: digest, aliases, size, the run that logged it and the\n"
     "      runs that used it (lineage), and its files. NAME may be\n"
     "      [[ENTITY/]PROJECT/]NAME; no alias: latest.\n"
     "  trackctl artifact get [--project [ENTITY/]PROJECT] NAME[:ALIAS|:vN] DIR\n"
     "      Writes the version's files under DIR, each checked against its\n"
     "      SHA-256 and MD5 before it takes its name (a damaged copy in the\n"
     "      agent's store is reported and not written).\n"
     "  trackctl artifact alias [--remove] NAME[:ALIAS|:vN] ALIAS...\n"
     "      Puts the aliases on the version (moving each from the version that had\n"
     "      it), or with --remove takes them off. The owner or an admin.\n"
     "  trackctl artifact delete NAME:vN\n"
     "      Deletes the version (the owner or an admin); files no other version\n"
     "      holds are released. Version numbers are not reused.\n"},
    {"history", cmd_history,
     "  trackctl history RUN [--keys K1,K2] [--format csv|jsonl] [--json] [--stream events]\n"
     "      The run's rows. csv (default): _step, then every key in first-seen\n"
     "      order (or the --keys in the order given); jsonl: one row per line;\n"
     "      --json: one object {run, from_line, lines, next_line, total_lines}.\n"
     "      --stream events: the system-metrics samples instead (csv or jsonl).\n"},
    {"tail", cmd_tail,
     "  trackctl tail RUN [--keys K1,K2] [-n N]\n"
     "      The last N rows (default 10), then new rows as they are logged, as\n"
     "      JSON lines, until the run ends (or Ctrl-C).\n"},
    {"rename", cmd_rename,
     "  trackctl rename RUN NAME [--json]\n"
     "      Give the run a new display name.\n"},
    {"update", cmd_update,
     "  trackctl update RUN [--name NAME] [--tags A,B] [--notes TEXT] [--json]\n"
     "      Change the run's display name, tags and/or notes, running or\n"
     "      finished (only the owner or root). --tags replaces the list (\"\":\n"
     "      none); --notes \"\" clears the notes. At most 64 tags of 128 bytes.\n"},
    {"retry", cmd_retry,
     "  trackctl retry [RUN] [--json]\n"
     "      Upload again a run the wandb sink parked after a permanent error\n"
     "      (every parked run without RUN).\n"},
    {"sync", cmd_sync,
     "  trackctl sync [RUN... | --all] [--entity ENTITY] [--project PROJECT] [--force]\n"
     "      Upload offline runs to W&B through the agent's wandb sink: the given\n"
     "      runs, or --all of yours (in ENTITY/PROJECT). An interrupted sync\n"
     "      resumes where it stopped; a synced run is skipped unless --force\n"
     "      (upload it again from the start). Progress on a terminal, plain\n"
     "      lines otherwise; exit 1 unless every run got synced.\n"},
    {"import", cmd_import,
     "  trackctl import [--entity ENTITY] [--project PROJECT] PATH...\n"
     "      Import W&B runs from their transaction files (run-<id>.wandb): PATH is\n"
     "      such a file, a wandb/run-* or wandb/offline-run-* directory, a\n"
     "      wandb/ directory holding them, or the directory holding wandb/.\n"
     "      Each becomes an offline run with the same id, config, history,\n"
     "      summary, console output and system metrics (upload it with\n"
     "      `trackctl sync`); a file without an exit record gives a crashed run.\n"
     "      A damaged file imports every intact record and names the damaged\n"
     "      offsets; a run imported before is skipped.\n"
     "      --entity/--project replace the file's. Exit 1 if a file failed.\n"},
    {"spool", cmd_spool,
     "  trackctl spool flush [SPOOL_DIR]\n"
     "      Deliver what this user's clients left in their spool when the agent\n"
     "      was unreachable (every new client run does this too).\n"},
    {"dump", cmd_dump,
     "  trackctl dump [--state-dir DIR] [--run ID] [--history] [--after N]\n"
     "      Print every record of the transaction log as one JSON line, reading\n"
     "      the log files directly: those of DIR, else of the state dir of the\n"
     "      agent found as below.\n"
     "      --history keeps only history rows; --after only records with an\n"
     "      index above N.\n"},
    {"ui", cmd_ui,
     "  trackctl ui [--listen ADDR:PORT] [--allow-remote] [--open] [--idle-timeout S]\n"
     "      Serve the web UI of this user's runs (table, charts, console,\n"
     "      compare) until Ctrl-C; prints the URL to open (it holds a token).\n"
     "      Default " UI_DEFAULT_LISTEN "; :0 for any free port; a non-loopback\n"
     "      address needs --allow-remote (prefer ssh -L). --open starts a\n"
     "      browser when there is one. --idle-timeout: seconds a silent\n"
     "      connection is kept (default 30).\n"},
    {"run", cmd_run,
     "  trackctl run [--] COMMAND [ARG...]\n"
     "      Run COMMAND (a W&B script, unchanged) with `import wandb` meaning\n"
     "      trackd's wandb module: a directory holding a `wandb` shim is put\n"
     "      first on its PYTHONPATH. Nothing is installed; a real wandb is\n"
     "      shadowed only for COMMAND. Exit status: COMMAND's (127: not found).\n"},
};

static const char usage_footer[] =
    "\n"
    "RUN is a run id or ENTITY/PROJECT/ID. The agent is found through\n"
    "TRACKD_SOCKET (an NNG URL such as ipc:///path/trackd.sock), else the\n"
    "machine's agent (ipc:///run/trackd/trackd.sock) if it answers, else this\n"
    "user's private agent, which is started if it does not run\n"
    "(TRACKD_NO_AUTOSTART=1: never started).\n"
    "Exit status: 0 ok, 1 failure, 2 usage.\n";

void cli_usage(FILE *out)
{
	fputs("Usage:\n", out);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fputs(commands[i].usage, out);
	fputs("  trackctl --version\n", out);
	fputs(usage_footer, out);
}

/* `--help` or `-h` among a command's arguments (before a `--`; for `run`, only
 * before its COMMAND, whose own options are its own). */
static bool wants_help(int argc, char **argv, bool stop_at_operand)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (stop_at_operand && argv[i][0] != '-')
			return false;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	}
	return false;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		cli_usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		cli_usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
		printf("trackctl %s\n", TRACKD_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(cmd, commands[i].name) != 0)
			continue;
		if (wants_help(argc - 1, argv + 1, commands[i].run == cmd_run)) {
			printf("Usage:\n%s%s", commands[i].usage, usage_footer);
			return 0;
		}
		/* Each command parses its own options from its own argv. Errors are
		 * ours to word, not getopt's. */
		optind = 1;
		opterr = 0;
		return commands[i].run(argc - 1, argv + 1);
	}
	return cli_usage_error("unknown command '%s'", cmd);
}
