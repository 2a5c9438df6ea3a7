/* Parsers of the kernel's files (procfs.h), and a pass over this test's own
 * process (sysmetrics.h) without NVML. */
#include "check.h"
#include "metadata.h"
#include "nvml.h"
#include "procfs.h"
#include "sysmetrics.h"

#include "errors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_stat(void)
{
	struct procfs_stat st;
	/* A command with spaces and parentheses: fields count from the last ')'. */
	const char *text = "1234 (a (b) c) S 77 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 "
	                   "9 0 123456 1000000 321 18446744073709551615";
	CHECK(procfs_parse_stat(text, &st));
	CHECK_EQ(st.ppid, 77);
	CHECK_EQ(st.utime, 250);
	CHECK_EQ(st.stime, 50);
	CHECK_EQ(st.threads, 9);
	CHECK_EQ(st.start_ticks, 123456);
	CHECK_EQ(st.rss_pages, 321);
	CHECK(!procfs_parse_stat("1234 (x) S 1 2", &st), "too few fields");
	CHECK(!procfs_parse_stat("no paren", &st));
}

static void test_meminfo_net_disk(void)
{
	uint64_t total, avail;
	CHECK(procfs_parse_meminfo(
	    "MemTotal:       16000 kB\nMemFree: 1 kB\nMemAvailable:   4000 kB\n", &total, &avail));
	CHECK_EQ(total, 16000 * 1024);
	CHECK_EQ(avail, 4000 * 1024);
	CHECK(!procfs_parse_meminfo("MemTotal: 1 kB\n", &total, &avail));

	const char *net = "Inter-|   Receive |  Transmit\n"
	                  " face |bytes packets errs drop fifo frame compressed multicast|bytes\n"
	                  "    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n"
	                  "  eth0: 100 2 0 0 0 0 0 0 40 3 0 0 0 0 0 0\n"
	                  "  eth1: 5 2 0 0 0 0 0 0 6 3 0 0 0 0 0 0\n";
	uint64_t rx, tx;
	CHECK(procfs_parse_net_dev(net, &rx, &tx));
	CHECK_EQ(rx, 105);
	CHECK_EQ(tx, 46);

	const char *ds = " 254       0 vda 100 0 2000 0 50 0 800 0 0 0 0\n"
	                 " 254       1 vda1 10 0 200 0 5 0 80 0 0 0 0\n";
	char name[64];
	uint64_t r, w;
	CHECK(procfs_parse_diskstats(ds, 254, 1, name, sizeof name, &r, &w));
	CHECK_STR_EQ(name, "vda1");
	CHECK_EQ(r, 200);
	CHECK_EQ(w, 80);
	CHECK(!procfs_parse_diskstats(ds, 8, 0, name, sizeof name, &r, &w));
}

static void test_cgroup(void)
{
	CHECK(procfs_parse_cpu_max("max 100000\n") == 0);
	CHECK(fabs(procfs_parse_cpu_max("50000 100000\n") - 0.5) < 1e-9);
	CHECK(fabs(procfs_parse_cpu_max("200000 100000") - 2.0) < 1e-9);
	CHECK(procfs_parse_cpu_max("junk") == 0);
	CHECK_EQ(procfs_parse_bytes("max\n"), 0);
	CHECK_EQ(procfs_parse_bytes("1073741824\n"), 1073741824);
	char rel[64];
	CHECK(procfs_parse_cgroup("4:memory:/x\n0::/user.slice/a.scope\n", rel, sizeof rel));
	CHECK_STR_EQ(rel, "/user.slice/a.scope");
	CHECK(!procfs_parse_cgroup("4:memory:/x\n", rel, sizeof rel), "v1 only");
	/* The path's limit: len-1 bytes fit, len do not. */
	CHECK(procfs_parse_cgroup("0::/abcdef", rel, 8));
	CHECK(!procfs_parse_cgroup("0::/abcdefg", rel, 8));
}

struct captured {
	int records, metadata;
	char keys[64][64];
	double values[64];
	int n;
	/* The last record's counter bases. */
	char boot_id[SYSMETRICS_BOOT_ID_BYTES];
	struct sysmetrics_base bases[SYSMETRICS_MAX_BASES];
	size_t n_bases;
};

