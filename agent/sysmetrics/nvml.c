#include "nvml.h"

#include "log.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NVML's C ABI, declared here (Debian ships no nvml.h): only what is called.
 * Layouts as in NVIDIA's nvml.h (nvmlMemory_t v1, nvmlProcessInfo_t v2). */
typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct {
	unsigned int gpu, memory;
} nvmlUtilization_t;
typedef struct {
	unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
	unsigned int pid;
	unsigned long long usedGpuMemory;
	unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

enum {
	NVML_SUCCESS = 0,
	NVML_ERROR_INSUFFICIENT_SIZE = 7,
	NVML_ERROR_GPU_IS_LOST = 15,
	NVML_TEMPERATURE_GPU = 0,
	NVML_CLOCK_SM = 1,
	NVML_CLOCK_MEM = 2,
	NVML_MEMORY_ERROR_TYPE_CORRECTED = 0,
	NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1,
	NVML_VOLATILE_ECC = 0,
	NVML_MEMORY_LOCATION_DEVICE_MEMORY = 2,
};
/* usedGpuMemory when the driver cannot tell (no permission, MIG). */
#define NVML_VALUE_NOT_AVAILABLE 0xffffffffffffffffull

struct nvml {
	void *lib;
	unsigned count;
	nvmlDevice_t dev[NVML_MAX_GPUS];
	bool lost[NVML_MAX_GPUS];
	bool off[NVML_MAX_GPUS][NVML_M_COUNT];
	nvmlProcessInfo_t procs[NVML_MAX_PROCESSES];

	nvmlReturn_t (*init)(void);
	nvmlReturn_t (*shutdown)(void);
	nvmlReturn_t (*get_count)(unsigned int *);
	nvmlReturn_t (*get_handle)(unsigned int, nvmlDevice_t *);
	const char *(*error_string)(nvmlReturn_t);
	nvmlReturn_t (*utilization)(nvmlDevice_t, nvmlUtilization_t *);
	nvmlReturn_t (*memory_info)(nvmlDevice_t, nvmlMemory_t *);
	nvmlReturn_t (*temperature)(nvmlDevice_t, int, unsigned int *);
	nvmlReturn_t (*power_usage)(nvmlDevice_t, unsigned int *);
	nvmlReturn_t (*power_limit)(nvmlDevice_t, unsigned int *);
	nvmlReturn_t (*clock_info)(nvmlDevice_t, int, unsigned int *);
	nvmlReturn_t (*fan_speed)(nvmlDevice_t, unsigned int *);
	nvmlReturn_t (*ecc_counter)(nvmlDevice_t, int, int, int, unsigned long long *);
	nvmlReturn_t (*processes)(nvmlDevice_t, unsigned int *, nvmlProcessInfo_t *);
	nvmlReturn_t (*name)(nvmlDevice_t, char *, unsigned int);
	nvmlReturn_t (*driver_version)(char *, unsigned int);
	nvmlReturn_t (*cuda_version)(int *);
};

/* Which function each metric calls, for messages. */
static const char *const metric_calls[NVML_M_COUNT] = {
    [NVML_M_UTIL] = "nvmlDeviceGetUtilizationRates",
    [NVML_M_MEMORY] = "nvmlDeviceGetMemoryInfo",
    [NVML_M_TEMP] = "nvmlDeviceGetTemperature",
    [NVML_M_POWER] = "nvmlDeviceGetPowerUsage",
    [NVML_M_POWER_LIMIT] = "nvmlDeviceGetEnforcedPowerLimit",
    [NVML_M_SM_CLOCK] = "nvmlDeviceGetClockInfo",
    [NVML_M_MEM_CLOCK] = "nvmlDeviceGetClockInfo",
    [NVML_M_FAN] = "nvmlDeviceGetFanSpeed",
    [NVML_M_ECC_CORR] = "nvmlDeviceGetMemoryErrorCounter",
    [NVML_M_ECC_UNCORR] = "nvmlDeviceGetMemoryErrorCounter",
    [NVML_M_PROCESSES] = "nvmlDeviceGetComputeRunningProcesses_v3",
};

static const char *errstr(nvml *n, nvmlReturn_t rc)
{
	static const char unknown[] = "NVML error";
	const char *s = n->error_string ? n->error_string(rc) : NULL;
	return s ? s : unknown;
}

/* ISO C has no cast from void * to a function pointer: LOAD copies the bytes. */
static void *sym(void *lib, const char *name)
{
	dlerror();
	return dlsym(lib, name);
}

#define LOAD(field, name)                                                                          \
	do {                                                                                       \
		void *p_ = sym(n->lib, name);                                                      \
		memcpy(&n->field, &p_, sizeof p_);                                                 \
	} while (0)

nvml *nvml_open(const char *library, char *why, size_t whylen)
{
	snprintf(why, whylen, "%s", "");
	if (!library || !*library) {
		snprintf(why, whylen, "no NVML library configured");
		return NULL;
	}
	nvml *n = calloc(1, sizeof *n);
	if (!n) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	n->lib = dlopen(library, RTLD_NOW | RTLD_LOCAL);
	if (!n->lib) {
		const char *e = dlerror();
		snprintf(why, whylen, "%s", e ? e : "cannot load");
		free(n);
		return NULL;
	}
	static const char *const required[] = {"nvmlInit_v2", "nvmlShutdown",
	                                       "nvmlDeviceGetCount_v2",
	                                       "nvmlDeviceGetHandleByIndex_v2"};
	LOAD(init, required[0]);
	LOAD(shutdown, required[1]);
	LOAD(get_count, required[2]);
	LOAD(get_handle, required[3]);
	bool req[] = {n->init != NULL, n->shutdown != NULL, n->get_count != NULL,
	              n->get_handle != NULL};
	for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
		if (!req[i]) {
			snprintf(why, whylen, "%s does not export %s", library, required[i]);
			dlclose(n->lib);
			free(n);
			return NULL;
		}
	}
	LOAD(error_string, "nvmlErrorString");
	LOAD(utilization, "nvmlDeviceGetUtilizationRates");
	LOAD(memory_info, "nvmlDeviceGetMemoryInfo");
	LOAD(temperature, "nvmlDeviceGetTemperature");
	LOAD(power_usage, "nvmlDeviceGetPowerUsage");
	LOAD(power_limit, "nvmlDeviceGetEnforcedPowerLimit");
	LOAD(clock_info, "nvmlDeviceGetClockInfo");
	LOAD(fan_speed, "nvmlDeviceGetFanSpeed");
	LOAD(ecc_counter, "nvmlDeviceGetMemoryErrorCounter");
	LOAD(processes, "nvmlDeviceGetComputeRunningProcesses_v3");
	LOAD(name, "nvmlDeviceGetName");
	LOAD(driver_version, "nvmlSystemGetDriverVersion");
	LOAD(cuda_version, "nvmlSystemGetCudaDriverVersion_v2");
	nvmlReturn_t rc = n->init();
	if (rc != NVML_SUCCESS) {
		snprintf(why, whylen, "nvmlInit_v2: %s (%d)", errstr(n, rc), rc);
		dlclose(n->lib);
		free(n);
		return NULL;
	}
	unsigned count = 0;
	if ((rc = n->get_count(&count)) != NVML_SUCCESS) {
		snprintf(why, whylen, "nvmlDeviceGetCount_v2: %s (%d)", errstr(n, rc), rc);
		n->shutdown();
		dlclose(n->lib);
		free(n);
		return NULL;
	}
	if (count > NVML_MAX_GPUS) {
		log_warn("system metrics: %u GPUs, only the first %d are sampled (NVML_MAX_GPUS)",
		         count, NVML_MAX_GPUS);
		count = NVML_MAX_GPUS;
	}
	for (unsigned i = 0; i < count; i++) {
		if ((rc = n->get_handle(i, &n->dev[i])) != NVML_SUCCESS) {
			log_warn("system metrics: GPU %u: nvmlDeviceGetHandleByIndex_v2: %s; not "
			         "sampled",
			         i, errstr(n, rc));
			n->lost[i] = true;
		}
	}
	n->count = count;
	/* A missing optional symbol: that metric is off on every device, said once. */
	bool opt[NVML_M_COUNT] = {
	    [NVML_M_UTIL] = n->utilization != NULL,
	    [NVML_M_MEMORY] = n->memory_info != NULL,
	    [NVML_M_TEMP] = n->temperature != NULL,
	    [NVML_M_POWER] = n->power_usage != NULL,
	    [NVML_M_POWER_LIMIT] = n->power_limit != NULL,
	    [NVML_M_SM_CLOCK] = n->clock_info != NULL,
	    [NVML_M_MEM_CLOCK] = n->clock_info != NULL,
	    [NVML_M_FAN] = n->fan_speed != NULL,
	    [NVML_M_ECC_CORR] = n->ecc_counter != NULL,
	    [NVML_M_ECC_UNCORR] = n->ecc_counter != NULL,
	    [NVML_M_PROCESSES] = n->processes != NULL,
	};
	for (int m = 0; m < NVML_M_COUNT; m++) {
		if (opt[m])
			continue;
		if (m == 0 || strcmp(metric_calls[m], metric_calls[m - 1]) != 0)
			log_warn("system metrics: %s does not export %s: its GPU metrics are off",
			         library, metric_calls[m]);
		for (unsigned i = 0; i < NVML_MAX_GPUS; i++)
			n->off[i][m] = true;
	}
	return n;
}

