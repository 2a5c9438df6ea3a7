/* Known-answer tests for CRC-32C (RFC 3720 appendix B.4 vectors), and that a
 * chunked update equals a one-shot one. */
#include "crc32c.h"

#include "check.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
	CHECK_EQ(crc32c_update(0, "123456789", 9), 0xE3069283u, "%s", "123456789");
	unsigned char zeros[32] = {0}, ones[32], inc[32];
	memset(ones, 0xff, sizeof ones);
	for (int i = 0; i < 32; i++)
		inc[i] = (unsigned char)i;
	CHECK_EQ(crc32c_update(0, zeros, 32), 0x8A9136AAu, "%s", "32 zeros");
	CHECK_EQ(crc32c_update(0, ones, 32), 0x62A8AB43u, "%s", "32 ones");
	CHECK_EQ(crc32c_update(0, inc, 32), 0x46DD794Eu, "%s", "0..31");
	for (size_t cut = 0; cut <= 32; cut++) {
		uint32_t c = crc32c_update(0, inc, cut);
		c = crc32c_update(c, inc + cut, 32 - cut);
		CHECK_EQ(c, 0x46DD794Eu, "%s", "chunked");
	}
	return CHECK_SUMMARY("crc32c_test");
}
