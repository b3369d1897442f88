/*
 * txl_queue.c: libxl's reports, queued in C until Python takes them.
 *
 * libxl reports events (event_occurs) and operation completions (the
 * ao_how callback) from inside whatever libxl call made them happen.
 * Here they are appended to the context's queue as packed records, with
 * no Python and no GIL; the binding takes the whole batch in one call
 * after the libxl entry returns (txl_queue_take).
 *
 * A record is TXL_RECORD_WORDS int64 values: the type (a
 * libxl_event_type, or TXL_REPORT_OP_DONE for an operation's end), the
 * domid, the for_user (or the op_id), the detail (a shutdown's reason,
 * an operation's rc, TXL_DEATH_SPENT for a death whose generator is
 * disabled here) and a kept libxl_event pointer (0 if none).  An
 * event made only of scalars is freed here at once; one with more to
 * read (a disk eject, a type this binding does not know, a UUID libxl
 * filled in) is kept, owned by the queue until taken, then by Python
 * (which frees it with txl_event_release), or freed by txl_queue_free.
 *
 * Domain-death generators are enabled through txl_evenable_death, which
 * keeps them in a table by user value: when a DOMAIN_DEATH arrives for
 * one, event_occurs disables it at once (libxl_event.h: "it IS permitted
 * to call libxl from within event_occurs"), so no Python runs per death
 * for it.  A death reported inside the evenable call itself is disabled
 * as soon as that call returns.
 */
#include <pthread.h>
#include <string.h>

#include "txl.h"

static uint64_t txl_received = 0, txl_freed = 0, txl_deaths_disabled = 0;

void txl_event_counts(uint64_t *received, uint64_t *freed, uint64_t *disabled)
{
    *received = __atomic_load_n(&txl_received, __ATOMIC_SEQ_CST);
    *freed = __atomic_load_n(&txl_freed, __ATOMIC_SEQ_CST);
    *disabled = __atomic_load_n(&txl_deaths_disabled, __ATOMIC_SEQ_CST);
}

void txl_event_release(libxl_event *event)
{
    libxl_event_free(NULL, event);  /* 4.17 ignores ctx here; libxl itself passes 0 */
    __atomic_fetch_add(&txl_freed, 1, __ATOMIC_SEQ_CST);
}

struct txl_gen {
    uint64_t user;                  /* 0: empty; TXL_GEN_GONE: a tombstone */
    libxl_evgen_domain_death *evgen;
};
#define TXL_GEN_GONE UINT64_MAX

struct txl_queue {
    pthread_mutex_t lock;
    libxl_ctx *ctx;
    void *py;                       /* the binding's handle (disaster) */
    int64_t *records;
    size_t count, cap;              /* in records */
    int overflow;                   /* a report was lost (no memory) */
    struct txl_gen *gens;
    size_t gens_cap, gens_used;     /* used: live + tombstones */
    struct txl_queue *next;         /* all queues: ao completions find theirs */
};

static pthread_mutex_t txl_queues_lock = PTHREAD_MUTEX_INITIALIZER;
static struct txl_queue *txl_queues = NULL;

/* The death generator being enabled on this thread, and whether libxl
 * reported its death inside the evenable call. */
static __thread uint64_t txl_enabling = 0;
static __thread int txl_enabling_died = 0;

struct txl_queue *txl_queue_new(void *py)
{
    struct txl_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    pthread_mutex_init(&q->lock, NULL);
    q->py = py;
    pthread_mutex_lock(&txl_queues_lock);
    q->next = txl_queues;
    txl_queues = q;
    pthread_mutex_unlock(&txl_queues_lock);
    return q;
}

void txl_queue_set_ctx(struct txl_queue *q, libxl_ctx *ctx)
{
    pthread_mutex_lock(&txl_queues_lock);
    q->ctx = ctx;
    pthread_mutex_unlock(&txl_queues_lock);
}

void *txl_queue_py(struct txl_queue *q)
{
    return q->py;
}

static struct txl_queue *txl_queue_of(libxl_ctx *ctx)
{
    struct txl_queue *q;
    pthread_mutex_lock(&txl_queues_lock);
    for (q = txl_queues; q && q->ctx != ctx; q = q->next)
        ;
    pthread_mutex_unlock(&txl_queues_lock);
    return q;
}

size_t txl_queue_discard(struct txl_queue *q)
{
    size_t i, n, dropped = 0;
    pthread_mutex_lock(&q->lock);
    n = q->count;
    for (i = 0; i < n; i++) {
        int64_t kept = q->records[i * TXL_RECORD_WORDS + 4];
        if (kept)
            txl_event_release((libxl_event *)(intptr_t)kept);
    }
    dropped = n;
    q->count = 0;
    pthread_mutex_unlock(&q->lock);
    return dropped;
}

