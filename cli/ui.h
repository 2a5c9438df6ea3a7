/*
 * ui.h — `trackctl ui`: the local web UI (cmd_ui.c).
 *
 *   trackctl ui [--listen ADDR:PORT] [--allow-remote] [--open]
 *
 * Serves the UI (built-in HTML/JS/CSS, uPlot) and a read-only JSON API over
 * HTTP (NNG's HTTP server) until SIGINT/SIGTERM. Every API request is one
 * query to the agent over its socket, asked as the user running trackctl
 * ui: the agent's own uid checks decide what the UI may show, exactly as for
 * `trackctl show`. The API answers are the agent's typed replies as JSON
 * (pb_json_query_reply), never built here.
 *
 * Access: a random token in the printed URL, exchanged for an HttpOnly
 * SameSite=Strict cookie; the Host header must name the listen address;
 * GET/HEAD only; loopback unless --allow-remote (see README, "Looking at runs
 * in a browser"). Exit status: 0 after a signal, 1 when the server cannot
 * start (port taken, no agent address), 2 usage.
 */
#ifndef TRACKD_CLI_UI_H
#define TRACKD_CLI_UI_H

#define UI_DEFAULT_LISTEN "127.0.0.1:6006"

int cmd_ui(int argc, char **argv);

#endif
