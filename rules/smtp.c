/*
 * rules/smtp.c — SMTP client on libevent: one connection per message.
 *
 * Place: see rules/smtp.h.
 * Threads: event-loop thread only.
 * Ownership: each session owns its bufferevent, timer, copies of the envelope and the
 *            prepared (dot-stuffed) message; the client owns the credentials.
 * Traps: after the 220 to STARTTLS any bytes already received are an injection attempt
 *        (CVE-2011-0411 style) and fail the session. A server that offered STARTTLS is
 *        never talked to in plain text again. Replies may be multi-line ("250-...");
 *        only the last line ends them. Credentials never reach a message or a log.
 * Not here: connection and TLS set-up (rules/httpc.c), the message (rules/render.c).
 */
#include "rules/smtp.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <sodium.h>

#include "rules/httpc.h"
#include "core/alloc.h"

#define REPLY_LINE_MAX 4096
#define ADDR_MAX       320
#define CRED_MAX       256

enum step {
    STEP_GREETING = 0,
    STEP_EHLO,
    STEP_HELO,
    STEP_STARTTLS,
    STEP_HANDSHAKE, /* waiting for the TLS handshake after STARTTLS */
    STEP_AUTH,
    STEP_MAIL,
    STEP_RCPT,
    STEP_DATA,
    STEP_BODY,
    STEP_QUIT,
};

static const char *const step_names[] = {
    "greeting",  "EHLO",    "HELO", "STARTTLS", "TLS handshake", "AUTH",
    "MAIL FROM", "RCPT TO", "DATA", "message",  "QUIT",
};

struct smtp_sess {
    struct rl_smtp *s;
    struct smtp_sess *prev, *next;
    struct bufferevent *bev;
    struct event *timer;
    enum step step;
    bool tls, cap_starttls, cap_auth_plain, delivered;
    char *from;
    char **rcpt;
    int nrcpt, next_rcpt;
    struct evbuffer *data; /* the dot-stuffed message and its final ".\r\n" */
    struct rl_smtp_result res;
    rl_smtp_cb cb;
    void *arg;
};

struct rl_smtp {
    struct event_base *base;
    struct rl_httpc_net net;
    int timeout_ms;
    bool implicit_tls, closing;
    char host[256];
    int port;
    char where[300]; /* smtp://host:port, no credentials */
    char user[CRED_MAX], pass[CRED_MAX];
    bool has_auth;
    char helo[256];
    struct smtp_sess *sessions;
};

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

static void sess_free(struct smtp_sess *x)
{
    if (x->timer != NULL)
        event_free(x->timer);
    if (x->bev != NULL)
        bufferevent_free(x->bev);
    if (x->data != NULL)
        evbuffer_free(x->data);
    for (int i = 0; x->rcpt != NULL && i < x->nrcpt; i++)
        free(x->rcpt[i]);
    free(x->rcpt);
    free(x->from);
    free(x);
}

/* Ends <x> with its result so far, or with <code> and a formatted detail when <fmt> is
 * not NULL and the message was not already delivered; then calls back. */
static void finish(struct smtp_sess *x, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct smtp_sess *x, int code, const char *fmt, ...)
{
    struct rl_smtp_result res = x->res;
    rl_smtp_cb cb = x->cb;
    void *arg = x->arg;

    if (!x->delivered && fmt != NULL) {
        va_list ap;

        res.code = code;
        res.ok = false;
        va_start(ap, fmt);
        vsnprintf(res.detail, sizeof(res.detail), fmt, ap);
        va_end(ap);
    }
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        x->s->sessions = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
    sess_free(x);
    cb(arg, &res);
}

