/*
 * src/cli.h — what main.c hands every subcommand.
 *
 * Place: main.c parses the common options; cmd_* functions (main.c, src/cli_*.c)
 *        do one subcommand each.
 * Threads: main thread.
 */
#ifndef AGGD_SRC_CLI_H
#define AGGD_SRC_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"

enum { AGG_EXIT_USAGE = 2 };
#define EXIT_USAGE AGG_EXIT_USAGE

struct cli {
    const char *command;
    const char *config_path;
    char **sets;
    int nsets;
    char **args; /* what remains after -c/--set, in order */
    int nargs;
};

/* Prints "aggd: <what> (see `aggd --help`)" and returns AGG_EXIT_USAGE. */
int agg_cli_usage(const char *what);

/* Prints "aggd: <what><detail>" and returns EXIT_FAILURE. */
int agg_cli_fail(const char *what, const char *detail);

/* A session to database.url; on failure prints why and returns NULL. Caller owns the
 * result: PQfinish(). */
struct pg_conn *agg_cli_connect(const struct agg_config *cfg);

/* An option after the verb: "--name VALUE", "--name=VALUE", or a flag. */
struct agg_cli_opt {
    const char *name; /* without the leading "--" */
    bool flag;
    const char *value; /* points into cli->args, NULL when absent */
    bool seen;
};

/* Reads cli->args from <first> on into the matching <opts>. False on anything else: an
 * unknown or repeated option, a missing value, a value given to a flag. */
bool agg_cli_parse_opts(const struct cli *cli, int first, struct agg_cli_opt *opts,
                        size_t nopts);

/* A --now value: a full ISO 8601 timestamp, or a bare YYYY-MM-DD (midnight UTC). */
bool agg_cli_parse_now(const char *s, int64_t *us);

/* `aggd user add` and `aggd token create` (src/cli_auth.c): exit status 0, 1 or 2. */
int agg_cmd_user(const struct cli *cli, struct agg_config *cfg);
int agg_cmd_token(const struct cli *cli, struct agg_config *cfg);

/* `aggd partitions maintain|list` and `aggd archive list|verify|restore`
 * (src/cli_partitions.c): exit status 0, 1 or 2. */
int agg_cmd_partitions(const struct cli *cli, struct agg_config *cfg);
int agg_cmd_archive(const struct cli *cli, struct agg_config *cfg);

/* `aggd alerts escalate|ack|resolve|close` (src/cli_alerts.c): exit status 0, 1 or 2. */
int agg_cmd_alerts(const struct cli *cli, struct agg_config *cfg);

#endif