static int capture(void *arg, const Trackd__V1__Record *in)
{
	struct captured *c = arg;
	/* As ingest stores it: packed, then read back by a sink. */
	size_t len = trackd__v1__record__get_packed_size(in);
	uint8_t *b = malloc(len);
	trackd__v1__record__pack(in, b);
	Trackd__V1__Record *rec = trackd__v1__record__unpack(NULL, len, b);
	free(b);
	CHECK(rec != NULL);
	if (!rec)
		return 0;
	if (rec->body_case == TRACKD__V1__RECORD__BODY_METADATA) {
		c->metadata++;
		trackd__v1__record__free_unpacked(rec, NULL);
		return 0;
	}
	c->records++;
	c->n = 0;
	c->n_bases = 0;
	snprintf(c->boot_id, sizeof c->boot_id, "%s",
	         rec->stats->boot_id ? rec->stats->boot_id : "");
	for (size_t i = 0; i < rec->stats->n_bases && c->n_bases < SYSMETRICS_MAX_BASES; i++) {
		snprintf(c->bases[c->n_bases].key, sizeof c->bases[c->n_bases].key, "%s",
		         rec->stats->bases[i]->key);
		c->bases[c->n_bases++].value = rec->stats->bases[i]->value;
	}
	for (size_t i = 0; i < rec->stats->n_items && c->n < 64; i++, c->n++) {
		snprintf(c->keys[c->n], sizeof c->keys[c->n], "%s", rec->stats->items[i]->key);
		c->values[c->n] = rec->stats->items[i]->value->double_value;
	}
	trackd__v1__record__free_unpacked(rec, NULL);
	return 0;
}

static double value_of(const struct captured *c, const char *key)
{
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->keys[i], key) == 0)
			return c->values[i];
	return NAN;
}

static void test_pass(void)
{
	struct captured c = {0};
	struct sysmetrics_options o = {.interval_ms = 1000,
	                               .nvml_library = "/nonexistent/libnvidia-ml.so.1",
	                               .state_dir = "/",
	                               .submit = capture,
	                               .arg = &c};
	sysmetrics *sm;
	CHECK_EQ(sysmetrics_new(&o, &sm), 0);
	struct sysmetrics_run runs[2] = {{.id = "a", .n_pids = 1}, {.id = "b", .n_pids = 1}};
	runs[0].pids[0] = getpid();
	runs[1].pids[0] = 999999999; /* no such process: the run is sampled, its process not */
	sysmetrics_pass(sm, runs, 2);
	CHECK_EQ(c.records, 2);
	CHECK_EQ(c.metadata, 2, "each new run's environment, once");
	CHECK(value_of(&c, "proc.cpu.threads") == 0, "the gone process counts nothing");
	sysmetrics_pass(sm, runs, 1);
	CHECK_EQ(c.records, 3);
	CHECK_EQ(c.metadata, 2);
	CHECK(value_of(&c, "proc.cpu.threads") >= 1);
	CHECK(value_of(&c, "proc.memory.rssMB") > 0);
	CHECK(value_of(&c, "memory_percent") > 0 && value_of(&c, "memory_percent") <= 100);
	CHECK(!isnan(value_of(&c, "disk./.usagePercent")));
	CHECK(!isnan(value_of(&c, "network.sent")));
	struct sysmetrics_stats st;
	sysmetrics_get_stats(sm, &st);
	CHECK_EQ(st.passes, 2);
	CHECK_EQ(st.samples, 3);
	CHECK_EQ(st.gpus, 0);
	CHECK(st.source_failures >= 1, "the missing NVML library is counted");
	sysmetrics_free(sm);
}

static uint64_t base_value(const struct captured *c, const char *key, bool *found)
{
	*found = false;
	for (size_t i = 0; i < c->n_bases; i++)
		if (strcmp(c->bases[i].key, key) == 0) {
			*found = true;
			return c->bases[i].value;
		}
	return 0;
}

/* "Since the run started" survives a restart: the bases go out with the first
 * sample, and a new sampler given them continues from them (same boot), or
 * starts afresh (another boot). */