static void send_line(struct smtp_sess *x, enum step next, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void send_line(struct smtp_sess *x, enum step next, const char *fmt, ...)
{
    struct evbuffer *out = bufferevent_get_output(x->bev);
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = evbuffer_add_vprintf(out, fmt, ap);
    va_end(ap);
    if (n < 0 || evbuffer_add(out, "\r\n", 2) != 0) {
        finish(x, 0, "%s: out of memory", x->s->where);
        return;
    }
    x->step = next;
}

/* AUTH PLAIN: base64("\0user\0pass"), wiped after use. */
static void send_auth(struct smtp_sess *x)
{
    unsigned char raw[2 * CRED_MAX + 2];
    char b64[sodium_base64_ENCODED_LEN(sizeof(raw), sodium_base64_VARIANT_ORIGINAL)];
    size_t ul = strlen(x->s->user), pl = strlen(x->s->pass);

    raw[0] = '\0';
    memcpy(raw + 1, x->s->user, ul);
    raw[1 + ul] = '\0';
    memcpy(raw + 2 + ul, x->s->pass, pl);
    sodium_bin2base64(b64, sizeof(b64), raw, 2 + ul + pl, sodium_base64_VARIANT_ORIGINAL);
    send_line(x, STEP_AUTH, "AUTH PLAIN %s", b64);
    sodium_memzero(raw, sizeof(raw));
    sodium_memzero(b64, sizeof(b64));
}

static bool host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* What follows a successful EHLO/HELO. */
static void after_hello(struct smtp_sess *x)
{
    const struct rl_smtp *s = x->s;

    if (!x->tls && x->cap_starttls) {
        send_line(x, STEP_STARTTLS, "STARTTLS");
        return;
    }
    if (s->has_auth) {
        if (!x->tls && !host_is_loopback(s->host)) {
            finish(x, 0, "%s: refusing to send credentials over an unencrypted connection",
                   s->where);
            return;
        }
        if (!x->cap_auth_plain) {
            finish(x, 0, "%s: server does not offer AUTH PLAIN", s->where);
            return;
        }
        send_auth(x);
        return;
    }
    send_line(x, STEP_MAIL, "MAIL FROM:<%s>", x->from);
}

/* Swaps in a TLS filter over the connection (after the 220 to STARTTLS, or at once for
 * smtps). False when the session failed and is gone. */
static bool start_tls(struct smtp_sess *x)
{
    struct agg_err err = {0};

    if (evbuffer_get_length(bufferevent_get_input(x->bev)) > 0) {
        finish(x, 0, "%s: server sent data before the TLS handshake", x->s->where);
        return false;
    }
    x->bev = rl_httpc_tls_wrap(x->bev, x->s->net.tls, x->s->host, &err);
    if (x->bev == NULL) {
        finish(x, 0, "%s: %s", x->s->where, err.msg);
        return false;
    }
    bufferevent_setcb(x->bev, on_read, NULL, on_event, x);
    bufferevent_enable(x->bev, EV_READ | EV_WRITE);
    x->tls = true;
    x->step = STEP_HANDSHAKE;
    x->cap_starttls = x->cap_auth_plain = false;
    return true;
}

static void refused(struct smtp_sess *x, int code, const char *text)
{
    finish(x, code, "%s: %s refused: %d %.180s", x->s->where, step_names[x->step], code, text);
}

static bool accepted(const struct smtp_sess *x, int code)
{
    switch (x->step) {
    case STEP_GREETING:
    case STEP_STARTTLS:
        return code == 220;
    case STEP_EHLO:
    case STEP_HELO:
    case STEP_MAIL:
    case STEP_BODY:
        return code == 250;
    case STEP_RCPT:
        return code == 250 || code == 251;
    case STEP_AUTH:
        return code == 235;
    case STEP_DATA:
        return code == 354;
    case STEP_HANDSHAKE:
        return false;
    case STEP_QUIT:
        return true;
    }
    return false;
}

/* After an accepted reply: the next command. */
static void advance(struct smtp_sess *x, int code, const char *text)
{
    switch (x->step) {
    case STEP_GREETING:
        send_line(x, STEP_EHLO, "EHLO %s", x->s->helo);
        break;
    case STEP_EHLO:
    case STEP_HELO:
        after_hello(x);
        break;
    case STEP_STARTTLS:
        start_tls(x); /* EHLO again once the handshake is done (on_event) */
        break;
    case STEP_AUTH:
        send_line(x, STEP_MAIL, "MAIL FROM:<%s>", x->from);
        break;
    case STEP_MAIL:
    case STEP_RCPT:
        if (x->next_rcpt < x->nrcpt)
            send_line(x, STEP_RCPT, "RCPT TO:<%s>", x->rcpt[x->next_rcpt++]);
        else
            send_line(x, STEP_DATA, "DATA");
        break;
    case STEP_DATA:
        if (bufferevent_write_buffer(x->bev, x->data) != 0)
            finish(x, 0, "%s: out of memory", x->s->where);
        else
            x->step = STEP_BODY;
        break;
    case STEP_BODY:
        x->delivered = true;
        x->res.ok = true;
        snprintf(x->res.detail, sizeof(x->res.detail), "%d %.240s", code, text);
        send_line(x, STEP_QUIT, "QUIT");
        break;
    case STEP_HANDSHAKE:
    case STEP_QUIT:
        finish(x, code, NULL);
        break;
    }
}

/* One complete reply <code> (<text>: its last line's text) for the current step. */
static void on_reply(struct smtp_sess *x, int code, const char *text)
{
    if (!x->delivered) /* after delivery the result stays that of the message */
        x->res.code = code;
    if (accepted(x, code))
        advance(x, code, text);
    else if (x->step == STEP_EHLO && code >= 500 && !x->tls)
        send_line(x, STEP_HELO, "HELO %s", x->s->helo); /* an old server, without STARTTLS */
    else if (x->step == STEP_HANDSHAKE)
        finish(x, code, "%s: reply during the TLS handshake", x->s->where);
    else
        refused(x, code, text);
}

/* Notes the EHLO keywords this client uses from one reply line's text. */
static void note_capability(struct smtp_sess *x, const char *text)
{
    if (strcasecmp(text, "STARTTLS") == 0)
        x->cap_starttls = true;
    if (strncasecmp(text, "AUTH", 4) == 0 && (text[4] == ' ' || text[4] == '=')) {
        for (const char *p = text + 5; (p = strcasestr(p, "PLAIN")) != NULL; p += 5) {
            if ((p[-1] == ' ' || p[-1] == '=') && (p[5] == '\0' || p[5] == ' '))
                x->cap_auth_plain = true;
        }
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct smtp_sess *x = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char *line;
    size_t n;

    while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
        bool last = n == 3 || (n > 3 && line[3] == ' ');
        int code;

        if (n < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
            !isdigit((unsigned char)line[2]) || (n > 3 && line[3] != ' ' && line[3] != '-')) {
            free(line);
            finish(x, 0, "%s: not an SMTP reply during %s", x->s->where, step_names[x->step]);
            return;
        }
        code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        for (size_t i = 0; i < n; i++) { /* server text ends up in details: printable */
            if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] == 0x7f)
                line[i] = ' ';
        }
        if (x->step == STEP_EHLO)
            note_capability(x, n > 4 ? line + 4 : "");
        if (last) {
            /* one reply per command (no pipelining): the session may be gone now */
            on_reply(x, code, n > 4 ? line + 4 : "");
            free(line);
            return;
        }
        free(line);
    }
    if (evbuffer_get_length(in) > REPLY_LINE_MAX)
        finish(x, 0, "%s: reply line too long", x->s->where);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_sess *x = arg;
    char why[200];

    if ((what & BEV_EVENT_CONNECTED) != 0) {
        if (x->s->implicit_tls && !x->tls) {
            if (start_tls(x)) /* smtps: TLS first, then the greeting */
                x->step = STEP_GREETING;
        } else if (x->step == STEP_HANDSHAKE) {
            send_line(x, STEP_EHLO, "EHLO %s", x->s->helo); /* STARTTLS done: start over */
        }
        return;
    }
    if ((what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) == 0)
        return;
    if (x->step == STEP_QUIT) {
        finish(x, x->res.code, NULL);
        return;
    }
    rl_httpc_error_text(bev, what, why, sizeof(why));
    finish(x, 0, "%s: %s during %s", x->s->where, why, step_names[x->step]);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_sess *x = arg;

    (void)fd;
    (void)what;
    finish(x, 0, "%s: timed out after %d ms during %s", x->s->where, x->s->timeout_ms,
           step_names[x->step]);
}

