#include "utf8.h"

#include <stdint.h>

/* One loop for both entry points; `nul_ok` is a constant at each call, so the
 * compiler keeps two specialised copies. */
static inline bool valid(const unsigned char *p, size_t n, bool nul_ok)
{
	const unsigned char *end = p + n;
	while (p < end) {
		unsigned c = *p;
		if (c < 0x80) {
			if (c == 0 && !nul_ok)
				return false;
			p++;
			continue;
		}
		unsigned lo = 0x80, hi = 0xbf;
		size_t more;
		if (c >= 0xc2 && c <= 0xdf) {
			more = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			more = 2;
			if (c == 0xe0)
				lo = 0xa0; /* overlong */
			else if (c == 0xed)
				hi = 0x9f; /* surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			more = 3;
			if (c == 0xf0)
				lo = 0x90; /* overlong */
			else if (c == 0xf4)
				hi = 0x8f; /* above U+10FFFF */
		} else {
			return false;
		}
		if ((size_t)(end - p) <= more || p[1] < lo || p[1] > hi)
			return false;
		for (size_t i = 2; i <= more; i++)
			if (p[i] < 0x80 || p[i] > 0xbf)
				return false;
		p += more + 1;
	}
	return true;
}

bool utf8_valid(const void *s, size_t n)
{
	return valid(s, n, true);
}

bool utf8_valid_no_nul(const void *s, size_t n)
{
	return valid(s, n, false);
}
