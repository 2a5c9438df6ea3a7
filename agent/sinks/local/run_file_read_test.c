/* run_file_read_test — one piece of a run file (run_file_read.h): the piece
 * length at TRACKD_RUN_FILE_READ_MAX - 1, the limit and limit + 1, offsets
 * at size - 1, size and size + 1, a corrupt file (content or size) refused
 * before any byte is handed out (also once verified, after a change), and
 * names that would leave files/ ('..', absolute, a symlink on the way). */
#include "run_file_read.h"

#include "blobs.h"
#include "check.h"
#include "errors.h"
#include "run_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static void write_file(const char *path, const uint8_t *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0, "open %s", path);
	CHECK(write(fd, data, len) == (ssize_t)len, "write %s", path);
	close(fd);
}

struct piece {
	int rv;
	uint8_t *data;
	size_t len;
	char err[512];
};

static struct piece read_piece(int files_fd, const char *name, const uint8_t digest[32],
                               uint64_t size, uint64_t offset, uint64_t length,
                               struct run_file_verified *cache)
{
	struct piece p = {0};
	p.rv = run_file_read(files_fd, name, digest, size, offset, length, cache, &p.data, &p.len,
	                     p.err, sizeof p.err);
	return p;
}

int main(void)
{
	snprintf(root, sizeof root, "/tmp/run_file_read_test.XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	char files[512], sub[600], path[700], outside[700];
	snprintf(files, sizeof files, "%s/files", root);
	snprintf(sub, sizeof sub, "%s/media", files);
	CHECK(mkdir(files, 0700) == 0 && mkdir(sub, 0700) == 0);
	/* Two pieces and a bit: the limit's neighbours all fall inside it. */
	const size_t size = 2 * (size_t)TRACKD_RUN_FILE_READ_MAX + 3;
	uint8_t *content = malloc(size);
	for (size_t i = 0; i < size; i++)
		content[i] = (uint8_t)(i * 7 + (i >> 11));
	uint8_t digest[32];
	blobs_sha256(content, size, digest);
	snprintf(path, sizeof path, "%s/media/big.bin", files);
	write_file(path, content, size);
	snprintf(outside, sizeof outside, "%s/secret", root);
	write_file(outside, (const uint8_t *)"secret", 6);

	struct run_file_verified cache;
	run_file_verified_init(&cache);
	int fd = open(files, O_RDONLY | O_DIRECTORY);
	const uint64_t max = TRACKD_RUN_FILE_READ_MAX;

	/* Length: limit - 1 and the limit are given whole, limit + 1 refused. */
	const uint64_t lengths[] = {max - 1, max, max + 1};
	for (size_t i = 0; i < 3; i++) {
		struct piece p =
		    read_piece(fd, "media/big.bin", digest, size, 1, lengths[i], &cache);
		if (lengths[i] <= max) {
			CHECK_EQ(p.rv, TRACKD_OK);
			CHECK_EQ(p.len, lengths[i]);
			CHECK(p.data && memcmp(p.data, content + 1, p.len) == 0, "bytes at 1");
		} else {
			CHECK_EQ(p.rv, TRACKD_EINVAL);
			CHECK(p.data == NULL && p.len == 0);
			CHECK(strstr(p.err, "over the most") != NULL, "%s", p.err);
		}
		free(p.data);
	}
	/* Length 0: the limit. */
	struct piece p = read_piece(fd, "media/big.bin", digest, size, 0, 0, &cache);
	CHECK_EQ(p.rv, TRACKD_OK);
	CHECK_EQ(p.len, max);
	free(p.data);
	/* Offsets: size - 1 gives the last byte, size nothing, size + 1 refused. */
	p = read_piece(fd, "media/big.bin", digest, size, size - 1, 0, &cache);
	CHECK_EQ(p.rv, TRACKD_OK);
	CHECK_EQ(p.len, 1);
	CHECK(p.data && p.data[0] == content[size - 1]);
	free(p.data);
	p = read_piece(fd, "media/big.bin", digest, size, size, 0, &cache);
	CHECK_EQ(p.rv, TRACKD_OK);
	CHECK_EQ(p.len, 0);
	free(p.data);
	p = read_piece(fd, "media/big.bin", digest, size, size + 1, 0, &cache);
	CHECK_EQ(p.rv, TRACKD_EINVAL);
	/* Pieces read in order make the file. */
	uint8_t *whole = malloc(size);
	size_t at = 0;
	while (at < size) {
		p = read_piece(fd, "media/big.bin", digest, size, at, max, &cache);
		CHECK_EQ(p.rv, TRACKD_OK);
		if (p.rv || !p.len)
			break;
		memcpy(whole + at, p.data, p.len);
		at += p.len;
		free(p.data);
	}
	CHECK_EQ(at, size);
	CHECK(memcmp(whole, content, size) == 0, "pieces make the file");
	free(whole);

	/* Corrupt: one byte changed after it was verified (the cache must not
	 * vouch for it: the change moved its ctime), then without a cache; a
	 * wrong recorded size; a wrong recorded digest. */
	content[size / 2] ^= 1;
	write_file(path, content, size);
	p = read_piece(fd, "media/big.bin", digest, size, 0, 16, &cache);
	CHECK_EQ(p.rv, TRACKD_ECORRUPT);
	CHECK(p.data == NULL && p.len == 0, "nothing handed out");
	CHECK(strstr(p.err, "corrupt") != NULL, "%s", p.err);
	p = read_piece(fd, "media/big.bin", digest, size, 0, 16, NULL);
	CHECK_EQ(p.rv, TRACKD_ECORRUPT);
	content[size / 2] ^= 1;
	write_file(path, content, size);
	p = read_piece(fd, "media/big.bin", digest, size, 0, 16, NULL);
	CHECK_EQ(p.rv, TRACKD_OK);
	free(p.data);
	p = read_piece(fd, "media/big.bin", digest, size - 1, 0, 16, &cache);
	CHECK_EQ(p.rv, TRACKD_ECORRUPT);
	uint8_t wrong[32];
	memcpy(wrong, digest, 32);
	wrong[0] ^= 0xff;
	p = read_piece(fd, "media/big.bin", wrong, size, 0, 16, &cache);
	CHECK_EQ(p.rv, TRACKD_ECORRUPT);

	/* Names that would leave files/ are refused before any open; a symlink
	 * on the way is not followed; a name not there is ENOENT. */
	uint8_t sdigest[32];
	blobs_sha256("secret", 6, sdigest);
	const char *bad[] = {"../secret", "/etc/passwd", "media/../../secret",
	                     "",          "./secret",    "media//big.bin"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		p = read_piece(fd, bad[i], sdigest, 6, 0, 0, &cache);
		CHECK_EQ(p.rv, TRACKD_EINVAL);
		CHECK(p.data == NULL);
	}
	char link[700];
	snprintf(link, sizeof link, "%s/leak", files);
	CHECK(symlink(outside, link) == 0);
	p = read_piece(fd, "leak", sdigest, 6, 0, 0, &cache);
	CHECK_EQ(p.rv, TRACKD_ESYS);
	snprintf(link, sizeof link, "%s/up", files);
	CHECK(symlink(root, link) == 0);
	p = read_piece(fd, "up/secret", sdigest, 6, 0, 0, &cache);
	CHECK_EQ(p.rv, TRACKD_ESYS);
	p = read_piece(fd, "media/none.png", sdigest, 6, 0, 0, &cache);
	CHECK_EQ(p.rv, TRACKD_ENOENT);
	/* A directory where a file is recorded is not served. */
	p = read_piece(fd, "media", sdigest, 6, 0, 0, &cache);
	CHECK(p.rv != TRACKD_OK);

	close(fd);
	run_file_verified_fini(&cache);
	free(content);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	CHECK_EQ(system(cmd), 0);
	return CHECK_SUMMARY("run_file_read_test");
}
