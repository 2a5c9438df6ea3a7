#include "sysmetrics.h"

#include "fs.h"
#include "metadata.h"
#include "nvml.h"
#include "procfs.h"

#include "clock.h"
#include "errors.h"
#include "log.h"
#include "varint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define TEXT_MAX (256u << 10) /* /proc/net/dev, diskstats: big machines have many lines */
#define KEY_MAX  256          /* a key longer than this (a long path) is not sent */

/* A machine-wide source that can fail and then stops (logged once). */
enum source { SRC_MEMINFO, SRC_NETDEV, SRC_DISKSTATS, SRC_CHILDREN, SRC_COUNT };
static const char *const source_names[SRC_COUNT] = {
    "/proc/meminfo", "/proc/net/dev", "/proc/diskstats", "/proc/<pid>/task/<tid>/children"};

struct device {
	unsigned major, minor;
	char name[64];
	uint64_t read_sectors, write_sectors; /* this pass */
	bool read_ok;
};

/* What the sampler keeps about a run across passes. */
struct run_view {
	char id[72];
	uint64_t seen_pass;
	uint64_t net_recv0, net_sent0;
	bool net_base;
	uint64_t dev_read0[SYSMETRICS_MAX_DEVICES], dev_write0[SYSMETRICS_MAX_DEVICES];
	bool dev_base[SYSMETRICS_MAX_DEVICES];
	/* The run's bases from before this agent process (same boot only), taken
	 * over as each counter is first read; bases_dirty: a base was taken anew,
	 * so the next sample carries the set. */
	size_t n_loaded;
	struct sysmetrics_base loaded[SYSMETRICS_MAX_BASES];
	bool bases_dirty;
	char cwd[1024];        /* the first process's working directory, "" unknown */
	int cwd_dev;           /* index into devices, -1 none */
	double cpus;           /* CPU capacity: the cgroup's cpu.max, else online CPUs */
	uint64_t mem_limit;    /* cgroup memory.max, 0 none */
	char mem_cgroup[1024]; /* the cgroup dir whose memory.max is mem_limit */
	bool limits_read;
};

/* A process's /proc files, kept open across passes: opening them costs most
 * of a pass (path lookups in /proc), a pread at offset 0 regenerates their
 * text. A descriptor names the process it was opened for: once that one is
 * gone, reads fail (ESRCH) even if its pid is reused, and the entry goes. */
struct pid_files {
	int32_t pid;
	int stat_fd, children_fd; /* -1: not open */
	uint64_t seen_pass;
};

/* A process's CPU ticks at the previous pass, to compute its rate. */
struct pid_ticks {
	int32_t pid;
	uint64_t start_ticks, ticks;
};

struct sysmetrics {
	struct sysmetrics_options opts;
	char *nvml_library, *cgroup_root, *state_dir;
	char boot_id[SYSMETRICS_BOOT_ID_BYTES]; /* "" unknown: bases are never taken over */
	nvml *gpu;
	struct nvml_sample *gpu_samples; /* one per device */

	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
	bool woken; /* the live runs changed */

	uint64_t pass_no;
	bool source_off[SRC_COUNT];
	struct run_view **views;
	size_t n_views;
	struct device devices[SYSMETRICS_MAX_DEVICES];
	size_t n_devices;
	int state_dev; /* index into devices, -1 none */

	struct pid_files files[SYSMETRICS_MAX_OPEN_PIDS];
	size_t n_files;

	struct pid_ticks *prev, *cur;
	size_t n_prev, n_cur, cap_prev, cap_cur;
	int64_t prev_mono_us;
	long clk_tck;
	long page_size;
	double online_cpus;

	/* Scratch of one run's pass: its process tree and the record's items. */
	int32_t tree[SYSMETRICS_MAX_TREE];
	size_t n_tree;
	Trackd__V1__Item items[SYSMETRICS_MAX_ITEMS];
	Trackd__V1__Value values[SYSMETRICS_MAX_ITEMS];
	Trackd__V1__Item *item_ptrs[SYSMETRICS_MAX_ITEMS];
	char keys[SYSMETRICS_MAX_ITEMS][KEY_MAX];
	size_t n_items;
	size_t n_shared; /* items [0, n_shared) are the pass's machine-wide ones */
	/* ...packed once per pass and attached to every run's record as encoded
	 * `items` entries (protobuf-c writes a message's unknown fields verbatim):
	 * packing them 32 times was a fifth of a pass (P12). A reader decodes them
	 * as items like the others. */
	ProtobufCMessageUnknownField shared_fields[SYSMETRICS_MAX_ITEMS];
	uint8_t *shared_bytes;
	size_t shared_cap;
	char text[TEXT_MAX];

	_Atomic uint64_t passes, samples, submit_failures, source_failures, cpu_us;
};

static void source_fail(struct sysmetrics *sm, enum source s, const char *why)
{
	if (sm->source_off[s])
		return;
	sm->source_off[s] = true;
	atomic_fetch_add(&sm->source_failures, 1);
	log_warn("system metrics: %s: %s; the metrics from it stop", source_names[s], why);
}

/* ---- items ------------------------------------------------------------------ */

