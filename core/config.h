/*
 * core/config.h — the effective configuration: defaults < file < AGGD_* env < --set.
 *
 * Place: built once by main.c; only src/ sees the whole struct agg_config. Each
 *        module's _new() takes its own options instead: one section below
 *        (struct agg_notify_opts, ...) or the module's own small options struct
 *        (struct st_pipeline_opts, ...) that src/server.c fills from several sections.
 *        A config reload builds a new struct agg_config and hands each module its new
 *        section, so no module reads keys of another module's section.
 * Threads: immutable after agg_config_build(); readable from any thread.
 * Ownership: strings inside belong to the struct agg_config; a section handed to a
 *            module is borrowed from it.
 * Not here: what each key means to its module (see the key table in config.c and
 *           DESIGN.md "Configuration").
 */
#ifndef AGGD_CORE_CONFIG_H
#define AGGD_CORE_CONFIG_H

#include <stdbool.h>
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

/* The sections: database.*, listen.*, ... Each one is a module's options. */

struct agg_database_opts {
    char *url;
    int64_t pool_size;
    int64_t pool_overflow;
    int64_t recycle_seconds;
};

struct agg_listen_opts {
    char *syslog_udp;
    char *syslog_tcp;
    char *json_tcp;
    char *http;
    char *syslog_tls; /* syslog over TLS (RFC 5425); empty: off */
    char *https;      /* the routes of http over TLS; empty: off */
    int64_t max_connections;
    int64_t idle_timeout_seconds;
    int64_t http_header_timeout_ms;  /* first byte of a request to the end of its head */
    int64_t http_body_timeout_ms;    /* end of the head to the end of the body */
    int64_t http_inflight_body_bytes; /* bodies being received, all HTTP connections */
    char *syslog_3164_timezone; /* IANA zone of RFC 3164 times without offset */
    int64_t udp_rcvbuf; /* bytes; 0: the kernel's default */
};

struct agg_ingest_opts {
    int64_t max_message_bytes;
    int64_t max_body_bytes;
    int http_auth; /* enum agg_http_auth */
};

struct agg_batch_opts {
    int64_t max_rows;
    int64_t max_ms;
};

struct agg_writer_opts {
    int64_t threads;
    int64_t grace_seconds;
};

struct agg_spool_opts {
    char *dir;
    int64_t max_bytes;
    int64_t segment_bytes;
    int fsync; /* enum agg_spool_fsync */
};

struct agg_partitions_opts {
    int64_t premake_months;
    int64_t retention_months;
    int64_t accept_past_months;
    int64_t archive_grace_hours;
};

struct agg_archive_opts {
    char *dir;
};

struct agg_alerts_opts {
    int64_t eval_interval_ms;
};

struct agg_notify_opts {
    char *smtp_url;
    char *from;
    int64_t webhook_timeout_ms;
    int64_t max_attempts;
    char *ca_file; /* PEM CA bundle for webhook/SMTP TLS; empty: system store */
};

struct agg_auth_opts {
    int64_t token_ttl_days;
};

/* The certificate of listen.syslog_tls and listen.https (core/tls.h). */
struct agg_tls_opts {
    char *cert_file;      /* PEM chain, server certificate first */
    char *key_file;       /* PEM private key */
    char *client_ca_file; /* PEM CAs a client certificate must chain to; empty: none asked */
};

/* Connector credentials at rest (api/secret.h). */
struct agg_secrets_opts {
    char *key_file; /* 32-byte key, made (0600) when missing */
};

/* Uploaded files (api/files.c). */
struct agg_uploads_opts {
    char *dir;
    int64_t max_bytes; /* per user */
};

struct agg_log_opts {
    char *level;
};

/* Plain data: every field is a key of the table in config.c, `section.field`. Addresses
 * are "host:port" or "[v6]:port"; an empty string disables that listener. */
struct agg_config {
    struct agg_database_opts database;
    struct agg_listen_opts listen;
    struct agg_ingest_opts ingest;
    struct agg_batch_opts batch;
    struct agg_writer_opts writer;
    struct agg_spool_opts spool;
    struct agg_partitions_opts partitions;
    struct agg_archive_opts archive;
    struct agg_alerts_opts alerts;
    struct agg_notify_opts notify;
    struct agg_auth_opts auth;
    struct agg_tls_opts tls;
    struct agg_secrets_opts secrets;
    struct agg_uploads_opts uploads;
    struct agg_log_opts log;
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

/* Told of each key whose value differs, and whether the reload applied it. */
typedef void (*agg_config_change_fn)(void *arg, const char *key, bool applied);

/* Reload: copies into <live> the values of <next> (a freshly built, valid configuration)
 * for the keys a running daemon can take; calls <fn> for every key that differs, applied
 * or not (those need a restart). Strings move between the two: free <next> afterwards.
 * Returns the number of keys applied. Loop thread; modules read the changed fields on
 * the loop thread, or are told by the caller (log level, evaluation interval). */
int agg_config_reload(struct agg_config *live, struct agg_config *next, agg_config_change_fn fn,
                      void *arg);

/* Writes every key as a `key = value  # source` line, secrets masked; re-readable. */
void agg_config_print(const struct agg_config *cfg, FILE *out);

/* Copies <value> into <out> (<size> bytes) with any password in a URI or libpq
 * conninfo replaced by "****". */
void agg_config_mask_secret(const char *value, char *out, size_t size);

/* Parses "host:port", "[v6]:port" into <host> (<hsize> bytes) and <port>. */
int agg_config_parse_addr(const char *addr, char *host, size_t hsize, int *port,
                          struct agg_err *err);

#endif
