/* config_test — the configuration contract: defaults (root and user), every error
 * class with its exact file:line:col, bounds at bound-1/bound/bound+1, size and
 * duration parsing, print → load round trip, files. */
#include "config.h"

#include "check.h"

#include "errors.h"
#include "log.h"
#include "trackd/v1/limits.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

static void check_u64(const char *what, uint64_t got, uint64_t want)
{
	CHECK(got == want, "%s: expected %llu, got %llu", what, (unsigned long long)want,
	      (unsigned long long)got);
}

static void check_rc(const char *what, int got, int want)
{
	CHECK(got == want, "%s: expected rc %d (%s), got %d (%s)", what, want,
	      trackd_strerror(want), got, trackd_strerror(got));
}

/* The whole effective config as text: the easy way to compare two configs. */
static char *printed(const struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		abort();
	config_print(cfg, f);
	fclose(f);
	return buf;
}

static int load(struct config *cfg, const char *yaml, char *err, size_t errlen)
{
	return config_load_buffer(cfg, "t.yaml", yaml, strlen(yaml), err, errlen);
}

/* Loads `yaml` over the root defaults and expects TRACKD_EINVAL with a message that
 * starts with exactly "t.yaml:<pos>: " and contains `needle`; the config must be
 * left as it was. */
static void expect_error(const char *yaml, const char *pos, const char *needle)
{
	struct config cfg;
	char err[512], want[64];
	config_defaults(&cfg, true);
	char *before = printed(&cfg);
	int rc = load(&cfg, yaml, err, sizeof err);
	check_rc(yaml, rc, TRACKD_EINVAL);
	if (rc == TRACKD_EINVAL) {
		snprintf(want, sizeof want, "t.yaml:%s: ", pos);
		CHECK(strncmp(err, want, strlen(want)) == 0,
		      "position for %s: expected prefix \"%s\", got \"%s\"", yaml, want, err);
		CHECK(strstr(err, needle) != NULL,
		      "message for %s: expected to contain \"%s\", got \"%s\"", yaml, needle, err);
	}
	char *after = printed(&cfg);
	CHECK(strcmp(before, after) == 0, "config changed by failed load of %s", yaml);
	free(before);
	free(after);
	config_fini(&cfg);
}

/* Exact message, position included. */
static void expect_message(const char *yaml, const char *message)
{
	struct config cfg;
	char err[512];
	config_defaults(&cfg, true);
	int rc = load(&cfg, yaml, err, sizeof err);
	check_rc(yaml, rc, TRACKD_EINVAL);
	if (rc == TRACKD_EINVAL)
		CHECK_STR_EQ(err, message, "%s", yaml);
	config_fini(&cfg);
}

static void expect_ok(struct config *cfg, const char *yaml)
{
	char err[512] = "";
	int rc = load(cfg, yaml, err, sizeof err);
	CHECK(rc == TRACKD_OK, "load %s: expected success, got %d: %s", yaml, rc, err);
}

/* ---------------------------------------------------------------------------- */

static void test_defaults_root(void)
{
	struct config c;
	check_rc("defaults root", config_defaults(&c, true), TRACKD_OK);
	CHECK_STR_EQ(c.listen, "ipc:///run/trackd/trackd.sock", "%s", "root listen");
	CHECK_STR_EQ(c.state_dir, "/var/lib/trackd", "%s", "root state_dir");
	check_u64("root socket_mode", c.socket_mode, 0660);
	CHECK_STR_EQ(c.log_level, "info", "%s", "log_level");
	check_u64("shutdown_timeout", c.shutdown_timeout_ms, 10000);
	check_u64("ingest_contexts", c.ingest_contexts, 16);
	check_u64("max_message_bytes", c.limits.max_message_bytes,
	          TRACKD_DEFAULT_MAX_MESSAGE_BYTES);
	check_u64("max_records_per_batch", c.limits.max_records_per_batch,
	          TRACKD_DEFAULT_MAX_RECORDS_PER_BATCH);
	check_u64("max_items_per_record", c.limits.max_items_per_record,
	          TRACKD_DEFAULT_MAX_ITEMS_PER_RECORD);
	check_u64("max_key_bytes", c.limits.max_key_bytes, TRACKD_DEFAULT_MAX_KEY_BYTES);
	check_u64("max_string_bytes", c.limits.max_string_bytes, TRACKD_DEFAULT_MAX_STRING_BYTES);
	check_u64("max_nesting_depth", c.limits.max_nesting_depth,
	          TRACKD_DEFAULT_MAX_NESTING_DEPTH);
	check_u64("max_sessions", c.limits.max_sessions, 65536);
	check_u64("fsync", c.txlog.fsync, CONFIG_FSYNC_INTERVAL);
	check_u64("fsync_interval", c.txlog.fsync_interval_ms, 100);
	check_u64("segment_bytes", c.txlog.segment_bytes, 64u << 20);
	config_fini(&c);
	config_fini(&c); /* idempotent */
}

