/*
 * src/listen.c — UDP and TCP listeners for syslog and JSON lines.
 *
 * Place: see src/listen.h.
 * Threads: event-loop thread only.
 * Ownership: the listener owns its connections; a connection owns its bufferevent.
 * Traps: the input buffer of a connection is bounded by a read high-watermark, so a
 *        peer that sends faster than we take is held back by TCP itself. The UDP
 *        path reads up to UDP_BATCH datagrams per recvmmsg call, each into a slot of
 *        max_message + 1 octets: MSG_TRUNC makes the kernel report a longer datagram's
 *        true size, so it is refused as over TCP with its head. An event counts as
 *        received when its fate is known (the pipeline counts accepted and rejected
 *        ones; a frame the pipeline could not take is read again, not counted twice).
 *        The kernel's UDP drops are read with SO_MEMINFO when /metrics is rendered:
 *        SO_RXQ_OVFL would report them only with the next datagram, so the drops at
 *        the end of a burst would stay unseen until traffic resumed.
 */
#include "src/listen.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sock_diag.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "ingest/framing.h"
#include "ingest/json.h"
#include "ingest/syslog.h"
#include "core/tz.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"

/* Datagrams taken per recvmmsg() call: one system call for a burst, and the buffers
 * (UDP_BATCH slots of at most UDP_MAX_DATAGRAM: 4 MiB) allocated once per listener. */
#define UDP_BATCH 64
/* Above the largest UDP payload (65,507 octets over IPv4): a slot this large never
 * cuts a datagram short. */
#define UDP_MAX_DATAGRAM 65536
/* Datagrams read per wakeup before the loop serves the other sockets and timers. */
#define UDP_PER_WAKEUP 512
/* "[<IPv6 address>]:<port>" and a NUL (INET6_ADDRSTRLEN 46 + 9). */
#define PEER_MAX 64
/* A TCP connection's input above max_message: room for a frame's octet-count header
 * and the start of the next frame, so one whole frame always fits. */
#define TCP_READ_HEADROOM (64 * 1024)
/* The most libevent reads from one connection per callback: a fast sender cannot
 * starve the others, and big frames still arrive in few reads. */
#define TCP_MAX_SINGLE_READ (256 * 1024)
/* listen(2) backlog for TCP listeners we bind ourselves (systemd's sockets keep
 * theirs): the kernel caps it at net.core.somaxconn; a reconnect storm after a
 * restart fits. */
#define TCP_BACKLOG 1024
/* A reason for ingest_rejects: one sentence with two sizes. */
#define WHY_MAX 128
/* "host" and "port" of a listen address: a DNS name is at most 253 octets, a port 5. */
#define HOST_MAX 256
#define PORT_MAX 16
/* Metric labels: transport="…",listener="<address>" (HOST_MAX + port + quoting). */
#define LABELS_MAX 320
/* A connection reads on while its last reads are being made durable, up to this
 * many bytes not yet durable: libevent reads 4 KiB at a time, and one fsync per
 * read would throttle a sender to a few thousand events a second. */
#define TCP_UNSYNCED_MAX (1024 * 1024)
/* How long a frame that may end at a NUL (framing.h, nul_pending) waits for the next
 * octet before the NUL is taken as its trailer: a sender writes a message and its
 * NUL together, so a pause after a NUL means the message is complete. */
#define NUL_PAUSE_MS 200

enum conn_step {
    STEP_FEED = 0, /* frame what is complete */
    STEP_FLUSH,    /* also a frame held at a NUL (the sender paused) */
    STEP_FINISH,   /* end of stream: also an unterminated last frame */
};

struct conn {
    struct agg_listener *l;
    struct bufferevent *bev;
    struct event *nul_timer; /* flushes a frame held at a NUL after NUL_PAUSE_MS */
    struct ing_framer framer;
    char peer[PEER_MAX];
    size_t seen;    /* bytes of the input buffer already counted */
    size_t index;   /* events read so far, for reject reports */
    int64_t now_us; /* receive time of the current read */
    bool paused;    /* backpressure: the pipeline is full */
    bool syncing;   /* a spool sync is pending for this connection */
    size_t unsynced;  /* bytes taken and not yet known durable */
    size_t requested; /* of those, the ones the pending sync covers */
    bool closed;    /* the socket is gone; a pending sync still holds a ref */
    int refs;
    struct conn *prev, *next;
};

