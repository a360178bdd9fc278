/*
 * core/http_guard.c — the front of every HTTP connection: reads each request's head
 *                     before evhttp does, and refuses what need not be read.
 *
 * Place: socket -> [guard: a bufferevent filter] -> evhttp -> core/http.c dispatch().
 * Threads: event-loop thread only.
 * Ownership: one guard per connection (struct agg_http_pending), created by evhttp's
 *            bufferevent callback and freed with that bufferevent, or later when a gate
 *            still holds it.
 * Traps: the guard frames requests itself (Content-Length, chunked) to find each head;
 *        whatever it cannot frame as evhttp does it refuses and closes, so both never
 *        disagree on where a request starts (request smuggling). A refusal is handed
 *        to evhttp as a request of the guard's own making (GET, Connection: close) that
 *        dispatch() answers, so evhttp writes it and closes; the client's other bytes
 *        are discarded. evhttp frees a connection once its last reply has left the
 *        filter, not the socket: the output side holds the reply's last byte back
 *        until all before it reached the kernel, so a closing reply is not cut short.
 * Not here: routes and replies (core/http.c); what a gate checks (api/, src/).
 */
#include "core/http_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "core/alloc.h"
#include "core/log.h"

/* How far the socket is read ahead of the guard (a head waiting for its gate). */
#define READ_AHEAD (AGG_HTTP_MAX_HEAD + 16 * 1024)
/* How much of a reply the socket's buffer takes ahead of the kernel. */
#define WRITE_AHEAD (64 * 1024)
/* Longest chunk-size or trailer line of a chunked body. */
#define MAX_LINE 4096
#define REFUSAL  "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"

enum phase {
    PH_IDLE = 0,   /* between requests */
    PH_HEAD,       /* reading a head; none of it passed yet */
    PH_GATE,       /* the head waits for its gate's verdict */
    PH_BODY,       /* passing a Content-Length body */
    PH_CHUNK_SIZE, /* passing a chunked body: the next chunk-size line */
    PH_CHUNK_DATA,
    PH_TRAILER,
    PH_REFUSED, /* a refusal went to evhttp; the client's bytes are discarded */
};

struct verdict {
    int status; /* 0: read the body */
    char ecode[32];
    char message[200];
};

/* The guard of one connection; also what a gate holds while it decides. */
struct agg_http_pending {
    struct agg_http *h;
    struct agg_http_pending *prev, *next;
    struct bufferevent *bev;   /* the filter evhttp reads; evhttp's */
    struct bufferevent *under; /* the socket; freed with bev */
    struct event *deadline;
    struct event *kick; /* has the filter take up evhttp's output (see on_output_added) */
    enum phase phase;
    int refs;                                /* the connection's, and its gate's while it decides */
    bool closed;                             /* evhttp freed the connection */
    bool in_step;                            /* a gate answering now is heard by step() itself */
    bool decided;                            /* the gate answered (PH_GATE) */
    bool tls;                                /* <under> is a TLS bufferevent */
    size_t head_len;                         /* the head at the front of the input, in PH_GATE */
    int64_t length;                          /* the head's body: bytes, -1 chunked, 0 none */
    int64_t left;                            /* bytes of the body or chunk still to pass */
    size_t want;                             /* budget the body takes once admitted */
    size_t reserved;                         /* of h->inflight, held by the body being passed */
    size_t max_body;                         /* the route's limit */
    unsigned long passed, answered, refusal; /* heads passed, dispatched; which is ours */
    struct verdict v, noted;
    char allow[128];
};

/* Both listeners accept (below the cap) or rest (at it): the cap counts them together. */
static void set_accepting(struct agg_http *h, bool on)
{
    for (int i = 0; i < HTTP_SIDES; i++) {
        if (h->lev[i] == NULL)
            continue;
        if (on)
            evconnlistener_enable(h->lev[i]);
        else
            evconnlistener_disable(h->lev[i]);
    }
}

/* Sets <v>; returns <status>. */
static int set_verdict(struct verdict *v, int status, const char *ecode, const char *message)
{
    v->status = status;
    snprintf(v->ecode, sizeof(v->ecode), "%s", ecode != NULL ? ecode : "refused");
    snprintf(v->message, sizeof(v->message), "%s", message != NULL ? message : "");
    return status;
}

