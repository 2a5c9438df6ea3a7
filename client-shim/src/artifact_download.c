/*
 * artifact_download.c — td_artifact_download (trackd.h): an artifact
 * version's files fetched from the agent (ArtifactRequest, then
 * ArtifactFileRequest pieces), each checked against its manifest entry
 * before it takes its name. The agent's store is trusted for nothing: a blob
 * damaged on its disk is caught here, never handed to the caller.
 */
#include "error.h"
#include "paths.h"
#include "query.h"
#include "run_files.h"
#include "transport.h"
#include "trackd/v1/limits.h"
#include "trackd/v1/pb_json.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Asked per piece: under the agent's message limit with room to spare. */
#define TDI_ARTIFACT_PIECE_BYTES (1u << 20)

static int call(const char *url, Trackd__V1__Query *query, int timeout_ms,
                Trackd__V1__Reply **reply, Trackd__V1__QueryReply__ReplyCase want)
{
	Trackd__V1__Request req = TRACKD__V1__REQUEST__INIT;
	req.has_protocol_version = true;
	req.protocol_version = TRACKD_PROTOCOL_VERSION;
	req.body_case = TRACKD__V1__REQUEST__BODY_QUERY;
	req.query = query;
	int rc = tdi_agent_call(url, &req, timeout_ms, reply);
	if (rc)
		return rc;
	const Trackd__V1__Reply *r = *reply;
	if (r->body_case == TRACKD__V1__REPLY__BODY_QUERY && r->query->reply_case == want)
		return TD_OK;
	if (r->body_case == TRACKD__V1__REPLY__BODY_ERROR) {
		const char *msg = r->error->message ? r->error->message : "(no message)";
		rc = r->error->code == TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND
		         ? tdi_fail(TD_ERR_NOT_FOUND, "%s", msg)
		         : tdi_fail(TD_ERR_REJECTED, "%s", msg);
	} else
		rc = tdi_fail(TD_ERR_REJECTED, "artifact: unexpected answer from the agent");
	trackd__v1__reply__free_unpacked(*reply, NULL);
	*reply = NULL;
	return rc;
}

static void hex_of(const unsigned char *d, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * n] = 0;
}