/* After accept() fails for want of descriptors, the listener rests this long. */
#define ACCEPT_PAUSE_MS 250

/* A UDP listener's recvmmsg() set, prepared once; and the peer text of the last
 * datagram's address, which a burst from one sender reuses. */
struct udp_set {
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    struct sockaddr_storage from[UDP_BATCH];
    char *buf; /* UDP_BATCH slots */
    struct sockaddr_storage last;
    socklen_t last_len;
    char last_peer[PEER_MAX];
};

struct agg_listener {
    enum agg_listen_kind kind;
    enum agg_transport transport;
    struct event_base *base;
    struct st_pipeline *pipeline;
    size_t max_message;
    size_t max_conns;
    int idle_s;
    struct agg_tls *tls; /* syslog over TLS; borrowed */
    struct evconnlistener *tcp;
    struct event *resume; /* accepts again after a pause for want of descriptors */
    struct agg_log_limit accept_log;
    evutil_socket_t udp_fd;
    evutil_socket_t passed_fd; /* a socket given by the caller, until it is udp_fd or tcp's */
    struct event *udp_ev;
    struct udp_set *udp;
    struct conn *conns;
    size_t nconns;
    struct agg_buf scratch;
    struct agg_buf merged; /* syslog: extra_data of a JSON MSG and the syslog fields */
    struct ing_json *json;
    struct agg_tz *zone; /* syslog: the zone of RFC 3164 times */
    _Atomic int64_t *m_refused, *m_idle_closed;
    int64_t kernel_drops;       /* UDP: datagrams the kernel dropped, as counted */
    uint32_t kernel_drops_last; /* UDP: the socket's own (wrapping) counter, last read */
};

static const struct {
    enum agg_transport transport;
    const char *label;
} kinds[] = {
    [AGG_LISTEN_SYSLOG_UDP] = {AGG_TRANSPORT_SYSLOG_UDP, "transport=\"syslog_udp\""},
    [AGG_LISTEN_SYSLOG_TCP] = {AGG_TRANSPORT_SYSLOG_TCP, "transport=\"syslog_tcp\""},
    [AGG_LISTEN_JSON_TCP] = {AGG_TRANSPORT_JSON_TCP, "transport=\"json_tcp\""},
    /* events count as syslog_tcp; the connection series have their own label */
    [AGG_LISTEN_SYSLOG_TLS] = {AGG_TRANSPORT_SYSLOG_TCP, "transport=\"syslog_tls\""},
};

static void format_peer(const struct sockaddr *sa, char out[PEER_MAX])
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, PEER_MAX, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, PEER_MAX, "[%s]:%d", host, port);
    } else {
        snprintf(out, PEER_MAX, "unknown");
    }
}

/* ---- turning one frame into a record ---------------------------------------- */

struct json_ctx {
    struct agg_listener *l;
    const char *peer;
    int64_t now_us;
    int rc;
};

static int json_emit(void *arg, const struct agg_record *rec)
{
    struct json_ctx *c = arg;

    if (st_pipeline_add(c->l->pipeline, rec, c->l->transport, c->peer, c->now_us) != AGG_OK)
        c->rc = AGG_EFULL;
    return c->rc;
}

static void json_reject(void *arg, size_t index, const char *why, const char *raw, size_t len)
{
    struct json_ctx *c = arg;

    (void)index;
    if (st_pipeline_reject(c->l->pipeline, c->l->transport, c->peer, c->now_us, why, raw,
                            len) != AGG_OK)
        c->rc = AGG_EFULL;
}

