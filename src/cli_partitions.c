/*
 * src/cli_partitions.c — `aggd partitions maintain|list` and `aggd archive
 * list|verify|restore`.
 *
 * Place: main.c dispatches here (src/cli.h); the work is store/partitions.c's.
 *        DESIGN.md "Command line", docs/partitions.md.
 * Threads: main thread; blocking libpq.
 * Ownership: nothing kept.
 * Traps: exit 2 for usage errors, 1 for failures, each with one line on stderr.
 *        AGGD_TEST_FAIL_AFTER=detached|exported|verified (tests only) stops `maintain`
 *        right after that archive state is recorded, as a crash would; the serve timer
 *        never reads it.
 * Not here: SQL and files (store/partitions.c, store/archive.c).
 */
#include "src/cli.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/time.h"
#include "store/archive.h"
#include "store/db.h"
#include "store/partitions.h"

#define PARTITIONS_USAGE                                                                           \
    "usage: aggd partitions maintain [--now ISO8601] [--rearchive] | aggd partitions list"
#define ARCHIVE_USAGE                                                                              \
    "usage: aggd archive list | verify YYYY-MM [--table T] | restore YYYY-MM [--table T]"

static int maintain(const struct cli *cli, struct agg_config *cfg)
{
    struct agg_cli_opt opts[] = {{"now", false, NULL, false}, {"rearchive", true, NULL, false}};
    struct st_partitions_opts po = {0};
    struct st_partitions_result res;
    struct agg_err err = {0};
    const char *fail_after = getenv("AGGD_TEST_FAIL_AFTER");
    PGconn *conn;
    int rc;

    if (!agg_cli_parse_opts(cli, 1, opts, 2))
        return agg_cli_usage(PARTITIONS_USAGE);
    po.now_us = agg_time_now_us();
    if (opts[0].value != NULL && !agg_cli_parse_now(opts[0].value, &po.now_us))
        return agg_cli_usage("--now must be an ISO 8601 timestamp");
    po.premake_months = (int)cfg->partitions.premake_months;
    po.retention_months = (int)cfg->partitions.retention_months;
    po.archive_dir = cfg->archive.dir;
    po.rearchive = opts[1].seen;
    po.archive_grace_hours = (int)cfg->partitions.archive_grace_hours;
    if (fail_after != NULL && fail_after[0] != '\0')
        po.fail_after = fail_after;
    conn = agg_cli_connect(cfg);
    if (conn == NULL)
        return EXIT_FAILURE;
    rc = st_partitions_maintain(conn, &po, stdout, &res, &err);
    PQfinish(conn);
    if (rc != AGG_OK)
        return agg_cli_fail("partition maintenance failed: ", err.msg);
    if (!res.skipped)
        printf("maintenance done: %d created, %d archived, %d failed, %d postponed\n", res.created,
               res.archived, res.failed, res.postponed);
    return EXIT_SUCCESS;
}

/* The header line of `aggd partitions list`, once, before the first row. */
static void print_header(FILE *out, bool *started)
{
    if (*started)
        return;
    for (int i = 0; st_partitions_columns[i] != NULL; i++)
        fprintf(out, "%s%s", i > 0 ? "\t" : "", st_partitions_columns[i]);
    fputc('\n', out);
    *started = true;
}

/* One tab-separated line of `aggd partitions list`; "-" where a value is missing. */
static int print_partition(void *arg, const struct st_partitions_row *row)
{
    bool *started = arg;
    char rows[24] = "-", bytes[24] = "-";

    print_header(stdout, started);
    if (row->has_rows)
        snprintf(rows, sizeof(rows), "%" PRId64, row->rows);
    if (row->has_bytes)
        snprintf(bytes, sizeof(bytes), "%" PRId64, row->bytes);
    printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row->table, row->month, row->where,
           row->archive_state != NULL ? row->archive_state : "-", rows, bytes,
           row->range != NULL ? row->range : "-");
    return AGG_OK;
}

/* Prints the header and one line per partition and archived month; nothing when the
 * query fails. */
static int print_partitions(PGconn *conn, struct agg_err *err)
{
    bool started = false;
    int rc = st_partitions_each(conn, print_partition, &started, err);

    if (rc == AGG_OK)
        print_header(stdout, &started);
    return rc;
}

int agg_cmd_partitions(const struct cli *cli, struct agg_config *cfg)
{
    struct agg_err err = {0};
    PGconn *conn;
    int rc;

    if (cli->nargs >= 1 && strcmp(cli->args[0], "maintain") == 0)
        return maintain(cli, cfg);
    if (cli->nargs != 1 || strcmp(cli->args[0], "list") != 0)
        return agg_cli_usage(PARTITIONS_USAGE);
    conn = agg_cli_connect(cfg);
    if (conn == NULL)
        return EXIT_FAILURE;
    rc = print_partitions(conn, &err);
    PQfinish(conn);
    return rc == AGG_OK ? EXIT_SUCCESS : agg_cli_fail("could not list partitions: ", err.msg);
}

int agg_cmd_archive(const struct cli *cli, struct agg_config *cfg)
{
    struct agg_cli_opt opts[] = {{"table", false, NULL, false}};
    struct st_archive_restored restored = {0};
    struct agg_err err = {0};
    const char *table;
    bool verify;
    PGconn *conn;
    int month, rc;

    if (cli->nargs == 1 && strcmp(cli->args[0], "list") == 0) {
        conn = agg_cli_connect(cfg);
        if (conn == NULL)
            return EXIT_FAILURE;
        rc = st_archive_list(conn, stdout, &err);
        PQfinish(conn);
        return rc == AGG_OK ? EXIT_SUCCESS : agg_cli_fail("could not list archives: ", err.msg);
    }
    if (cli->nargs < 2 ||
        (strcmp(cli->args[0], "verify") != 0 && strcmp(cli->args[0], "restore") != 0) ||
        !agg_cli_parse_opts(cli, 2, opts, 1))
        return agg_cli_usage(ARCHIVE_USAGE);
    verify = strcmp(cli->args[0], "verify") == 0;
    if (st_archive_month_parse(cli->args[1], &month) != AGG_OK)
        return agg_cli_usage("the month must be YYYY-MM");
    table = opts[0].value != NULL ? opts[0].value : "system_logs";
    if (strcmp(table, "system_logs") != 0 && strcmp(table, "alerts") != 0)
        return agg_cli_usage("--table must be system_logs or alerts");
    conn = agg_cli_connect(cfg);
    if (conn == NULL)
        return EXIT_FAILURE;
    if (verify)
        rc = st_archive_verify(conn, cfg->archive.dir, table, month, &err);
    else
        rc = st_archive_restore(conn, cfg->archive.dir, table, month, &restored, &err);
    PQfinish(conn);
    if (rc != AGG_OK)
        return agg_cli_fail(verify ? "archive verification failed: " : "restore failed: ", err.msg);
    if (restored.merged)
        printf("%s %s restored: ok, merged into the re-created partition: %llu of %llu archived "
               "rows added, the others were there\n",
               table, cli->args[1], (unsigned long long)restored.added_rows,
               (unsigned long long)restored.archived_rows);
    else
        printf("%s %s %s: ok\n", table, cli->args[1], verify ? "verified" : "restored");
    return EXIT_SUCCESS;
}
