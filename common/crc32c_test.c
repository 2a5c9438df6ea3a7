/* Known-answer tests for CRC-32C (RFC 3720 appendix B.4 vectors), and that a
 * chunked update equals a one-shot one. */
#include "crc32c.h"

#include <stdio.h>
#include <string.h>

static int failures;

static void expect(const char *what, uint32_t got, uint32_t want)
{
	if (got != want) {
		fprintf(stderr, "FAIL %s: got %08x want %08x\n", what, got, want);
		failures++;
	}
}

int main(void)
{
	expect("123456789", crc32c_update(0, "123456789", 9), 0xE3069283u);
	unsigned char zeros[32] = {0}, ones[32], inc[32];
	memset(ones, 0xff, sizeof ones);
	for (int i = 0; i < 32; i++)
		inc[i] = (unsigned char)i;
	expect("32 zeros", crc32c_update(0, zeros, 32), 0x8A9136AAu);
	expect("32 ones", crc32c_update(0, ones, 32), 0x62A8AB43u);
	expect("0..31", crc32c_update(0, inc, 32), 0x46DD794Eu);
	for (size_t cut = 0; cut <= 32; cut++) {
		uint32_t c = crc32c_update(0, inc, cut);
		c = crc32c_update(c, inc + cut, 32 - cut);
		expect("chunked", c, 0x46DD794Eu);
	}
	printf("%s\n", failures ? "crc32c_test: FAILED" : "crc32c_test: ok");
	return failures != 0;
}