int agg_listen_syslog_decode(struct ing_json *json, const struct agg_tz *zone,
                             struct agg_buf *scratch, struct agg_buf *merged, const char *p,
                             size_t n, int64_t now_us, const struct agg_sink *sink)
{
    struct ing_syslog_msg msg;
    struct agg_record rec;
    struct agg_str obj;
    struct agg_err err = {0};
    int rc;

    agg_buf_reset(scratch);
    agg_record_init(&rec);
    if (ing_syslog_parse(p, n, now_us, zone, &msg, &err) != AGG_OK ||
        ing_syslog_to_record(&msg, scratch, &rec, &err) != AGG_OK) {
        sink->reject(sink->arg, 0, err.msg, p, n);
        return AGG_OK;
    }
    if (ing_syslog_json_msg(rec.str[AGG_F_MESSAGE], &obj)) {
        struct agg_sink emit_only = {sink->emit, NULL, sink->arg};

        rc = ing_json_decode_over(json, obj.p, obj.len, &rec, merged, &emit_only, &err);
        if (rc != AGG_EINVAL && rc != AGG_ENOMEM)
            return rc; /* emitted, or what emit said */
        /* not a JSON object after all, or out of memory: the text as it is */
    }
    return sink->emit(sink->arg, &rec);
}

/* One syslog message (a TCP frame or a datagram) into the pipeline. AGG_EFULL when the
 * pipeline could not take it (out of memory): the caller keeps the bytes. */
static int take_syslog(struct agg_listener *l, const char *p, size_t n, const char *peer,
                       int64_t now_us)
{
    struct json_ctx ctx = {l, peer, now_us, AGG_OK};
    struct agg_sink sink = {json_emit, json_reject, &ctx};

    agg_listen_syslog_decode(l->json, l->zone, &l->scratch, &l->merged, p, n, now_us, &sink);
    return ctx.rc == AGG_OK ? AGG_OK : AGG_EFULL;
}

static int take_json_line(struct conn *c, const char *p, size_t n)
{
    struct json_ctx ctx = {c->l, c->peer, c->now_us, AGG_OK};
    struct agg_sink sink = {json_emit, json_reject, &ctx};
    struct agg_err err = {0};

    ing_json_decode_line(c->l->json, p, n, c->index++, &sink, &err);
    return ctx.rc;
}

/* ---- TCP ------------------------------------------------------------------- */

static int on_frame(void *arg, const char *p, size_t n)
{
    struct conn *c = arg;

    if (c->l->kind == AGG_LISTEN_JSON_TCP)
        return take_json_line(c, p, n);
    return take_syslog(c->l, p, n, c->peer, c->now_us);
}

/* Oversized and malformed frames are refused, counted and noted in ingest_rejects
 * (with the reason, not the bytes: the framer skips them as they arrive). */
static void on_frame_error(void *arg, int kind, const char *why)
{
    struct conn *c = arg;

    if (kind == ING_FRAMING_E_OVERSIZE)
        st_pipeline_count(c->l->pipeline, c->l->transport, ST_COUNT_OVERSIZED, 1);
    if (st_pipeline_reject(c->l->pipeline, c->l->transport, c->peer, c->now_us, why, "", 0) !=
        AGG_OK)
        st_pipeline_dropped(c->l->pipeline, c->l->transport, 1); /* already skipped */
    AGG_LOG_DEBUG("listen", "%s: %s", c->peer, why);
}

static void conn_unref(struct conn *c)
{
    if (--c->refs == 0)
        free(c);
}

static void conn_close(struct conn *c)
{
    struct agg_listener *l = c->l;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    l->nconns--;
    event_free(c->nul_timer);
    c->nul_timer = NULL;
    bufferevent_free(c->bev);
    c->bev = NULL;
    c->closed = true;
    conn_unref(c);
}

/* Reads only while nothing read is waiting for the spool and there is room. */
static bool update_reading(struct conn *c)
{
    bool want = !c->closed && !c->paused && c->unsynced < TCP_UNSYNCED_MAX;

    if (c->closed)
        return false;
    if (want)
        bufferevent_enable(c->bev, EV_READ);
    else
        bufferevent_disable(c->bev, EV_READ);
    return want;
}

static void conn_process(struct conn *c, enum conn_step step);

static void request_sync(struct conn *c);