static void unref(struct agg_http_pending *g)
{
    if (--g->refs > 0)
        return;
    if (g->deadline != NULL)
        event_free(g->deadline);
    if (g->kick != NULL)
        event_free(g->kick);
    free(g);
}

static void arm(struct agg_http_pending *g, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

    if (ms > 0)
        evtimer_add(g->deadline, &tv);
    else
        evtimer_del(g->deadline);
}

static void release(struct agg_http_pending *g)
{
    if (g->h != NULL) /* NULL: agg_http_free() ran */
        g->h->inflight -= g->reserved;
    g->reserved = 0;
}

/* Has evhttp drop the connection (as when the client hangs up), after this callback. */
static void hang_up(struct agg_http_pending *g, short what)
{
    bufferevent_trigger_event(g->bev, (short)(BEV_EVENT_READING | what), BEV_TRIG_DEFER_CALLBACKS);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct agg_http_pending *g = arg;

    (void)fd;
    (void)what;
    AGG_LOG_DEBUG("http", "closing a connection: its request %s took too long",
                  g->phase == PH_HEAD || g->phase == PH_GATE ? "head" : "body");
    g->phase = PH_REFUSED;
    hang_up(g, BEV_EVENT_TIMEOUT);
}

/* Hands evhttp a request the dispatcher answers with <g->v>, and drops the rest. */
static void refuse(struct agg_http_pending *g, struct evbuffer *src, struct evbuffer *dst)
{
    evbuffer_drain(src, evbuffer_get_length(src));
    evbuffer_add(dst, REFUSAL, strlen(REFUSAL));
    g->refusal = ++g->passed;
    g->phase = PH_REFUSED;
    arm(g, 0);
    release(g);
}

static void refuse_now(struct agg_http_pending *g, struct evbuffer *src, struct evbuffer *dst,
                       int status, const char *ecode, const char *message)
{
    set_verdict(&g->v, status, ecode, message);
    refuse(g, src, dst);
}

static void body_done(struct agg_http_pending *g)
{
    release(g);
    arm(g, 0);
    g->phase = PH_IDLE;
}

/* The gate said yes: within the budget, the head passes and its body follows. */
static void admit(struct agg_http_pending *g, struct evbuffer *src, struct evbuffer *dst)
{
    struct agg_http *h = g->h;
    void *evcon = NULL;

    /* one body at a time always passes, however large the budget's share it takes */
    if (h->inflight > 0 && h->inflight + g->want > h->limits.inflight_body_bytes) {
        refuse_now(g, src, dst, 503, "busy",
                   "too many request bodies are being received; retry later");
        return;
    }
    g->reserved = g->want;
    h->inflight += g->want;
    /* evhttp answers 413 itself to a chunked body over the route's limit */
    bufferevent_getcb(g->bev, NULL, NULL, NULL, &evcon);
    if (evcon != NULL)
        evhttp_connection_set_max_body_size(evcon, (ev_ssize_t)g->max_body);
    evbuffer_remove_buffer(src, dst, g->head_len);
    g->passed++;
    g->left = g->length;
    g->phase = g->length < 0 ? PH_CHUNK_SIZE : PH_BODY;
    arm(g, h->limits.body_timeout_ms);
}

/* Where the head in <p> (<len> bytes) ends, after its empty line; 0 when not there. */
static size_t head_end(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\n' || i == 0)
            continue;
        if (p[i - 1] == '\n')
            return i + 1;
        if (p[i - 1] == '\r' && i >= 2 && p[i - 2] == '\n')
            return i + 1;
    }
    return 0;
}

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const struct {
    const char *name;
    enum evhttp_cmd_type type;
} methods[] = {
    {"GET", EVHTTP_REQ_GET},         {"POST", EVHTTP_REQ_POST},     {"PUT", EVHTTP_REQ_PUT},
    {"PATCH", EVHTTP_REQ_PATCH},     {"DELETE", EVHTTP_REQ_DELETE}, {"HEAD", EVHTTP_REQ_HEAD},
    {"OPTIONS", EVHTTP_REQ_OPTIONS},
};

/* Splits the next line off <*s> (LF or CRLF); NULL at the end. A CR or NUL elsewhere
 * makes the line "\r" (refused by every caller). */
