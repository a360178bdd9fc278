/*
 * src/cli.c — small helpers shared by the subcommands.
 *
 * Place: see src/cli.h.
 * Threads: main thread.
 */
#include "src/cli.h"

#include <stdio.h>

int agg_cli_usage(const char *what)
{
    fprintf(stderr, "aggd: %s (see `aggd --help`)\n", what);
    return AGG_EXIT_USAGE;
}