/* Copies the percent-decoded <in> into <out> (CRED_MAX bytes); false if it does not fit
 * or holds a NUL. */
static bool decode_cred(const char *in, size_t n, char *out)
{
    char *raw = agg_strndup(in, n);
    char *dec = raw != NULL ? evhttp_uridecode(raw, 0, &n) : NULL;
    bool ok = dec != NULL && n < CRED_MAX && strlen(dec) == n;

    if (ok)
        memcpy(out, dec, n + 1);
    if (raw != NULL)
        sodium_memzero(raw, strlen(raw));
    if (dec != NULL)
        sodium_memzero(dec, strlen(dec));
    free(raw);
    free(dec);
    return ok;
}

static int parse_url(struct rl_smtp *s, const char *url, struct agg_err *err)
{
    struct evhttp_uri *uri = url != NULL ? evhttp_uri_parse_with_flags(url, 0) : NULL;
    const char *scheme, *host, *user, *path;
    int rc = AGG_EINVAL;

    if (uri == NULL)
        return agg_err_set(err, AGG_EINVAL, "SMTP URL is not a valid URL");
    scheme = evhttp_uri_get_scheme(uri);
    host = evhttp_uri_get_host(uri);
    user = evhttp_uri_get_userinfo(uri);
    path = evhttp_uri_get_path(uri);
    if (scheme == NULL || (strcasecmp(scheme, "smtp") != 0 && strcasecmp(scheme, "smtps") != 0)) {
        agg_err_set(err, rc, "SMTP URL scheme must be smtp or smtps");
        goto out;
    }
    s->implicit_tls = strcasecmp(scheme, "smtps") == 0;
    if (host == NULL || host[0] == '\0' || strlen(host) >= sizeof(s->host)) {
        agg_err_set(err, rc, "SMTP URL has no host");
        goto out;
    }
    if ((path != NULL && path[0] != '\0' && strcmp(path, "/") != 0) ||
        evhttp_uri_get_query(uri) != NULL) {
        agg_err_set(err, rc, "SMTP URL must not have a path or query");
        goto out;
    }
    s->port = evhttp_uri_get_port(uri);
    if (s->port < 0)
        s->port = s->implicit_tls ? 465 : 25;
    if (s->port == 0 || s->port > 65535) {
        agg_err_set(err, rc, "SMTP URL port is out of range");
        goto out;
    }
    /* IPv6 literals come bracketed */
    snprintf(s->host, sizeof(s->host), "%.*s", (int)strlen(host) - (host[0] == '[' ? 2 : 0),
             host + (host[0] == '[' ? 1 : 0));
    snprintf(s->where, sizeof(s->where), "%s://%s:%d", s->implicit_tls ? "smtps" : "smtp", host,
             s->port);
    if (user != NULL) {
        const char *colon = strchr(user, ':');

        if (colon == NULL || !decode_cred(user, (size_t)(colon - user), s->user) ||
            !decode_cred(colon + 1, strlen(colon + 1), s->pass) || s->user[0] == '\0') {
            agg_err_set(err, rc, "SMTP URL credentials must be user:password (percent-encoded)");
            goto out;
        }
        s->has_auth = true;
    }
    rc = AGG_OK;

out:
    evhttp_uri_free(uri);
    return rc;
}