static char *next_line(char **s)
{
    char *line = *s, *nl;
    size_t n;

    if (line == NULL || *line == '\0')
        return NULL;
    nl = strchr(line, '\n');
    if (nl == NULL) {
        *s = NULL;
        return line;
    }
    *nl = '\0';
    *s = nl + 1;
    n = (size_t)(nl - line);
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    if (strchr(line, '\r') != NULL)
        return (char *)"\r";
    return line;
}

/* The head's fields into <hdr>; its framing into g->length. A status when refused. */
static int parse_fields(struct agg_http_pending *g, char **s, struct evkeyvalq *hdr,
                        bool may_have_body)
{
    const char *cl = NULL, *te = NULL;
    int ncl = 0, nte = 0;
    char *line;

    while ((line = next_line(s)) != NULL && *line != '\0') {
        char *colon = strchr(line, ':'), *v, *end;

        if (colon == NULL || colon == line || *line == ' ' || *line == '\t')
            return set_verdict(&g->v, 400, "bad_request", "a header field is malformed");
        for (char *c = line; c < colon; c++) {
            if (!is_tchar((unsigned char)*c))
                return set_verdict(&g->v, 400, "bad_request", "a header name is malformed");
        }
        *colon = '\0';
        for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
            ;
        for (end = v + strlen(v); end > v && (end[-1] == ' ' || end[-1] == '\t'); end--)
            ;
        *end = '\0';
        if (evhttp_add_header(hdr, line, v) != 0)
            return set_verdict(&g->v, 400, "bad_request", "a header field is malformed");
        if (strcasecmp(line, "Content-Length") == 0)
            cl = v, ncl++;
        else if (strcasecmp(line, "Transfer-Encoding") == 0)
            te = v, nte++;
    }
    /* RFC 9112 6.3: a length said twice, or said both ways, cannot be trusted */
    if (ncl > 1)
        return set_verdict(&g->v, 400, "bad_request", "Content-Length is given more than once");
    if (nte > 0 && ncl > 0)
        return set_verdict(&g->v, 400, "bad_request",
                           "Content-Length and Transfer-Encoding are both given");
    if (nte > 1 || (te != NULL && strcasecmp(te, "chunked") != 0))
        return set_verdict(&g->v, 400, "bad_request",
                           "Transfer-Encoding other than chunked is not supported");
    g->length = 0;
    if (cl != NULL) {
        size_t n = strlen(cl);

        if (n == 0 || n > 18 || strspn(cl, "0123456789") != n)
            return set_verdict(&g->v, 400, "bad_request", "Content-Length is malformed");
        g->length = strtoll(cl, NULL, 10);
    } else if (te != NULL) {
        g->length = -1;
    }
    if (!may_have_body)
        g->length = 0; /* evhttp reads no body after HEAD */
    return 0;
}

/* The route of <method> on <path>, or NULL with g->v (404, 405 and g->allow). */
static const struct route *find_route(struct agg_http_pending *g, enum evhttp_cmd_type method,
                                      const char *path)
{
    const struct agg_http *h = g->h;
    struct agg_http_match m;

    g->allow[0] = '\0';
    for (size_t i = 0; i < h->n; i++) {
        const struct route *r = &h->routes[i];

        if (!agg_http_match(r->pattern, path, &m))
            continue;
        if (r->method == method || (method == EVHTTP_REQ_HEAD && r->method == EVHTTP_REQ_GET))
            return r;
        for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++) {
            size_t used = strlen(g->allow);

            if (methods[k].type == r->method)
                snprintf(g->allow + used, sizeof(g->allow) - used, "%s%s", used > 0 ? ", " : "",
                         methods[k].name);
        }
    }
    if (g->allow[0] != '\0')
        set_verdict(&g->v, 405, "method_not_allowed", "method not allowed on this path");
    else
        set_verdict(&g->v, 404, "not_found", "no such route");
    return NULL;
}

/* Judges the head <text> (NUL-terminated, changed in place): 0 when it may pass as it
 * is (no body), 1 when its gate is asked, else the refusal in g->v. */
