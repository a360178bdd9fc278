/*
 * core/config.c — key table, parsing and precedence of the configuration.
 *
 * Place: main.c builds the config once; modules receive it const.
 * Threads: not thread-safe while building; immutable afterwards.
 * Ownership: the struct agg_config owns its strings.
 * Traps: one table drives file, environment, --set and `config check`; a new key is
 *        one line here plus its field in config.h. Sizes take binary suffixes
 *        (k, M, G, T with or without "iB"), as PostgreSQL reads them.
 */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/tz.h"
#include "core/alloc.h"
#include "core/log.h"

#define UTF8_BOM "\xef\xbb\xbf"

enum conf_type {
    CONF_STRING = 0,
    CONF_OPT_STRING, /* a string that may be empty (empty: feature off / default) */
    CONF_SECRET, /* a URI or conninfo whose password is masked when printed */
    CONF_ADDR,   /* host:port or empty */
    CONF_INT,
    CONF_SIZE,
    CONF_ENUM,
    CONF_LOGLEVEL,
    CONF_TIMEZONE, /* an IANA time zone name, checked by loading the zone */
};

struct conf_key {
    const char *name;
    enum conf_type type;
    const char *def;
    int64_t min, max;
    size_t offset;
    const char *choices; /* CONF_ENUM: comma-separated, in enum order */
    const char *help;
};

#define KIB (INT64_C(1024))
#define GIB (KIB * KIB * KIB)
#define OFF(f) offsetof(struct agg_config, f)

