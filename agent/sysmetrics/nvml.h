/*
 * nvml.h — the few NVML calls the system-metrics sampler makes, through
 * libnvidia-ml loaded at run time (dlopen): no build-time dependency on the
 * NVIDIA driver, and a machine without one simply has no GPUs.
 *
 * nvml_open() loads the library and calls nvmlInit_v2. The library must export
 * the required symbols (nvmlInit_v2, nvmlShutdown, nvmlDeviceGetCount_v2,
 * nvmlDeviceGetHandleByIndex_v2): without one of them it is not used at all.
 * Every other function is optional: a missing symbol turns off that metric
 * only. nvml_sample() reads one device: each metric whose call fails is turned
 * off for that device for the rest of the agent's life (as W&B's sidecar
 * does: a call that failed once keeps failing, and retrying costs time every
 * pass); NVML_ERROR_GPU_IS_LOST turns off the whole device. Each turning-off
 * is logged once and counted in `failures`.
 *
 * Threading: one thread (the sampler's). Ownership: the nvml struct is the
 * caller's; nvml_close unloads the library.
 */
#ifndef TRACKD_SYSMETRICS_NVML_H
#define TRACKD_SYSMETRICS_NVML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NVML_MAX_GPUS      64   /* devices sampled; more are ignored (logged) */
#define NVML_MAX_PROCESSES 1024 /* running processes read per device and pass */

/* One per metric of a device, in the order of the W&B keys (nvml.c). */
enum nvml_metric {
	NVML_M_UTIL,        /* gpu, memory */
	NVML_M_MEMORY,      /* memoryAllocated, memoryAllocatedBytes */
	NVML_M_TEMP,        /* temp */
	NVML_M_POWER,       /* powerWatts */
	NVML_M_POWER_LIMIT, /* enforcedPowerLimitWatts */
	NVML_M_SM_CLOCK,    /* smClock */
	NVML_M_MEM_CLOCK,   /* memoryClock */
	NVML_M_FAN,         /* fanSpeed */
	NVML_M_ECC_CORR,    /* correctedMemoryErrors */
	NVML_M_ECC_UNCORR,  /* uncorrectedMemoryErrors */
	NVML_M_PROCESSES,   /* the running compute processes (gpu.process.*) */
	NVML_M_COUNT
};

struct nvml_process {
	uint32_t pid;
	uint64_t used_bytes;
};

/* One device's values of one pass; `has[m]` says which were read. */
struct nvml_sample {
	bool lost; /* off for good (lost, or every metric failed) */
	bool has[NVML_M_COUNT];
	double util_gpu, util_memory;
	double mem_total, mem_used;
	double temp, power_w, power_limit_w, sm_clock, mem_clock, fan;
	double ecc_corrected, ecc_uncorrected;
	size_t n_processes;
	struct nvml_process processes[NVML_MAX_PROCESSES];
};

typedef struct nvml nvml;

/* Loads `library` (a path or a soname such as "libnvidia-ml.so.1") and
 * initialises it. NULL when it cannot be used (not installed, a required
 * symbol missing, init failing): the reason is in `why`. */
nvml *nvml_open(const char *library, char *why, size_t whylen);
void nvml_close(nvml *n);

/* Devices found at open (at most NVML_MAX_GPUS). */
unsigned nvml_count(const nvml *n);

/* Reads device `i` into *out. Failures are handled as above; counted in
 * *failures (incremented once per metric turned off). */
void nvml_sample(nvml *n, unsigned i, struct nvml_sample *out, uint64_t *failures);

/* Inventory for run metadata; "" when unknown. */
void nvml_device_name(nvml *n, unsigned i, char *out, size_t len);
void nvml_driver_version(nvml *n, char *out, size_t len);
/* Total memory of device i in bytes; false when unknown. */
bool nvml_memory_total(nvml *n, unsigned i, uint64_t *out);
/* CUDA driver version as "12.4", "" when unknown. */
void nvml_cuda_version(nvml *n, char *out, size_t len);

#endif
