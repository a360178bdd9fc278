/*
 * src/main.c — the aggd command line: common options, then one subcommand.
 *
 * Place: entry point; builds the configuration and hands it to the subcommand.
 * Threads: main thread.
 * Ownership: owns the configuration for the process lifetime.
 * Traps: every subcommand takes -c FILE and --set key=value, anywhere after its name;
 *        exit status is 0 on success, 1 on failure, 2 on a usage error, each failure
 *        with one line on stderr.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <sodium.h>
#include <yajl/yajl_version.h>
#include <zlib.h>
#include <zstd.h>

#include "src/cli.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/tls.h"
#include "core/log.h"
#include "src/server.h"
#include "core/version.h"
#include "store/db.h"
#include "store/migrate.h"

extern char **environ;



static const char usage_text[] =
    "usage: aggd <command> [-c FILE] [--set key=value]...\n"
    "\n"
    "  serve      [--migrate]                       run the daemon (foreground)\n"
    "  migrate    [up | down N | status]            apply/revert embedded schema migrations\n"
    "  partitions maintain [--now ISO8601] [--rearchive] | list\n"
    "                                               partition lifecycle, once\n"
    "  archive    list | verify YYYY-MM | restore YYYY-MM  [--table system_logs|alerts]\n"
    "  user       add --email E --role admin|editor|viewer [--name N]  (password on stdin)\n"
    "  token      create --email E --scope ingest|api [--ttl-days N]\n"
    "  alerts     escalate [--now ISO8601] | ack|resolve|close ID [--now ISO8601]\n"
    "                                               one escalation pass; manual alert actions\n"
    "  config     check                             validate and print the configuration\n"
    "  version\n";

static int fail(const char *fmt, const char *detail)
{
    fprintf(stderr, "aggd: ");
    fprintf(stderr, fmt, detail);
    fputc('\n', stderr);
    return EXIT_FAILURE;
}

#define usage_error agg_cli_usage

/* Splits argv after the command into common options and the command's own args. */
static int parse_common(int argc, char **argv, struct cli *cli)
{
    cli->sets = agg_calloc((size_t)argc + 1, sizeof(*cli->sets));
    cli->args = agg_calloc((size_t)argc + 1, sizeof(*cli->args));
    if (cli->sets == NULL || cli->args == NULL)
        return fail("%s", "out of memory");
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 || strcmp(a, "--set") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "aggd: %s needs a value\n", a);
                return EXIT_USAGE;
            }
            if (a[2] == 's')
                cli->sets[cli->nsets++] = argv[++i];
            else
                cli->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            cli->config_path = a + 9;
        } else if (strncmp(a, "--set=", 6) == 0) {
            cli->sets[cli->nsets++] = argv[i] + 6;
        } else {
            cli->args[cli->nargs++] = argv[i];
        }
    }
    return EXIT_SUCCESS;
}

static struct agg_config *load_config(const struct cli *cli)
{
    struct agg_err err = {0};
    struct agg_config *cfg =
        agg_config_build(cli->config_path, environ, cli->sets, cli->nsets, &err);
    enum agg_log_level level = AGG_LOG_LEVEL_INFO;

    if (cfg == NULL) {
        fail("%s", err.msg);
        return NULL;
    }
    agg_log_level_parse(cfg->log.level, &level);
    agg_log_init(level, getenv("JOURNAL_STREAM") != NULL);
    return cfg;
}

static PGconn *connect_db(const struct agg_config *cfg)
{
    struct agg_err err = {0};
    PGconn *conn = st_db_connect(cfg->database.url, &err);

    if (conn == NULL)
        fail("could not connect to PostgreSQL: %s", err.msg);
    return conn;
}

static int cmd_version(const struct cli *cli, struct agg_config *cfg)
{
    int pq = PQlibVersion();

    (void)cli;
    (void)cfg;
    printf("aggd %s (commit %s)\n", AGG_VERSION, AGG_GIT_COMMIT);
    printf("schema version %d\n", st_migrate_latest());
    printf("libevent %s, libpq %d.%d, yajl %d.%d.%d, zstd %s, libsodium %s, %s, zlib %s\n",
           event_get_version(), pq / 10000, pq % 10000, YAJL_MAJOR, YAJL_MINOR, YAJL_MICRO,
           ZSTD_versionString(), sodium_version_string(), OpenSSL_version(OPENSSL_VERSION),
           zlibVersion());
    return EXIT_SUCCESS;
}

static int cmd_config(const struct cli *cli, struct agg_config *cfg)
{
    if (cli->nargs != 1 || strcmp(cli->args[0], "check") != 0)
        return usage_error("usage: aggd config check [-c FILE] [--set key=value]...");
    if (cfg->listen.syslog_tls[0] != '\0' || cfg->listen.https[0] != '\0') {
        struct agg_err err = {0};
        struct agg_tls *tls = agg_tls_new(&cfg->tls, &err); /* reads the files as serve does */

        if (tls == NULL)
            return fail("%s", err.msg);
        agg_tls_free(tls);
    }
    agg_config_print(cfg, stdout);
    return EXIT_SUCCESS;
}

static bool parse_count(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v < 0 || v > 100000)
        return false;
    *out = (int)v;
    return true;
}

