/*
 * wandb_txlog.h — reads W&B's own transaction file (`run-<id>.wandb`), record
 * by record, for `trackctl import`.
 *
 * Format (../shared/design/WANDB-TXLOG.md §1): a 7-byte file header (":W&B",
 * magic 0xBEE1 little-endian, version 0), then LevelDB-log chunks in 32 KiB
 * blocks aligned to file offsets (block 0 starts after the header). A chunk is
 * a 7-byte header — checksum (u32 LE) over the type byte and the payload,
 * payload length (u16 LE), type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4 — then
 * its payload; a record is one FULL chunk or FIRST, MIDDLE…, LAST. Fewer than
 * 7 bytes left in a block are zero padding. The checksum is plain CRC-32
 * (IEEE, zlib's) as W&B writes it today; LevelDB's masked CRC-32C is accepted
 * too (a file from a writer that used the LevelDB variant).
 *
 * Damage: a file whose header is wrong is refused whole (WTX_BAD_HEADER), as
 * W&B's reader does. Past the header every intact record is returned: a chunk
 * with a bad checksum, an impossible length or type, or a zeroed header
 * discards the rest of its block (W&B's Recover()), and reading resumes at the
 * next FULL or FIRST chunk of a later block; a record left incomplete by such a
 * skip is dropped, and so is one longer than the record limit. A file that ends
 * inside a chunk, a chunk header or a multi-chunk record has a torn tail. Each
 * of these is reported once, through `on_damage`, with the file offset where
 * the damage starts and the bytes skipped — and never stops the reading.
 *
 * Bounded: one 32 KiB block and one record (at most `max_record` bytes) in
 * memory; a file of any size is streamed.
 *
 * Ownership: `wtx_open` takes `f` (closed by wtx_close); records returned by
 * wtx_next point into the reader and are valid until the next call. Not
 * thread-safe. Errors: TRACKD_EIO (read failed), TRACKD_ENOMEM, and
 * WTX_BAD_HEADER (TRACKD_ECORRUPT) from wtx_open.
 */
#ifndef TRACKD_CLI_IMPORT_WANDB_TXLOG_H
#define TRACKD_CLI_IMPORT_WANDB_TXLOG_H

#include "errors.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define WTX_BLOCK_BYTES     32768u
#define WTX_HEADER_BYTES    7u
#define WTX_DEFAULT_MAX_REC (64u << 20) /* one record, assembled */
#define WTX_BAD_HEADER      TRACKD_ECORRUPT

struct wtx_damage {
	uint64_t offset;  /* file offset where the damage starts */
	uint64_t skipped; /* bytes of the file not read as records because of it */
	const char *what; /* a constant phrase: "checksum mismatch", … */
};

typedef void (*wtx_damage_fn)(void *arg, const struct wtx_damage *d);

typedef struct wtx_reader wtx_reader;

/* Checks the file header. `max_record` 0: WTX_DEFAULT_MAX_REC. `why` gets
 * the reason of a refusal. */
int wtx_open(FILE *f, size_t max_record, wtx_damage_fn on_damage, void *arg, wtx_reader **out,
             char *why, size_t whylen);
void wtx_close(wtx_reader *r); /* NULL is a no-op; closes the FILE */

/* The next intact record: 1 with *data, *len (and its first chunk's file offset
 * in *offset), 0 at the end of the file, or a negative trackd_err. */
int wtx_next(wtx_reader *r, const uint8_t **data, size_t *len, uint64_t *offset);

/* File bytes consumed so far (for progress). */
uint64_t wtx_position(const wtx_reader *r);

/* Damage reports made so far. */
uint64_t wtx_damage_count(const wtx_reader *r);

/* The checksums the reader accepts (exposed for tests): zlib's CRC-32 of the
 * type byte then the payload, and LevelDB's masked CRC-32C of the same. */
uint32_t wtx_crc_ieee(uint8_t type, const uint8_t *payload, size_t len);
uint32_t wtx_crc_leveldb(uint8_t type, const uint8_t *payload, size_t len);

#endif