static int judge(struct agg_http_pending *g, char *text)
{
    char *s = text, *line = next_line(&s), *target, *version;
    enum evhttp_cmd_type method = EVHTTP_REQ_GET;
    struct evkeyvalq hdr = {NULL, &hdr.tqh_first}; /* TAILQ_INIT */
    struct evhttp_uri *uri = NULL;
    const struct route *r;
    const char *path;
    bool known = false;
    int rc = 400;

    set_verdict(&g->v, 400, "bad_request", "the request line is malformed");
    target = line != NULL ? strchr(line, ' ') : NULL;
    version = target != NULL ? strchr(target + 1, ' ') : NULL;
    if (version == NULL || strchr(version + 1, ' ') != NULL)
        return 400;
    *target++ = '\0';
    *version++ = '\0';
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0)
        return 400;
    for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++) {
        if (strcmp(line, methods[k].name) == 0)
            method = methods[k].type, known = true;
    }
    if (!known)
        return set_verdict(&g->v, 501, "not_implemented", "this method is not supported");
    if ((rc = parse_fields(g, &s, &hdr, method != EVHTTP_REQ_HEAD)) != 0 || g->length == 0)
        goto out; /* without a body, dispatch() answers as it does, keeping the connection */
    rc = 400;
    uri = evhttp_uri_parse_with_flags(target, EVHTTP_URI_NONCONFORMANT);
    if (uri == NULL)
        goto out;
    path = evhttp_uri_get_path(uri);
    if (path == NULL || *path == '\0')
        path = "/";
    r = find_route(g, method, path);
    if (r == NULL) {
        rc = g->v.status;
        goto out;
    }
    g->max_body = r->gate != NULL ? r->gate->max_body_bytes : AGG_HTTP_DEFAULT_MAX_BODY;
    if (g->h->max_body > 0 && g->h->max_body < g->max_body)
        g->max_body = g->h->max_body;
    g->noted.status = 0;
    if (g->length > 0 && (uint64_t)g->length > g->max_body) {
        rc = set_verdict(&g->noted, 413, "too_large", "the body is over this route's limit");
        if (r->gate == NULL || r->gate->check == NULL) {
            g->v = g->noted;
            goto out;
        }
    }
    g->want = g->length > 0 ? (size_t)g->length : g->max_body;
    set_verdict(&g->v, 0, NULL, NULL);
    g->phase = PH_GATE;
    g->decided = false;
    rc = 1;
    if (r->gate == NULL || r->gate->check == NULL) {
        g->decided = true;
    } else {
        struct agg_http_head head = {method, path, &hdr, g->length};

        g->refs++; /* the gate's, until agg_http_gate_done() */
        r->gate->check(r->arg, &head, g);
    }

out:
    if (uri != NULL)
        evhttp_uri_free(uri);
    evhttp_clear_headers(&hdr);
    return rc;
}

/* PH_HEAD: refuses, passes, or hands the head to its gate. False: needs more bytes. */
static bool read_head(struct agg_http_pending *g, struct evbuffer *src, struct evbuffer *dst)
{
    size_t len = evbuffer_get_length(src);
    size_t scan = len < AGG_HTTP_MAX_HEAD ? len : AGG_HTTP_MAX_HEAD;
    const char *p = (const char *)evbuffer_pullup(src, (ev_ssize_t)scan);
    size_t end = p != NULL ? head_end(p, scan) : 0;
    char *text;
    int rc;

    if (end == 0) {
        if (len < AGG_HTTP_MAX_HEAD)
            return false;
        refuse_now(g, src, dst, 431, "head_too_large", "the request head is over 64 KiB");
        return true;
    }
    text = agg_malloc(end + 1);
    if (text == NULL) {
        refuse_now(g, src, dst, 503, "unavailable", "out of memory");
        return true;
    }
    memcpy(text, p, end);
    text[end] = '\0';
    g->head_len = end;
    if (strlen(text) != end)
        rc = set_verdict(&g->v, 400, "bad_request", "the request head contains a NUL byte");
    else
        rc = judge(g, text);
    free(text);
    if (rc == 0) { /* nothing to read after it */
        evbuffer_remove_buffer(src, dst, end);
        g->passed++;
        g->phase = PH_IDLE;
        arm(g, 0);
    } else if (rc != 1) {
        refuse(g, src, dst);
    }
    return true;
}