static void add(struct sysmetrics *sm, double v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add(struct sysmetrics *sm, double v, const char *fmt, ...)
{
	if (sm->n_items >= SYSMETRICS_MAX_ITEMS)
		return;
	size_t i = sm->n_items;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(sm->keys[i], KEY_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= KEY_MAX)
		return;
	trackd__v1__item__init(&sm->items[i]);
	trackd__v1__value__init(&sm->values[i]);
	sm->values[i].kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
	sm->values[i].double_value = v;
	sm->items[i].key = sm->keys[i];
	sm->items[i].value = &sm->values[i];
	sm->item_ptrs[i] = &sm->items[i];
	sm->n_items++;
}

/* ---- devices ---------------------------------------------------------------- */

/* The block device holding `path` (index into devices), adding it; -1 when its
 * filesystem has no block device in /proc/diskstats (tmpfs, overlay). */
static int device_of(struct sysmetrics *sm, const char *path, const char *diskstats)
{
	struct stat st;
	if (!diskstats || stat(path, &st) != 0)
		return -1;
	unsigned ma = major(st.st_dev), mi = minor(st.st_dev);
	for (size_t i = 0; i < sm->n_devices; i++)
		if (sm->devices[i].major == ma && sm->devices[i].minor == mi)
			return (int)i;
	if (sm->n_devices >= SYSMETRICS_MAX_DEVICES)
		return -1;
	struct device *d = &sm->devices[sm->n_devices];
	uint64_t r, w;
	if (!procfs_parse_diskstats(diskstats, ma, mi, d->name, sizeof d->name, &r, &w))
		return -1;
	d->major = ma;
	d->minor = mi;
	return (int)sm->n_devices++;
}

static void read_devices(struct sysmetrics *sm, const char *diskstats)
{
	for (size_t i = 0; i < sm->n_devices; i++) {
		struct device *d = &sm->devices[i];
		char name[64];
		d->read_ok = diskstats && procfs_parse_diskstats(
		                              diskstats, d->major, d->minor, name, sizeof name,
		                              &d->read_sectors, &d->write_sectors);
	}
}

static void add_disk_usage(struct sysmetrics *sm, const char *path)
{
	struct statvfs v;
	if (!path[0] || statvfs(path, &v) != 0 || v.f_blocks == 0)
		return;
	double used = (double)(v.f_blocks - v.f_bfree) * (double)v.f_frsize;
	double avail = (double)v.f_bavail * (double)v.f_frsize;
	/* As df: used over what an unprivileged user could fill. */
	add(sm, used + avail > 0 ? used / (used + avail) * 100 : 0, "disk.%s.usagePercent", path);
	add(sm, used / (1024.0 * 1024 * 1024), "disk.%s.usageGB", path);
}

/* ---- processes ---------------------------------------------------------------- */

static bool in_tree(const struct sysmetrics *sm, int32_t pid)
{
	for (size_t i = 0; i < sm->n_tree; i++)
		if (sm->tree[i] == pid)
			return true;
	return false;
}

static void tree_add(struct sysmetrics *sm, int32_t pid)
{
	if (pid > 0 && sm->n_tree < SYSMETRICS_MAX_TREE && !in_tree(sm, pid))
		sm->tree[sm->n_tree++] = pid;
}

static struct pid_files *pid_files_of(struct sysmetrics *sm, int32_t pid)
{
	for (size_t i = 0; i < sm->n_files; i++)
		if (sm->files[i].pid == pid)
			return &sm->files[i];
	if (sm->n_files >= SYSMETRICS_MAX_OPEN_PIDS)
		return NULL; /* the rest are opened and closed each pass */
	struct pid_files *f = &sm->files[sm->n_files++];
	*f = (struct pid_files){.pid = pid, .stat_fd = -1, .children_fd = -1};
	return f;
}

static void pid_files_close(struct pid_files *f)
{
	if (f->stat_fd >= 0)
		close(f->stat_fd);
	if (f->children_fd >= 0)
		close(f->children_fd);
	f->stat_fd = f->children_fd = -1;
}

/* Reads /proc/<pid>/<name> (name: "stat", or "task/<pid>/children") into
 * buf through the cached descriptor *fd: the length, or -1 (errno set). */
static long read_cached(int32_t pid, const char *name, int *fd, char *buf, size_t cap)
{
	if (*fd < 0) {
		char path[96];
		snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
		*fd = open(path, O_RDONLY | O_CLOEXEC);
		if (*fd < 0)
			return -1;
	}
	ssize_t n = pread(*fd, buf, cap - 1, 0);
	if (n < 0) {
		int e = errno;
		close(*fd);
		*fd = -1;
		errno = e;
		return -1;
	}
	buf[n] = '\0';
	return (long)n;
}

static long read_pid_file(struct sysmetrics *sm, int32_t pid, bool children, char *buf, size_t cap)
{
	char name[64];
	if (children)
		snprintf(name, sizeof name, "task/%d/children", pid);
	else
		snprintf(name, sizeof name, "stat");
	struct pid_files *f = pid_files_of(sm, pid);
	if (f) {
		f->seen_pass = sm->pass_no;
		return read_cached(pid, name, children ? &f->children_fd : &f->stat_fd, buf, cap);
	}
	int fd = -1;
	long n = read_cached(pid, name, &fd, buf, cap);
	if (fd >= 0)
		close(fd);
	return n;
}

/* Appends pid's children to the tree: those of its main thread, as W&B's
 * monitor follows them (a training job's dataloader workers and subprocesses
 * are forked by it); reading every thread's list would cost a directory walk
 * per process and pass. */
static void add_children(struct sysmetrics *sm, int32_t pid)
{
	if (sm->source_off[SRC_CHILDREN])
		return;
	char text[4096];
	if (read_pid_file(sm, pid, true, text, sizeof text) < 0) {
		/* Gone meanwhile, or a kernel without CONFIG_PROC_CHILDREN. */
		char self[64];
		snprintf(self, sizeof self, "/proc/self/task/%d/children", (int)gettid());
		if (errno == ENOENT && access(self, F_OK) != 0)
			source_fail(sm, SRC_CHILDREN,
			            "not provided by this kernel: child processes are not counted");
		return;
	}
	for (char *p = text; *p;) {
		char *end;
		long c = strtol(p, &end, 10);
		if (end == p)
			break;
		tree_add(sm, (int32_t)c);
		p = end;
	}
}

static int cmp_pid_ticks(const void *a, const void *b)
{
	const struct pid_ticks *x = a, *y = b;
	return (x->pid > y->pid) - (x->pid < y->pid);
}

static const struct pid_ticks *prev_ticks(const struct sysmetrics *sm, int32_t pid)
{
	struct pid_ticks key = {.pid = pid};
	if (!sm->n_prev) /* the first pass: no array yet (bsearch wants one) */
		return NULL;
	return bsearch(&key, sm->prev, sm->n_prev, sizeof key, cmp_pid_ticks);
}

static void remember_ticks(struct sysmetrics *sm, int32_t pid, uint64_t start, uint64_t ticks)
{
	if (sm->n_cur == sm->cap_cur) {
		size_t cap = sm->cap_cur ? sm->cap_cur * 2 : 256;
		struct pid_ticks *p = realloc(sm->cur, cap * sizeof *p);
		if (!p)
			return; /* its rate is taken from its start next pass */
		sm->cur = p;
		sm->cap_cur = cap;
	}
	sm->cur[sm->n_cur++] = (struct pid_ticks){.pid = pid, .start_ticks = start, .ticks = ticks};
}

/* ---- cgroup limits -------------------------------------------------------------- */

/* The strictest cpu.max and memory.max from the process's cgroup up to the root. */
static void read_limits(struct sysmetrics *sm, struct run_view *v, int32_t pid)
{
	v->limits_read = true;
	v->cpus = sm->online_cpus;
	/* Not sm->text: it holds this pass's /proc/diskstats. */
	char path[1200], rel[1024], text[256], groups[4096];
	snprintf(path, sizeof path, "/proc/%d/cgroup", pid);
	if (fs_read_prefix(path, groups, sizeof groups) < 0 ||
	    !procfs_parse_cgroup(groups, rel, sizeof rel))
		return;
	for (;;) {
		snprintf(path, sizeof path, "%s%s%s/cpu.max", sm->cgroup_root,
		         rel[0] == '/' ? "" : "/", strcmp(rel, "/") == 0 ? "" : rel);
		if (fs_read_prefix(path, text, sizeof text) > 0) {
			double c = procfs_parse_cpu_max(text);
			if (c > 0 && c < v->cpus)
				v->cpus = c;
		}
		snprintf(path, sizeof path, "%s%s%s/memory.max", sm->cgroup_root,
		         rel[0] == '/' ? "" : "/", strcmp(rel, "/") == 0 ? "" : rel);
		if (fs_read_prefix(path, text, sizeof text) > 0) {
			uint64_t m = procfs_parse_bytes(text);
			if (m && (!v->mem_limit || m < v->mem_limit)) {
				v->mem_limit = m;
				snprintf(v->mem_cgroup, sizeof v->mem_cgroup, "%.*s",
				         (int)(strlen(path) - strlen("/memory.max")), path);
			}
		}
		char *slash = strrchr(rel, '/');
		if (!slash || strcmp(rel, "/") == 0)
			break;
		if (slash == rel)
			snprintf(rel, sizeof rel, "/");
		else
			*slash = '\0';
	}
}

/* ---- one pass ------------------------------------------------------------------- */

static struct run_view *view_of(struct sysmetrics *sm, const struct sysmetrics_run *r)
{
	for (size_t i = 0; i < sm->n_views; i++)
		if (strcmp(sm->views[i]->id, r->id) == 0)
			return sm->views[i];
	struct run_view **p = realloc(sm->views, (sm->n_views + 1) * sizeof *p);
	if (!p)
		return NULL;
	sm->views = p;
	struct run_view *v = calloc(1, sizeof *v);
	if (!v)
		return NULL;
	snprintf(v->id, sizeof v->id, "%s", r->id);
	v->cwd_dev = -1;
	if (sm->boot_id[0] && strcmp(r->boot_id, sm->boot_id) == 0) {
		v->n_loaded = r->n_bases < SYSMETRICS_MAX_BASES ? r->n_bases : SYSMETRICS_MAX_BASES;
		memcpy(v->loaded, r->bases, v->n_loaded * sizeof *v->loaded);
	}
	sm->views[sm->n_views++] = v;
	return v;
}

static struct run_view *find_view(struct sysmetrics *sm, const char *id)
{
	for (size_t i = 0; i < sm->n_views; i++)
		if (strcmp(sm->views[i]->id, id) == 0)
			return sm->views[i];
	return NULL;
}

/* The base of counter `key` now at `current`: the run's earlier one if it has
 * one that the counter has not gone below, else `current` (a new base, to be
 * sent). */
static uint64_t base_of(struct run_view *v, uint64_t current, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static uint64_t base_of(struct run_view *v, uint64_t current, const char *fmt, ...)
{
	char key[SYSMETRICS_BASE_KEY];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(key, sizeof key, fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < v->n_loaded; i++)
		if (strcmp(v->loaded[i].key, key) == 0 && v->loaded[i].value <= current)
			return v->loaded[i].value;
	v->bases_dirty = true;
	return current;
}

/* The view's bases in use, into the record's storage. */
struct bases_out {
	Trackd__V1__CounterBase bases[SYSMETRICS_MAX_BASES];
	Trackd__V1__CounterBase *ptrs[SYSMETRICS_MAX_BASES];
	char keys[SYSMETRICS_MAX_BASES][SYSMETRICS_BASE_KEY];
	size_t n;
};

static void base_out(struct bases_out *o, uint64_t value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void base_out(struct bases_out *o, uint64_t value, const char *fmt, ...)
{
	if (o->n == SYSMETRICS_MAX_BASES)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(o->keys[o->n], sizeof o->keys[o->n], fmt, ap);
	va_end(ap);
	Trackd__V1__CounterBase *b = &o->bases[o->n];
	trackd__v1__counter_base__init(b);
	b->key = o->keys[o->n];
	b->has_value = true;
	b->value = value;
	o->ptrs[o->n] = b;
	o->n++;
}

/* The run's environment, once per run and agent process (a restart sends it
 * again: the store keeps the newest). */
static void submit_metadata(struct sysmetrics *sm, const struct sysmetrics_run *r)
{
	struct buf b;
	buf_init(&b, METADATA_MAX_BYTES);
	if (metadata_json(r->pids[0], r->start_time_us, sm->state_dir, sm->gpu, &b) == 0 &&
	    buf_putc(&b, '\0') == 0) {
		Trackd__V1__RunMetadata md = TRACKD__V1__RUN_METADATA__INIT;
		md.json = b.data;
		Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
		rec.run_id = (char *)r->id;
		rec.body_case = TRACKD__V1__RECORD__BODY_METADATA;
		rec.metadata = &md;
		if (sm->opts.submit(sm->opts.arg, &rec) != 0)
			atomic_fetch_add(&sm->submit_failures, 1);
	}
	buf_fini(&b);
}

struct machine {
	bool mem_ok, net_ok;
	uint64_t mem_total, mem_avail, net_recv, net_sent;
	double uptime_s, elapsed_s;
	int64_t wall_us;
	const char *diskstats;
};

/* The keys every live run gets the same values of in one pass: the machine's
 * memory, the state dir's filesystem, every GPU's device values. */
static void add_shared(struct sysmetrics *sm, const struct machine *m)
{
	sm->n_items = 0;
	if (m->mem_ok && m->mem_total)
		add(sm, (double)(m->mem_total - m->mem_avail) / (double)m->mem_total * 100,
		    "memory_percent");
	add_disk_usage(sm, sm->state_dir);
	for (unsigned g = 0; g < nvml_count(sm->gpu); g++) {
		const struct nvml_sample *s = &sm->gpu_samples[g];
		if (s->lost)
			continue;
		if (s->has[NVML_M_UTIL]) {
			add(sm, s->util_gpu, "gpu.%u.gpu", g);
			add(sm, s->util_memory, "gpu.%u.memory", g);
		}
		if (s->has[NVML_M_MEMORY]) {
			add(sm, s->mem_total > 0 ? s->mem_used / s->mem_total * 100 : 0,
			    "gpu.%u.memoryAllocated", g);
			add(sm, s->mem_used, "gpu.%u.memoryAllocatedBytes", g);
		}
		if (s->has[NVML_M_TEMP])
			add(sm, s->temp, "gpu.%u.temp", g);
		if (s->has[NVML_M_POWER])
			add(sm, s->power_w, "gpu.%u.powerWatts", g);
		if (s->has[NVML_M_POWER_LIMIT])
			add(sm, s->power_limit_w, "gpu.%u.enforcedPowerLimitWatts", g);
		if (s->has[NVML_M_POWER] && s->has[NVML_M_POWER_LIMIT] && s->power_limit_w > 0)
			add(sm, s->power_w / s->power_limit_w * 100, "gpu.%u.powerPercent", g);
		if (s->has[NVML_M_SM_CLOCK])
			add(sm, s->sm_clock, "gpu.%u.smClock", g);
		if (s->has[NVML_M_MEM_CLOCK])
			add(sm, s->mem_clock, "gpu.%u.memoryClock", g);
		if (s->has[NVML_M_FAN])
			add(sm, s->fan, "gpu.%u.fanSpeed", g);
		if (s->has[NVML_M_ECC_CORR])
			add(sm, s->ecc_corrected, "gpu.%u.correctedMemoryErrors", g);
		if (s->has[NVML_M_ECC_UNCORR])
			add(sm, s->ecc_uncorrected, "gpu.%u.uncorrectedMemoryErrors", g);
	}
	sm->n_shared = sm->n_items;
	/* protobuf-c writes an unknown field's tag, then its data as is: the
	 * data of a length-delimited one starts with its length. */
	size_t total = 0;
	for (size_t i = 0; i < sm->n_shared; i++)
		total += VARINT_MAX_BYTES + trackd__v1__item__get_packed_size(&sm->items[i]);
	if (total > sm->shared_cap) {
		uint8_t *p = realloc(sm->shared_bytes, total);
		if (!p) {
			sm->n_shared = 0; /* the runs' records go without them */
			sm->n_items = 0;
			return;
		}
		sm->shared_bytes = p;
		sm->shared_cap = total;
	}
	size_t off = 0;
	for (size_t i = 0; i < sm->n_shared; i++) {
		size_t item = trackd__v1__item__get_packed_size(&sm->items[i]);
		size_t head = varint_put(sm->shared_bytes + off, item);
		trackd__v1__item__pack(&sm->items[i], sm->shared_bytes + off + head);
		sm->shared_fields[i] = (ProtobufCMessageUnknownField){
		    .tag = 2, /* SystemStats.items */
		    .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
		    .len = head + item,
		    .data = sm->shared_bytes + off,
		};
		off += head + item;
	}
}

static void sample_run(struct sysmetrics *sm, const struct sysmetrics_run *r,
                       const struct machine *m)
{
	bool first = !find_view(sm, r->id);
	struct run_view *v = view_of(sm, r);
	if (!v)
		return;
	if (first && r->n_pids > 0)
		submit_metadata(sm, r);
	v->seen_pass = sm->pass_no;
	sm->n_items = sm->n_shared; /* the machine's keys, made once per pass */
	sm->n_tree = 0;
	/* The run's processes: the attached ones still the same process, then
	 * their descendants, breadth first. */
	for (size_t i = 0; i < r->n_pids && i < SYSMETRICS_MAX_PIDS; i++)
		tree_add(sm, r->pids[i]);
	double cpu_rate = 0, rss = 0, threads = 0;
	size_t attached = sm->n_tree;
	for (size_t i = 0; i < sm->n_tree; i++) {
		int32_t pid = sm->tree[i];
		struct procfs_stat st;
		char text[1024];
		if (read_pid_file(sm, pid, false, text, sizeof text) <= 0 ||
		    !procfs_parse_stat(text, &st))
			continue; /* gone: no longer counts */
		if (i < attached && r->start_ticks[i] && st.start_ticks != r->start_ticks[i])
			continue; /* a reused pid, not the run's process */
		add_children(sm, pid);
		uint64_t ticks = st.utime + st.stime;
		const struct pid_ticks *p = prev_ticks(sm, pid);
		if (p && p->start_ticks == st.start_ticks && m->elapsed_s > 0) {
			cpu_rate += (double)(ticks - p->ticks) / (double)sm->clk_tck / m->elapsed_s;
		} else {
			/* First seen: its average since it started. */
			double age = m->uptime_s - (double)st.start_ticks / (double)sm->clk_tck;
			if (age > 0.01)
				cpu_rate += (double)ticks / (double)sm->clk_tck / age;
		}
		remember_ticks(sm, pid, st.start_ticks, ticks);
		rss += (double)st.rss_pages * (double)sm->page_size;
		threads += (double)st.threads;
	}
	if (!v->limits_read && r->n_pids > 0)
		read_limits(sm, v, r->pids[0]);
	if (!v->cwd[0] && r->n_pids > 0) {
		char link[64];
		snprintf(link, sizeof link, "/proc/%d/cwd", r->pids[0]);
		ssize_t n = readlink(link, v->cwd, sizeof v->cwd - 1);
		v->cwd[n > 0 ? n : 0] = '\0';
		if (n <= 0 && r->cwd[0] == '/')
			snprintf(v->cwd, sizeof v->cwd, "%s", r->cwd);
		if (v->cwd[0])
			v->cwd_dev = device_of(sm, v->cwd, m->diskstats);
	}
	double cpus = v->cpus > 0 ? v->cpus : sm->online_cpus;
	add(sm, cpu_rate / cpus * 100, "cpu");
	add(sm, threads, "proc.cpu.threads");
	add(sm, rss / (1024.0 * 1024), "proc.memory.rssMB");
	if (v->mem_limit) {
		char mpath[1100], text[64];
		snprintf(mpath, sizeof mpath, "%s/memory.current", v->mem_cgroup);
		uint64_t current =
		    fs_read_prefix(mpath, text, sizeof text) > 0 ? procfs_parse_bytes(text) : 0;
		add(sm, rss / (double)v->mem_limit * 100, "proc.memory.percent");
		add(sm,
		    (double)(v->mem_limit > current ? v->mem_limit - current : 0) / (1024.0 * 1024),
		    "proc.memory.availableMB");
	} else if (m->mem_ok && m->mem_total) {
		add(sm, rss / (double)m->mem_total * 100, "proc.memory.percent");
		add(sm, (double)m->mem_avail / (1024.0 * 1024), "proc.memory.availableMB");
	}
	if (v->cwd[0] && strcmp(v->cwd, sm->state_dir) != 0)
		add_disk_usage(sm, v->cwd);
	for (size_t i = 0; i < sm->n_devices; i++) {
		const struct device *d = &sm->devices[i];
		if (!d->read_ok || ((int)i != sm->state_dev && (int)i != v->cwd_dev))
			continue;
		/* A counter below its base: the device was reset or replaced. */
		if (v->dev_base[i] &&
		    (d->read_sectors < v->dev_read0[i] || d->write_sectors < v->dev_write0[i])) {
			v->dev_base[i] = false;
			v->n_loaded = 0;
		}
		if (!v->dev_base[i]) {
			v->dev_base[i] = true;
			v->dev_read0[i] = base_of(v, d->read_sectors, "disk.%s.in", d->name);
			v->dev_write0[i] = base_of(v, d->write_sectors, "disk.%s.out", d->name);
		}
		add(sm, (double)(d->read_sectors - v->dev_read0[i]) * 512 / (1024.0 * 1024),
		    "disk.%s.in", d->name);
		add(sm, (double)(d->write_sectors - v->dev_write0[i]) * 512 / (1024.0 * 1024),
		    "disk.%s.out", d->name);
	}
	if (m->net_ok) {
		if (v->net_base && (m->net_recv < v->net_recv0 || m->net_sent < v->net_sent0)) {
			v->net_base = false; /* an interface went away: its bytes left the sum */
			v->n_loaded = 0;
		}
		if (!v->net_base) {
			v->net_base = true;
			v->net_recv0 = base_of(v, m->net_recv, "network.recv");
			v->net_sent0 = base_of(v, m->net_sent, "network.sent");
		}
		add(sm, (double)(m->net_sent - v->net_sent0), "network.sent");
		add(sm, (double)(m->net_recv - v->net_recv0), "network.recv");
	}
	for (unsigned g = 0; g < nvml_count(sm->gpu); g++) {
		const struct nvml_sample *s = &sm->gpu_samples[g];
		if (s->lost)
			continue;
		/* The run's own share of the device, not the device's total again. */
		if (s->has[NVML_M_PROCESSES]) {
			double bytes = 0;
			bool any = false;
			for (size_t k = 0; k < s->n_processes; k++) {
				if (in_tree(sm, (int32_t)s->processes[k].pid)) {
					bytes += (double)s->processes[k].used_bytes;
					any = true;
				}
			}
			if (any)
				add(sm, bytes, "gpu.process.%u.memoryAllocatedBytes", g);
		}
	}
	Trackd__V1__SystemStats stats = TRACKD__V1__SYSTEM_STATS__INIT;
	stats.has_time_us = true;
	stats.time_us = m->wall_us;
	stats.n_items = sm->n_items - sm->n_shared;
	stats.items = sm->item_ptrs + sm->n_shared;
	stats.base.n_unknown_fields = (unsigned)sm->n_shared;
	stats.base.unknown_fields = sm->shared_fields;
	struct bases_out bo = {.n = 0};
	if (v->bases_dirty) {
		if (v->net_base) {
			base_out(&bo, v->net_sent0, "network.sent");
			base_out(&bo, v->net_recv0, "network.recv");
		}
		for (size_t i = 0; i < sm->n_devices; i++) {
			if (!v->dev_base[i] || ((int)i != sm->state_dev && (int)i != v->cwd_dev))
				continue;
			base_out(&bo, v->dev_read0[i], "disk.%s.in", sm->devices[i].name);
			base_out(&bo, v->dev_write0[i], "disk.%s.out", sm->devices[i].name);
		}
		stats.boot_id = sm->boot_id;
		stats.bases = bo.ptrs;
		stats.n_bases = bo.n;
	}
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = (char *)r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_STATS;
	rec.stats = &stats;
	if (sm->opts.submit(sm->opts.arg, &rec) == 0) {
		atomic_fetch_add(&sm->samples, 1);
		v->bases_dirty = false;
	} else {
		atomic_fetch_add(&sm->submit_failures, 1);
	}
}

void sysmetrics_pass(sysmetrics *sm, const struct sysmetrics_run *runs, size_t n)
{
	struct timespec c0, c1;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	sm->pass_no++;
	struct machine m = {.wall_us = clock_wall_us()};
	int64_t mono = clock_mono_us();
	m.elapsed_s = sm->prev_mono_us ? (double)(mono - sm->prev_mono_us) / 1e6 : 0;
	sm->prev_mono_us = mono;
	char up[128];
	if (fs_read_prefix("/proc/uptime", up, sizeof up) > 0)
		m.uptime_s = strtod(up, NULL);
	if (!sm->source_off[SRC_MEMINFO]) {
		m.mem_ok = fs_read_prefix("/proc/meminfo", sm->text, sizeof sm->text) > 0 &&
		           procfs_parse_meminfo(sm->text, &m.mem_total, &m.mem_avail);
		if (!m.mem_ok)
			source_fail(sm, SRC_MEMINFO, "unreadable or without MemTotal/MemAvailable");
	}
	if (!sm->source_off[SRC_NETDEV]) {
		m.net_ok = fs_read_prefix("/proc/net/dev", sm->text, sizeof sm->text) > 0 &&
		           procfs_parse_net_dev(sm->text, &m.net_recv, &m.net_sent);
		if (!m.net_ok)
			source_fail(sm, SRC_NETDEV, "unreadable or malformed");
	}
	/* diskstats last: its text stays in sm->text for the devices. */
	if (!sm->source_off[SRC_DISKSTATS]) {
		if (fs_read_prefix("/proc/diskstats", sm->text, sizeof sm->text) > 0)
			m.diskstats = sm->text;
		else
			source_fail(sm, SRC_DISKSTATS, "unreadable");
	}
	if (sm->state_dev < 0 && sm->pass_no == 1)
		sm->state_dev = device_of(sm, sm->state_dir, m.diskstats);
	read_devices(sm, m.diskstats);
	uint64_t failures = 0;
	for (unsigned g = 0; g < nvml_count(sm->gpu); g++)
		nvml_sample(sm->gpu, g, &sm->gpu_samples[g], &failures);
	atomic_fetch_add(&sm->source_failures, failures);

	sm->n_cur = 0;
	if (n)
		add_shared(sm, &m);
	for (size_t i = 0; i < n && i < SYSMETRICS_MAX_RUNS; i++)
		sample_run(sm, &runs[i], &m);
	/* This pass's ticks become the previous ones, sorted for lookups. */
	if (sm->n_cur) /* qsort wants an array, even of none */
		qsort(sm->cur, sm->n_cur, sizeof *sm->cur, cmp_pid_ticks);
	struct pid_ticks *t = sm->prev;
	sm->prev = sm->cur;
	sm->n_prev = sm->n_cur;
	size_t cap = sm->cap_prev;
	sm->cap_prev = sm->cap_cur;
	sm->cur = t;
	sm->cap_cur = cap;
	sm->n_cur = 0;
	/* Runs that ended leave (their counters start afresh if they resume). */
	size_t kept = 0;
	for (size_t i = 0; i < sm->n_views; i++) {
		if (sm->views[i]->seen_pass == sm->pass_no)
			sm->views[kept++] = sm->views[i];
		else
			free(sm->views[i]);
	}
	sm->n_views = kept;
	/* Processes not seen in this pass: their files close. */
	kept = 0;
	for (size_t i = 0; i < sm->n_files; i++) {
		if (sm->files[i].seen_pass == sm->pass_no)
			sm->files[kept++] = sm->files[i];
		else
			pid_files_close(&sm->files[i]);
	}
	sm->n_files = kept;
	if (n)
		atomic_fetch_add(&sm->passes, 1);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
	int64_t us = (c1.tv_sec - c0.tv_sec) * 1000000 + (c1.tv_nsec - c0.tv_nsec) / 1000;
	atomic_fetch_add(&sm->cpu_us, (uint64_t)(us > 0 ? us : 0));
}

/* ---- thread and lifecycle ------------------------------------------------------- */

/* Whether `runs` holds one the sampler has not sampled yet. */
static bool has_new_run(const struct sysmetrics *sm, const struct sysmetrics_run *runs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool known = false;
		for (size_t k = 0; k < sm->n_views && !known; k++)
			known = strcmp(sm->views[k]->id, runs[i].id) == 0;
		if (!known)
			return true;
	}
	return false;
}

static void *sampler_main(void *arg)
{
	struct sysmetrics *sm = arg;
	if (sm->opts.wait_ready)
		sm->opts.wait_ready(sm->opts.arg);
	pthread_mutex_lock(&sm->mu);
	struct timespec deadline = clock_deadline_ms(CLOCK_REALTIME, (int)sm->opts.interval_ms);
	while (!sm->stopping) {
		bool timed_out = false;
		while (!sm->stopping && !sm->woken && !timed_out)
			timed_out =
			    pthread_cond_timedwait(&sm->cv, &sm->mu, &deadline) == ETIMEDOUT;
		if (sm->stopping)
			break;
		sm->woken = false;
		pthread_mutex_unlock(&sm->mu);
		struct sysmetrics_run *runs = NULL;
		size_t n = 0;
		bool got = sm->opts.live_runs(sm->opts.arg, &runs, &n) == 0;
		/* A wake-up samples only for a new run; the interval stays. */
		bool now = timed_out || (got && has_new_run(sm, runs, n));
		if (now && got && n > 0) {
			sysmetrics_pass(sm, runs, n);
		} else if (now && sm->n_views) {
			/* Idle: forget the runs and the process table. */
			sysmetrics_pass(sm, NULL, 0);
			sm->prev_mono_us = 0;
		}
		free(runs);
		pthread_mutex_lock(&sm->mu);
		if (now)
			deadline = clock_deadline_ms(CLOCK_REALTIME, (int)sm->opts.interval_ms);
	}
	pthread_mutex_unlock(&sm->mu);
	return NULL;
}

void sysmetrics_wake(sysmetrics *sm)
{
	if (!sm)
		return;
	pthread_mutex_lock(&sm->mu);
	sm->woken = true;
	pthread_cond_signal(&sm->cv);
	pthread_mutex_unlock(&sm->mu);
}

int sysmetrics_new(const struct sysmetrics_options *opts, sysmetrics **out)
{
	struct sysmetrics *sm = calloc(1, sizeof *sm);
	if (!sm)
		return TRACKD_ENOMEM;
	sm->opts = *opts;
	sm->nvml_library = strdup(opts->nvml_library ? opts->nvml_library : "");
	sm->cgroup_root = strdup(opts->cgroup_root ? opts->cgroup_root : "/sys/fs/cgroup");
	sm->state_dir = strdup(opts->state_dir ? opts->state_dir : "/");
	if (!sm->nvml_library || !sm->cgroup_root || !sm->state_dir) {
		sysmetrics_free(sm);
		return TRACKD_ENOMEM;
	}
	/* A trailing slash would make the cgroup paths "//x". */
	size_t len = strlen(sm->cgroup_root);
	while (len > 1 && sm->cgroup_root[len - 1] == '/')
		sm->cgroup_root[--len] = '\0';
	sm->state_dev = -1;
	if (fs_read_prefix("/proc/sys/kernel/random/boot_id", sm->boot_id, sizeof sm->boot_id) > 0)
		sm->boot_id[strcspn(sm->boot_id, "\n")] = '\0';
	else
		sm->boot_id[0] = '\0';
	sm->clk_tck = sysconf(_SC_CLK_TCK);
	if (sm->clk_tck <= 0)
		sm->clk_tck = 100;
	sm->page_size = sysconf(_SC_PAGESIZE);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	sm->online_cpus = cpus > 0 ? (double)cpus : 1;
	pthread_mutex_init(&sm->mu, NULL);
	pthread_cond_init(&sm->cv, NULL);
	if (sm->nvml_library[0]) {
		char why[512];
		sm->gpu = nvml_open(sm->nvml_library, why, sizeof why);
		if (!sm->gpu) {
			atomic_fetch_add(&sm->source_failures, 1);
			log_info("system metrics: no GPU metrics (%s)", why);
		} else {
			sm->gpu_samples = calloc(nvml_count(sm->gpu) ? nvml_count(sm->gpu) : 1,
			                         sizeof *sm->gpu_samples);
			if (!sm->gpu_samples) {
				sysmetrics_free(sm);
				return TRACKD_ENOMEM;
			}
			log_info("system metrics: NVML loaded from %s, %u GPUs", sm->nvml_library,
			         nvml_count(sm->gpu));
		}
	}
	*out = sm;
	return TRACKD_OK;
}

int sysmetrics_start(sysmetrics *sm)
{
	if (pthread_create(&sm->thread, NULL, sampler_main, sm) != 0)
		return TRACKD_ESYS;
	/* Named, so its CPU time can be read apart (/proc/<pid>/task/<tid>:
	 * benchmark P12, top -H). */
	pthread_setname_np(sm->thread, "sysmetrics");
	sm->started = true;
	return TRACKD_OK;
}

void sysmetrics_stop(sysmetrics *sm)
{
	if (!sm || !sm->started)
		return;
	pthread_mutex_lock(&sm->mu);
	sm->stopping = true;
	pthread_cond_broadcast(&sm->cv);
	pthread_mutex_unlock(&sm->mu);
	pthread_join(sm->thread, NULL);
	sm->started = false;
}

void sysmetrics_free(sysmetrics *sm)
{
	if (!sm)
		return;
	sysmetrics_stop(sm);
	nvml_close(sm->gpu);
	free(sm->gpu_samples);
	free(sm->shared_bytes);
	for (size_t i = 0; i < sm->n_files; i++)
		pid_files_close(&sm->files[i]);
	for (size_t i = 0; i < sm->n_views; i++)
		free(sm->views[i]);
	free(sm->views);
	free(sm->prev);
	free(sm->cur);
	free(sm->nvml_library);
	free(sm->cgroup_root);
	free(sm->state_dir);
	pthread_mutex_destroy(&sm->mu);
	pthread_cond_destroy(&sm->cv);
	free(sm);
}

void sysmetrics_get_stats(sysmetrics *sm, struct sysmetrics_stats *out)
{
	memset(out, 0, sizeof *out);
	if (!sm)
		return;
	out->passes = atomic_load(&sm->passes);
	out->samples = atomic_load(&sm->samples);
	out->submit_failures = atomic_load(&sm->submit_failures);
	out->source_failures = atomic_load(&sm->source_failures);
	out->cpu_us = atomic_load(&sm->cpu_us);
	out->gpus = nvml_count(sm->gpu);
}