static const struct conf_key keys[] = {
    {"database.url", CONF_SECRET, "postgresql:///dataaggregator", 0, 0, OFF(database.url), NULL,
     "libpq conninfo or URI"},
    {"database.pool_size", CONF_INT, "20", 1, 1000, OFF(database.pool_size), NULL,
     "connections kept open"},
    {"database.pool_overflow", CONF_INT, "40", 0, 1000, OFF(database.pool_overflow), NULL,
     "extra connections under load"},
    {"database.recycle_seconds", CONF_INT, "3600", 0, 7 * 86400, OFF(database.recycle_seconds),
     NULL, "reconnect connections older than this (0: never)"},
    {"listen.syslog_udp", CONF_ADDR, "127.0.0.1:5514", 0, 0, OFF(listen.syslog_udp), NULL,
     "syslog over UDP (empty disables)"},
    {"listen.syslog_tcp", CONF_ADDR, "127.0.0.1:5514", 0, 0, OFF(listen.syslog_tcp), NULL,
     "syslog over TCP, octet-counted or LF framed (empty disables)"},
    {"listen.json_tcp", CONF_ADDR, "127.0.0.1:5170", 0, 0, OFF(listen.json_tcp), NULL,
     "JSON lines over TCP (empty disables)"},
    {"listen.http", CONF_ADDR, "127.0.0.1:8080", 0, 0, OFF(listen.http), NULL,
     "HTTP ingest, API, /metrics and health (empty disables)"},
    {"listen.syslog_tls", CONF_ADDR, "", 0, 0, OFF(listen.syslog_tls), NULL,
     "syslog over TLS (RFC 5425, conventionally port 6514; empty disables)"},
    {"listen.https", CONF_ADDR, "", 0, 0, OFF(listen.https), NULL,
     "the routes of listen.http over TLS (empty disables)"},
    {"listen.max_connections", CONF_INT, "1024", 1, 1000000, OFF(listen.max_connections), NULL,
     "open TCP connections per listener; more are refused"},
    {"listen.idle_timeout_seconds", CONF_INT, "600", 0, 86400 * 7,
     OFF(listen.idle_timeout_seconds), NULL, "close TCP connections silent this long (0: never)"},
    {"listen.http_header_timeout_ms", CONF_INT, "10000", 100, 3600000,
     OFF(listen.http_header_timeout_ms), NULL,
     "an HTTP request's head must be complete this long after its first byte"},
    {"listen.http_body_timeout_ms", CONF_INT, "120000", 100, 3600000,
     OFF(listen.http_body_timeout_ms), NULL,
     "an HTTP request's body must be complete this long after its head"},
    {"listen.http_inflight_body_bytes", CONF_SIZE, "256MiB", 0, 64 * GIB,
     OFF(listen.http_inflight_body_bytes), NULL,
     "HTTP request bodies being received at once, all connections; more get 503"},
    {"listen.syslog_3164_timezone", CONF_TIMEZONE, "UTC", 0, 0, OFF(listen.syslog_3164_timezone),
     NULL, "IANA time zone of RFC 3164 timestamps, which carry no offset"},
    {"listen.udp_rcvbuf", CONF_SIZE, "8MiB", 0, GIB, OFF(listen.udp_rcvbuf), NULL,
     "UDP receive buffer asked of the kernel (0: the kernel's default)"},
    {"ingest.max_message_bytes", CONF_SIZE, "65536", 256, 64 * KIB * KIB,
     OFF(ingest.max_message_bytes), NULL, "largest accepted event"},
    {"ingest.max_body_bytes", CONF_SIZE, "16MiB", 1024, 1024 * KIB * KIB,
     OFF(ingest.max_body_bytes), NULL, "largest HTTP request body, before and after decompression"},
    {"ingest.http_auth", CONF_ENUM, "token", 0, 0, OFF(ingest.http_auth), "token,none",
     "bearer token of scope ingest required on POST /v1/logs"},
    {"batch.max_rows", CONF_INT, "5000", 1, 1000000, OFF(batch.max_rows), NULL,
     "rows per COPY batch"},
    {"batch.max_ms", CONF_INT, "200", 1, 60000, OFF(batch.max_ms), NULL,
     "longest a batch stays open"},
    {"writer.threads", CONF_INT, "2", 1, 64, OFF(writer.threads), NULL,
     "writer threads, one PostgreSQL connection each"},
    {"writer.grace_seconds", CONF_INT, "10", 0, 3600, OFF(writer.grace_seconds), NULL,
     "on stop, how long batches may still land; the rest stays spooled"},
    {"spool.dir", CONF_STRING, "./var/spool", 0, 0, OFF(spool.dir), NULL, "spool directory"},
    {"spool.max_bytes", CONF_SIZE, "1GiB", 1024 * KIB, INT64_MAX, OFF(spool.max_bytes), NULL,
     "spool size bound"},
    {"spool.segment_bytes", CONF_SIZE, "64MiB", 64 * KIB, 1024 * KIB * KIB,
     OFF(spool.segment_bytes), NULL, "spool segment size; committed segments are deleted"},
    {"spool.fsync", CONF_ENUM, "batch", 0, 0, OFF(spool.fsync), "always,batch,never",
     "when the spool is fsynced before acknowledging"},
    {"partitions.premake_months", CONF_INT, "2", 0, 24, OFF(partitions.premake_months), NULL,
     "months created ahead of the current one"},
    {"partitions.retention_months", CONF_INT, "3", 1, 1200, OFF(partitions.retention_months),
     NULL, "months kept before archiving"},
    {"partitions.accept_past_months", CONF_INT, "3", 0, 1200, OFF(partitions.accept_past_months),
     NULL, "how far back a partition is created on demand"},
    {"partitions.archive_grace_hours", CONF_INT, "24", 0, 24 * 366,
     OFF(partitions.archive_grace_hours), NULL,
     "never archive a month that received rows this recently, real time (0: no check)"},
    {"archive.dir", CONF_STRING, "./var/archive", 0, 0, OFF(archive.dir), NULL,
     "where archived partitions go"},
    {"alerts.eval_interval_ms", CONF_INT, "1000", 100, 3600000, OFF(alerts.eval_interval_ms),
     NULL, "rule evaluation period"},
    {"notify.smtp_url", CONF_SECRET, "smtp://127.0.0.1:25", 0, 0, OFF(notify.smtp_url), NULL,
     "SMTP server for email notifications"},
    {"notify.from", CONF_STRING, "aggd@localhost", 0, 0, OFF(notify.from), NULL,
     "sender address of email notifications"},
    {"notify.webhook_timeout_ms", CONF_INT, "5000", 100, 600000, OFF(notify.webhook_timeout_ms),
     NULL, "webhook request timeout"},
    {"notify.max_attempts", CONF_INT, "8", 1, 100, OFF(notify.max_attempts), NULL,
     "delivery attempts per notification"},
    {"notify.ca_file", CONF_OPT_STRING, "", 0, 0, OFF(notify.ca_file), NULL,
     "PEM file of CA certificates for webhook and SMTP TLS (empty: system store)"},
    {"auth.token_ttl_days", CONF_INT, "30", 1, 3650, OFF(auth.token_ttl_days), NULL,
     "lifetime of tokens issued by login"},
    {"tls.cert_file", CONF_OPT_STRING, "", 0, 0, OFF(tls.cert_file), NULL,
     "PEM certificate chain of the TLS listeners, server certificate first"},
    {"tls.key_file", CONF_OPT_STRING, "", 0, 0, OFF(tls.key_file), NULL,
     "PEM private key of tls.cert_file"},
    {"tls.client_ca_file", CONF_OPT_STRING, "", 0, 0, OFF(tls.client_ca_file), NULL,
     "PEM CA certificates; when set, TLS clients must present a certificate they signed"},
    {"secrets.key_file", CONF_STRING, "./var/secrets.key", 0, 0, OFF(secrets.key_file), NULL,
     "key of connector secrets at rest (32 random bytes, made 0600 when missing)"},
    {"uploads.dir", CONF_STRING, "./var/uploads", 0, 0, OFF(uploads.dir), NULL,
     "where uploaded files are kept"},
    {"uploads.max_bytes", CONF_SIZE, "1GiB", 0, INT64_MAX, OFF(uploads.max_bytes), NULL,
     "uploaded bytes each user may keep at once"},
    {"log.level", CONF_LOGLEVEL, "info", 0, 0, OFF(log.level), NULL,
     "error, warning, info or debug"},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(NKEYS <= sizeof(((struct agg_config *)0)->source), "source[] too small");

static const char *const source_names[] = {"default", "file", "env", "set"};

static const struct conf_key *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    }
    return NULL;
}

