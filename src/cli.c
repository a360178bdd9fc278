/*
 * src/cli.c — small helpers shared by the subcommands.
 *
 * Place: see src/cli.h.
 * Threads: main thread.
 */
#include "src/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/time.h"
#include "store/db.h"

int agg_cli_usage(const char *what)
{
    fprintf(stderr, "aggd: %s (see `aggd --help`)\n", what);
    return AGG_EXIT_USAGE;
}

int agg_cli_fail(const char *what, const char *detail)
{
    fprintf(stderr, "aggd: %s%s\n", what, detail);
    return EXIT_FAILURE;
}

PGconn *agg_cli_connect(const struct agg_config *cfg)
{
    struct agg_err err = {0};
    PGconn *conn = st_db_connect(cfg->database.url, &err);

    if (conn == NULL)
        agg_cli_fail("could not connect to PostgreSQL: ", err.msg);
    return conn;
}

bool agg_cli_parse_opts(const struct cli *cli, int first, struct agg_cli_opt *opts,
                        size_t nopts)
{
    for (int i = first; i < cli->nargs; i++) {
        const char *a = cli->args[i];
        const char *eq = strchr(a, '=');
        size_t n;
        struct agg_cli_opt *o = NULL;

        if (strncmp(a, "--", 2) != 0)
            return false;
        n = eq != NULL ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        for (size_t j = 0; j < nopts && o == NULL; j++) {
            if (strlen(opts[j].name) == n && strncmp(opts[j].name, a + 2, n) == 0)
                o = &opts[j];
        }
        if (o == NULL || o->seen)
            return false;
        o->seen = true;
        if (o->flag) {
            if (eq != NULL)
                return false;
            continue;
        }
        if (eq != NULL)
            o->value = eq + 1;
        else if (i + 1 < cli->nargs)
            o->value = cli->args[++i];
        else
            return false;
    }
    return true;
}

bool agg_cli_parse_now(const char *s, int64_t *us)
{
    char buf[40];

    if (strlen(s) == 10) {
        snprintf(buf, sizeof(buf), "%sT00:00:00Z", s);
        s = buf;
    }
    return agg_time_parse_iso8601(s, strlen(s), us);
}