static void test_defaults_user(void)
{
	struct config c;
	char want[128];

	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	setenv("XDG_STATE_HOME", "/home/ada/.st", 1);
	check_rc("defaults user xdg", config_defaults(&c, false), TRACKD_OK);
	CHECK_STR_EQ(c.listen, "ipc:///run/user/4242/trackd/trackd.sock", "%s", "user listen xdg");
	CHECK_STR_EQ(c.state_dir, "/home/ada/.st/trackd", "%s", "user state_dir xdg");
	check_u64("user socket_mode", c.socket_mode, 0600);
	CHECK_STR_EQ(c.log_level, "info", "%s", "user log_level");
	config_fini(&c);

	/* Unset, and relative (to be ignored, as the XDG spec says), fall back. */
	unsetenv("XDG_RUNTIME_DIR");
	setenv("XDG_STATE_HOME", "relative/state", 1);
	setenv("HOME", "/home/bob", 1);
	check_rc("defaults user fallback", config_defaults(&c, false), TRACKD_OK);
	snprintf(want, sizeof want, "ipc:///tmp/trackd-%lu/trackd.sock", (unsigned long)getuid());
	CHECK_STR_EQ(c.listen, want, "%s", "user listen fallback");
	CHECK_STR_EQ(c.state_dir, "/home/bob/.local/state/trackd", "%s", "user state_dir fallback");
	config_fini(&c);

	/* No HOME either: the user database knows the home directory. */
	unsetenv("HOME");
	unsetenv("XDG_STATE_HOME");
	struct passwd *pw = getpwuid(getuid());
	if (pw && pw->pw_dir && pw->pw_dir[0] == '/') {
		char home_state[512];
		snprintf(home_state, sizeof home_state, "%s/.local/state/trackd", pw->pw_dir);
		check_rc("defaults user no HOME", config_defaults(&c, false), TRACKD_OK);
		CHECK_STR_EQ(c.state_dir, home_state, "%s", "user state_dir from passwd");
		config_fini(&c);
	}
	setenv("HOME", "/home/bob", 1);

	setenv("XDG_RUNTIME_DIR", "run/relative", 1);
	unsetenv("XDG_STATE_HOME");
	check_rc("defaults user relative runtime", config_defaults(&c, false), TRACKD_OK);
	CHECK_STR_EQ(c.listen, want, "%s", "user listen relative runtime");
	config_fini(&c);

	/* A socket path longer than sun_path cannot be listened on. */
	char longdir[200];
	memset(longdir, 'x', sizeof longdir - 1);
	longdir[0] = '/';
	longdir[sizeof longdir - 1] = '\0';
	setenv("XDG_RUNTIME_DIR", longdir, 1);
	check_rc("defaults user too long socket path", config_defaults(&c, false), TRACKD_EINVAL);
	CHECK(c.listen == NULL && c.state_dir == NULL, "failed defaults leave no strings behind");
	config_fini(&c);

	/* A state dir longer than PATH_MAX is refused, not cut short. */
	char *huge = malloc(2 * PATH_MAX + 1);
	memset(huge, 's', 2 * PATH_MAX);
	huge[0] = '/';
	huge[2 * PATH_MAX] = '\0';
	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	setenv("XDG_STATE_HOME", huge, 1);
	check_rc("defaults user too long state dir", config_defaults(&c, false), TRACKD_EINVAL);
	config_fini(&c);
	unsetenv("XDG_STATE_HOME");
	free(huge);

	/* The user defaults round-trip like any other config. */
	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	check_rc("defaults user again", config_defaults(&c, false), TRACKD_OK);
	char *text = printed(&c);
	struct config r;
	config_defaults(&r, true);
	expect_ok(&r, text);
	char *again = printed(&r);
	CHECK_STR_EQ(again, text, "%s", "user defaults round trip");
	free(text);
	free(again);
	config_fini(&r);
	config_fini(&c);
}

static void test_empty(void)
{
	const char *empties[] = {"", "\n", "# only a comment\n", "---\n", "---\n...\n", "{}\n"};
	for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
		struct config d, c;
		config_defaults(&d, true);
		config_defaults(&c, true);
		expect_ok(&c, empties[i]);
		char *a = printed(&d), *b = printed(&c);
		CHECK_STR_EQ(b, a, "%s", empties[i][0] ? empties[i] : "(empty file)");
		free(a);
		free(b);
		config_fini(&d);
		config_fini(&c);
	}
	/* NULL buffer of length 0 is an empty file too. */
	struct config c;
	config_defaults(&c, true);
	check_rc("NULL buffer", config_load_buffer(&c, "x", NULL, 0, NULL, 0), TRACKD_OK);
	config_fini(&c);
}