static void test_counter_bases(void)
{
	struct captured c = {0};
	struct sysmetrics_options o = {
	    .interval_ms = 1000, .state_dir = "/", .submit = capture, .arg = &c};
	sysmetrics *sm;
	CHECK_EQ(sysmetrics_new(&o, &sm), 0);
	struct sysmetrics_run run = {.id = "a", .n_pids = 1};
	run.pids[0] = getpid();
	sysmetrics_pass(sm, &run, 1);
	bool found;
	uint64_t sent0 = base_value(&c, "network.sent", &found);
	CHECK(found, "the first sample carries its bases");
	CHECK(strlen(c.boot_id) >= 32, "and the boot they belong to");
	struct captured first = c;
	sysmetrics_pass(sm, &run, 1);
	CHECK_EQ(c.n_bases, 0, "not again while they are unchanged");
	sysmetrics_free(sm);

	/* A restarted agent: the run's bases as the log kept them, moved back
	 * by 1000 bytes, as if that much had been sent before the restart. */
	CHECK_EQ(sysmetrics_new(&o, &sm), 0);
	snprintf(run.boot_id, sizeof run.boot_id, "%s", first.boot_id);
	run.n_bases = first.n_bases;
	memcpy(run.bases, first.bases, sizeof run.bases);
	for (size_t i = 0; i < run.n_bases; i++)
		if (strcmp(run.bases[i].key, "network.sent") == 0 && run.bases[i].value >= 1000)
			run.bases[i].value -= 1000;
	sysmetrics_pass(sm, &run, 1);
	if (sent0 >= 1000)
		CHECK(value_of(&c, "network.sent") >= 1000, "continued: %f",
		      value_of(&c, "network.sent"));
	CHECK_EQ(c.n_bases, 0, "taken over, nothing new to send");
	sysmetrics_free(sm);

	/* Another boot: the old bases mean nothing. */
	CHECK_EQ(sysmetrics_new(&o, &sm), 0);
	snprintf(run.boot_id, sizeof run.boot_id, "another-boot");
	for (size_t i = 0; i < run.n_bases; i++)
		run.bases[i].value = 0;
	sysmetrics_pass(sm, &run, 1);
	base_value(&c, "network.sent", &found);
	CHECK(found, "new bases taken and sent");
	CHECK(value_of(&c, "network.sent") < (double)sent0 || sent0 == 0, "from the new base");
	sysmetrics_free(sm);

	/* A counter below the run's base (an interface gone): a new base. */
	CHECK_EQ(sysmetrics_new(&o, &sm), 0);
	snprintf(run.boot_id, sizeof run.boot_id, "%s", first.boot_id);
	for (size_t i = 0; i < run.n_bases; i++)
		run.bases[i].value = UINT64_MAX;
	sysmetrics_pass(sm, &run, 1);
	CHECK(value_of(&c, "network.sent") >= 0 && value_of(&c, "network.sent") < 1e15);
	base_value(&c, "network.sent", &found);
	CHECK(found);
	sysmetrics_free(sm);
}

/* The fake NVML (tests/fake-nvml) with `gpus` devices and `procs` processes
 * on device 0. */
static nvml *fake(const char *state, unsigned gpus, unsigned procs)
{
	FILE *f = fopen(state, "w");
	for (unsigned i = 0; i < gpus; i++)
		fprintf(f, "gpu 1 2 1000 500 3 4000 8000 5 6 7 0 0 0\n");
	for (unsigned i = 0; i < procs; i++)
		fprintf(f, "proc 0 %u 10\n", 1000 + i);
	fclose(f);
	setenv("FAKE_NVML_STATE", state, 1);
	char why[256];
	nvml *n = nvml_open(FAKE_NVML, why, sizeof why);
	CHECK(n != NULL, "%s", why);
	return n;
}

static void test_nvml_limits(void)
{
	char state[] = "/tmp/sysmetrics_test_nvml_XXXXXX";
	int fd = mkstemp(state);
	CHECK(fd >= 0);
	close(fd);
	/* NVML_MAX_GPUS: limit - 1, limit, limit + 1 devices. */
	unsigned want[] = {NVML_MAX_GPUS - 1, NVML_MAX_GPUS, NVML_MAX_GPUS};
	for (unsigned k = 0; k < 3; k++) {
		nvml *n = fake(state, NVML_MAX_GPUS - 1 + k, 0);
		CHECK_EQ(nvml_count(n), want[k]);
		nvml_close(n);
	}
	/* NVML_MAX_PROCESSES on one device: all read up to the limit; past it the
	 * list is not read (NVML fills nothing when the buffer is too small). */
	static struct nvml_sample s;
	size_t got[] = {NVML_MAX_PROCESSES - 1, NVML_MAX_PROCESSES, 0};
	for (unsigned k = 0; k < 3; k++) {
		nvml *n = fake(state, 1, NVML_MAX_PROCESSES - 1 + k);
		uint64_t failures = 0;
		nvml_sample(n, 0, &s, &failures);
		CHECK_EQ(s.n_processes, got[k]);
		CHECK(s.has[NVML_M_PROCESSES] && s.has[NVML_M_UTIL] && !s.lost);
		CHECK_EQ(failures, 0);
		CHECK(s.power_w == 4.0 && s.power_limit_w == 8.0 && s.mem_used == 500);
		nvml_close(n);
	}
	unlink(state);
}

int main(void)
{
	test_nvml_limits();
	test_stat();
	test_meminfo_net_disk();
	test_cgroup();
	test_pass();
	test_counter_bases();
	return CHECK_SUMMARY("sysmetrics_test");
}
