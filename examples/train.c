/*
 * train.c — the W&B quickstart, with trackd: a run in project "trackd-example"
 * with config {epochs, learning_rate}, logging simulated `accuracy` and `loss`
 * once per epoch (the summary keeps the best of each: define_metric max / min),
 * a summary value of its own, then finishing, which prints the W&B-style
 * footer (sparklines, summary, where the run is stored) on stderr.
 *
 *   train [steps] [--project NAME]     (or TRACKD_PROJECT=NAME; agent address
 *                                       from TRACKD_SOCKET or the default path)
 *
 * Exits non-zero unless the agent acknowledged every record.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <trackd/trackd.h>

/* A fixed-seed generator, so every run logs the same curve. */
static double next_uniform(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return (double)(*state >> 11) / 9007199254740992.0; /* [0, 1) */
}

static int usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [steps] [--project NAME]\n", argv0);
	return 2;
}

int main(int argc, char **argv)
{
	const char *project = getenv("TRACKD_PROJECT");
	long epochs = 10;
	uint64_t rng = 0x9e3779b97f4a7c15u;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--project") == 0 && i + 1 < argc) {
			project = argv[++i];
		} else {
			char *end;
			epochs = strtol(argv[i], &end, 10);
			if (*end != '\0' || epochs < 1 || epochs > 100000000)
				return usage(argv[0]);
		}
	}
	if (project == NULL || project[0] == '\0')
		project = "trackd-example";

	const double learning_rate = 0.01;
	td_item config[] = {TD_I("epochs", epochs), TD_F("learning_rate", learning_rate)};
	td_run_options opts;
	td_run *run;
	int rc;

	td_run_options_init(&opts);
	opts.project = project;
	opts.config = config;
	opts.n_config = 2;
	opts.print_footer = true; /* the default, spelled out: this is the example */
	if ((rc = td_init(&opts, &run)) != TD_OK) {
		fprintf(stderr, "train: td_init: %s: %s\n", td_strerror(rc), td_last_error());
		return 1;
	}
	/* The summary keeps the best accuracy and the lowest loss, not the last. */
	if ((rc = td_define_metric(run, "accuracy", TD_SUMMARY_MAX)) != TD_OK ||
	    (rc = td_define_metric(run, "loss", TD_SUMMARY_MIN)) != TD_OK)
		fprintf(stderr, "train: td_define_metric: %s: %s\n", td_strerror(rc),
		        td_last_error());

	/* Simulated training: accuracy climbs towards 1, loss falls towards 0. */
	double offset = next_uniform(&rng) / 5;
	for (long epoch = 1; epoch <= epochs; epoch++) {
		double decay = pow(2.0, -(double)epoch);
		double acc = 1 - decay - next_uniform(&rng) / (double)epoch / 10 - offset / 10;
		double loss = decay + next_uniform(&rng) / (double)epoch / 10 + offset / 10;
		td_item row[] = {TD_F("accuracy", acc), TD_F("loss", loss)};

		if ((rc = td_log(run, row, 2, TD_STEP_AUTO, true)) != TD_OK)
			fprintf(stderr, "train: td_log: %s: %s\n", td_strerror(rc),
			        td_last_error());
	}
	td_item summary[] = {TD_I("epochs_run", epochs)};
	if ((rc = td_summary_update(run, summary, 1)) != TD_OK)
		fprintf(stderr, "train: td_summary_update: %s: %s\n", td_strerror(rc),
		        td_last_error());

	td_finish_report rep;
	char id[80];
	snprintf(id, sizeof(id), "%s", td_run_id(run)); /* the run is freed by td_finish */
	rc = td_finish(run, 0, -1, &rep);
	printf("trackd: run %s (project %s): %s; records logged %llu, acked %llu", id, project,
	       td_strerror(rc), (unsigned long long)rep.records_logged,
	       (unsigned long long)rep.records_acked);
	if (rep.records_unacked || rep.records_refused_full || rep.records_rejected) {
		printf(", unacked %llu (spooled %llu), refused %llu, rejected %llu",
		       (unsigned long long)rep.records_unacked,
		       (unsigned long long)rep.records_spooled,
		       (unsigned long long)rep.records_refused_full,
		       (unsigned long long)rep.records_rejected);
	}
	printf("\n");
	if (rc != TD_OK) {
		fprintf(stderr, "train: %s\n",
		        rep.last_error[0] ? rep.last_error : td_last_error());
		return 1;
	}
	return 0;
}