size_t txl_queue_free(struct txl_queue *q)
{
    struct txl_queue **p;
    size_t dropped;
    if (!q)
        return 0;
    pthread_mutex_lock(&txl_queues_lock);
    for (p = &txl_queues; *p; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            break;
        }
    }
    pthread_mutex_unlock(&txl_queues_lock);
    dropped = txl_queue_discard(q);
    pthread_mutex_destroy(&q->lock);
    free(q->records);
    free(q->gens);
    free(q);
    return dropped;
}

size_t txl_queue_count(struct txl_queue *q)
{
    size_t n;
    pthread_mutex_lock(&q->lock);
    n = q->count;
    pthread_mutex_unlock(&q->lock);
    return n;
}

/* Under q->lock. */
static void txl_queue_append(struct txl_queue *q, int64_t type, int64_t domid, int64_t user,
                             int64_t detail, libxl_event *kept)
{
    int64_t *r;
    if (q->count == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 256;
        int64_t *grown = realloc(q->records, cap * TXL_RECORD_WORDS * sizeof(int64_t));
        if (!grown) {
            q->overflow = 1;
            if (kept)
                txl_event_release(kept);
            return;
        }
        q->records = grown;
        q->cap = cap;
    }
    r = q->records + q->count * TXL_RECORD_WORDS;
    r[0] = type;
    r[1] = domid;
    r[2] = user;
    r[3] = detail;
    r[4] = (int64_t)(intptr_t)kept;
    q->count++;
}

size_t txl_queue_take(struct txl_queue *q, int64_t *out, size_t cap, int *overflow, size_t *ops)
{
    size_t n, i, done = 0;
    pthread_mutex_lock(&q->lock);
    n = q->count < cap ? q->count : cap;
    for (i = 0; i < n; i++)
        done += q->records[i * TXL_RECORD_WORDS] == TXL_REPORT_OP_DONE;
    *ops = done;
    if (n) {
        memcpy(out, q->records, n * TXL_RECORD_WORDS * sizeof(int64_t));
        if (n < q->count)
            memmove(q->records, q->records + n * TXL_RECORD_WORDS,
                    (q->count - n) * TXL_RECORD_WORDS * sizeof(int64_t));
        q->count -= n;
    }
    *overflow = q->overflow;
    q->overflow = 0;
    pthread_mutex_unlock(&q->lock);
    return n;
}

/* ---- the death generators' table (open addressing, under q->lock) ----- */

static size_t txl_gen_slot(uint64_t user, size_t cap)
{
    return (size_t)((user * 0x9E3779B97F4A7C15ULL) >> 17) & (cap - 1);
}

static int txl_gen_grow(struct txl_queue *q)
{
    size_t cap = q->gens_cap ? q->gens_cap * 2 : 1024, i;
    struct txl_gen *gens = calloc(cap, sizeof(*gens));
    if (!gens)
        return -1;
    /* live entries move; tombstones do not */
    q->gens_used = 0;
    for (i = 0; i < q->gens_cap; i++) {
        struct txl_gen *g = &q->gens[i];
        if (g->user && g->user != TXL_GEN_GONE) {
            size_t s = txl_gen_slot(g->user, cap);
            while (gens[s].user)
                s = (s + 1) & (cap - 1);
            gens[s] = *g;
            q->gens_used++;
        }
    }
    free(q->gens);
    q->gens = gens;
    q->gens_cap = cap;
    return 0;
}

static int txl_gen_put(struct txl_queue *q, uint64_t user, libxl_evgen_domain_death *evgen)
{
    size_t s;
    if ((q->gens_used + 1) * 2 > q->gens_cap && txl_gen_grow(q))
        return -1;
    s = txl_gen_slot(user, q->gens_cap);
    while (q->gens[s].user && q->gens[s].user != TXL_GEN_GONE)
        s = (s + 1) & (q->gens_cap - 1);
    if (!q->gens[s].user)
        q->gens_used++;
    q->gens[s].user = user;
    q->gens[s].evgen = evgen;
    return 0;
}

static libxl_evgen_domain_death *txl_gen_take(struct txl_queue *q, uint64_t user)
{
    size_t s;
    if (!q->gens_cap || user == 0 || user == TXL_GEN_GONE)
        return NULL;
    s = txl_gen_slot(user, q->gens_cap);
    while (q->gens[s].user) {
        if (q->gens[s].user == user) {
            libxl_evgen_domain_death *evgen = q->gens[s].evgen;
            q->gens[s].user = TXL_GEN_GONE;
            q->gens[s].evgen = NULL;
            return evgen;
        }
        s = (s + 1) & (q->gens_cap - 1);
    }
    return NULL;
}