static void on_synced(void *arg)
{
    struct conn *c = arg;

    c->syncing = false;
    c->unsynced -= c->requested;
    c->requested = 0;
    if (!c->closed && c->unsynced > 0)
        request_sync(c); /* what was taken while this sync ran */
    if (update_reading(c))
        conn_process(c, STEP_FEED); /* frames that arrived whole while we waited */
    conn_unref(c);
}

static void request_sync(struct conn *c)
{
    c->syncing = true;
    c->requested = c->unsynced;
    c->refs++;
    if (st_pipeline_sync(c->l->pipeline, on_synced, c) != AGG_OK) {
        c->syncing = false; /* out of memory: read on rather than stall */
        c->unsynced = 0;
        c->requested = 0;
        c->refs--;
    }
}

/* Frames and takes what the input buffer holds (each event is appended to the spool
 * before more is read), asks the spool to make it durable and stops reading while
 * more than TCP_UNSYNCED_MAX is not; pauses while the pipeline is full. <step> says
 * what else counts as a frame (enum conn_step). */
static void conn_process(struct conn *c, enum conn_step step)
{
    struct agg_listener *l = c->l;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct ing_frame_cb cb = {on_frame, on_frame_error, c};
    size_t len = evbuffer_get_length(in);
    uint64_t frames = c->framer.frames;
    const char *data;
    size_t used = 0;

    if (len > c->seen)
        st_pipeline_count(l->pipeline, l->transport, ST_COUNT_BYTES, (int64_t)(len - c->seen));
    c->now_us = agg_time_now_us();
    if (len > 0) {
        data = (const char *)evbuffer_pullup(in, -1);
        if (step == STEP_FINISH)
            used = ing_framer_finish(&c->framer, data, len, &cb);
        else if (step == STEP_FLUSH)
            used = ing_framer_flush(&c->framer, data, len, &cb);
        else
            used = ing_framer_feed(&c->framer, data, len, &cb);
        evbuffer_drain(in, used);
    }
    c->seen = evbuffer_get_length(in);
    if (step == STEP_FINISH)
        return;
    if (c->framer.nul_pending) {
        struct timeval pause = {0, NUL_PAUSE_MS * 1000};

        evtimer_add(c->nul_timer, &pause); /* restarts the wait */
    } else {
        evtimer_del(c->nul_timer);
    }
    if (st_pipeline_is_full(l->pipeline))
        c->paused = true;
    if (c->framer.frames != frames) {
        c->unsynced += used > 0 ? used : 1;
        if (!c->syncing)
            request_sync(c);
    }
    update_reading(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_process(arg, STEP_FEED);
}

static void on_nul_pause(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_process(arg, STEP_FLUSH);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;

    (void)bev;
    if (what & BEV_EVENT_TIMEOUT)
        agg_metric_inc(c->l->m_idle_closed, 1);
    if (what & BEV_EVENT_ERROR)
        AGG_LOG_DEBUG("listen", "%s: %s", c->peer,
                      evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        conn_process(c, STEP_FINISH);
        if (c->l->tls != NULL && (what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR))
            agg_tls_close_notify(c->bev);
        conn_close(c);
    }
}

static void on_drain(void *arg)
{
    struct agg_listener *l = arg;

    for (struct conn *c = l->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (!c->paused)
            continue;
        c->paused = false;
        if (update_reading(c))
            conn_process(c, STEP_FEED); /* what arrived before the pause */
        if (st_pipeline_is_full(l->pipeline))
            break;
    }
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct agg_listener *l = arg;
    struct timeval idle = {l->idle_s, 0};
    struct conn *c;

    (void)lev;
    (void)salen;
    if (l->nconns >= l->max_conns) {
        agg_metric_inc(l->m_refused, 1);
        evutil_closesocket(fd);
        return;
    }
    c = agg_calloc(1, sizeof(*c));
    if (c == NULL) {
        evutil_closesocket(fd);
        return;
    }
    c->l = l;
    c->refs = 1;
    format_peer(sa, c->peer);
    ing_framer_init(&c->framer,
                    l->kind == AGG_LISTEN_JSON_TCP ? ING_FRAMING_LF : ING_FRAMING_AUTO,
                    l->max_message);
    /* JSON lines: a NUL is never a delimiter there */
    c->framer.nul_detect = l->kind != AGG_LISTEN_JSON_TCP;
    c->nul_timer = evtimer_new(l->base, on_nul_pause, c);
    if (c->nul_timer == NULL)
        c->bev = NULL;
    else if (l->tls != NULL)
        c->bev = agg_tls_bufferevent_new(l->tls, l->base, fd, BEV_OPT_CLOSE_ON_FREE);
    else
        c->bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        if (c->nul_timer != NULL)
            event_free(c->nul_timer);
        evutil_closesocket(fd);
        free(c);
        return;
    }
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    /* Enough for one whole frame and its header; above it TCP pushes back. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, l->max_message + TCP_READ_HEADROOM);
    bufferevent_set_max_single_read(c->bev, TCP_MAX_SINGLE_READ);
    if (l->idle_s > 0)
        bufferevent_set_timeouts(c->bev, &idle, NULL);
    c->next = l->conns;
    if (l->conns != NULL)
        l->conns->prev = c;
    l->conns = c;
    l->nconns++;
    c->paused = st_pipeline_is_full(l->pipeline);
    update_reading(c);
}

/* ---- UDP ------------------------------------------------------------------- */

/* The peer text of datagram <i> of the last recvmmsg(): points into <u>, valid until
 * the next call. */
static const char *udp_peer(struct udp_set *u, int i)
{
    socklen_t len = u->msgs[i].msg_hdr.msg_namelen;

    if (len != u->last_len || memcmp(&u->from[i], &u->last, len) != 0) {
        format_peer((struct sockaddr *)&u->from[i], u->last_peer);
        memcpy(&u->last, &u->from[i], len);
        u->last_len = len;
    }
    return u->last_peer;
}

static void on_udp(evutil_socket_t fd, short what, void *arg)
{
    struct agg_listener *l = arg;
    struct udp_set *u = l->udp;
    int total = 0;

    (void)what;
    while (total < UDP_PER_WAKEUP) {
        int n;
        int64_t now_us;

        for (int i = 0; i < UDP_BATCH; i++)
            u->msgs[i].msg_hdr.msg_namelen = sizeof(u->from[i]);
        /* MSG_TRUNC: msg_len is the datagram's size even when its slot is smaller */
        n = recvmmsg(fd, u->msgs, UDP_BATCH, MSG_DONTWAIT | MSG_TRUNC, NULL);
        if (n <= 0)
            break;
        now_us = agg_time_now_us();
        for (int i = 0; i < n; i++) {
            size_t len = u->msgs[i].msg_len;
            const char *data = u->iov[i].iov_base;
            const char *peer;

            st_pipeline_count(l->pipeline, l->transport, ST_COUNT_BYTES, (int64_t)len);
            if (st_pipeline_is_full(l->pipeline)) {
                st_pipeline_dropped(l->pipeline, l->transport, 1);
                continue;
            }
            peer = udp_peer(u, i);
            if (len > l->max_message) { /* refused as over TCP; its head is kept */
                char why[WHY_MAX];

                snprintf(why, sizeof(why), "datagram of %zu octets exceeds the maximum %zu; "
                         "refused", len, l->max_message);
                st_pipeline_count(l->pipeline, l->transport, ST_COUNT_OVERSIZED, 1);
                if (st_pipeline_reject(l->pipeline, l->transport, peer, now_us, why, data,
                                        l->max_message) != AGG_OK)
                    st_pipeline_dropped(l->pipeline, l->transport, 1);
                continue;
            }
            if (take_syslog(l, data, len, peer, now_us) != AGG_OK)
                st_pipeline_dropped(l->pipeline, l->transport, 1);
        }
        total += n;
        if (n < UDP_BATCH)
            break;
    }
}

/* ---- setup ----------------------------------------------------------------- */

/* The kernel's count of datagrams it dropped for <fd> (receive buffer full, bad
 * checksum): false when it cannot tell (SO_MEMINFO came with Linux 4.12). */
static bool read_kernel_drops(evutil_socket_t fd, uint32_t *out)
{
    uint32_t mem[SK_MEMINFO_VARS];
    socklen_t len = sizeof(mem);

    if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0 ||
        len < (SK_MEMINFO_DROPS + 1) * sizeof(mem[0]))
        return false;
    *out = mem[SK_MEMINFO_DROPS];
    return true;
}

