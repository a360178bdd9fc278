/*
 * src/cli_auth.c — `aggd user add` and `aggd token create`.
 *
 * Place: main.c dispatches here (src/cli.h); the work is api/auth.c's. DESIGN.md
 *        "Command line".
 * Threads: main thread; blocking libpq.
 * Ownership: the password and the token live in stack buffers, wiped before return.
 * Traps: exit 2 for usage errors (including bad option values caught before any work),
 *        1 for failures, each with one line on stderr. `token create` prints the token
 *        alone on the last line of stdout: scripts take it with `tail -n1`.
 *        The password is the first line of stdin (trailing \n or \r\n stripped); on a
 *        terminal it is asked twice with echo off. A signal while echo is off leaves
 *        the terminal as getpass(3) would: the shell puts echo back.
 * Not here: hashing, validation and SQL (api/auth.c).
 */
#include "src/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "api/auth.h"
#include "store/db.h"

#define USER_USAGE "usage: aggd user add --email E --role admin|editor|viewer [--name N]"
#define TOKEN_USAGE                                                                                \
    "usage: aggd token create --email E --scope ingest|api [--ttl-days N] [--name N]"

/* A password line: the longest password, "\r\n" and the NUL. */
#define PASSWORD_BUF (API_AUTH_PASSWORD_MAX + 3)

struct opt {
    const char *name; /* without the leading "--" */
    const char *value;
};

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, "aggd: %s%s\n", what, detail);
    return EXIT_FAILURE;
}

static int usage_with(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_with(const char *fmt, ...)
{
    char what[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return agg_cli_usage(what);
}

/* Reads "--name VALUE" / "--name=VALUE" pairs from cli->args after the verb into the
 * matching <opts> entries. Anything else, a missing value or a repeated option is a
 * usage error; returns EXIT_SUCCESS or the usage exit status. */
static int parse_opts(const struct cli *cli, struct opt *opts, size_t nopts)
{
    for (int i = 1; i < cli->nargs; i++) {
        const char *a = cli->args[i];
        const char *eq = strchr(a, '=');
        size_t n;
        struct opt *o = NULL;

        if (strncmp(a, "--", 2) != 0)
            return usage_with("unexpected argument \"%s\" for %s", a, cli->command);
        n = eq != NULL ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        for (size_t j = 0; j < nopts && o == NULL; j++) {
            if (strlen(opts[j].name) == n && strncmp(opts[j].name, a + 2, n) == 0)
                o = &opts[j];
        }
        if (o == NULL)
            return usage_with("unknown option \"%s\" for %s", a, cli->command);
        if (o->value != NULL)
            return usage_with("--%s is given twice", o->name);
        if (eq != NULL)
            o->value = eq + 1;
        else if (i + 1 < cli->nargs)
            o->value = cli->args[++i];
        else
            return usage_with("--%s needs a value", o->name);
    }
    return EXIT_SUCCESS;
}

static PGconn *connect_db(const struct agg_config *cfg)
{
    struct agg_err err = {0};
    PGconn *conn = st_db_connect(cfg->database.url, &err);

    if (conn == NULL)
        fail("could not connect to PostgreSQL: ", err.msg);
    return conn;
}

/* Reads one line of <in> into <buf> (PASSWORD_BUF bytes) without its "\n" or "\r\n".
 * End of input gives an empty line. */
static int read_line(FILE *in, char *buf, struct agg_err *err)
{
    size_t n;

    if (fgets(buf, PASSWORD_BUF, in) == NULL) {
        buf[0] = '\0';
        if (ferror(in))
            return agg_err_set(err, AGG_ERR, "could not read the password: %s", strerror(errno));
        return AGG_OK;
    }
    n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n') {
        buf[--n] = '\0';
        if (n > 0 && buf[n - 1] == '\r')
            buf[--n] = '\0';
    } else if (!feof(in)) {
        return agg_err_set(err, AGG_EINVAL, "password is longer than %d bytes",
                           API_AUTH_PASSWORD_MAX);
    }
    return AGG_OK;
}

/* Asks for a line on the terminal behind stdin, echo off. */
static int prompt(const char *question, char *buf, struct agg_err *err)
{
    struct termios old, quiet;
    bool restore = tcgetattr(STDIN_FILENO, &old) == 0;
    int rc;

    fputs(question, stderr);
    fflush(stderr);
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        restore = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
    }
    rc = read_line(stdin, buf, err);
    if (restore)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputc('\n', stderr);
    return rc;
}