int txl_evenable_death(struct txl_queue *q, uint32_t domid, uint64_t user, int *died)
{
    libxl_evgen_domain_death *evgen = NULL;
    int rc;
    *died = 0;
    if (user == 0 || user == TXL_GEN_GONE)
        return ERROR_INVAL;
    txl_enabling = user;
    txl_enabling_died = 0;
    rc = libxl_evenable_domain_death(q->ctx, domid, user, &evgen);
    txl_enabling = 0;
    if (rc)
        return rc;
    if (txl_enabling_died) {
        /* its death is queued already: the generator is spent */
        libxl_evdisable_domain_death(q->ctx, evgen);
        __atomic_fetch_add(&txl_deaths_disabled, 1, __ATOMIC_SEQ_CST);
        *died = 1;
        return 0;
    }
    pthread_mutex_lock(&q->lock);
    rc = txl_gen_put(q, user, evgen);
    pthread_mutex_unlock(&q->lock);
    if (rc) {
        libxl_evdisable_domain_death(q->ctx, evgen);
        return ERROR_NOMEM;
    }
    return 0;
}

int txl_evdisable_death(struct txl_queue *q, uint64_t user)
{
    libxl_evgen_domain_death *evgen;
    pthread_mutex_lock(&q->lock);
    evgen = txl_gen_take(q, user);
    pthread_mutex_unlock(&q->lock);
    if (!evgen)
        return 0;                   /* disabled already, by its death */
    libxl_evdisable_domain_death(q->ctx, evgen);
    return 1;
}

void txl_queue_forget_generators(struct txl_queue *q)
{
    /* libxl_ctx_free disabled them all */
    pthread_mutex_lock(&q->lock);
    free(q->gens);
    q->gens = NULL;
    q->gens_cap = q->gens_used = 0;
    pthread_mutex_unlock(&q->lock);
}

/* ---- what libxl calls -------------------------------------------------- */

void txl_event_occurs(void *user, libxl_event *event)
{
    struct txl_queue *q = user;
    libxl_evgen_domain_death *spent = NULL;
    libxl_event *kept = NULL;
    int64_t detail = 0;

    __atomic_fetch_add(&txl_received, 1, __ATOMIC_SEQ_CST);
    switch (event->type) {
    case LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN:
        detail = event->u.domain_shutdown.shutdown_reason;
        break;
    case LIBXL_EVENT_TYPE_DOMAIN_DEATH:
    case LIBXL_EVENT_TYPE_DOMAIN_CREATE_CONSOLE_AVAILABLE:
        break;
    case LIBXL_EVENT_TYPE_OPERATION_COMPLETE:
        detail = event->u.operation_complete.rc;
        break;
    default:
        kept = event;
        break;
    }
    if (!kept && !libxl_uuid_is_nil(&event->domuuid))
        kept = event;               /* a UUID to read */
    pthread_mutex_lock(&q->lock);
    if (event->type == LIBXL_EVENT_TYPE_DOMAIN_DEATH) {
        spent = txl_gen_take(q, event->for_user);
        if (spent) {
            detail = TXL_DEATH_SPENT;
        } else if (txl_enabling && event->for_user == txl_enabling) {
            txl_enabling_died = 1;  /* disabled when evenable returns */
            detail = TXL_DEATH_SPENT;
        }
    }
    txl_queue_append(q, (int64_t)event->type, (int64_t)event->domid, (int64_t)event->for_user,
                     detail, kept);
    pthread_mutex_unlock(&q->lock);
    if (!kept)
        txl_event_release(event);
    if (spent) {
        libxl_evdisable_domain_death(q->ctx, spent);
        __atomic_fetch_add(&txl_deaths_disabled, 1, __ATOMIC_SEQ_CST);
    }
}

void txl_ao_done(libxl_ctx *ctx, int rc, void *for_callback)
{
    struct txl_queue *q = txl_queue_of(ctx);
    if (!q)
        return;                     /* pragma: no cover - a queue lives as long as its ctx */
    pthread_mutex_lock(&q->lock);
    txl_queue_append(q, TXL_REPORT_OP_DONE, 0, (int64_t)(uintptr_t)for_callback, rc, NULL);
    pthread_mutex_unlock(&q->lock);
}

void txl_queue_report(struct txl_queue *q, int type, uint32_t domid, uint64_t user, int detail)
{
    pthread_mutex_lock(&q->lock);
    txl_queue_append(q, type, domid, (int64_t)user, detail, NULL);
    pthread_mutex_unlock(&q->lock);
}
