/*
 * buf.h — a growable byte buffer with a hard maximum (as curl's dynbuf): every
 * append checks the maximum before allocating, and a buffer that would pass it
 * refuses the append with TRACKD_ETOOBIG and stays as it was.
 *
 * Not thread-safe; the owner embeds it (buf_init / buf_fini).
 */
#ifndef TRACKD_CORE_BUF_H
#define TRACKD_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	char *data; /* always NUL-terminated when non-NULL */
	size_t len, cap, max;
};

void buf_init(struct buf *b, size_t max);
void buf_fini(struct buf *b);
void buf_reset(struct buf *b); /* len = 0, memory kept */
/* len = 0; memory kept up to `keep` bytes of capacity, freed beyond (a buffer
 * that once held a burst does not hold its memory for ever). */
void buf_reset_keep(struct buf *b, size_t keep);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