static void test_full_file(void)
{
	struct config c;
	config_defaults(&c, true);
	expect_ok(&c, "# every key\n"
	              "listen: ipc:///tmp/t.sock\n"
	              "state_dir: \"/srv/trackd\"\n"
	              "socket_mode: \"0640\"\n"
	              "log_level: debug\n"
	              "shutdown_timeout: 2m\n"
	              "ingest_contexts: 4\n"
	              "limits:\n"
	              "  max_message_bytes: 8MiB\n"
	              "  max_records_per_batch: 100\n"
	              "  max_items_per_record: 50\n"
	              "  max_key_bytes: 1KiB\n"
	              "  max_string_bytes: 4096\n"
	              "  max_nesting_depth: 3\n"
	              "  max_sessions: 16\n"
	              "txlog: {fsync: always, fsync_interval: 1s, segment_bytes: 1GiB}\n");
	CHECK_STR_EQ(c.listen, "ipc:///tmp/t.sock", "%s", "listen");
	CHECK_STR_EQ(c.state_dir, "/srv/trackd", "%s", "state_dir");
	check_u64("socket_mode", c.socket_mode, 0640);
	CHECK_STR_EQ(c.log_level, "debug", "%s", "log_level");
	check_u64("shutdown_timeout", c.shutdown_timeout_ms, 120000);
	check_u64("ingest_contexts", c.ingest_contexts, 4);
	check_u64("max_message_bytes", c.limits.max_message_bytes, 8u << 20);
	check_u64("max_records_per_batch", c.limits.max_records_per_batch, 100);
	check_u64("max_items_per_record", c.limits.max_items_per_record, 50);
	check_u64("max_key_bytes", c.limits.max_key_bytes, 1024);
	check_u64("max_string_bytes", c.limits.max_string_bytes, 4096);
	check_u64("max_nesting_depth", c.limits.max_nesting_depth, 3);
	check_u64("max_sessions", c.limits.max_sessions, 16);
	check_u64("fsync", c.txlog.fsync, CONFIG_FSYNC_ALWAYS);
	check_u64("fsync_interval", c.txlog.fsync_interval_ms, 1000);
	check_u64("segment_bytes", c.txlog.segment_bytes, 1u << 30);

	/* A later file overrides only what it names. */
	expect_ok(&c, "txlog:\n  fsync: never\n");
	check_u64("overlay fsync", c.txlog.fsync, CONFIG_FSYNC_NEVER);
	check_u64("overlay keeps fsync_interval", c.txlog.fsync_interval_ms, 1000);
	CHECK_STR_EQ(c.listen, "ipc:///tmp/t.sock", "%s", "overlay keeps listen");

	/* Plain octal mode, as YAML 1.1 users write it. */
	expect_ok(&c, "socket_mode: 0600\n");
	check_u64("plain socket_mode", c.socket_mode, 0600);
	config_fini(&c);
}

static void test_log_levels_match_logger(void)
{
	const char *names[] = {"error", "warn", "info", "debug"};
	for (size_t i = 0; i < 4; i++) {
		struct config c;
		char yaml[64];
		enum trackd_log_level lvl;
		config_defaults(&c, true);
		snprintf(yaml, sizeof yaml, "log_level: %s\n", names[i]);
		expect_ok(&c, yaml);
		CHECK_STR_EQ(c.log_level, names[i], "%s", yaml);
		check_rc("logger accepts it", trackd_log_level_parse(c.log_level, &lvl), TRACKD_OK);
		check_u64("logger level", lvl, i);
		config_fini(&c);
	}
}

static void test_sizes(void)
{
	static const struct {
		const char *text;
		uint64_t want;
	} ok[] = {
	    {"0", 0},
	    {"4096", 4096},
	    {"1B", 1},
	    {"0B", 0},
	    {"64KiB", 65536},
	    {"4MiB", 4u << 20},
	    {"3GiB", UINT64_C(3) << 30},
	    {"2TiB", UINT64_C(2) << 40},
	    {"18446744073709551615", UINT64_MAX},
	    {"16777215TiB", UINT64_C(16777215) << 40},
	};
	static const char *const bad[] = {
	    "",      "KiB",    "64 KiB", "64kib",  "64KB",  "64K",  "1.5MiB", "-1",
	    "+1",    "0x10",   "010",    "64KiBx", " 64",   "64 ",  "1e6",    "64kB",
	    "1 MiB", "1MiB\n", "1PiB",   "1EiB",   "MiB64", "1Mib",
	};
	static const char *const overflow[] = {
	    "18446744073709551616", "99999999999999999999999", "16777216TiB",
	    "17179869184GiB",       "18014398509481984KiB",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		uint64_t v = 12345;
		check_rc(ok[i].text, config_parse_size(ok[i].text, &v), TRACKD_OK);
		check_u64(ok[i].text, v, ok[i].want);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint64_t v = 12345;
		check_rc(bad[i], config_parse_size(bad[i], &v), TRACKD_EINVAL);
		check_u64("untouched on error", v, 12345);
	}
	for (size_t i = 0; i < sizeof overflow / sizeof overflow[0]; i++) {
		uint64_t v = 12345;
		check_rc(overflow[i], config_parse_size(overflow[i], &v), TRACKD_EINVAL);
	}
	/* In a file: the message says what a size looks like, and names overflow. */
	expect_message("limits:\n  max_message_bytes: 4MB\n",
	               "t.yaml:2:22: limits.max_message_bytes: expected a size such as 4096, 64KiB "
	               "or 4MiB (units B, KiB, MiB, GiB, TiB), got \"4MB\" (decimal units such as "
	               "KB are not accepted: write KiB, MiB, GiB)");
	expect_message("txlog:\n  segment_bytes: 99999999999999999999\n",
	               "t.yaml:2:18: txlog.segment_bytes: \"99999999999999999999\" is too large "
	               "(overflows 64 bits)");
	expect_error("txlog:\n  segment_bytes: 16777216TiB\n", "2:18", "too large");
}

