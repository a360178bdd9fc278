/*
 * src/cli_alerts.c — `aggd alerts escalate [--now ISO8601]` and
 * `aggd alerts ack|resolve|close ID [--now ISO8601]`.
 *
 * Place: main.c dispatches here (src/cli.h); the work is rules/escalate.c's and
 *        rules/alerts.c's. docs/alerts.md.
 * Threads: main thread; blocking libpq.
 * Ownership: nothing kept.
 * Traps: --now exists so that escalation can be tested at chosen times, like
 *        `aggd partitions maintain --now`; the manual actions record no user (the
 *        API records who).
 */
#include "src/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/time.h"
#include "rules/alerts.h"
#include "rules/escalate.h"

#define ALERTS_USAGE                                                                               \
    "usage: aggd alerts escalate [--now ISO8601] | aggd alerts ack|resolve|close ID "              \
    "[--now ISO8601]"

static int escalate(PGconn *conn, int64_t now_us)
{
    struct rl_escalate_result res;
    struct agg_err err = {0};

    if (rl_escalate_pass(conn, now_us, &res, &err) != AGG_OK)
        return agg_cli_fail("escalation failed: ", err.msg);
    printf("escalation done: %d escalated, %d repeated, %d notices queued\n", res.escalated,
           res.repeated, res.notices);
    return EXIT_SUCCESS;
}

static bool parse_id(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v <= 0 || v > 2147483647L)
        return false;
    *out = (int)v;
    return true;
}

static int act(PGconn *conn, const char *verb, int id, int64_t now_us)
{
    struct agg_err err = {0};
    int rc;

    if (strcmp(verb, "ack") == 0)
        rc = rl_alerts_acknowledge(conn, id, 0, now_us, &err);
    else if (strcmp(verb, "resolve") == 0)
        rc = rl_alerts_resolve(conn, id, 0, now_us, &err);
    else
        rc = rl_alerts_close(conn, id, 0, now_us, &err);
    if (rc != AGG_OK)
        return agg_cli_fail("", err.msg);
    printf("alert %d: %s done\n", id, verb);
    return EXIT_SUCCESS;
}

int agg_cmd_alerts(const struct cli *cli, struct agg_config *cfg)
{
    struct agg_cli_opt opts[] = {{"now", false, NULL, false}};
    const char *verb = cli->nargs > 0 ? cli->args[0] : "";
    bool is_escalate = strcmp(verb, "escalate") == 0;
    int64_t now_us = agg_time_now_us();
    int id = 0, rc;
    PGconn *conn;

    if (!is_escalate && strcmp(verb, "ack") != 0 && strcmp(verb, "resolve") != 0 &&
        strcmp(verb, "close") != 0)
        return agg_cli_usage(ALERTS_USAGE);
    if (!is_escalate && (cli->nargs < 2 || !parse_id(cli->args[1], &id)))
        return agg_cli_usage("the alert ID must be a positive integer");
    if (!agg_cli_parse_opts(cli, is_escalate ? 1 : 2, opts, 1))
        return agg_cli_usage(ALERTS_USAGE);
    if (opts[0].value != NULL && !agg_cli_parse_now(opts[0].value, &now_us))
        return agg_cli_usage("--now must be an ISO 8601 timestamp");
    conn = agg_cli_connect(cfg);
    if (conn == NULL)
        return EXIT_FAILURE;
    rc = is_escalate ? escalate(conn, now_us) : act(conn, verb, id, now_us);
    PQfinish(conn);
    return rc;
}
