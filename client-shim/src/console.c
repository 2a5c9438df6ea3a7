/*
 * console.c — the console reader (console.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "console.h"
#include "buf.h"
#include "error.h"
#include "fs.h"
#include "run.h"
#include "utf8.h"

#define READ_CHUNK     65536
#define LINE_MAX_BYTES (64u << 10)

struct stream {
	int fd;    /* 1 or 2 */
	int saved; /* the original, restored at the end */
	int rd;    /* pipe read end */
	char *buf; /* bytes read, not yet recorded (no newline yet) */
	size_t len, cap;
	bool eof; /* every write end closed (the application closed fd 1/2) */
};

/* fds 1 and 2 belong to one capturing run at a time: a second one would
 * capture the first one's pipes and could not restore them in order. */
static atomic_bool in_use;

struct tdi_console {
	struct td_run *run;
	struct stream s[2];
	int wake[2]; /* tdi_console_stop writes here */
	pthread_t thread;
	bool started;
};

/* Records text[0..n) with invalid UTF-8 and NULs replaced. */
static void record(struct tdi_console *c, bool is_stderr, const char *text, size_t n)
{
	struct buf s;
	const char *p = text, *end = text + n;
	int failed = 0;

	buf_init(&s, TDI_TEXT_MAX);

	while (p < end) {
		/* Copy the longest valid stretch, then replace one bad byte. */
		const char *start = p;
		while (p < end) {
			size_t k = 1;
			unsigned char b = (unsigned char)*p;
			if (b == 0)
				break;
			if (b >= 0x80) {
				k = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
				if ((size_t)(end - p) < k || !utf8_valid(p, k))
					break;
			}
			p += k;
		}
		failed |= buf_append(&s, start, (size_t)(p - start));
		if (p < end) {
			failed |= buf_append(&s, "\xef\xbf\xbd", 3);
			p++;
		}
	}
	if (!failed && s.len > 0)
		(void)td_output(c->run, is_stderr, s.data);
	buf_fini(&s);
}

/* Records every complete line in the stream's buffer (all of it if `all`). */
static void emit(struct tdi_console *c, struct stream *st, bool all)
{
	size_t cut = 0;

	for (size_t i = st->len; i > 0; i--) {
		if (st->buf[i - 1] == '\n') {
			cut = i;
			break;
		}
	}
	if (all || st->len >= LINE_MAX_BYTES)
		cut = st->len;
	if (cut == 0)
		return;
	record(c, st->fd == 2, st->buf, cut);
	memmove(st->buf, st->buf + cut, st->len - cut);
	st->len -= cut;
}

/* Reads what is there; false at EOF or error. */
static bool pump(struct tdi_console *c, struct stream *st)
{
	if (st->cap - st->len < READ_CHUNK) {
		size_t cap = st->len + READ_CHUNK;
		char *b = realloc(st->buf, cap);
		if (b == NULL)
			return false;
		st->buf = b;
		st->cap = cap;
	}
	ssize_t r = read(st->rd, st->buf + st->len, READ_CHUNK);
	if (r == 0)
		st->eof = true;
	if (r <= 0)
		return r < 0 && errno == EINTR;
	(void)fs_write_all(st->saved, st->buf + st->len,
	                   (size_t)r); /* the original output is gone: keep recording */
	st->len += (size_t)r;
	emit(c, st, false);
	return true;
}

static void *reader_main(void *arg)
{
	struct tdi_console *c = arg;
	bool stopping = false;

	while (!stopping) {
		/* A negative fd is skipped by poll: no spinning on a closed pipe. */
		struct pollfd p[3] = {{c->s[0].eof ? -1 : c->s[0].rd, POLLIN, 0},
		                      {c->s[1].eof ? -1 : c->s[1].rd, POLLIN, 0},
		                      {c->wake[0], POLLIN, 0}};
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (p[i].revents & (POLLIN | POLLHUP))
				pump(c, &c->s[i]);
		}
		stopping = p[2].revents != 0;
	}
	/* fds 1 and 2 are the originals again: take what is left without
	 * waiting for writers that may never close. */
	for (int i = 0; i < 2; i++) {
		fcntl(c->s[i].rd, F_SETFL, fcntl(c->s[i].rd, F_GETFL) | O_NONBLOCK);
		while (!c->s[i].eof && pump(c, &c->s[i]))
			;
		emit(c, &c->s[i], true);
	}
	return NULL;
}

static void console_free(struct tdi_console *c)
{
	for (int i = 0; i < 2; i++) {
		if (c->s[i].rd >= 0)
			close(c->s[i].rd);
		if (c->s[i].saved >= 0)
			close(c->s[i].saved);
		free(c->s[i].buf);
	}
	if (c->wake[0] >= 0)
		close(c->wake[0]);
	if (c->wake[1] >= 0)
		close(c->wake[1]);
	free(c);
}

int tdi_console_start(struct td_run *run)
{
	struct tdi_console *c;
	sigset_t all, old;
	bool expected = false;
	int p[2];

	if (!atomic_compare_exchange_strong(&in_use, &expected, true))
		return tdi_fail(
		    TD_ERR_INVALID,
		    "td_init: capture_console: another run already captures the console");
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		atomic_store(&in_use, false);
		return tdi_fail(TD_ERR_NOMEM, "td_init: out of memory");
	}
	c->run = run;
	c->wake[0] = c->wake[1] = -1;
	for (int i = 0; i < 2; i++) {
		c->s[i].fd = i + 1;
		c->s[i].rd = c->s[i].saved = -1;
	}
	if (pipe2(c->wake, O_CLOEXEC) != 0)
		goto fail;
	/* What the application buffered so far goes where it was meant to. */
	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < 2; i++) {
		struct stream *st = &c->s[i];
		if ((st->saved = fcntl(st->fd, F_DUPFD_CLOEXEC, 3)) < 0 || pipe2(p, O_CLOEXEC) != 0)
			goto fail;
		st->rd = p[0];
		/* dup2 leaves the new fd 1/2 inheritable, as it was. */
		if (dup2(p[1], st->fd) < 0) {
			close(p[1]);
			goto fail;
		}
		close(p[1]);
	}
	/* stdio picks full buffering for a pipe; a terminal user should keep
	 * seeing lines as they are printed. */
	if (isatty(c->s[0].saved))
		setvbuf(stdout, NULL, _IOLBF, 0);

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rv = pthread_create(&c->thread, NULL, reader_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv != 0)
		goto fail;
	c->started = true;
	pthread_setname_np(c->thread, "trackd-console");
	run->console = c;
	return TD_OK;
fail:;
	int err = errno;
	for (int i = 0; i < 2; i++) {
		if (c->s[i].saved >= 0)
			dup2(c->s[i].saved, c->s[i].fd);
	}
	console_free(c);
	atomic_store(&in_use, false);
	return tdi_fail(TD_ERR_TRANSPORT, "td_init: cannot capture the console: %s", strerror(err));
}

void tdi_console_stop(struct td_run *run)
{
	struct tdi_console *c = run->console;

	if (c == NULL)
		return;
	run->console = NULL;
	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < 2; i++)
		dup2(c->s[i].saved, c->s[i].fd);
	char b = 0;
	while (write(c->wake[1], &b, 1) < 0 && errno == EINTR)
		;
	if (c->started)
		pthread_join(c->thread, NULL);
	console_free(c);
	atomic_store(&in_use, false);
}