/* A line of a chunked body: passes it, or refuses. False: needs more bytes. */
static bool read_chunk_line(struct agg_http_pending *g, struct evbuffer *src, struct evbuffer *dst)
{
    size_t eol_len = 0;
    struct evbuffer_ptr at = evbuffer_search_eol(src, NULL, &eol_len, EVBUFFER_EOL_CRLF);
    char line[MAX_LINE + 1];

    if (at.pos < 0 || at.pos > MAX_LINE) {
        if (at.pos < 0 && evbuffer_get_length(src) <= MAX_LINE)
            return false;
        /* mid-request: no reply can be slipped in; evhttp hears a hang-up */
        g->phase = PH_REFUSED;
        hang_up(g, BEV_EVENT_ERROR);
        return true;
    }
    evbuffer_copyout(src, line, (size_t)at.pos);
    line[at.pos] = '\0';
    evbuffer_remove_buffer(src, dst, (size_t)at.pos + eol_len);
    if (g->phase == PH_TRAILER) {
        if (line[0] == '\0')
            body_done(g);
        return true;
    }
    if (line[0] != '\0') { /* as evhttp reads a chunk size, empty lines skipped */
        char *endp;
        long long n = strtoll(line, &endp, 16);

        if ((*endp != '\0' && *endp != ' ') || n < 0) {
            g->phase = PH_REFUSED; /* evhttp refuses the line it was just given */
            return true;
        }
        g->left = n;
        g->phase = n == 0 ? PH_TRAILER : PH_CHUNK_DATA;
    }
    return true;
}

/* Passes what may pass of <src> to <dst>; true when anything moved or was dropped. */
static bool step(struct agg_http_pending *g, struct evbuffer *src, struct evbuffer *dst)
{
    bool moved = false, more = true;

    g->in_step = true;
    while (more) {
        size_t len = evbuffer_get_length(src), n;

        switch (g->phase) {
        case PH_IDLE:
            if (len == 0) {
                more = false;
                break;
            }
            g->phase = PH_HEAD;
            arm(g, g->h->limits.header_timeout_ms);
            /* fall through */
        case PH_HEAD:
            more = read_head(g, src, dst);
            break;
        case PH_GATE:
            more = g->decided;
            if (!more)
                break;
            g->decided = false;
            if (g->v.status != 0)
                refuse(g, src, dst);
            else
                admit(g, src, dst);
            break;
        case PH_BODY:
        case PH_CHUNK_DATA:
            n = len < (uint64_t)g->left ? len : (size_t)g->left;
            more = n > 0;
            if (!more)
                break;
            evbuffer_remove_buffer(src, dst, n);
            g->left -= (int64_t)n;
            if (g->left == 0 && g->phase == PH_BODY)
                body_done(g);
            else if (g->left == 0)
                g->phase = PH_CHUNK_SIZE;
            break;
        case PH_CHUNK_SIZE:
        case PH_TRAILER:
            more = read_chunk_line(g, src, dst);
            break;
        case PH_REFUSED:
            more = false;
            if (len > 0)
                evbuffer_drain(src, len);
            moved = moved || len > 0;
            break;
        }
        moved = moved || more;
    }
    g->in_step = false;
    return moved;
}

static enum bufferevent_filter_result on_input(struct evbuffer *src, struct evbuffer *dst,
                                               ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                               void *arg)
{
    (void)limit;
    (void)mode;
    return step(arg, src, dst) ? BEV_OK : BEV_NEED_MORE;
}

/* The last byte over TLS: its output being empty, all before it was written to the
 * kernel; so is this one, as its own record. A full socket has it tried again soon. */
static enum bufferevent_filter_result write_last_tls(struct agg_http_pending *g,
                                                     struct evbuffer *src)
{
    const struct timeval soon = {0, 10 * 1000};
    unsigned char last;

    evbuffer_copyout(src, &last, 1);
    if (agg_tls_write_now(g->under, &last, 1) == 0) {
        event_add(g->kick, &soon);
        return BEV_NEED_MORE;
    }
    evbuffer_drain(src, 1); /* written, or the connection failed: the reader hears of it */
    return BEV_OK;
}

