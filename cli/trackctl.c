/*
 * trackctl — the command line of trackd.
 *
 *   trackctl status [--json]                  the agent: version, counters, backlog
 *   trackctl runs [--project P] [--state S] [--json]
 *   trackctl show RUN [--json]                 one run, with W&B's history/summary footer
 *   trackctl history RUN [--keys K,…] [--format csv|jsonl] [--json]
 *   trackctl tail RUN [--keys K,…] [-n N]      follow new rows until the run ends
 *   trackctl rename RUN NAME [--json]
 *   trackctl retry [RUN]                       upload a parked run again (wandb sink)
 *   trackctl sync [RUN… | --all] [--entity E] [--project P] [--force]
 *                                              upload offline runs (wandb sink)
 *   trackctl spool flush [SPOOL_DIR]           deliver records clients spooled
 *   trackctl dump [--state-dir DIR] [--run ID] [--history] [--after N]
 *
 * Everything but `dump` asks the running agent over its socket (TRACKD_SOCKET,
 * else the default path); `dump` reads the log files directly. This file only
 * dispatches; each command lives in cmd_*.c (see cli.h for the conventions).
 * Exit codes: 0 ok, 1 failure (agent down, no such run, unreadable log), 2 usage.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

void cli_usage(FILE *out)
{
	fprintf(out,
	        "Usage:\n"
	        "  trackctl status [--json]\n"
	        "      The running agent: version, clients, active runs, log and sink counters.\n"
	        "  trackctl runs [--project [ENTITY/]PROJECT] [--state STATE] [--json]\n"
	        "      The runs the agent knows, oldest first. STATE: running, finished,\n"
	        "      failed, crashed, killed.\n"
	        "  trackctl show RUN [--json]\n"
	        "      One run: identity, state, config, then its history sparklines and\n"
	        "      summary as W&B prints them at the end of a run.\n"
	        "  trackctl history RUN [--keys K1,K2] [--format csv|jsonl] [--json]\n"
	        "      The run's rows. csv (default): _step, then every key in first-seen\n"
	        "      order (or the --keys in the order given); jsonl: one row per line;\n"
	        "      --json: one object {run, from_line, lines, next_line, total_lines}.\n"
	        "  trackctl tail RUN [--keys K1,K2] [-n N]\n"
	        "      The last N rows (default 10), then new rows as they are logged, as\n"
	        "      JSON lines, until the run ends (or Ctrl-C).\n"
	        "  trackctl rename RUN NAME [--json]\n"
	        "      Give the run a new display name.\n"
	        "  trackctl retry [RUN]\n"
	        "      Upload again a run the wandb sink parked after a permanent error\n"
	        "      (every parked run without RUN).\n"
	        "  trackctl sync [RUN... | --all] [--entity ENTITY] [--project PROJECT] [--force]\n"
	        "      Upload offline runs to W&B through the agent's wandb sink: the given\n"
	        "      runs, or --all of yours (in ENTITY/PROJECT). An interrupted sync\n"
	        "      resumes where it stopped; a synced run is skipped unless --force\n"
	        "      (upload it again from the start). Progress on a terminal, plain\n"
	        "      lines otherwise; exit 1 unless every run got synced.\n"
	        "  trackctl spool flush [SPOOL_DIR]\n"
	        "      Deliver what this user's clients left in their spool when the agent\n"
	        "      was unreachable (every new client run does this too).\n"
	        "  trackctl dump [--state-dir DIR] [--run ID] [--history] [--after N]\n"
	        "      Print every record of the transaction log as one JSON line, reading\n"
	        "      the log files directly. --history keeps only history rows; --after\n"
	        "      only records with an index above N.\n"
	        "\n"
	        "RUN is a run id or ENTITY/PROJECT/ID. The agent is found through\n"
	        "TRACKD_SOCKET (an NNG URL such as ipc:///path/trackd.sock), else the\n"
	        "machine's agent (ipc:///run/trackd/trackd.sock) if it answers, else this\n"
	        "user's private agent, which is started if it does not run\n"
	        "(TRACKD_NO_AUTOSTART=1: never started).\n"
	        "Exit status: 0 ok, 1 failure, 2 usage.\n");
}

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} commands[] = {
    {"status", cmd_status}, {"runs", cmd_runs},     {"show", cmd_show}, {"history", cmd_history},
    {"tail", cmd_tail},     {"rename", cmd_rename}, {"dump", cmd_dump},   {"spool", cmd_spool},
    {"retry", cmd_retry},   {"sync", cmd_sync},
};

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
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(cmd, commands[i].name) == 0) {
			/* Each command parses its own options from its own argv. Errors are
			 * ours to word, not getopt's. */
			optind = 1;
			opterr = 0;
			return commands[i].run(argc - 1, argv + 1);
		}
	}
	return cli_usage_error("unknown command '%s'", cmd);
}
