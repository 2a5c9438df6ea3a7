#include "buf.h"

#include "errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = b->cap = 0;
	b->max = max;
}

void buf_fini(struct buf *b)
{
	free(b->data);
	buf_init(b, b->max);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void buf_reset_keep(struct buf *b, size_t keep)
{
	if (b->cap > keep)
		buf_fini(b);
	else
		buf_reset(b);
}

static int reserve(struct buf *b, size_t extra)
{
	if (extra > b->max || b->len > b->max - extra)
		return TRACKD_ETOOBIG;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return TRACKD_OK;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	/* No more than the maximum and its NUL; max + 1 wraps to 0 for SIZE_MAX
	 * (no maximum), which must not shrink the allocation to nothing. */
	if (b->max < SIZE_MAX && cap > b->max + 1)
		cap = b->max + 1;
	char *p = realloc(b->data, cap);
	if (!p)
		return TRACKD_ENOMEM;
	b->data = p;
	b->cap = cap;
	return TRACKD_OK;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	int rv = reserve(b, len);
	if (rv != 0)
		return rv;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return TRACKD_OK;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_putc(struct buf *b, char c)
{
	return buf_append(b, &c, 1);
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return TRACKD_EINVAL;
	int rv = reserve(b, (size_t)n);
	if (rv != 0)
		return rv;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return TRACKD_OK;
}
