/* manifest.c — see manifest.h. */
#include "manifest.h"

#include "json_write.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define MANIFEST_DIGEST_PREFIX "wandb-artifact-manifest-v1\n"

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct manifest_entry *)a)->path,
	              ((const struct manifest_entry *)b)->path);
}

void manifest_sort(struct manifest_entry *e, size_t n)
{
	if (n > 1)
		qsort(e, n, sizeof *e, by_path);
}

bool manifest_has_duplicate(const struct manifest_entry *sorted, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (strcmp(sorted[i - 1].path, sorted[i].path) == 0)
			return true;
	return false;
}

void manifest_digest(const struct manifest_entry *sorted, size_t n, char hex[33])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_md5(), NULL)) {
		EVP_MD_CTX_free(ctx);
		memset(hex, '0', 32);
		hex[32] = 0;
		return;
	}
	EVP_DigestUpdate(ctx, MANIFEST_DIGEST_PREFIX, strlen(MANIFEST_DIGEST_PREFIX));
	for (size_t i = 0; i < n; i++) {
		EVP_DigestUpdate(ctx, sorted[i].path, strlen(sorted[i].path));
		EVP_DigestUpdate(ctx, ":", 1);
		EVP_DigestUpdate(ctx, sorted[i].digest, strlen(sorted[i].digest));
		EVP_DigestUpdate(ctx, "\n", 1);
	}
	EVP_DigestFinal_ex(ctx, md, &len);
	EVP_MD_CTX_free(ctx);
	static const char digits[] = "0123456789abcdef";
	for (unsigned i = 0; i < 16; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[32] = 0;
}

int manifest_json(const struct manifest_entry *sorted, size_t n, struct buf *out)
{
	int rv = buf_puts(out, "{\"version\":1,\"storagePolicy\":\"wandb-storage-policy-v1\","
	                       "\"storagePolicyConfig\":{\"storageLayout\":\"V2\"},\"contents\":{");
	for (size_t i = 0; i < n && !rv; i++) {
		rv = i ? buf_putc(out, ',') : 0;
		rv = rv ? rv : json_write_string(out, sorted[i].path);
		rv = rv ? rv : buf_puts(out, ":{\"digest\":");
		rv = rv ? rv : json_write_string(out, sorted[i].digest);
		if (!rv && sorted[i].ref) {
			rv = buf_puts(out, ",\"ref\":");
			rv = rv ? rv : json_write_string(out, sorted[i].ref);
		}
		rv = rv ? rv : buf_puts(out, ",\"size\":");
		rv = rv ? rv : json_write_uint(out, sorted[i].size);
		rv = rv ? rv : buf_putc(out, '}');
	}
	return rv ? rv : buf_puts(out, "}}\n");
}

void manifest_md5_b64(const void *data, size_t len, char out[25])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_Digest(data, len, md, &n, EVP_md5(), NULL);
	EVP_EncodeBlock((unsigned char *)out, md, 16);
}