/* aggd_udp_kernel_drops_total, read when rendered (loop thread, as the listener). */
static double kernel_drops(void *arg)
{
    struct agg_listener *l = arg;
    uint32_t now;

    if (read_kernel_drops(l->udp_fd, &now)) {
        l->kernel_drops += (uint32_t)(now - l->kernel_drops_last); /* wraps at 2^32 */
        l->kernel_drops_last = now;
    }
    return (double)l->kernel_drops;
}

/* Asks for a receive buffer of <bytes> (0: the kernel's default stays): SO_RCVBUFFORCE
 * first, which passes net.core.rmem_max with CAP_NET_ADMIN, else SO_RCVBUF, which the
 * kernel caps there. A socket passed by systemd keeps a buffer already that large
 * (ReceiveBuffer=). Returns the size the kernel reports: twice what it grants, as it
 * counts its bookkeeping too. */
static int set_rcvbuf(evutil_socket_t fd, const char *addr, int64_t bytes, bool passed)
{
    int want = (int)bytes, got = 0;
    socklen_t len = sizeof(got);

    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) != 0)
        got = 0;
    if (want > 0 && !(passed && got / 2 >= want) &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want)) != 0)
        AGG_LOG_WARN("listen", "could not set the receive buffer of UDP \"%s\" to %d bytes: %s",
                     addr, want, strerror(errno));
    len = sizeof(got);
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) != 0)
        got = 0;
    if (want > 0 && got / 2 < want)
        AGG_LOG_INFO("listen", "receive buffer of UDP \"%s\": %d bytes as the kernel counts "
                     "them (listen.udp_rcvbuf asks %d, capped by net.core.rmem_max without "
                     "CAP_NET_ADMIN)", addr, got, want);
    else
        AGG_LOG_INFO("listen", "receive buffer of UDP \"%s\": %d bytes as the kernel counts "
                     "them (listen.udp_rcvbuf %d)", addr, got, want);
    return got;
}