/* The password: the first line of stdin, or, on a terminal, asked twice. */
static int read_password(char *buf, struct agg_err *err)
{
    char again[PASSWORD_BUF];
    int rc;

    if (!isatty(STDIN_FILENO))
        return read_line(stdin, buf, err);
    rc = prompt("password: ", buf, err);
    if (rc == AGG_OK && buf[0] != '\0') {
        rc = prompt("password again: ", again, err);
        if (rc == AGG_OK && strcmp(buf, again) != 0)
            rc = agg_err_set(err, AGG_EINVAL, "passwords do not match");
        sodium_memzero(again, sizeof(again));
    }
    return rc;
}

int agg_cmd_user(const struct cli *cli, struct agg_config *cfg)
{
    struct opt opts[] = {{"email", NULL}, {"role", NULL}, {"name", NULL}};
    const char *email, *role, *name;
    char password[PASSWORD_BUF];
    struct agg_err err = {0};
    int rc, user_id = 0;
    PGconn *conn;

    if (cli->nargs < 1 || strcmp(cli->args[0], "add") != 0)
        return agg_cli_usage(USER_USAGE);
    rc = parse_opts(cli, opts, sizeof(opts) / sizeof(opts[0]));
    if (rc != EXIT_SUCCESS)
        return rc;
    email = opts[0].value;
    role = opts[1].value;
    name = opts[2].value;
    if (email == NULL || role == NULL)
        return agg_cli_usage("user add needs --email and --role");
    if (!api_auth_is_role(role))
        return usage_with("--role must be admin, editor or viewer, not \"%s\"", role);
    if (api_auth_check_user(email, role, name, &err) != AGG_OK)
        return agg_cli_usage(err.msg);
    conn = connect_db(cfg);
    if (conn == NULL)
        return EXIT_FAILURE;
    rc = read_password(password, &err);
    if (rc == AGG_OK)
        rc = api_auth_create_user(conn, email, role, name, password, &user_id, &err);
    sodium_memzero(password, sizeof(password));
    PQfinish(conn);
    if (rc != AGG_OK)
        return fail("", err.msg);
    printf("created user %d %s (%s)\n", user_id, email, role);
    return fflush(stdout) == 0 ? EXIT_SUCCESS
                               : fail("could not write to stdout: ", strerror(errno));
}

static bool parse_days(const char *s, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < 1 || v > 3650)
        return false;
    *out = (int)v;
    return true;
}

int agg_cmd_token(const struct cli *cli, struct agg_config *cfg)
{
    struct opt opts[] = {{"email", NULL}, {"scope", NULL}, {"ttl-days", NULL}, {"name", NULL}};
    const char *email, *scope;
    char token[API_AUTH_TOKEN_SIZE];
    struct api_token_info info = {0};
    struct agg_err err = {0};
    int rc, ttl_days = (int)cfg->auth.token_ttl_days;
    PGconn *conn;

    if (cli->nargs < 1 || strcmp(cli->args[0], "create") != 0)
        return agg_cli_usage(TOKEN_USAGE);
    rc = parse_opts(cli, opts, sizeof(opts) / sizeof(opts[0]));
    if (rc != EXIT_SUCCESS)
        return rc;
    email = opts[0].value;
    scope = opts[1].value;
    if (email == NULL || scope == NULL)
        return agg_cli_usage("token create needs --email and --scope");
    if (!api_auth_is_scope(scope))
        return usage_with("--scope must be ingest or api, not \"%s\"", scope);
    if (opts[2].value != NULL && !parse_days(opts[2].value, &ttl_days))
        return usage_with("--ttl-days must be a number of days from 1 to 3650, not \"%s\"",
                          opts[2].value);
    conn = connect_db(cfg);
    if (conn == NULL)
        return EXIT_FAILURE;
    rc = api_auth_create_token(conn, email, scope, ttl_days, opts[3].value, token, &info, &err);
    PQfinish(conn);
    if (rc != AGG_OK)
        return fail("", err.msg);
    printf("created token %d for %s (scope %s, expires %s); it is shown only this once:\n", info.id,
           email, scope, info.expires_at);
    printf("%s\n", token);
    sodium_memzero(token, sizeof(token));
    if (fflush(stdout) != 0)
        return fail("could not write the token to stdout: ", strerror(errno));
    return EXIT_SUCCESS;
}