void rl_smtp_set_timeout(struct rl_smtp *s, int timeout_ms)
{
    if (s != NULL)
        s->timeout_ms = timeout_ms > 0 ? timeout_ms : 1; /* requests started from now on */
}

struct rl_smtp *rl_smtp_new(struct event_base *base, const char *smtp_url, const char *ca_file,
                            int timeout_ms, struct agg_err *err)
{
    struct rl_smtp *s = agg_calloc(1, sizeof(*s));

    if (s == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    s->base = base;
    s->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    if (sodium_init() < 0) {
        agg_err_set(err, AGG_ERR, "cannot initialise libsodium");
        goto fail;
    }
    if (parse_url(s, smtp_url, err) != AGG_OK)
        goto fail;
    if (rl_httpc_net_init(&s->net, base, ca_file, err) != AGG_OK)
        goto fail;
    /* EHLO names us; any hostname will do for the servers we talk to */
    if (gethostname(s->helo, sizeof(s->helo)) != 0 || s->helo[0] == '\0' ||
        strpbrk(s->helo, " \r\n") != NULL)
        snprintf(s->helo, sizeof(s->helo), "localhost");
    s->helo[sizeof(s->helo) - 1] = '\0';
    return s;

fail:
    rl_smtp_free(s);
    return NULL;
}

void rl_smtp_free(struct rl_smtp *s)
{
    if (s == NULL)
        return;
    s->closing = true;
    while (s->sessions != NULL)
        finish(s->sessions, 0, "cancelled");
    rl_httpc_net_clear(&s->net);
    sodium_memzero(s->user, sizeof(s->user));
    sodium_memzero(s->pass, sizeof(s->pass));
    free(s);
}

static bool addr_ok(const char *a)
{
    size_t n = a != NULL ? strlen(a) : 0;

    if (n == 0 || n > ADDR_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];

        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>')
            return false;
    }
    return true;
}

