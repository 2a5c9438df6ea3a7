/*
 * ui.h — `trackctl ui`: the local web UI (cmd_ui.c).
 *
 *   trackctl ui [--listen ADDR:PORT] [--allow-remote] [--open]
 *               [--idle-timeout SECONDS]
 *
 * Serves the UI (built-in HTML/JS/CSS, uPlot) and a read-only JSON API over
 * HTTP (libmicrohttpd, a thread per connection) until SIGINT/SIGTERM. Every API request is one
 * query to the agent over its socket, asked as the user running trackctl
 * ui: the agent's own uid checks decide what the UI may show, exactly as for
 * `trackctl show`. The API answers are the agent's typed replies as JSON
 * (pb_json_query_reply), never built here.
 *
 * Access: a random token in the printed URL, exchanged for an HttpOnly
 * SameSite=Strict cookie; the Host header must name the listen address;
 * GET/HEAD only, no request body; loopback unless --allow-remote (see README,
 * "Looking at runs in a browser"). Bounds (cmd_ui.c): 32 connections at once,
 * a connection idle for 30 s (--idle-timeout: 1 to 3600) is closed, a request
 * head must fit a 32 KiB per-connection pool (30 KiB always does). Exit status: 0 after a signal, 1
 * when the server cannot start (port taken, no agent address), 2 usage.
 */
#ifndef TRACKD_CLI_UI_H
#define TRACKD_CLI_UI_H

#define UI_DEFAULT_LISTEN "127.0.0.1:6006"

int cmd_ui(int argc, char **argv);

#endif