static void test_durations(void)
{
	static const struct {
		const char *text;
		uint64_t want;
	} ok[] = {
	    {"500ms", 500},
	    {"0ms", 0},
	    {"15s", 15000},
	    {"2m", 120000},
	    {"1h", 3600000},
	    {"18446744073709551615ms", UINT64_MAX},
	    {"5124095576030h", UINT64_C(5124095576030) * 3600000},
	};
	static const char *const bad[] = {
	    "500", "0",   "1.5s", "1d",  "s",   "10 s", "10S", "ms",  "",
	    "-1s", "+1s", "01s",  "1hr", "1sm", "1Ms",  " 1s", "1s ",
	};
	static const char *const overflow[] = {
	    "18446744073709551616ms",
	    "5124095576031h",
	    "307445734561826m",
	    "18446744073709552s",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		uint64_t v = 12345;
		check_rc(ok[i].text, config_parse_duration_ms(ok[i].text, &v), TRACKD_OK);
		check_u64(ok[i].text, v, ok[i].want);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint64_t v = 12345;
		check_rc(bad[i], config_parse_duration_ms(bad[i], &v), TRACKD_EINVAL);
		check_u64("untouched on error", v, 12345);
	}
	for (size_t i = 0; i < sizeof overflow / sizeof overflow[0]; i++) {
		uint64_t v = 12345;
		check_rc(overflow[i], config_parse_duration_ms(overflow[i], &v), TRACKD_EINVAL);
	}
	expect_message("shutdown_timeout: 30\n",
	               "t.yaml:1:19: shutdown_timeout: expected a duration such as 500ms, 15s, 2m "
	               "or 1h (the unit is required), got \"30\"");
	expect_error("shutdown_timeout: 5124095576031h\n", "1:19", "too large (overflows 64 bits)");
}

/* Each limit at bound-1 / bound / bound+1, and the message names the bound. */
struct bound_case {
	const char *yaml; /* printf format with one %s for the value */
	const char *value;
	const char *message; /* NULL = must load */
};