static bool parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (*s == '\0' || isspace((unsigned char)*s))
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool parse_size(const char *s, int64_t *out)
{
    static const struct {
        const char *suffix;
        int shift;
    } units[] = {{"", 0},     {"b", 0},   {"k", 10},  {"kb", 10},  {"kib", 10},
                 {"m", 20},   {"mb", 20}, {"mib", 20}, {"g", 30},  {"gb", 30},
                 {"gib", 30}, {"t", 40},  {"tb", 40}, {"tib", 40}};
    char *end;
    long long v;

    if (!isdigit((unsigned char)*s))
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0)
        return false;
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(end, units[i].suffix) == 0) {
            if (v > (INT64_MAX >> units[i].shift))
                return false;
            *out = (int64_t)v << units[i].shift;
            return true;
        }
    }
    return false;
}

static int enum_index(const char *choices, const char *s)
{
    size_t len = strlen(s);
    int idx = 0;

    for (const char *p = choices; *p != '\0'; idx++) {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);

        if (n == len && strncmp(p, s, n) == 0)
            return idx;
        p += n + (comma != NULL);
    }
    return -1;
}

static const char *enum_name(const char *choices, int idx, char *buf, size_t size)
{
    const char *p = choices;

    for (int i = 0; i < idx && p != NULL; i++) {
        p = strchr(p, ',');
        if (p != NULL)
            p++;
    }
    if (p == NULL)
        return "?";
    snprintf(buf, size, "%.*s", (int)strcspn(p, ","), p);
    return buf;
}

int agg_config_parse_addr(const char *addr, char *host, size_t hsize, int *port,
                          struct agg_err *err)
{
    const char *colon;
    const char *h = addr;
    size_t hlen;
    int64_t p;

    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');

        if (close == NULL || close[1] != ':')
            return agg_err_set(err, AGG_EINVAL, "\"%s\" is not [ipv6]:port", addr);
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return agg_err_set(err, AGG_EINVAL, "\"%s\" has no :port", addr);
        if (memchr(addr, ':', (size_t)(colon - addr)) != NULL)
            return agg_err_set(err, AGG_EINVAL,
                               "\"%s\": write IPv6 addresses in brackets, [::1]:port", addr);
        hlen = (size_t)(colon - addr);
    }
    if (hlen == 0)
        return agg_err_set(err, AGG_EINVAL, "\"%s\" has no host", addr);
    if (hlen >= hsize)
        return agg_err_set(err, AGG_EINVAL, "\"%s\": host name too long", addr);
    if (!parse_int(colon + 1, &p) || p < 0 || p > 65535)
        return agg_err_set(err, AGG_EINVAL, "\"%s\": port must be 0-65535", addr);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return AGG_OK;
}

