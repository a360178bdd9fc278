/*
 * src/cli.c — small helpers shared by the subcommands.
 *
 * Place: see src/cli.h.
 * Threads: main thread.
 */
#include "src/cli.h"

#include <stdio.h>
#include <string.h>

int agg_cli_usage(const char *what)
{
    fprintf(stderr, "aggd: %s (see `aggd --help`)\n", what);
    return AGG_EXIT_USAGE;
}

const char *agg_cli_option(const struct cli *cli, const char *name, int *dup)
{
    size_t n = strlen(name);
    const char *found = NULL;

    for (int i = 0; i < cli->nargs; i++) {
        const char *a = cli->args[i];
        const char *v = NULL;

        if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, n) != 0)
            continue;
        if (a[2 + n] == '=')
            v = a + 3 + n;
        else if (a[2 + n] == '\0' && i + 1 < cli->nargs)
            v = cli->args[++i];
        else
            continue;
        if (found != NULL && dup != NULL)
            *dup = 1;
        found = v;
    }
    return found;
}
