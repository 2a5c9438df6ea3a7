/*
 * A fake NVML for the system-metrics tests (no GPU needed): exports the
 * functions the agent's sampler calls (agent/sysmetrics/nvml.c), driven by a
 * small text file named by $FAKE_NVML_STATE, read again whenever it changes:
 *
 *   gpu UTIL MEMUTIL TOTAL USED TEMP POWER_MW LIMIT_MW SM_MHZ MEM_MHZ FAN ECC_C ECC_U LOST
 *   proc GPU PID BYTES
 *
 * one `gpu` line per device (index = order), `proc` lines for the running
 * compute processes; LOST 1 makes every call on that device return
 * NVML_ERROR_GPU_IS_LOST. No file: no GPU. Built three ways: complete,
 * -DFAKE_NVML_OMIT_REQUIRED (no nvmlDeviceGetCount_v2: unusable) and
 * -DFAKE_NVML_OMIT_OPTIONAL (no nvmlDeviceGetPowerUsage: power keys off).
 * Re-reading only on a change keeps the fake cheap: benchmark P12 measures
 * the caller, not this.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_GPUS  64
#define MAX_PROCS 4096

struct gpu {
	unsigned util, memutil;
	unsigned long long total, used;
	unsigned temp, power_mw, limit_mw, sm, mem, fan;
	unsigned long long ecc_c, ecc_u;
	int lost;
};
struct proc {
	unsigned gpu, pid;
	unsigned long long bytes;
};

static struct gpu gpus[MAX_GPUS];
static unsigned n_gpus;
static struct proc procs[MAX_PROCS];
static unsigned n_procs;
static struct timespec loaded_mtime;
static long long loaded_size = -1;

/* Re-reads the state file when its mtime or size changed. */
static void load(void)
{
	const char *path = getenv("FAKE_NVML_STATE");
	struct stat st;
	if (!path || stat(path, &st) != 0) {
		n_gpus = n_procs = 0;
		loaded_size = -1;
		return;
	}
	if (st.st_size == loaded_size && st.st_mtim.tv_sec == loaded_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == loaded_mtime.tv_nsec)
		return;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	n_gpus = n_procs = 0;
	char line[512];
	while (fgets(line, sizeof line, f)) {
		struct gpu g;
		struct proc p;
		if (n_gpus < MAX_GPUS &&
		    sscanf(line, "gpu %u %u %llu %llu %u %u %u %u %u %u %llu %llu %d", &g.util,
		           &g.memutil, &g.total, &g.used, &g.temp, &g.power_mw, &g.limit_mw, &g.sm,
		           &g.mem, &g.fan, &g.ecc_c, &g.ecc_u, &g.lost) == 13)
			gpus[n_gpus++] = g;
		else if (n_procs < MAX_PROCS &&
		         sscanf(line, "proc %u %u %llu", &p.gpu, &p.pid, &p.bytes) == 3)
			procs[n_procs++] = p;
	}
	fclose(f);
	loaded_size = st.st_size;
	loaded_mtime = st.st_mtim;
}

typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct {
	unsigned gpu, memory;
} nvmlUtilization_t;
typedef struct {
	unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
	unsigned pid;
	unsigned long long usedGpuMemory;
	unsigned gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

enum { OK = 0, INVALID_ARGUMENT = 2, INSUFFICIENT_SIZE = 7, GPU_IS_LOST = 15 };

/* Device handles are indexes + 1 (never NULL). */
static struct gpu *dev(nvmlDevice_t d, int *rc)
{
	size_t i = (size_t)d - 1;
	load();
	if (i >= n_gpus) {
		*rc = INVALID_ARGUMENT;
		return NULL;
	}
	if (gpus[i].lost) {
		*rc = GPU_IS_LOST;
		return NULL;
	}
	*rc = OK;
	return &gpus[i];
}

#define DEV(d)                                                                                     \
	int rc_;                                                                                   \
	struct gpu *g = dev(d, &rc_);                                                              \
	if (!g)                                                                                    \
	return rc_

int nvmlInit_v2(void);
int nvmlShutdown(void);
int nvmlDeviceGetHandleByIndex_v2(unsigned i, nvmlDevice_t *d);
const char *nvmlErrorString(int rc);
int nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u);
int nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m);
int nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned *t);
int nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned *mw);
int nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned *mhz);
int nvmlDeviceGetFanSpeed(nvmlDevice_t d, unsigned *pct);
int nvmlDeviceGetMemoryErrorCounter(nvmlDevice_t d, int type, int counter, int loc,
                                    unsigned long long *n);
int nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned *count,
                                            nvmlProcessInfo_t *infos);
int nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned len);
int nvmlSystemGetDriverVersion(char *v, unsigned len);
int nvmlSystemGetCudaDriverVersion_v2(int *v);

int nvmlInit_v2(void)
{
	load();
	return OK;
}
int nvmlShutdown(void)
{
	return OK;
}
#ifndef FAKE_NVML_OMIT_REQUIRED
int nvmlDeviceGetCount_v2(unsigned *n);
int nvmlDeviceGetCount_v2(unsigned *n)
{
	load();
	*n = n_gpus;
	return OK;
}
#endif
int nvmlDeviceGetHandleByIndex_v2(unsigned i, nvmlDevice_t *d)
{
	load();
	if (i >= n_gpus)
		return INVALID_ARGUMENT;
	*d = (nvmlDevice_t)(size_t)(i + 1);
	return OK;
}
const char *nvmlErrorString(int rc)
{
	return rc == GPU_IS_LOST ? "GPU is lost" : rc == OK ? "Success" : "fake error";
}
int nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u)
{
	DEV(d);
	u->gpu = g->util;
	u->memory = g->memutil;
	return OK;
}
int nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m)
{
	DEV(d);
	m->total = g->total;
	m->used = g->used;
	m->free = g->total - g->used;
	return OK;
}
int nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned *t)
{
	DEV(d);
	*t = g->temp;
	return OK;
}
#ifndef FAKE_NVML_OMIT_OPTIONAL
int nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned *mw);
int nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned *mw)
{
	DEV(d);
	*mw = g->power_mw;
	return OK;
}
#endif
int nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned *mw)
{
	DEV(d);
	*mw = g->limit_mw;
	return OK;
}
int nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned *mhz)
{
	DEV(d);
	*mhz = type == 1 ? g->sm : g->mem;
	return OK;
}
int nvmlDeviceGetFanSpeed(nvmlDevice_t d, unsigned *pct)
{
	DEV(d);
	*pct = g->fan;
	return OK;
}
int nvmlDeviceGetMemoryErrorCounter(nvmlDevice_t d, int type, int counter, int loc,
                                    unsigned long long *n)
{
	DEV(d);
	*n = type == 0 ? g->ecc_c : g->ecc_u;
	return OK;
}
int nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned *count,
                                            nvmlProcessInfo_t *infos)
{
	DEV(d);
	unsigned index = (unsigned)((size_t)d - 1), k = 0;
	for (unsigned i = 0; i < n_procs; i++) {
		if (procs[i].gpu != index)
			continue;
		if (k < *count)
			infos[k] = (nvmlProcessInfo_t){.pid = procs[i].pid,
			                               .usedGpuMemory = procs[i].bytes};
		k++;
	}
	int rc = k > *count ? INSUFFICIENT_SIZE : OK;
	*count = k;
	return rc;
}
int nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned len)
{
	DEV(d);
	snprintf(name, len, "Fake GPU %u", (unsigned)((size_t)d - 1));
	return OK;
}
int nvmlSystemGetDriverVersion(char *v, unsigned len)
{
	snprintf(v, len, "550.54.15");
	return OK;
}
int nvmlSystemGetCudaDriverVersion_v2(int *v)
{
	*v = 12040;
	return OK;
}