static int set_key(struct agg_config *cfg, const struct conf_key *k, const char *value,
                   struct agg_err *err)
{
    char *field = (char *)cfg + k->offset;
    int64_t v;

    switch (k->type) {
    case CONF_ADDR:
        if (value[0] != '\0') {
            char host[256];
            int port;

            if (agg_config_parse_addr(value, host, sizeof(host), &port, err) != AGG_OK)
                return AGG_EINVAL;
        }
        /* fall through */
    case CONF_TIMEZONE:
        if (k->type == CONF_TIMEZONE) {
            struct agg_tz *tz = agg_tz_load(value, err);

            if (tz == NULL)
                return err != NULL ? err->code : AGG_EINVAL;
            agg_tz_free(tz);
        }
        /* fall through */
    case CONF_STRING:
    case CONF_OPT_STRING:
    case CONF_SECRET:
    case CONF_LOGLEVEL: {
        char *copy;
        enum agg_log_level lvl;

        if (k->type == CONF_LOGLEVEL && !agg_log_level_parse(value, &lvl))
            return agg_err_set(err, AGG_EINVAL,
                               "\"%s\" is not one of error, warning, info, debug", value);
        if (k->type == CONF_STRING && value[0] == '\0')
            return agg_err_set(err, AGG_EINVAL, "must not be empty");
        copy = agg_strdup(value);
        if (copy == NULL)
            return agg_err_set(err, AGG_ENOMEM, "out of memory");
        free(*(char **)field);
        *(char **)field = copy;
        return AGG_OK;
    }
    case CONF_INT:
    case CONF_SIZE:
        if (!(k->type == CONF_INT ? parse_int(value, &v) : parse_size(value, &v)))
            return agg_err_set(err, AGG_EINVAL, "\"%s\" is not %s", value,
                               k->type == CONF_INT ? "an integer"
                                                   : "a size (bytes, or with k, M, G, T)");
        if (v < k->min || v > k->max)
            return agg_err_set(err, AGG_EINVAL, "%s is out of range %lld..%lld", value,
                               (long long)k->min, (long long)k->max);
        *(int64_t *)field = v;
        return AGG_OK;
    case CONF_ENUM: {
        int idx = enum_index(k->choices, value);

        if (idx < 0)
            return agg_err_set(err, AGG_EINVAL, "\"%s\" is not one of %s", value, k->choices);
        *(int *)field = idx;
        return AGG_OK;
    }
    }
    return agg_err_set(err, AGG_ERR, "unhandled key type");
}

/* Rewrites control bytes (C0, DEL, and C1 as UTF-8) in <err>'s message as \xNN: the
 * message quotes keys and values from files, the environment and the command line,
 * and ends up on a terminal. Idempotent; returns the error's code. */
static int escape_err(struct agg_err *err)
{
    char out[AGG_ERR_MSG_MAX];
    size_t n = 0;

    if (err == NULL)
        return AGG_EINVAL;
    for (const unsigned char *p = (const unsigned char *)err->msg; *p != '\0'; p++) {
        bool c1 = p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f;

        if (*p >= 0x20 && *p != 0x7f && !c1) {
            if (n + 1 >= sizeof(out))
                break;
            out[n++] = (char)*p;
            continue;
        }
        if (c1)
            p++; /* shown as the code point's byte: \x9b for U+009B */
        if (n + 4 >= sizeof(out))
            break;
        n += (size_t)snprintf(out + n, sizeof(out) - n, "\\x%02x", *p);
    }
    out[n] = '\0';
    memcpy(err->msg, out, n + 1);
    return err->code;
}

int agg_config_set(struct agg_config *cfg, const char *key, const char *value,
                   enum agg_conf_source src, struct agg_err *err)
{
    const struct conf_key *k = find_key(key);

    if (k == NULL) {
        agg_err_set(err, AGG_EINVAL, "unknown configuration key \"%s\"", key);
        return escape_err(err);
    }
    if (set_key(cfg, k, value, err) != AGG_OK) {
        agg_err_prefix(err, "invalid value for \"%s\"", key);
        return escape_err(err);
    }
    cfg->source[k - keys] = (unsigned char)src;
    return AGG_OK;
}

struct agg_config *agg_config_new(struct agg_err *err)
{
    struct agg_config *cfg = agg_calloc(1, sizeof(*cfg));

