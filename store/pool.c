/*
 * store/pool.c — PostgreSQL connection pool.
 *
 * Place: see store/pool.h.
 * Threads: any thread but the event loop; one mutex guards the lists, never held
 *          while connecting or pinging.
 * Ownership: the pool owns every PGconn; borrowers give them back.
 */
#include "store/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "core/alloc.h"
#include "core/time.h"
#include "store/db.h"

#define PING_AFTER_IDLE_S 5

struct slot {
    PGconn *conn;
    time_t opened;
    time_t last_used;
};

struct st_pool {
    pthread_mutex_t lock;
    char *conninfo;
    int size, overflow, recycle_seconds;
    struct slot *idle; /* a stack: the most recently used is reused first */
    int nidle;
    int in_use;
    long long opened, recycled, failed;
    /* borrowed connections' open times, to recycle them on return */
    struct {
        PGconn *conn;
        time_t opened;
    } *lent;
};

struct st_pool *st_pool_new(const char *conninfo, int size, int overflow, int recycle_seconds,
                            struct agg_err *err)
{
    struct st_pool *p = agg_calloc(1, sizeof(*p));

    if (p == NULL)
        goto oom;
    pthread_mutex_init(&p->lock, NULL);
    p->size = size;
    p->overflow = overflow;
    p->recycle_seconds = recycle_seconds;
    p->conninfo = agg_strdup(conninfo);
    p->idle = agg_calloc((size_t)size, sizeof(*p->idle));
    p->lent = agg_calloc((size_t)(size + overflow), sizeof(*p->lent));
    if (p->conninfo == NULL || p->idle == NULL || p->lent == NULL)
        goto oom;
    return p;

oom:
    agg_err_set(err, AGG_ENOMEM, "out of memory");
    st_pool_free(p);
    return NULL;
}

void st_pool_free(struct st_pool *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->nidle; i++)
        PQfinish(p->idle[i].conn);
    pthread_mutex_destroy(&p->lock);
    free(p->idle);
    free(p->lent);
    free(p->conninfo);
    free(p);
}

static void remember_lent(struct st_pool *p, PGconn *conn, time_t opened)
{
    for (int i = 0; i < p->size + p->overflow; i++) {
        if (p->lent[i].conn == NULL) {
            p->lent[i].conn = conn;
            p->lent[i].opened = opened;
            return;
        }
    }
}

static time_t forget_lent(struct st_pool *p, PGconn *conn)
{
    for (int i = 0; i < p->size + p->overflow; i++) {
        if (p->lent[i].conn == conn) {
            p->lent[i].conn = NULL;
            return p->lent[i].opened;
        }
    }
    return 0;
}

static bool alive(PGconn *conn)
{
    PGresult *res;
    bool ok;

    if (PQstatus(conn) != CONNECTION_OK)
        return false;
    res = PQexec(conn, "");
    ok = res != NULL && PQresultStatus(res) == PGRES_EMPTY_QUERY;
    PQclear(res);
    return ok;
}

int st_pool_get(struct st_pool *p, PGconn **out, struct agg_err *err)
{
    for (;;) {
        struct slot s = {0};
        time_t now = (time_t)(agg_time_mono_us() / AGG_US_PER_SEC);

        pthread_mutex_lock(&p->lock);
        if (p->nidle > 0) {
            s = p->idle[--p->nidle];
        } else if (p->in_use + p->nidle >= p->size + p->overflow) {
            pthread_mutex_unlock(&p->lock);
            return agg_err_set(err, AGG_EAGAIN, "all %d connections are in use",
                               p->size + p->overflow);
        }
        p->in_use++;
        pthread_mutex_unlock(&p->lock);

        if (s.conn != NULL) {
            bool old = p->recycle_seconds > 0 && now - s.opened >= p->recycle_seconds;

            if (!old && (now - s.last_used < PING_AFTER_IDLE_S || alive(s.conn))) {
                pthread_mutex_lock(&p->lock);
                remember_lent(p, s.conn, s.opened);
                pthread_mutex_unlock(&p->lock);
                *out = s.conn;
                return AGG_OK;
            }
            PQfinish(s.conn); /* too old, or dead: try the next one */
            pthread_mutex_lock(&p->lock);
            p->in_use--;
            p->recycled += old;
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        s.conn = st_db_connect(p->conninfo, err);
        pthread_mutex_lock(&p->lock);
        if (s.conn == NULL) {
            p->in_use--;
            p->failed++;
        } else {
            p->opened++;
            remember_lent(p, s.conn, now);
        }
        pthread_mutex_unlock(&p->lock);
        if (s.conn == NULL)
            return AGG_EDB;
        *out = s.conn;
        return AGG_OK;
    }
}

void st_pool_put(struct st_pool *p, PGconn *conn, bool broken)
{
    time_t now = (time_t)(agg_time_mono_us() / AGG_US_PER_SEC);
    time_t opened;
    bool keep;

    if (conn == NULL)
        return;
    /* A connection left inside a transaction would hand its state to the next user. */
    broken = broken || PQstatus(conn) != CONNECTION_OK ||
             PQtransactionStatus(conn) != PQTRANS_IDLE;
    pthread_mutex_lock(&p->lock);
    opened = forget_lent(p, conn);
    p->in_use--;
    keep = !broken && p->nidle < p->size &&
           (p->recycle_seconds == 0 || now - opened < p->recycle_seconds);
    if (keep)
        p->idle[p->nidle++] = (struct slot){conn, opened, now};
    else if (!broken)
        p->recycled++;
    pthread_mutex_unlock(&p->lock);
    if (!keep)
        PQfinish(conn);
}

void st_pool_stats(struct st_pool *p, struct st_pool_stats *out)
{
    pthread_mutex_lock(&p->lock);
    out->in_use = p->in_use;
    out->idle = p->nidle;
    out->opened = p->opened;
    out->recycled = p->recycled;
    out->failed = p->failed;
    pthread_mutex_unlock(&p->lock);
}
