/*
 * crc32c.h — CRC-32C (Castagnoli), as used by the transaction log's frames.
 * Uses the SSE4.2 instruction when the CPU has it, a table otherwise; both give
 * the same result. Thread-safe, no state.
 */
#ifndef TRACKD_CORE_CRC32C_H
#define TRACKD_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC: start with crc = 0. crc32c("123456789") == 0xE3069283. */
uint32_t crc32c_update(uint32_t crc, const void *data, size_t len);

#endif