    if (cfg == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < NKEYS; i++) {
        if (agg_config_set(cfg, keys[i].name, keys[i].def, AGG_CONF_SRC_DEFAULT, err) != AGG_OK)
            goto fail;
    }
    return cfg; /* cross-key checks are agg_config_build()'s: defaults pass them */

fail:
    agg_config_free(cfg);
    return NULL;
}

/* Keys a running daemon takes from a reload; every other changed key waits for a
 * restart. Each is read where it is used (not copied at start), on the loop thread,
 * or has a setter the server calls after agg_config_reload(). */
static const char *const live_keys[] = {
    "log.level",
    "listen.max_connections",
    "listen.idle_timeout_seconds",
    "listen.http_header_timeout_ms",
    "listen.http_body_timeout_ms",
    "listen.http_inflight_body_bytes",
    "ingest.max_body_bytes",
    "notify.from",
    "notify.max_attempts",
    "notify.webhook_timeout_ms",
    "partitions.premake_months",
    "partitions.retention_months",
    "partitions.archive_grace_hours",
    "alerts.eval_interval_ms",
    "tls.cert_file",
    "tls.key_file",
    "tls.client_ca_file",
};

static bool is_live(const char *name)
{
    for (size_t i = 0; i < sizeof(live_keys) / sizeof(live_keys[0]); i++) {
        if (strcmp(live_keys[i], name) == 0)
            return true;
    }
    return false;
}

static bool is_string(enum conf_type type)
{
    return type == CONF_STRING || type == CONF_OPT_STRING || type == CONF_SECRET ||
           type == CONF_ADDR || type == CONF_LOGLEVEL || type == CONF_TIMEZONE;
}

int agg_config_reload(struct agg_config *live, struct agg_config *next, agg_config_change_fn fn,
                      void *arg)
{
    int applied = 0;

    for (size_t i = 0; i < NKEYS; i++) {
        const struct conf_key *k = &keys[i];
        char *a = (char *)live + k->offset, *b = (char *)next + k->offset;
        bool changed, ok;

        if (is_string(k->type))
            changed = strcmp(*(char **)a, *(char **)b) != 0;
        else if (k->type == CONF_ENUM)
            changed = *(int *)a != *(int *)b;
        else
            changed = *(int64_t *)a != *(int64_t *)b;
        if (!changed)
            continue;
        ok = is_live(k->name);
        if (ok) {
            if (is_string(k->type)) { /* swap: <next> frees the old string */
                char *t = *(char **)a;

                *(char **)a = *(char **)b;
                *(char **)b = t;
            } else if (k->type == CONF_ENUM) {
                *(int *)a = *(int *)b;
            } else {
                *(int64_t *)a = *(int64_t *)b;
            }
            live->source[i] = next->source[i];
            applied++;
        }
        if (fn != NULL)
            fn(arg, k->name, ok);
    }
    return applied;
}

void agg_config_free(struct agg_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < NKEYS; i++) {
        switch (keys[i].type) {
        case CONF_STRING:
        case CONF_OPT_STRING:
        case CONF_SECRET:
        case CONF_ADDR:
        case CONF_LOGLEVEL:
        case CONF_TIMEZONE:
            free(*(char **)((char *)cfg + keys[i].offset));
            break;
        default:
            break;
        }
    }
    free(cfg);
}

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

/* Splits one `key = value` line in place. Values may be double-quoted (with \" and \\
 * escapes); an unquoted value ends at " #". Returns false with <why> on a bad line. */
static bool split_line(char *line, char **key, char **value, const char **why)
{
    char *eq = strchr(line, '=');
    char *v;

    if (eq == NULL) {
        *why = "expected key = value";
        return false;
    }
    *eq = '\0';
    *key = trim(line);
    if (**key == '\0') {
        *why = "missing key before '='";
        return false;
    }
    v = eq + 1;
    while (isspace((unsigned char)*v))
        v++;
    if (*v == '"') {
        char *w = v, *r = v + 1;

        for (; *r != '\0' && *r != '"'; r++) {
            if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
                r++;
            *w++ = *r;
        }
        if (*r != '"') {
            *why = "unterminated quoted value";
            return false;
        }
        *w = '\0';
        r = trim(r + 1);
        if (*r != '\0' && *r != '#') {
            *why = "text after quoted value";
            return false;
        }
        *value = v;
        return true;
    }
    for (char *p = v; *p != '\0'; p++) {
        if (*p == '#' && p > v && isspace((unsigned char)p[-1])) {
            *p = '\0';
            break;
        }
    }
    *value = trim(v);
    return true;
}