/* `transport="syslog_udp",listener="<addr>"`, the address made safe for a label. */
static void udp_labels(const char *addr, char *out, size_t size)
{
    size_t n = (size_t)snprintf(out, size, "transport=\"syslog_udp\",listener=\"");

    for (const char *p = addr; *p != '\0' && n + 2 < size; p++)
        out[n++] = (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) ? '_' : *p;
    out[n++] = '"';
    out[n] = '\0';
}

/* The gauge of the receive buffer and, when the kernel can tell, the counter of its
 * drops. */
static int add_udp_metrics(struct agg_listener *l, const char *addr, int rcvbuf,
                           struct agg_metrics *metrics, struct agg_err *err)
{
    char labels[LABELS_MAX];
    _Atomic int64_t *size;
    uint32_t drops;

    udp_labels(addr, labels, sizeof(labels));
    size = agg_metrics_add(metrics, AGG_METRIC_GAUGE, "aggd_udp_rcvbuf_bytes", labels,
                           "Receive buffer of the UDP socket as the kernel counts it "
                           "(twice listen.udp_rcvbuf when granted).");
    if (size == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    agg_metric_set(size, rcvbuf);
    if (!read_kernel_drops(l->udp_fd, &drops)) {
        AGG_LOG_WARN("listen", "cannot read the kernel's drop count of UDP \"%s\": %s; "
                     "aggd_udp_kernel_drops_total is not exported", addr, strerror(errno));
        return AGG_OK;
    }
    if (agg_metrics_add_counter_fn(metrics, "aggd_udp_kernel_drops_total", labels,
                                   "Datagrams the kernel dropped before aggd could read them "
                                   "(receive buffer full; see listen.udp_rcvbuf).",
                                   kernel_drops, l) != AGG_OK)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    return AGG_OK;
}

static void udp_set_free(struct udp_set *u)
{
    if (u != NULL)
        free(u->buf);
    free(u);
}

/* UDP_BATCH slots of <max_message> + 1 octets (at most UDP_MAX_DATAGRAM): one more than
 * the largest accepted datagram tells a longer one (MSG_TRUNC gives its size). Caller
 * owns the result: udp_set_free(). NULL when out of memory. */
static struct udp_set *udp_set_new(size_t max_message)
{
    struct udp_set *u = agg_calloc(1, sizeof(*u));
    size_t slot = max_message < UDP_MAX_DATAGRAM ? max_message + 1 : UDP_MAX_DATAGRAM;