/* The reply's last byte waits until all before it left for the kernel (see Traps). */
static enum bufferevent_filter_result on_output(struct evbuffer *src, struct evbuffer *dst,
                                                ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                void *arg)
{
    struct agg_http_pending *g = arg;
    size_t len = evbuffer_get_length(src);

    (void)mode;
    if (len > 1) {
        /* within the socket's high-water mark (<limit>): the rest stays in evhttp's
         * buffer, where handlers see how far behind their client is */
        size_t n = limit >= 0 && (size_t)limit < len - 1 ? (size_t)limit : len - 1;

        if (n == 0)
            return BEV_NEED_MORE;
        evbuffer_remove_buffer(src, dst, n);
        return BEV_OK;
    }
    if (len == 0 || evbuffer_get_length(dst) > 0)
        return BEV_NEED_MORE;
    if (g->tls)
        return write_last_tls(g, src);
    if (evbuffer_write(src, bufferevent_getfd(g->under)) < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            evbuffer_drain(src, len); /* the socket failed: the reader hears of it */
            return BEV_OK;
        }
        bufferevent_enable(g->under, EV_WRITE); /* called again once writable */
        return BEV_NEED_MORE;
    }
    return evbuffer_get_length(src) == 0 ? BEV_OK : BEV_NEED_MORE;
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct agg_http_pending *g = arg;

    (void)fd;
    (void)what;
    if (!g->closed)
        bufferevent_flush(g->bev, EV_WRITE, BEV_NORMAL);
}

/* libevent 2.1's filter takes up output only when it is added while writing is on,
 * but evhttp adds a reply given outside its read callback first and turns writing on
 * after: such a reply would wait forever. The kick runs once evhttp is done. */
static void on_output_added(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct agg_http_pending *g = arg;

    (void)buf;
    if (info->n_added > 0 && !g->closed)
        event_active(g->kick, EV_TIMEOUT, 0);
}

/* The connection is gone (evhttp freed its bufferevent). */
static void on_free(void *arg)
{
    struct agg_http_pending *g = arg;
    struct agg_http *h = g->h;

    g->closed = true;
    /* nothing of the socket calls into the filter being freed (belt and braces) */
    bufferevent_setcb(g->under, NULL, NULL, NULL, NULL);
    bufferevent_disable(g->under, EV_READ | EV_WRITE);
    release(g);
    arm(g, 0);
    if (h == NULL) { /* agg_http_free() ran first: nothing to count */
        unref(g);
        return;
    }
    if (g->prev != NULL)
        g->prev->next = g->next;
    else
        h->conns = g->next;
    if (g->next != NULL)
        g->next->prev = g->prev;
    h->nconns--;
    if (h->nconns + 1 >= h->limits.max_connections && h->nconns < h->limits.max_connections)
        set_accepting(h, true); /* it stopped at the cap */
    unref(g);
}

/* A gate answered after its check returned: go on with what waits. The read callback
 * runs now, not deferred: a deferred one could run after the filter's own input had
 * already handed evhttp the request, calling evhttp_read_cb while the connection is
 * writing its reply, which libevent 2.1 ends with exit(1). */
