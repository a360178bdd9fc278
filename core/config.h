/*
 * core/config.h — the effective configuration: defaults < file < AGGD_* env < --set.
 *
 * Place: built once by main.c, handed `const` to each module's _new().
 * Threads: immutable after agg_config_build(); readable from any thread.
 * Ownership: strings inside belong to the struct agg_config.
 * Not here: what each key means to its module (see the key table in config.c and
 *           DESIGN.md "Configuration").
 */
#ifndef AGGD_CORE_CONFIG_H
#define AGGD_CORE_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

enum agg_http_auth {
    AGG_HTTP_AUTH_TOKEN = 0,
    AGG_HTTP_AUTH_NONE,
};

enum agg_spool_fsync {
    AGG_SPOOL_FSYNC_ALWAYS = 0,
    AGG_SPOOL_FSYNC_BATCH,
    AGG_SPOOL_FSYNC_NEVER,
};

enum agg_conf_source {
    AGG_CONF_SRC_DEFAULT = 0,
    AGG_CONF_SRC_FILE,
    AGG_CONF_SRC_ENV,
    AGG_CONF_SRC_SET,
};

/* Plain data: every field is a key of the table in config.c. Addresses are
 * "host:port" or "[v6]:port"; an empty string disables that listener. */
struct agg_config {
    struct {
        char *url;
        int64_t pool_size;
        int64_t pool_overflow;
        int64_t recycle_seconds;
    } database;
    struct {
        char *syslog_udp;
        char *syslog_tcp;
        char *json_tcp;
        char *http;
        int64_t max_connections;
        int64_t idle_timeout_seconds;
        char *syslog_3164_timezone; /* IANA zone of RFC 3164 times without offset */
        int64_t udp_rcvbuf; /* bytes; 0: the kernel's default */
    } listen;
    struct {
        int64_t max_message_bytes;
        int64_t max_body_bytes;
        int http_auth; /* enum agg_http_auth */
    } ingest;
    struct {
        int64_t max_rows;
        int64_t max_ms;
    } batch;
    struct {
        int64_t threads;
        int64_t grace_seconds;
    } writer;
    struct {
        char *dir;
        int64_t max_bytes;
        int64_t segment_bytes;
        int fsync; /* enum agg_spool_fsync */
    } spool;
    struct {
        int64_t premake_months;
        int64_t retention_months;
        int64_t accept_past_months;
        int64_t archive_grace_hours;
    } partitions;
    struct {
        char *dir;
    } archive;
    struct {
        int64_t eval_interval_ms;
    } alerts;
    struct {
        char *smtp_url;
        char *from;
        int64_t webhook_timeout_ms;
        int64_t max_attempts;
        char *ca_file; /* PEM CA bundle for webhook/SMTP TLS; empty: system store */
    } notify;
    struct {
        int64_t token_ttl_days;
    } auth;
    struct {
        char *level;
    } log;
    /* Where each key's value came from, indexed like the key table. */
    unsigned char source[64];
};

/* Builds the effective configuration: defaults, then the file at <path> (NULL: none),
 * then AGGD_* variables found in <envp> (NULL-terminated, may be NULL), then the
 * <nsets> "key=value" strings of <sets>. Unknown keys and bad values fail, naming the
 * key and where it came from. Caller owns the result: agg_config_free(). */
struct agg_config *agg_config_build(const char *path, char *const *envp, char *const *sets,
                                    int nsets, struct agg_err *err);

/* Defaults only. Caller owns the result: agg_config_free(). */
struct agg_config *agg_config_new(struct agg_err *err);
void agg_config_free(struct agg_config *cfg);

/* Sets <key> to the text <value>, validated, recording <src>. */
int agg_config_set(struct agg_config *cfg, const char *key, const char *value,
                   enum agg_conf_source src, struct agg_err *err);

/* Reads `key = value` lines from <path> into <cfg> (source FILE). */
int agg_config_load_file(struct agg_config *cfg, const char *path, struct agg_err *err);

/* Applies AGGD_<KEY> variables of <envp> (dots and dashes as '_', upper case). */
int agg_config_load_env(struct agg_config *cfg, char *const *envp, struct agg_err *err);

/* Writes every key as a `key = value  # source` line, secrets masked; re-readable. */
void agg_config_print(const struct agg_config *cfg, FILE *out);

/* Copies <value> into <out> (<size> bytes) with any password in a URI or libpq
 * conninfo replaced by "****". */
void agg_config_mask_secret(const char *value, char *out, size_t size);

/* Parses "host:port", "[v6]:port" into <host> (<hsize> bytes) and <port>. */
int agg_config_parse_addr(const char *addr, char *host, size_t hsize, int *port,
                          struct agg_err *err);

#endif
