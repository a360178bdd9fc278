/*
 * src/cli.h — what main.c hands every subcommand.
 *
 * Place: main.c parses the common options; cmd_* functions (main.c, src/cli_*.c)
 *        do one subcommand each.
 * Threads: main thread.
 */
#ifndef AGGD_SRC_CLI_H
#define AGGD_SRC_CLI_H

#include "src/config.h"

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

/* `aggd user add` and `aggd token create` (src/cli_auth.c): exit status 0, 1 or 2. */
int agg_cmd_user(const struct cli *cli, struct agg_config *cfg);
int agg_cmd_token(const struct cli *cli, struct agg_config *cfg);

/* `aggd partitions maintain|list` and `aggd archive list|verify|restore`
 * (src/cli_partitions.c): exit status 0, 1 or 2. */
int agg_cmd_partitions(const struct cli *cli, struct agg_config *cfg);
int agg_cmd_archive(const struct cli *cli, struct agg_config *cfg);

#endif
