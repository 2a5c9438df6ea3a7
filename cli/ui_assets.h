/*
 * ui_assets.h — the web UI's files (the html, js and css of ui/, and uPlot from
 * ui/node_modules), built into trackctl by cmake/EmbedFiles.cmake: the
 * generated ui_assets.c defines the table. Read-only, static storage.
 */
#ifndef TRACKD_CLI_UI_ASSETS_H
#define TRACKD_CLI_UI_ASSETS_H

#include <stddef.h>

struct ui_asset {
	const char *url;  /* "/app.js": the path it is served at */
	const char *type; /* Content-Type */
	const unsigned char *data;
	size_t len; /* bytes (data holds one more, a NUL) */
};

extern const struct ui_asset ui_assets[];
extern const size_t ui_assets_count;

#endif