/* One file: fetched into root/<path>.trackd-part, checked, renamed. */
static int fetch_file(const char *url, const char *version_path, const char *root,
                      const Trackd__V1__ArtifactReply__Entry *e, int timeout_ms)
{
	if (!files_name_valid(e->path, strlen(e->path)))
		return tdi_fail(TD_ERR_REJECTED, "artifact entry '%.200s': not a valid name",
		                e->path);
	char final[4096], tmp[4200], dir[4096];
	snprintf(final, sizeof final, "%s/%s", root, e->path);
	snprintf(tmp, sizeof tmp, "%s.trackd-part", final);
	snprintf(dir, sizeof dir, "%s", final);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	if (mkdir_parents(dir, 0755) != 0)
		return tdi_fail(TD_ERR_INVALID, "cannot create %s: %s", dir, strerror(errno));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return tdi_fail(TD_ERR_INVALID, "cannot write %s: %s", tmp, strerror(errno));
	EVP_MD_CTX *sha = EVP_MD_CTX_new(), *md5 = EVP_MD_CTX_new();
	EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
	EVP_DigestInit_ex(md5, EVP_md5(), NULL);
	uint64_t off = 0, size = e->size;
	int rc = TD_OK;
	do {
		Trackd__V1__Query query = TRACKD__V1__QUERY__INIT;
		Trackd__V1__ArtifactFileRequest fr = TRACKD__V1__ARTIFACT_FILE_REQUEST__INIT;
		fr.artifact = (char *)version_path;
		fr.path = e->path;
		fr.has_offset = fr.has_max_bytes = true;
		fr.offset = off;
		fr.max_bytes = TDI_ARTIFACT_PIECE_BYTES;
		query.request_case = TRACKD__V1__QUERY__REQUEST_ARTIFACT_FILE;
		query.artifact_file = &fr;
		Trackd__V1__Reply *reply = NULL;
		rc = call(url, &query, timeout_ms, &reply,
		          TRACKD__V1__QUERY_REPLY__REPLY_ARTIFACT_FILE);
		if (rc)
			break;
		const Trackd__V1__ArtifactFileReply *p = reply->query->artifact_file;
		size = p->size;
		if (p->data.len == 0 && off < size)
			rc = tdi_fail(TD_ERR_REJECTED,
			              "artifact file %.200s: the agent sent nothing at %llu",
			              e->path, (unsigned long long)off);
		else if (write(fd, p->data.data, p->data.len) != (ssize_t)p->data.len)
			rc = tdi_fail(TD_ERR_INVALID, "cannot write %s: %s", tmp, strerror(errno));
		else {
			EVP_DigestUpdate(sha, p->data.data, p->data.len);
			EVP_DigestUpdate(md5, p->data.data, p->data.len);
			off += p->data.len;
		}
		trackd__v1__reply__free_unpacked(reply, NULL);
	} while (rc == TD_OK && off < size);
	unsigned char d[EVP_MAX_MD_SIZE], m[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_DigestFinal_ex(sha, d, &n);
	EVP_DigestFinal_ex(md5, m, &n);
	EVP_MD_CTX_free(sha);
	EVP_MD_CTX_free(md5);
	if (close(fd) != 0 && rc == TD_OK)
		rc = tdi_fail(TD_ERR_INVALID, "cannot write %s: %s", tmp, strerror(errno));
	if (rc == TD_OK) {
		char hex[65], b64[25];
		hex_of(d, 32, hex);
		EVP_EncodeBlock((unsigned char *)b64, m, 16);
		if (off != e->size || strcmp(hex, e->sha256 ? e->sha256 : "") != 0 ||
		    strcmp(b64, e->digest ? e->digest : "") != 0)
			rc = tdi_fail(
			    TD_ERR_CORRUPT,
			    "artifact file '%.200s' is damaged in the agent's store: %llu "
			    "bytes with sha256 %s, the manifest says %llu bytes with sha256 "
			    "%s; not written",
			    e->path, (unsigned long long)off, hex, (unsigned long long)e->size,
			    e->sha256 ? e->sha256 : "");
	}
	if (rc == TD_OK && rename(tmp, final) != 0)
		rc = tdi_fail(TD_ERR_INVALID, "cannot rename %s: %s", tmp, strerror(errno));
	if (rc)
		unlink(tmp);
	return rc;
}

int td_artifact_download(const char *socket_url, const char *artifact, const char *project,
                         const char *root, int timeout_ms, char **json_out)
{
	if (json_out)
		*json_out = NULL;
	if (!artifact || !root || !*root)
		return tdi_fail(TD_ERR_INVALID,
		                "td_artifact_download: artifact and root are needed");
	if (timeout_ms < 0)
		timeout_ms = TDI_DEFAULT_QUERY_TIMEOUT_MS;
	char url[256];
	int rc = tdi_resolve_url(socket_url, url, sizeof url);
	if (rc)
		return rc;
	Trackd__V1__Query query = TRACKD__V1__QUERY__INIT;
	Trackd__V1__ArtifactRequest ar = TRACKD__V1__ARTIFACT_REQUEST__INIT;
	ar.artifact = (char *)artifact;
	ar.project = (char *)project;
	query.request_case = TRACKD__V1__QUERY__REQUEST_ARTIFACT;
	query.artifact = &ar;
	Trackd__V1__Reply *reply = NULL;
	rc = call(url, &query, timeout_ms, &reply, TRACKD__V1__QUERY_REPLY__REPLY_ARTIFACT);
	if (rc)
		return rc;
	const Trackd__V1__ArtifactReply *a = reply->query->artifact;
	if (!a->artifact || !a->artifact->path)
		rc = tdi_fail(TD_ERR_REJECTED, "artifact: the agent's answer names no version");
	if (rc == TD_OK && mkdir_parents(root, 0755) != 0)
		rc = tdi_fail(TD_ERR_INVALID, "cannot create %s: %s", root, strerror(errno));
	for (size_t i = 0; rc == TD_OK && i < a->n_entries; i++)
		if (!a->entries[i]->ref)
			rc = fetch_file(url, a->artifact->path, root, a->entries[i], timeout_ms);
	if (rc == TD_OK && json_out) {
		struct buf json;
		buf_init(&json, (size_t)1 << 30);
		if (pb_json_query_reply(reply->query, &json) == 0 && json.data)
			*json_out = json.data;
		else {
			buf_fini(&json);
			rc = tdi_fail(TD_ERR_NOMEM, "artifact: out of memory");
		}
	}
	trackd__v1__reply__free_unpacked(reply, NULL);
	return rc;
}