static void resume(struct agg_http_pending *g)
{
    bufferevent_data_cb readcb = NULL;

    if (!step(g, bufferevent_get_input(g->under), bufferevent_get_input(g->bev)))
        return;
    bufferevent_getcb(g->bev, &readcb, NULL, NULL, NULL);
    if (readcb != NULL && (bufferevent_get_enabled(g->bev) & EV_READ))
        bufferevent_trigger(g->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
}

void agg_http_guard_detach(struct agg_http *h)
{
    struct agg_http_pending *g = h->conns, *next;

    for (; g != NULL; g = next) {
        next = g->next;
        g->h = NULL;
        g->prev = g->next = NULL;
    }
    h->conns = NULL;
    h->nconns = 0;
}

void agg_http_gate_done(struct agg_http_pending *p, int status, const char *ecode,
                        const char *message)
{
    if (status != 0)
        set_verdict(&p->v, status, ecode, message);
    else
        p->v = p->noted;
    p->decided = true;
    if (!p->closed && !p->in_step)
        resume(p);
    unref(p);
}

void agg_http_gate_note(struct agg_http_pending *p, int status, const char *ecode,
                        const char *message)
{
    if (p->noted.status == 0) /* the first noted stands (a 413 before a 415) */
        set_verdict(&p->noted, status, ecode, message);
}

static struct bufferevent *guard_new(struct event_base *base, struct agg_http *h, bool tls)
{
    struct agg_http_pending *g = agg_calloc(1, sizeof(*g));
    const struct timeval idle = {AGG_HTTP_IDLE_TIMEOUT_S, 0};

    if (g == NULL)
        return NULL; /* evhttp makes a plain one */
    g->h = h;
    g->refs = 1;
    g->deadline = evtimer_new(base, on_deadline, g);
    g->kick = event_new(base, -1, 0, on_kick, g);
    g->tls = tls;
    g->under = tls ? agg_tls_bufferevent_new(h->tls, base, -1, BEV_OPT_CLOSE_ON_FREE)
                   : bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (g->deadline == NULL || g->kick == NULL || g->under == NULL)
        goto fail;
    bufferevent_setwatermark(g->under, EV_READ, 0, READ_AHEAD);
    bufferevent_setwatermark(g->under, EV_WRITE, 0, WRITE_AHEAD);
    bufferevent_set_timeouts(g->under, &idle, &idle);
    g->bev =
        bufferevent_filter_new(g->under, on_input, on_output, BEV_OPT_CLOSE_ON_FREE, on_free, g);
    if (g->bev == NULL)
        goto fail;
    g->next = h->conns;
    if (h->conns != NULL)
        h->conns->prev = g;
    h->conns = g;
    if (++h->nconns >= h->limits.max_connections)
        set_accepting(h, false); /* the kernel's backlog holds the next ones */
    if (evbuffer_add_cb(bufferevent_get_output(g->bev), on_output_added, g) == NULL) {
        bufferevent_free(g->bev); /* frees under, and g through on_free */
        return NULL;
    }
    return g->bev;

fail:
    if (g->under != NULL)
        bufferevent_free(g->under);
    unref(g);
    return NULL;
}

struct bufferevent *agg_http_guard_new(struct event_base *base, void *arg)
{
    return guard_new(base, arg, false);
}

struct bufferevent *agg_http_guard_new_tls(struct event_base *base, void *arg)
{
    return guard_new(base, arg, true);
}

bool agg_http_guard_answer(struct agg_http *h, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
    struct agg_http_pending *g = h->conns;
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);

    while (g != NULL && g->bev != bev)
        g = g->next;
    if (bev == NULL || g == NULL || ++g->answered != g->refusal)
        return false;
    if (g->v.status == 401)
        evhttp_add_header(out, "WWW-Authenticate", "Bearer realm=\"aggd\"");
    if (g->v.status == 503)
        evhttp_add_header(out, "Retry-After", "1");
    if (g->v.status == 405)
        evhttp_add_header(out, "Allow", g->allow);
    agg_http_reply_error(req, g->v.status, g->v.ecode, g->v.message, NULL);
    return true;
}

/* accept() failed; out of descriptors, the listener rests (h->resume wakes it). */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    static struct agg_log_limit limit; /* NOLINT: one per process, loop thread only */
    int e = EVUTIL_SOCKET_ERROR();

    (void)arg;
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
        evconnlistener_disable(lev);
    AGG_LOG_LIMITED(&limit, AGG_LOG_LEVEL_WARN, "http", "could not accept an HTTP connection: %s",
                    evutil_socket_error_to_string(e));
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct agg_http *h = arg;

    (void)fd;
    (void)what;
    if (h->nconns < h->limits.max_connections)
        set_accepting(h, true);
}

void agg_http_set_limits(struct agg_http *h, const struct agg_http_limits *limits)
{
    h->limits = *limits;
    /* after an EMFILE pause, accept() fails once more and pauses again */
    set_accepting(h, h->nconns < h->limits.max_connections);
}

int agg_http_guard_listen(struct agg_http *h, int side)
{
    struct timeval tv = {0, AGG_HTTP_ACCEPT_PAUSE_MS * 1000};

    evconnlistener_set_error_cb(h->lev[side], on_accept_error);
    if (h->resume != NULL)
        return AGG_OK;
    h->resume = event_new(h->base, -1, EV_PERSIST, on_resume, h);
    if (h->resume == NULL || event_add(h->resume, &tv) != 0)
        return AGG_ENOMEM;
    return AGG_OK;
}
