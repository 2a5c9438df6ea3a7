/*
 * spool_file.h — batches on disk while the agent is away (ARCHITECTURE
 * contract 2): the file format, and this process's own spool file.
 *
 * File: <spool_dir>/<agent>/<session id in hex>.spool, one per process
 * (session), where <agent> is 16 hex digits of a hash of the agent's URL: a
 * spool holds records for the agent its process was talking to, and only a
 * client of that agent delivers it (a test agent on a temporary socket must
 * never receive the records of the user's real runs, nor the reverse). It is a
 * sequence of frames `u32 length | u32 CRC32C | Request bytes` (little-endian;
 * the Request is exactly what the sender would send: envelope with session id
 * and seq, then the records). Frames are appended in seq order and
 * fdatasync'd before the batches leave memory, so a spooled batch survives the
 * process. The owner holds an exclusive flock on the file for as long as it
 * lives (it is created under a temporary name, locked, then renamed, so no
 * other process ever sees it unlocked while its owner is alive); a file that
 * can be locked has no owner left, and is the replay's (replay.h).
 *
 * This process's file: spilled into when the buffer is full and the agent is
 * unreachable (the run layer decides: run.c), read back and popped by the
 * sender (spooled frames are the oldest unacknowledged batches, so they go
 * before the batches in memory), emptied whenever all of it is acknowledged,
 * and at td_finish deleted when nothing in it is unacknowledged, else left
 * (with the lock released by close).
 *
 * No thread of its own. Functions marked _locked run with the run's mu held;
 * tdi_spool_read_head runs without it (only the sender reads, and frames before
 * write_off never change). Errors: a failed spill returns TD_ERR_FULL with
 * run->spool.error saying why (messages are for people and may be cut).
 */
#ifndef TRACKD_CLIENT_SPOOL_FILE_H
#define TRACKD_CLIENT_SPOOL_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

struct td_run;

#define TDI_SPOOL_SUFFIX            ".spool"
#define TDI_DEFAULT_MAX_SPOOL_BYTES ((uint64_t)1 << 30)
/* Spool frame header: u32 length, u32 CRC32C of the Request bytes (LE). */
#define TDI_SPOOL_FRAME_HEADER 8u

/* This process's spool file. Spooled frames are the oldest
 * unacknowledged batches, in seq order, from read_off to write_off; frames
 * before read_off are acknowledged. The file is created (and locked) at the
 * first spill, emptied whenever everything in it is acknowledged, and deleted
 * at td_finish unless it still holds unacknowledged frames. */
struct tdi_spool {
	bool enabled;
	char dir[600]; /* <spool_dir>/<agent hash> */
	char path[700];
	int fd; /* -1 until the first spill */
	uint64_t max_bytes;
	uint64_t write_off, read_off;
	uint64_t pending_batches, pending_records;
	/* The frame at read_off, when a spill wrote it into an empty spool (the
	 * sender may have its batch in flight: see sender.c settle()). */
	uint64_t first_frame_len;
	uint32_t first_frame_records;
	uint64_t records_written; /* ever, for the report */
	char error[256];          /* why the last spill failed */
};

/* ---- the format: any file, any process ------------------------------------ */

/* The default spool dir into buf. */
int tdi_spool_default_dir(char *buf, size_t len);
/* <base>/<16 hex digits of FNV-1a 64 of the agent URL> into out. */
int tdi_spool_agent_dir(const char *base, const char *url, char *out, size_t len);

enum tdi_frame_status {
	TDI_FRAME_OK,
	TDI_FRAME_END,     /* no more frames (or a torn tail) */
	TDI_FRAME_DAMAGED, /* a complete frame that fails its check */
	TDI_FRAME_NOMEM,
};
/* Reads the frame at off into a new message; *seq and *n_records from its
 * envelope, *frame_len the bytes it takes in the file. */
enum tdi_frame_status tdi_spool_read_frame(int fd, uint64_t off, nng_msg **msg, uint64_t *seq,
                                           uint32_t *n_records, uint64_t *frame_len);
/* Opens and exclusively locks the spool file `name` in dir whose owner is gone
 * (its path into path); -1 if it is not one. */
int tdi_spool_lock_orphan(const char *dir, const char *name, char *path, size_t len);

/* ---- this process's file ---------------------------------------------------- */

/* Sets up the spool from the options (nothing on disk yet). */
int tdi_spool_init(struct td_run *run, const char *dir, size_t max_bytes);
/* Spills every batch in memory (the open one sealed first) to the spool: with
 * mu held; waits for the sender's copy if the head is pinned. TD_OK if all of
 * them went, else TD_ERR_FULL with run->spool.error saying why (what did not
 * fit stays in memory). */
int tdi_spool_spill_locked(struct td_run *run);
/* Sender: reads the oldest unacknowledged spooled frame into a new request;
 * *seq and *n_records from its envelope. Without mu (only the sender reads,
 * and frames before write_off never change). */
int tdi_spool_read_head(struct td_run *run, uint64_t off, nng_msg **req, uint64_t *seq,
                        uint32_t *n_records, uint64_t *frame_len);
/* Sender, with mu: the head frame was acknowledged or refused. */
void tdi_spool_pop_locked(struct td_run *run, uint64_t frame_len, uint32_t n_records, bool acked);
/* Sender, with mu: the head frame cannot be read back (the file is damaged):
 * every spooled record is counted as lost and the spool starts over. */
void tdi_spool_discard_locked(struct td_run *run, const char *why);
/* td_finish, after the sender stopped: deletes an empty spool file, or syncs
 * and closes one that still holds frames (the lock goes with the close). */
void tdi_spool_close(struct td_run *run);

#endif