    if (u == NULL)
        return NULL;
    u->buf = agg_malloc(UDP_BATCH * slot);
    if (u->buf == NULL) {
        udp_set_free(u);
        return NULL;
    }
    for (int i = 0; i < UDP_BATCH; i++) {
        u->iov[i].iov_base = u->buf + (size_t)i * slot;
        u->iov[i].iov_len = slot;
        u->msgs[i].msg_hdr.msg_iov = &u->iov[i];
        u->msgs[i].msg_hdr.msg_iovlen = 1;
        u->msgs[i].msg_hdr.msg_name = &u->from[i];
    }
    format_peer((struct sockaddr *)&u->last, u->last_peer); /* "unknown", as for no name */
    return u;
}

static int bind_udp(struct agg_listener *l, const char *addr, const struct addrinfo *ai, int fd,
                    int64_t rcvbuf, struct agg_metrics *metrics, struct agg_err *err)
{
    int one = 1;

    if (fd >= 0) {
        l->udp_fd = fd;
        l->passed_fd = -1;
        if (evutil_make_socket_nonblocking(fd) != 0)
            return agg_err_set(err, AGG_EINVAL, "could not use the UDP socket for \"%s\": %s",
                               addr, strerror(errno));
    } else {
        l->udp_fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (l->udp_fd < 0 ||
            setsockopt(l->udp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            bind(l->udp_fd, ai->ai_addr, ai->ai_addrlen) != 0)
            return agg_err_set(err, AGG_EINVAL, "could not listen for UDP on \"%s\": %s", addr,
                               strerror(errno));
    }
    /* a larger kernel queue rides out bursts */
    if (add_udp_metrics(l, addr, set_rcvbuf(l->udp_fd, addr, rcvbuf, fd >= 0), metrics, err) !=
        AGG_OK)
        return AGG_ENOMEM;
    l->udp = udp_set_new(l->max_message);
    l->udp_ev = event_new(l->base, l->udp_fd, EV_READ | EV_PERSIST, on_udp, l);
    if (l->udp == NULL || l->udp_ev == NULL || event_add(l->udp_ev, NULL) != 0)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    return AGG_OK;
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evconnlistener_enable(((struct agg_listener *)arg)->tcp);
}

/* accept() failed: out of descriptors (or kernel memory), retrying at once would spin,
 * so the listener rests ACCEPT_PAUSE_MS; the kernel's backlog holds the next ones. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct agg_listener *l = arg;
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    int e = EVUTIL_SOCKET_ERROR();

    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        evconnlistener_disable(lev);
        evtimer_add(l->resume, &tv);
    }
    AGG_LOG_LIMITED(&l->accept_log, AGG_LOG_LEVEL_WARN, "listen",
                    "could not accept a TCP connection: %s", evutil_socket_error_to_string(e));
}

static int bind_tcp(struct agg_listener *l, const char *addr, const struct addrinfo *ai, int fd,
                    struct agg_err *err)
{
    if (fd >= 0) {
        /* already listening (systemd's backlog): -1 keeps it */
        if (evutil_make_socket_nonblocking(fd) == 0)
            l->tcp = evconnlistener_new(l->base, on_accept, l,
                                        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
        if (l->tcp != NULL)
            l->passed_fd = -1;
    } else {
        l->tcp = evconnlistener_new_bind(l->base, on_accept, l,
                                         LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                             LEV_OPT_CLOSE_ON_EXEC,
                                         TCP_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
    }
    if (l->tcp == NULL)
        return agg_err_set(err, AGG_EINVAL, "could not listen for TCP on \"%s\": %s", addr,
                           strerror(errno));
    evconnlistener_set_error_cb(l->tcp, on_accept_error);
    l->resume = evtimer_new(l->base, on_resume, l);
    if (l->resume == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    return st_pipeline_on_drain(l->pipeline, on_drain, l);
}

static double conn_count(void *arg)
{
    return (double)((struct agg_listener *)arg)->nconns;
}

struct agg_listener *agg_listener_new(struct event_base *base, enum agg_listen_kind kind,
                                      const char *addr, const struct addrinfo *ai, int fd,
                                      const struct agg_listener_opts *opts,
                                      struct st_pipeline *pipeline,
                                      struct agg_metrics *metrics, struct agg_err *err)
{
    struct agg_listener *l = agg_calloc(1, sizeof(*l));
    const char *label = kinds[kind].label;

    if (l == NULL) {
        if (fd >= 0)
            evutil_closesocket(fd);
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    l->passed_fd = fd;
    l->kind = kind;
    l->transport = kinds[kind].transport;
    l->base = base;
    l->pipeline = pipeline;
    l->max_message = (size_t)opts->max_message_bytes;
    l->max_conns = (size_t)opts->max_connections;
    l->idle_s = (int)opts->idle_timeout_seconds;
    l->tls = kind == AGG_LISTEN_SYSLOG_TLS ? opts->tls : NULL;
    l->udp_fd = -1;
    agg_buf_init(&l->scratch);
    agg_buf_init(&l->merged);
    l->json = ing_json_new(l->max_message, err);
    if (l->json == NULL)
        goto fail;
    if (kind != AGG_LISTEN_JSON_TCP) {
        l->zone = agg_tz_load(opts->syslog_3164_timezone, err);
        if (l->zone == NULL) {
            agg_err_prefix(err, "listen.syslog_3164_timezone");
            goto fail;
        }
    }
    if (kind != AGG_LISTEN_SYSLOG_UDP) {
        l->m_refused = agg_metrics_add(metrics, AGG_METRIC_COUNTER,
                                       "aggd_connections_refused_total", label,
                                       "Connections refused over listen.max_connections.");
        l->m_idle_closed = agg_metrics_add(metrics, AGG_METRIC_COUNTER,
                                           "aggd_connections_idle_closed_total", label,
                                           "Connections closed after listen.idle_timeout_seconds.");
        if (l->m_refused == NULL || l->m_idle_closed == NULL ||
            agg_metrics_add_fn(metrics, "aggd_connections", label, "Open connections.",
                               conn_count, l) != AGG_OK) {
            agg_err_set(err, AGG_ENOMEM, "out of memory");
            goto fail;
        }
    }
    if ((kind == AGG_LISTEN_SYSLOG_UDP
             ? bind_udp(l, addr, ai, fd, opts->udp_rcvbuf, metrics, err)
             : bind_tcp(l, addr, ai, fd, err)) != AGG_OK)
        goto fail;
    return l;

fail:
    agg_listener_free(l);
    return NULL;
}

void agg_listener_set_limits(struct agg_listener *l, size_t max_connections,
                             int64_t idle_timeout_seconds)
{
    if (l == NULL)
        return;
    l->max_conns = max_connections;
    l->idle_s = (int)idle_timeout_seconds;
}

void agg_listener_free(struct agg_listener *l)
{
    if (l == NULL)
        return;
    if (l->passed_fd >= 0)
        evutil_closesocket(l->passed_fd);
    if (l->resume != NULL)
        event_free(l->resume);
    if (l->tcp != NULL) {
        evconnlistener_free(l->tcp);
        st_pipeline_off_drain(l->pipeline, on_drain, l);
    }
    while (l->conns != NULL) {
        conn_process(l->conns, STEP_FINISH);
        conn_close(l->conns);
    }
    if (l->udp_ev != NULL)
        event_free(l->udp_ev);
    if (l->udp_fd >= 0)
        close(l->udp_fd);
    udp_set_free(l->udp);
    ing_json_free(l->json);
    agg_tz_free(l->zone);
    agg_buf_clear(&l->scratch);
    agg_buf_clear(&l->merged);
    free(l);
}
