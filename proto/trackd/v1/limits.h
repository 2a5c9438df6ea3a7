/*
 * limits.h — protocol constants and the default limits shared by the client
 * library and the agent. The agent's limits are configurable (config.h); the
 * client validates every record against these defaults before buffering it, so
 * a well-behaved client never has a batch refused by an agent on its defaults.
 */
#ifndef TRACKD_V1_LIMITS_H
#define TRACKD_V1_LIMITS_H

#define TRACKD_PROTOCOL_VERSION 1u
#define TRACKD_SESSION_ID_BYTES 16

#define TRACKD_DEFAULT_MAX_MESSAGE_BYTES     (4u << 20) /* one request */
#define TRACKD_DEFAULT_MAX_RECORDS_PER_BATCH 65536u
#define TRACKD_DEFAULT_MAX_ITEMS_PER_RECORD  10000u /* nested items included */
#define TRACKD_DEFAULT_MAX_KEY_BYTES         256u
#define TRACKD_DEFAULT_MAX_STRING_BYTES      (1u << 20)
#define TRACKD_DEFAULT_MAX_NESTING_DEPTH     16u /* 1 = flat; maps and lists */
/* Elements of one list value. W&B turns longer numeric arrays into histograms
 * (the Python package does too, for numpy arrays in rows); a list this long is
 * a config or a small vector, not data. */
#define TRACKD_DEFAULT_MAX_LIST_LENGTH 4096u
#define TRACKD_MAX_RUN_ID_BYTES        64u
#define TRACKD_MAX_NAME_BYTES          128u /* project, entity, names */
#define TRACKD_MAX_TAGS                64u
/* A RunEnvironment (the client's process facts): its args, its other strings. */
#define TRACKD_MAX_ENV_ARGS   256u
#define TRACKD_MAX_ENV_STRING 4096u

/* Characters a run id must not contain (W&B rule). */
#define TRACKD_RUN_ID_FORBIDDEN "/\\#?%:"
/* The only characters of a run id: W&B's own ids are made of them, and a run id is
 * a path component and part of URLs, where these need no escaping (a space or a
 * '&' would). */
#define TRACKD_RUN_ID_ALLOWED "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
/* Characters project and entity names must not contain, besides control characters
 * (W&B's project rule: they separate or end the parts of a run's path and URL). */
#define TRACKD_NAME_FORBIDDEN "/\\#?%:"

/* Files and media (agent/blobs, common/run_files.h). A blob is at most the
 * agent's blobs.max_file_bytes; these are the protocol's own bounds. File
 * names: common/run_files.h. */
#define TRACKD_BLOB_DIGEST_BYTES      32u        /* SHA-256 */
#define TRACKD_MAX_BLOB_QUERY         256u       /* digests in one BlobQuery */
#define TRACKD_BLOB_CHUNK_BYTES       (1u << 20) /* what clients send per BlobChunk */
#define TRACKD_DEFAULT_MAX_FILE_BYTES ((uint64_t)1 << 30)
#define TRACKD_HISTOGRAM_DEFAULT_BINS 64u
#define TRACKD_HISTOGRAM_MAX_BINS     512u   /* W&B's Histogram.MAX_LENGTH */
#define TRACKD_TABLE_MAX_ROWS         10000u /* W&B's Table.MAX_ROWS for runs */

#endif