static int cmd_migrate(const struct cli *cli, struct agg_config *cfg)
{
    const char *verb = cli->nargs > 0 ? cli->args[0] : "up";
    struct agg_err err = {0};
    PGconn *conn;
    int rc, n = 0;

    if (strcmp(verb, "up") == 0 || strcmp(verb, "status") == 0) {
        if (cli->nargs > 1)
            return usage_error("usage: aggd migrate [up | down N | status]");
    } else if (strcmp(verb, "down") == 0) {
        if (cli->nargs != 2 || !parse_count(cli->args[1], &n))
            return usage_error("migrate down needs a number of migrations to revert");
    } else {
        return usage_error("usage: aggd migrate [up | down N | status]");
    }
    conn = connect_db(cfg);
    if (conn == NULL)
        return EXIT_FAILURE;
    if (verb[0] == 'u')
        rc = st_migrate_up(conn, stdout, &err);
    else if (verb[0] == 'd')
        rc = st_migrate_down(conn, n, stdout, &err);
    else
        rc = st_migrate_status(conn, stdout, &err);
    PQfinish(conn);
    if (rc != AGG_OK)
        return fail("%s", err.msg);
    return EXIT_SUCCESS;
}

/* Checks the schema before serving; an unreachable database is not fatal here (the
 * daemon starts, reports not ready and checks again when PostgreSQL answers). */
static int check_schema(const struct agg_config *cfg, bool migrate)
{
    struct agg_err err = {0};
    PGconn *conn = st_db_connect(cfg->database.url, &err);
    int version = 0, rc = AGG_OK;

    if (conn == NULL) {
        AGG_LOG_WARN("db", "PostgreSQL is not reachable at start (%s); serving anyway and "
                           "checking the schema once it answers", err.msg);
        return EXIT_SUCCESS;
    }
    if (migrate)
        rc = st_migrate_up(conn, NULL, &err);
    if (rc == AGG_OK)
        rc = st_migrate_current(conn, &version, &err);
    PQfinish(conn);
    if (rc != AGG_OK)
        return fail("%s", err.msg);
    if (version < st_migrate_latest()) {
        fprintf(stderr,
                "aggd: database schema is at version %d but this aggd needs %d: run `aggd "
                "migrate up` or start with --migrate\n",
                version, st_migrate_latest());
        return EXIT_FAILURE;
    }
    if (version > st_migrate_latest()) {
        fprintf(stderr, "aggd: database schema version %d is newer than this aggd (%d): "
                        "upgrade aggd\n", version, st_migrate_latest());
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}

/* SIGHUP: the same sources as at start (file, environment, --set), read again. */
static struct agg_config *rebuild_config(void *arg, struct agg_err *err)
{
    const struct cli *cli = arg;

    return agg_config_build(cli->config_path, environ, cli->sets, cli->nsets, err);
}

static int cmd_serve(const struct cli *cli, struct agg_config *cfg)
{
    struct agg_serve_opts opts = {
        .reload = rebuild_config,
        .reload_arg = (void *)cli,
        .notify_socket = getenv("NOTIFY_SOCKET"),
        .listen_pid = getenv("LISTEN_PID"),
        .listen_fds = getenv("LISTEN_FDS"),
        .schema_version = st_migrate_latest(),
        .health_interval_ms = 1000,
    };
    struct agg_err err = {0};
    bool migrate = false;

    for (int i = 0; i < cli->nargs; i++) {
        if (strcmp(cli->args[i], "--migrate") == 0)
            migrate = true;
        else
            return usage_error("usage: aggd serve [-c FILE] [--set key=value]... [--migrate]");
    }
    if (check_schema(cfg, migrate) != EXIT_SUCCESS)
        return EXIT_FAILURE;
    if (agg_server_run(cfg, &opts, &err) != AGG_OK) {
        AGG_LOG_ERR("server", "%s", err.msg);
        return EXIT_FAILURE;
    }
    AGG_LOG_INFO("server", "stopped");
    return EXIT_SUCCESS;
}

static const struct {
    const char *name;
    int (*fn)(const struct cli *, struct agg_config *);
} commands[] = {
    {"serve", cmd_serve},          {"migrate", cmd_migrate}, {"partitions", agg_cmd_partitions},
    {"archive", agg_cmd_archive},  {"user", agg_cmd_user},   {"token", agg_cmd_token},
    {"alerts", agg_cmd_alerts},    {"config", cmd_config},   {"version", cmd_version},
};

int main(int argc, char **argv)
{
    struct cli cli = {0};
    struct agg_config *cfg;
    int rc;

    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_SUCCESS;
    }
    if (strcmp(argv[1], "--version") == 0)
        argv[1] = "version";
    cli.command = argv[1];
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, cli.command) != 0)
            continue;
        rc = parse_common(argc, argv, &cli);
        if (rc == EXIT_SUCCESS) {
            cfg = load_config(&cli);
            rc = cfg != NULL ? commands[i].fn(&cli, cfg) : EXIT_FAILURE;
            agg_config_free(cfg);
        }
        free(cli.sets);
        free(cli.args);
        libevent_global_shutdown(); /* frees the thread locks LeakSanitizer would report */
        return rc;
    }
    fprintf(stderr, "aggd: unknown command \"%s\" (see `aggd --help`)\n", cli.command);
    return EXIT_USAGE;
}