int agg_config_load_file(struct agg_config *cfg, const char *path, struct agg_err *err)
{
    bool seen[NKEYS] = {false};
    char line[8192];
    int lineno = 0;
    int rc = AGG_OK;
    FILE *f = fopen(path, "r");

    if (f == NULL)
        return agg_err_set(err, AGG_EINVAL, "could not open config file \"%s\": %s", path,
                           strerror(errno));
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *why = NULL;
        const struct conf_key *k;
        char *key, *value, *s;

        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            rc = agg_err_set(err, AGG_EINVAL, "%s:%d: line too long", path, lineno);
            break;
        }
        s = line;
        if (lineno == 1 && strncmp(s, UTF8_BOM, sizeof(UTF8_BOM) - 1) == 0)
            s += sizeof(UTF8_BOM) - 1; /* Windows editors write one */
        s = trim(s);
        if (*s == '\0' || *s == '#')
            continue;
        if (!split_line(s, &key, &value, &why)) {
            rc = agg_err_set(err, AGG_EINVAL, "%s:%d: %s", path, lineno, why);
            break;
        }
        k = find_key(key);
        if (k != NULL && seen[k - keys]) {
            rc = agg_err_set(err, AGG_EINVAL, "%s:%d: \"%s\" is set twice", path, lineno, key);
            break;
        }
        if (agg_config_set(cfg, key, value, AGG_CONF_SRC_FILE, err) != AGG_OK) {
            agg_err_prefix(err, "%s:%d", path, lineno);
            rc = err != NULL ? err->code : AGG_EINVAL;
            break;
        }
        seen[k - keys] = true;
    }
    if (rc == AGG_OK && ferror(f))
        rc = agg_err_set(err, AGG_EINVAL, "could not read config file \"%s\"", path);
    fclose(f);
    if (rc != AGG_OK)
        escape_err(err);
    return rc;
}