/* <msg>[<len>] with CRLF line ends, leading dots doubled, and the final ".\r\n". */
static int prepare_data(struct evbuffer *out, const char *msg, size_t len)
{
    bool bol = true;
    int rc = 0;

    for (size_t i = 0; i < len && rc == 0; i++) {
        if (bol && msg[i] == '.')
            rc = evbuffer_add(out, ".", 1);
        bol = false;
        if (msg[i] == '\r' || msg[i] == '\n') {
            if (msg[i] == '\r' && i + 1 < len && msg[i + 1] == '\n')
                i++;
            if (rc == 0)
                rc = evbuffer_add(out, "\r\n", 2);
            bol = true;
        } else if (rc == 0) {
            rc = evbuffer_add(out, &msg[i], 1);
        }
    }
    if (rc == 0 && !bol)
        rc = evbuffer_add(out, "\r\n", 2);
    if (rc == 0)
        rc = evbuffer_add(out, ".\r\n", 3);
    return rc == 0 ? AGG_OK : AGG_ENOMEM;
}

static int copy_envelope(struct smtp_sess *x, const char *from, const char *const *rcpt, int nrcpt)
{
    x->from = agg_strdup(from);
    x->rcpt = agg_calloc((size_t)nrcpt, sizeof(*x->rcpt));
    if (x->from == NULL || x->rcpt == NULL)
        return AGG_ENOMEM;
    for (; x->nrcpt < nrcpt; x->nrcpt++) {
        x->rcpt[x->nrcpt] = agg_strdup(rcpt[x->nrcpt]);
        if (x->rcpt[x->nrcpt] == NULL)
            return AGG_ENOMEM;
    }
    return AGG_OK;
}

int rl_smtp_send(struct rl_smtp *s, const char *from, const char *const *rcpt, int nrcpt,
                 const char *message, size_t len, rl_smtp_cb cb, void *arg, struct agg_err *err)
{
    struct timeval tv = {s->timeout_ms / 1000, (s->timeout_ms % 1000) * 1000};
    struct smtp_sess *x;

    if (s->closing)
        return agg_err_set(err, AGG_EAGAIN, "SMTP client is shutting down");
    if (cb == NULL || rcpt == NULL || nrcpt <= 0 || (message == NULL && len > 0))
        return agg_err_set(err, AGG_EINVAL, "SMTP send needs recipients and a callback");
    if (!addr_ok(from))
        return agg_err_set(err, AGG_EINVAL, "sender address is empty, too long or malformed");
    for (int i = 0; i < nrcpt; i++) {
        if (!addr_ok(rcpt[i]))
            return agg_err_set(err, AGG_EINVAL, "recipient %d is empty, too long or malformed", i);
    }
    x = agg_calloc(1, sizeof(*x));
    if (x == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    x->s = s;
    x->cb = cb;
    x->arg = arg;
    x->data = evbuffer_new();
    x->timer = evtimer_new(s->base, on_timeout, x);
    if (x->data == NULL || x->timer == NULL || copy_envelope(x, from, rcpt, nrcpt) != AGG_OK ||
        prepare_data(x->data, message, len) != AGG_OK || evtimer_add(x->timer, &tv) != 0) {
        sess_free(x);
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    }
    x->bev = rl_httpc_connect(s->base, s->net.dns, s->host, s->port, err);
    if (x->bev == NULL) {
        sess_free(x);
        return AGG_ERR;
    }
    bufferevent_setcb(x->bev, on_read, NULL, on_event, x);
    bufferevent_enable(x->bev, EV_READ | EV_WRITE);
    x->next = s->sessions;
    if (s->sessions != NULL)
        s->sessions->prev = x;
    s->sessions = x;
    return AGG_OK;
}