static void test_bounds(void)
{
	static const struct bound_case cases[] = {
	    {"ingest_contexts: %s\n", "0",
	     "t.yaml:1:18: ingest_contexts: 0 is below the minimum 1"},
	    {"ingest_contexts: %s\n", "1", NULL},
	    {"ingest_contexts: %s\n", "2", NULL},
	    {"ingest_contexts: %s\n", "255", NULL},
	    {"ingest_contexts: %s\n", "256", NULL},
	    {"ingest_contexts: %s\n", "257",
	     "t.yaml:1:18: ingest_contexts: 257 is above the maximum 256"},
	    {"limits:\n  max_nesting_depth: %s\n", "0",
	     "t.yaml:2:22: limits.max_nesting_depth: 0 is below the minimum 1"},
	    {"limits:\n  max_nesting_depth: %s\n", "1", NULL},
	    {"limits:\n  max_nesting_depth: %s\n", "2", NULL},
	    {"limits:\n  max_nesting_depth: %s\n", "63", NULL},
	    {"limits:\n  max_nesting_depth: %s\n", "64", NULL},
	    {"limits:\n  max_nesting_depth: %s\n", "65",
	     "t.yaml:2:22: limits.max_nesting_depth: 65 is above the maximum 64"},
	    {"limits:\n  max_message_bytes: %s\n", "1023",
	     "t.yaml:2:22: limits.max_message_bytes: 1023B is below the minimum 1KiB"},
	    {"limits:\n  max_message_bytes: %s\n", "1KiB", NULL},
	    {"limits:\n  max_message_bytes: %s\n", "1025", NULL},
	    {"limits:\n  max_message_bytes: %s\n", "268435455", NULL},
	    {"limits:\n  max_message_bytes: %s\n", "256MiB", NULL},
	    {"limits:\n  max_message_bytes: %s\n", "268435457",
	     "t.yaml:2:22: limits.max_message_bytes: 268435457B is above the maximum 256MiB"},
	    {"limits:\n  max_sessions: %s\n", "15",
	     "t.yaml:2:17: limits.max_sessions: 15 is below the minimum 16"},
	    {"limits:\n  max_sessions: %s\n", "16", NULL},
	    {"limits:\n  max_sessions: %s\n", "17", NULL},
	    {"limits:\n  max_key_bytes: %s\n", "65537",
	     "t.yaml:2:18: limits.max_key_bytes: 65537B is above the maximum 64KiB"},
	    {"limits:\n  max_key_bytes: %s\n", "64KiB", NULL},
	    {"txlog:\n  fsync_interval: %s\n", "0ms",
	     "t.yaml:2:19: txlog.fsync_interval: 0ms is below the minimum 1ms"},
	    {"txlog:\n  fsync_interval: %s\n", "1ms", NULL},
	    {"txlog:\n  fsync_interval: %s\n", "2ms", NULL},
	    {"txlog:\n  fsync_interval: %s\n", "59999ms", NULL},
	    {"txlog:\n  fsync_interval: %s\n", "1m", NULL},
	    {"txlog:\n  fsync_interval: %s\n", "60001ms",
	     "t.yaml:2:19: txlog.fsync_interval: 60001ms is above the maximum 1m"},
	    {"txlog:\n  segment_bytes: %s\n", "65535",
	     "t.yaml:2:18: txlog.segment_bytes: 65535B is below the minimum 64KiB"},
	    {"txlog:\n  segment_bytes: %s\n", "4GiB", NULL},
	    {"txlog:\n  segment_bytes: %s\n", "4294967297",
	     "t.yaml:2:18: txlog.segment_bytes: 4294967297B is above the maximum 4GiB"},
	    {"socket_mode: %s\n", "0777", NULL},
	    {"socket_mode: %s\n", "01000",
	     "t.yaml:1:14: socket_mode: 1000 is above the maximum 0777"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char yaml[128];
		snprintf(yaml, sizeof yaml, cases[i].yaml, cases[i].value);
		if (cases[i].message) {
			expect_message(yaml, cases[i].message);
		} else {
			struct config c;
			config_defaults(&c, true);
			expect_ok(&c, yaml);
			config_fini(&c);
		}
	}
}

/* Every error class, with the exact position of the offending node. */
static void test_error_positions(void)
{
	/* libyaml syntax errors: its problem mark, 1-based. */
	expect_error("log_level: info: debug\n", "1:16", "mapping values are not allowed");
	expect_error("txlog:\n  fsync: [always\n", "3:1", "did not find expected ',' or ']'");
	expect_error("listen: \"ipc:///x\n", "2:1", "found unexpected end of stream");
	/* libyaml reader errors carry a byte offset only. */
	expect_error("log_level: info\nlisten: \x01\n", "2:9",
	             "control characters are not allowed");
	expect_error("log_level: \xc3\x28\n", "1:12", "invalid trailing UTF-8 octet");

	/* Unknown keys: the key's position, and the nearest valid key. */
	expect_message("log_levl: info\n",
	               "t.yaml:1:1: unknown key \"log_levl\"; did you mean \"log_level\"?");
	expect_message("txlog:\n  fsnyc: always\n",
	               "t.yaml:2:3: unknown key \"txlog.fsnyc\"; did you mean \"txlog.fsync\"?");
	expect_message("limits:\n  max_mesage_bytes: 1MiB\n",
	               "t.yaml:2:3: unknown key \"limits.max_mesage_bytes\"; did you mean "
	               "\"limits.max_message_bytes\"?");
	/* A key under the wrong heading, or missing its heading. */
	expect_message("limits:\n  fsync: never\n",
	               "t.yaml:2:3: unknown key \"limits.fsync\"; did you mean \"txlog.fsync\"?");
	expect_message("segment_bytes: 1GiB\n",
	               "t.yaml:1:1: unknown key \"segment_bytes\"; did you mean "
	               "\"txlog.segment_bytes\"?");
	expect_message("tx_log:\n  fsync: never\n",
	               "t.yaml:1:1: unknown key \"tx_log\"; did you mean \"txlog\"?");
	/* Nothing close: no suggestion. */
	expect_message("colour: blue\n", "t.yaml:1:1: unknown key \"colour\"");
	expect_message("txlog:\n  compression: zstd\n",
	               "t.yaml:2:3: unknown key \"txlog.compression\"");
	expect_error("txlog:\n  \"fsync\\ttab\": 1\n", "2:3",
	             "unknown key \"txlog.fsync\\x09tab\"");
	/* Dotted keys are not a shorthand for nesting. */
	expect_error("txlog.fsync: always\n", "1:1", "write each part as a nested mapping");
	expect_error("limits: {max_key_bytes: 1}\n? [a, b]\n: 1\n", "2:3", "expected a key name");

	/* Duplicates: the second key's position, pointing at the first. */
	expect_message("log_level: info\nlog_level: debug\n",
	               "t.yaml:2:1: duplicate key \"log_level\" (first at line 1, column 1)");
	expect_message("txlog:\n  fsync: never\n  segment_bytes: 1MiB\n  fsync: always\n",
	               "t.yaml:4:3: duplicate key \"txlog.fsync\" (first at line 2, column 3)");
	expect_message("txlog:\n  fsync: never\ntxlog:\n  fsync: always\n",
	               "t.yaml:3:1: duplicate key \"txlog\" (first at line 1, column 1)");
	expect_error("txlog: {fsync: never, fsync: never}\n", "1:23",
	             "duplicate key \"txlog.fsync\"");
	expect_error("\"listen\": ipc:///a\nlisten: ipc:///a\n", "2:1", "duplicate key \"listen\"");

	/* Wrong node type: the value's position. */
	expect_message("txlog: always\n",
	               "t.yaml:1:8: txlog: expected a mapping of txlog.* keys, got \"always\"");
	expect_message("txlog:\n", "t.yaml:1:7: txlog: expected a mapping of txlog.* keys, got an "
	                           "empty value");
	expect_error("limits:\n  - max_key_bytes: 1\n", "2:3",
	             "limits: expected a mapping of "
	             "limits.* keys, got a sequence");
	expect_error("listen:\n  path: /x\n", "2:3", "listen: expected an ipc:// URL");
	expect_error("log_level: [info]\n", "1:12",
	             "log_level: expected one of error, warn, info, "
	             "debug, got a sequence");
	/* Nesting deeper than the table knows. */
	expect_message("limits:\n  max_key_bytes:\n    deeper: 1\n",
	               "t.yaml:3:5: limits.max_key_bytes: expected a size such as 4096, 64KiB or "
	               "4MiB (units B, KiB, MiB, GiB, TiB), got a mapping");
	/* Deep nesting is refused without recursing through it. */
	{
		size_t depth = 20000, n = 0;
		char *deep = malloc(2 * depth + 32);
		n += (size_t)sprintf(deep, "log_level: ");
		memset(deep + n, '[', depth);
		memset(deep + n + depth, ']', depth);
		strcpy(deep + n + 2 * depth, "\n");
		expect_error(deep, "1:12", "got a sequence");
		free(deep);
	}

	/* Bad values: the value's position and what was expected. */
	expect_message("txlog:\n  fsync: sometimes\n",
	               "t.yaml:2:10: txlog.fsync: expected one of always, interval, never, got "
	               "\"sometimes\"");
	expect_message("listen: \"tcp://127.0.0.1:9\"\n",
	               "t.yaml:1:9: listen: expected an ipc:// URL with an absolute socket path, "
	               "such as ipc:///run/trackd/trackd.sock, got \"tcp://127.0.0.1:9\"");
	expect_error("listen: ipc://relative.sock\n", "1:9", "expected an ipc:// URL");
	expect_error("state_dir: var/lib/trackd\n", "1:12", "expected an absolute path");
	expect_error("state_dir:\n", "1:11", "got an empty value");
	expect_error("state_dir: \"/var/\\0lib\"\n", "1:12", "contains a NUL character");
	expect_message("socket_mode: 660\n",
	               "t.yaml:1:14: socket_mode: expected an octal mode with a leading 0, such as "
	               "0660, got \"660\"");
	expect_error("socket_mode: 0689\n", "1:14", "expected an octal mode");
	expect_error("ingest_contexts: 010\n", "1:18", "expected a whole number");
	expect_error("ingest_contexts: 16.0\n", "1:18", "expected a whole number");
	expect_error("ingest_contexts: 99999999999999999999\n", "1:18", "too large");
	expect_error("log_level: verbose\n", "1:12",
	             "expected one of error, warn, info, debug, "
	             "got \"verbose\"");
	{
		char path[300] = "listen: ipc:///";
		memset(path + strlen(path), 's', 120);
		strcat(path, "\n");
		expect_error(path, "1:9",
		             "listen: the socket path is 121 bytes long; the maximum is "
		             "107");
	}

	/* Aliases, anchors, tags, extra documents: refused where they appear. */
	expect_message("log_level: *lvl\n", "t.yaml:1:12: aliases (*lvl) are not allowed");
	expect_message("txlog: &t\n  fsync: never\n", "t.yaml:1:8: anchors (&t) are not allowed");
	expect_error("log_level: &l info\n", "1:12", "anchors (&l) are not allowed");
	expect_error("log_level: !!str info\n", "1:12",
	             "tags (tag:yaml.org,2002:str) are not "
	             "allowed");
	expect_error("log_level: info\n---\nlog_level: debug\n", "2:1", "a second YAML document");

	/* The top level must be a mapping. */
	expect_message("- listen\n", "t.yaml:1:1: expected a mapping of keys at the top level, got "
	                             "a sequence");
	expect_error("\n\n  just text\n", "3:3", "got a scalar");
	expect_error("\"\"\n", "1:1", "got a scalar");
}

static void test_round_trip(void)
{
	struct config c, r;
	config_defaults(&c, true);
	/* Strings that need quoting and escaping to survive YAML. */
	expect_ok(&c,
	          "state_dir: \"/srv/a \\\"b\\\" \\\\c: #d\\t\\x01\\u0085\\x80\\uFFFE\\u2028 ü\"\n"
	          "listen: \"ipc:///tmp/x y: z.sock\"\n"
	          "socket_mode: 0\n"
	          "log_level: warn\n"
	          "shutdown_timeout: 61s\n"
	          "ingest_contexts: 256\n"
	          "limits: {max_message_bytes: 1025, max_records_per_batch: 1, "
	          "max_items_per_record: 18446744073709551615, max_key_bytes: 1, "
	          "max_string_bytes: 3GiB, max_nesting_depth: 64, max_sessions: 1048576}\n"
	          "txlog: {fsync: never, fsync_interval: 1500ms, segment_bytes: 4GiB}\n");
	CHECK_STR_EQ(c.state_dir,
	             "/srv/a \"b\" \\c: #d\t\x01\xc2\x85\xc2\x80\xef\xbf\xbe\xe2\x80\xa8 \xc3\xbc",
	             "%s", "escaped state_dir");
	char *text = printed(&c);
	config_defaults(&r, false);
	expect_ok(&r, text);
	char *again = printed(&r);
	CHECK_STR_EQ(again, text, "%s", "print -> load -> print");
	CHECK_STR_EQ(r.state_dir, c.state_dir, "%s", "round trip state_dir");
	CHECK_STR_EQ(r.listen, c.listen, "%s", "round trip listen");
	check_u64("round trip socket_mode", r.socket_mode, 0);
	check_u64("round trip shutdown", r.shutdown_timeout_ms, 61000);
	check_u64("round trip items", r.limits.max_items_per_record, UINT64_MAX);
	check_u64("round trip fsync", r.txlog.fsync, CONFIG_FSYNC_NEVER);
	check_u64("round trip interval", r.txlog.fsync_interval_ms, 1500);
	CHECK(memcmp(&r.limits, &c.limits, sizeof r.limits) == 0, "round trip limits differ");
	CHECK(strstr(text, "txlog:\n  fsync: never\n") != NULL, "print nests sections:\n%s", text);
	free(text);
	free(again);
	config_fini(&r);

	/* The root defaults too. */
	config_fini(&c);
	config_defaults(&c, true);
	text = printed(&c);
	config_defaults(&r, false);
	expect_ok(&r, text);
	again = printed(&r);
	CHECK_STR_EQ(again, text, "%s", "root defaults round trip");
	free(text);
	free(again);
	config_fini(&r);
	config_fini(&c);
}

static void test_copy(void)
{
	struct config a, b;
	config_defaults(&a, true);
	check_rc("copy", config_copy(&b, &a), TRACKD_OK);
	CHECK(a.listen != b.listen && a.state_dir != b.state_dir && a.log_level != b.log_level,
	      "copy shares strings");
	expect_ok(&b, "listen: ipc:///tmp/other.sock\n");
	CHECK_STR_EQ(a.listen, "ipc:///run/trackd/trackd.sock", "%s",
	             "source untouched by copy's change");
	config_fini(&a);
	CHECK_STR_EQ(b.listen, "ipc:///tmp/other.sock", "%s", "copy outlives source");
	config_fini(&b);
}

static void test_files(void)
{
	struct config c;
	char err[512], dir[] = "/tmp/config_test.XXXXXX", path[256];
	config_defaults(&c, true);

	int rc = config_load_file(&c, "/nonexistent/trackd.yaml", err, sizeof err);
	check_rc("missing file", rc, TRACKD_ENOENT);
	CHECK_STR_EQ(err, "/nonexistent/trackd.yaml: cannot open: No such file or directory", "%s",
	             "missing file message");

	if (!mkdtemp(dir)) {
		CHECK(0, "mkdtemp failed");
		return;
	}
	rc = config_load_file(&c, dir, err, sizeof err);
	check_rc("directory", rc, TRACKD_EIO);
	CHECK(strstr(err, "cannot read") != NULL, "directory message: got \"%s\"", err);

	snprintf(path, sizeof path, "%s/trackd.yaml", dir);
	FILE *f = fopen(path, "w");
	fputs("log_level: debug\ntxlog:\n  fsync: always\n", f);
	fclose(f);
	check_rc("file", config_load_file(&c, path, err, sizeof err), TRACKD_OK);
	CHECK_STR_EQ(c.log_level, "debug", "%s", "file log_level");
	check_u64("file fsync", c.txlog.fsync, CONFIG_FSYNC_ALWAYS);

	/* The file name leads the error. */
	f = fopen(path, "w");
	fputs("log_level: info\ntxlog:\n  fsync: sometimes\n", f);
	fclose(f);
	char want[300];
	snprintf(want, sizeof want, "%s:3:10: txlog.fsync: expected", path);
	check_rc("bad file", config_load_file(&c, path, err, sizeof err), TRACKD_EINVAL);
	CHECK(strncmp(err, want, strlen(want)) == 0,
	      "bad file message: expected \"%s…\", got \"%s\"", want, err);
	CHECK_STR_EQ(c.log_level, "debug", "%s", "bad file leaves config");

	/* An empty file is all defaults (applied on top of what is there). */
	f = fopen(path, "w");
	fclose(f);
	check_rc("empty file", config_load_file(&c, path, err, sizeof err), TRACKD_OK);

	/* Far too large: refused as a whole. */
	f = fopen(path, "w");
	for (int i = 0; i < (1 << 20) / 16 + 1; i++)
		fputs("# padding line.\n", f);
	fclose(f);
	check_rc("huge file", config_load_file(&c, path, err, sizeof err), TRACKD_EINVAL);
	CHECK(strstr(err, "larger than") != NULL, "huge file message: got \"%s\"", err);

	/* NULL errbuf is allowed. */
	check_rc("no errbuf", config_load_file(&c, "/nonexistent/x", NULL, 0), TRACKD_ENOENT);

	unlink(path);
	rmdir(dir);
	config_fini(&c);
}

/* metrics_listen: loopback only, numeric, a port in 1..65535; "" is off. */
static void test_metrics_listen(void)
{
	static const char *const ok[] = {
	    "127.0.0.1:9464", "127.1.2.3:1", "127.0.0.1:65535", "\"[::1]:9464\"", "\"\"",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		struct config cfg;
		char yaml[96];
		config_defaults(&cfg, true);
		snprintf(yaml, sizeof yaml, "metrics_listen: %s\n", ok[i]);
		expect_ok(&cfg, yaml);
		config_fini(&cfg);
	}
	static const char *const bad[] = {
	    "0.0.0.0:9464", "10.0.0.1:9464",   "\"[::]:9464\"",  "127.0.0.1",
	    "127.0.0.1:0",  "127.0.0.1:65536", "localhost:9464", "127.0.0.1:09",
	    ":9464",        "\"[::1]\"",       "128.0.0.1:80",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char yaml[96];
		snprintf(yaml, sizeof yaml, "metrics_listen: %s\n", bad[i]);
		expect_error(yaml, "1:17", "metrics_listen: expected a loopback address and port");
	}
	expect_message("metrics_listen: 0.0.0.0:9464\n",
	               "t.yaml:1:17: metrics_listen: expected a loopback address and port such as "
	               "127.0.0.1:9464 or [::1]:9464 (the endpoint has no authentication), or "
	               "\"\" for off, got \"0.0.0.0:9464\"");
}

struct seen {
	int n;
	char keys[8][64];
	bool reloadable[8];
	char old_value[8][160], new_value[8][160];
};

static int note_change(void *arg, const struct config_change *c)
{
	struct seen *s = arg;
	if (s->n < 8) {
		snprintf(s->keys[s->n], 64, "%s", c->key);
		snprintf(s->old_value[s->n], 160, "%s", c->old_value);
		snprintf(s->new_value[s->n], 160, "%s", c->new_value);
		s->reloadable[s->n] = c->reloadable;
	}
	s->n++;
	return 0;
}

/* The diff a reload logs: each changed key once, with its old and new value and
 * whether it can be applied; copying a key makes the two agree on it. */
static void test_diff(void)
{
	struct config a, b;
	config_defaults(&a, true);
	config_defaults(&b, true);
	struct seen none = {0};
	config_diff(&a, &b, note_change, &none);
	check_u64("no changes", (uint64_t)none.n, 0);
	expect_ok(&b, "log_level: debug\nlisten: ipc:///tmp/x.sock\ntxlog:\n  max_bytes: 1GiB\n"
	              "sinks:\n  wandb:\n    base_url: http://127.0.0.1:1\n");
	struct seen s = {0};
	config_diff(&a, &b, note_change, &s);
	check_u64("changes", (uint64_t)s.n, 4);
	CHECK_STR_EQ(s.keys[0], "listen", "%s", "1st");
	CHECK(!s.reloadable[0], "listen needs a restart");
	CHECK_STR_EQ(s.old_value[0], "\"ipc:///run/trackd/trackd.sock\"", "%s", "old listen");
	CHECK_STR_EQ(s.new_value[0], "\"ipc:///tmp/x.sock\"", "%s", "new listen");
	CHECK_STR_EQ(s.keys[1], "log_level", "%s", "2nd");
	CHECK(s.reloadable[1], "log_level reloads");
	CHECK_STR_EQ(s.keys[2], "txlog.max_bytes", "%s", "3rd");
	CHECK_STR_EQ(s.new_value[2], "1GiB", "%s", "new budget");
	CHECK(s.reloadable[2], "the budget reloads");
	CHECK_STR_EQ(s.keys[3], "sinks.wandb.base_url", "%s", "4th");
	CHECK(s.reloadable[3], "base_url reloads");
	check_rc("copy", config_copy_key(&a, &b, "log_level"), TRACKD_OK);
	check_rc("copy", config_copy_key(&a, &b, "txlog.max_bytes"), TRACKD_OK);
	check_rc("unknown key", config_copy_key(&a, &b, "nope"), TRACKD_ENOENT);
	struct seen after = {0};
	config_diff(&a, &b, note_change, &after);
	check_u64("left after copying two", (uint64_t)after.n, 2);
	CHECK_STR_EQ(after.keys[0], "listen", "%s", "left");
	config_fini(&a);
	config_fini(&b);
}

static void test_reference(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_print_reference(f);
	fclose(f);
	const char *want[] = {
	    "  listen (ipc URL, socket path at most 107 bytes)\n",
	    ("default: ipc:///run/trackd/trackd.sock; with --user: ipc://{runtime}/trackd.sock"
	     "\n"),
	    "  txlog.fsync (enum: always|interval|never)\n",
	    "  txlog.fsync_interval (duration, 1ms..1m)\n      ",
	    "  limits.max_sessions (integer, at least 16)\n",
	    "  limits.max_message_bytes (size, 1KiB..256MiB)\n",
	    "  socket_mode (octal mode, at most 0777)\n",
	    "      default: 64MiB\n",
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		CHECK(strstr(buf, want[i]) != NULL,
		      "reference: expected to contain \"%s\", got:\n%s", want[i], buf);
	free(buf);
}

/* Every wrong key is reported, one line each, as a compiler does; a key after a
 * wrong one still applies nowhere (the file is refused as a whole). */
static void test_all_errors_reported(void)
{
	expect_message("log_levl: info\ntxlog:\n  fsync: sometimes\n  segment_bytes: 1GiB\n"
	               "colour: blue\n",
	               "t.yaml:1:1: unknown key \"log_levl\"; did you mean \"log_level\"?\n"
	               "t.yaml:3:10: txlog.fsync: expected one of always, interval, never, got "
	               "\"sometimes\"\n"
	               "t.yaml:5:1: unknown key \"colour\"");
	/* Bounded: 20 errors, then a note that reading stopped. */
	char yaml[2048] = "", err[8192];
	for (int i = 0; i < 30; i++)
		snprintf(yaml + strlen(yaml), sizeof yaml - strlen(yaml), "bad%02d: 1\n", i);
	struct config c;
	CHECK(config_defaults(&c, true) == 0, "defaults");
	CHECK(config_load_buffer(&c, "t.yaml", yaml, strlen(yaml), err, sizeof err) ==
	          TRACKD_EINVAL,
	      "30 errors refused");
	int lines = 1;
	for (const char *p = err; *p; p++)
		lines += *p == '\n';
	CHECK(lines == 21 && strstr(err, "t.yaml:20:1: unknown key \"bad19\"") &&
	          !strstr(err, "bad20") && strstr(err, "reading stopped"),
	      "%d lines: %s", lines, err);
	config_fini(&c);
}

int main(void)
{
	test_defaults_root();
	test_defaults_user();
	test_empty();
	test_full_file();
	test_log_levels_match_logger();
	test_sizes();
	test_durations();
	test_bounds();
	test_error_positions();
	test_all_errors_reported();
	test_round_trip();
	test_copy();
	test_files();
	test_reference();
	test_metrics_listen();
	test_diff();
	return CHECK_SUMMARY("config_test");
}
