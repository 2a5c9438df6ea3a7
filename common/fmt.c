#include "fmt.h"

#include <stdio.h>
#include <stdlib.h>

static void shortest(char *out, size_t cap, double d, int from, const char *conv)
{
	for (int prec = from; prec <= 17; prec++) {
		snprintf(out, cap, conv, prec, d);
		if (strtod(out, NULL) == d)
			return;
	}
}

void fmt_double_g(char *out, size_t cap, double d)
{
	shortest(out, cap, d, 15, "%.*g");
}

void fmt_double_e(char *out, size_t cap, double d)
{
	shortest(out, cap, d, 0, "%.*e");
}