void nvml_close(nvml *n)
{
	if (!n)
		return;
	n->shutdown();
	dlclose(n->lib);
	free(n);
}

unsigned nvml_count(const nvml *n)
{
	return n ? n->count : 0;
}

/* A failed call: the device is lost, or this one metric goes off. */
static void failed(nvml *n, unsigned i, enum nvml_metric m, nvmlReturn_t rc, uint64_t *failures)
{
	if (rc == NVML_ERROR_GPU_IS_LOST) {
		n->lost[i] = true;
		(*failures)++;
		log_warn("system metrics: GPU %u is lost (%s): its metrics stop", i, errstr(n, rc));
		return;
	}
	n->off[i][m] = true;
	(*failures)++;
	log_warn("system metrics: GPU %u: %s failed: %s (%d); that metric stops for this GPU", i,
	         metric_calls[m], errstr(n, rc), rc);
}

void nvml_sample(nvml *n, unsigned i, struct nvml_sample *out, uint64_t *failures)
{
	memset(out->has, 0, sizeof out->has);
	out->n_processes = 0;
	out->lost = n->lost[i];
	nvmlDevice_t d = n->dev[i];
	nvmlReturn_t rc;
	unsigned v;
	/* Each metric: skip when off; on failure turn it off (or lose the device). */
#define TRY(m, call, on_ok)                                                                        \
	do {                                                                                       \
		if (n->lost[i] || n->off[i][m])                                                    \
			break;                                                                     \
		if ((rc = (call)) == NVML_SUCCESS) {                                               \
			out->has[m] = true;                                                        \
			on_ok;                                                                     \
		} else {                                                                           \
			failed(n, i, m, rc, failures);                                             \
		}                                                                                  \
	} while (0)
	nvmlUtilization_t u;
	TRY(NVML_M_UTIL, n->utilization(d, &u),
	    (out->util_gpu = u.gpu, out->util_memory = u.memory));
	nvmlMemory_t mem;
	TRY(NVML_M_MEMORY, n->memory_info(d, &mem),
	    (out->mem_total = (double)mem.total, out->mem_used = (double)mem.used));
	TRY(NVML_M_TEMP, n->temperature(d, NVML_TEMPERATURE_GPU, &v), out->temp = v);
	TRY(NVML_M_POWER, n->power_usage(d, &v), out->power_w = v / 1000.0);
	TRY(NVML_M_POWER_LIMIT, n->power_limit(d, &v), out->power_limit_w = v / 1000.0);
	TRY(NVML_M_SM_CLOCK, n->clock_info(d, NVML_CLOCK_SM, &v), out->sm_clock = v);
	TRY(NVML_M_MEM_CLOCK, n->clock_info(d, NVML_CLOCK_MEM, &v), out->mem_clock = v);
	TRY(NVML_M_FAN, n->fan_speed(d, &v), out->fan = v);
	unsigned long long c;
	TRY(NVML_M_ECC_CORR,
	    n->ecc_counter(d, NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_VOLATILE_ECC,
	                   NVML_MEMORY_LOCATION_DEVICE_MEMORY, &c),
	    out->ecc_corrected = (double)c);
	TRY(NVML_M_ECC_UNCORR,
	    n->ecc_counter(d, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC,
	                   NVML_MEMORY_LOCATION_DEVICE_MEMORY, &c),
	    out->ecc_uncorrected = (double)c);
	unsigned np = NVML_MAX_PROCESSES;
	if (!n->lost[i] && !n->off[i][NVML_M_PROCESSES]) {
		rc = n->processes(d, &np, n->procs);
		/* More processes than we read: the first NVML_MAX_PROCESSES count. */
		if (rc == NVML_ERROR_INSUFFICIENT_SIZE)
			np = 0;
		if (rc == NVML_SUCCESS || rc == NVML_ERROR_INSUFFICIENT_SIZE) {
			out->has[NVML_M_PROCESSES] = true;
			for (unsigned k = 0; k < np && k < NVML_MAX_PROCESSES; k++) {
				if (n->procs[k].usedGpuMemory == NVML_VALUE_NOT_AVAILABLE)
					continue;
				out->processes[out->n_processes].pid = n->procs[k].pid;
				out->processes[out->n_processes++].used_bytes =
				    n->procs[k].usedGpuMemory;
			}
		} else {
			failed(n, i, NVML_M_PROCESSES, rc, failures);
		}
	}
#undef TRY
	out->lost = n->lost[i];
}

void nvml_device_name(nvml *n, unsigned i, char *out, size_t len)
{
	out[0] = '\0';
	if (n && i < n->count && !n->lost[i] && n->name &&
	    n->name(n->dev[i], out, (unsigned)len) != NVML_SUCCESS)
		out[0] = '\0';
}

bool nvml_memory_total(nvml *n, unsigned i, uint64_t *out)
{
	nvmlMemory_t m;
	if (!n || i >= n->count || n->lost[i] || !n->memory_info ||
	    n->memory_info(n->dev[i], &m) != NVML_SUCCESS)
		return false;
	*out = m.total;
	return true;
}

void nvml_driver_version(nvml *n, char *out, size_t len)
{
	out[0] = '\0';
	if (n && n->driver_version && n->driver_version(out, (unsigned)len) != NVML_SUCCESS)
		out[0] = '\0';
}

void nvml_cuda_version(nvml *n, char *out, size_t len)
{
	out[0] = '\0';
	int v = 0;
	if (n && n->cuda_version && n->cuda_version(&v) == NVML_SUCCESS && v > 0)
		snprintf(out, len, "%d.%d", v / 1000, (v % 1000) / 10);
}