static void env_name(const char *key, char *out, size_t size)
{
    size_t n = (size_t)snprintf(out, size, "AGGD_");

    for (const char *p = key; *p != '\0' && n + 1 < size; p++)
        out[n++] = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

int agg_config_load_env(struct agg_config *cfg, char *const *envp, struct agg_err *err)
{
    if (envp == NULL)
        return AGG_OK;
    for (size_t i = 0; i < NKEYS; i++) {
        char name[128];
        size_t nlen;

        env_name(keys[i].name, name, sizeof(name));
        nlen = strlen(name);
        for (char *const *e = envp; *e != NULL; e++) {
            if (strncmp(*e, name, nlen) != 0 || (*e)[nlen] != '=')
                continue;
            if (agg_config_set(cfg, keys[i].name, *e + nlen + 1, AGG_CONF_SRC_ENV, err) !=
                AGG_OK) {
                agg_err_prefix(err, "environment %s", name);
                return err != NULL ? err->code : AGG_EINVAL;
            }
        }
    }
    return AGG_OK;
}

struct agg_config *agg_config_build(const char *path, char *const *envp, char *const *sets,
                                    int nsets, struct agg_err *err)
{
    struct agg_config *cfg = agg_config_new(err);

    if (cfg == NULL)
        return NULL;
    if (path != NULL && agg_config_load_file(cfg, path, err) != AGG_OK)
        goto fail;
    if (agg_config_load_env(cfg, envp, err) != AGG_OK)
        goto fail;
    for (int i = 0; i < nsets; i++) {
        const char *eq = strchr(sets[i], '=');
        char key[128];

        if (eq == NULL || eq == sets[i] || (size_t)(eq - sets[i]) >= sizeof(key)) {
            agg_err_set(err, AGG_EINVAL, "--set \"%s\": expected key=value", sets[i]);
            escape_err(err);
            goto fail;
        }
        memcpy(key, sets[i], (size_t)(eq - sets[i]));
        key[eq - sets[i]] = '\0';
        if (agg_config_set(cfg, key, eq + 1, AGG_CONF_SRC_SET, err) != AGG_OK) {
            agg_err_prefix(err, "--set");
            goto fail;
        }
    }
    if (cfg->partitions.accept_past_months > cfg->partitions.retention_months) {
        /* else a late row could recreate a month that is already archived */
        agg_err_set(err, AGG_EINVAL,
                    "invalid value for \"partitions.accept_past_months\": %lld is more than "
                    "partitions.retention_months (%lld)",
                    (long long)cfg->partitions.accept_past_months,
                    (long long)cfg->partitions.retention_months);
        goto fail;
    }
    if ((cfg->listen.syslog_tls[0] != '\0' || cfg->listen.https[0] != '\0') &&
        (cfg->tls.cert_file[0] == '\0' || cfg->tls.key_file[0] == '\0')) {
        agg_err_set(err, AGG_EINVAL, "invalid value for \"%s\": empty, but listen.%s is on",
                    cfg->tls.cert_file[0] == '\0' ? "tls.cert_file" : "tls.key_file",
                    cfg->listen.syslog_tls[0] != '\0' ? "syslog_tls" : "https");
        goto fail;
    }
    return cfg;

fail:
    agg_config_free(cfg);
    return NULL;
}

/* Masks every value of <name>=... in the conninfo or URI query <s> (<size> bytes). */
static void mask_param(char *s, size_t size, const char *name)
{
    size_t nlen = strlen(name);

    for (char *p = s; (p = strstr(p, name)) != NULL; p += nlen) {
        char *v = p + nlen, *end;
        bool boundary = p == s || p[-1] == ' ' || p[-1] == '?' || p[-1] == '&';

        while (*v == ' ')
            v++;
        if (!boundary || *v != '=')
            continue;
        v++;
        while (*v == ' ')
            v++;
        if (*v == '\'') {
            end = v + 1;
            while (*end != '\0' && *end != '\'')
                end += (*end == '\\' && end[1] != '\0') ? 2 : 1;
            if (*end == '\'')
                end++;
        } else {
            end = v + strcspn(v, " &#");
        }
        if (strlen(s) + 4 >= size)
            return;
        memmove(v + 4, end, strlen(end) + 1);
        memcpy(v, "****", 4);
    }
}

void agg_config_mask_secret(const char *value, char *out, size_t size)
{
    char *scheme;

    snprintf(out, size, "%s", value);
    scheme = strstr(out, "://");
    if (scheme != NULL) {
        char *auth = scheme + 3;
        char *end = auth + strcspn(auth, "/?#");
        char *at = NULL;

        for (char *p = auth; p < end; p++) {
            if (*p == '@')
                at = p;
        }
        if (at != NULL) {
            char *colon = memchr(auth, ':', (size_t)(at - auth));

            if (colon != NULL && size > (size_t)(colon - out) + 5 + strlen(at)) {
                memmove(colon + 5, at, strlen(at) + 1);
                memcpy(colon + 1, "****", 4);
            }
        }
    }
    mask_param(out, size, "password");
}

void agg_config_print(const struct agg_config *cfg, FILE *out)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const struct conf_key *k = &keys[i];
        const char *field = (const char *)cfg + k->offset;
        char buf[1024];
        const char *text = buf;

        switch (k->type) {
        case CONF_SECRET:
            agg_config_mask_secret(*(char *const *)field, buf, sizeof(buf));
            break;
        case CONF_STRING:
        case CONF_OPT_STRING:
        case CONF_ADDR:
        case CONF_LOGLEVEL:
        case CONF_TIMEZONE:
            text = *(char *const *)field;
            break;
        case CONF_INT:
        case CONF_SIZE:
            snprintf(buf, sizeof(buf), "%lld", (long long)*(const int64_t *)field);
            break;
        case CONF_ENUM:
            text = enum_name(k->choices, *(const int *)field, buf, sizeof(buf));
            break;
        }
        if (text[0] == '\0' || strpbrk(text, "#\"") != NULL || isspace((unsigned char)text[0])) {
            fprintf(out, "%s = \"", k->name);
            for (const char *p = text; *p != '\0'; p++)
                fprintf(out, (*p == '"' || *p == '\\') ? "\\%c" : "%c", *p);
            fprintf(out, "\"");
        } else {
            fprintf(out, "%s = %s", k->name, text);
        }
        fprintf(out, "  # %s\n", source_names[cfg->source[i]]);
    }
}
