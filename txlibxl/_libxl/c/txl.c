/*
 * txl.c: the C side of txlibxl's libxl binding, compiled into the cffi
 * module txlibxl._libxl._cffi (see _build.py; its declarations: txl.h).
 *
 * What lives in C here, and why:
 *
 * - The xentoollog logger: a xentoollog_logger vtable whose vmessage
 *   drops messages below the minimum level *before* formatting them, then
 *   formats and hands (level, text) to Python.  Progress reports go the
 *   same way; destroy is a no-op (the binding frees the logger after
 *   libxl_ctx_free).  Error messages also go to this thread's open
 *   captures, if any (txl_capture.c).
 * - The osevent hook trampolines: struct timeval is passed by value to
 *   the timeout hooks, so they are converted to double seconds here (and
 *   abs={0,0} to an "as soon as possible" flag).
 * - fork_replacement for libxl_sigchld_owner_mainloop: a plain fork();
 *   only the parent calls up into Python, with the pid.  In the child no
 *   Python runs at all: hooks fail, log messages go to stderr.
 * - The per-event path is txl_queue.c's: events and operation
 *   completions are queued in C and taken by Python in batches.
 * - Small accessors that copy a libxl_event's payload into a flat struct,
 *   and that format UUIDs, so the Python side never depends on the layout
 *   of libxl's unions.
 *
 * The functions txl.h declares are the module's (cffi calls them); the
 * static ones are libxl's callbacks and their helpers.  The txl_py_*
 * functions are Python (extern "Python+C" in the cdef).
 */
#define _GNU_SOURCE                 /* asprintf (the cffi module gets it from Python.h) */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "txl.h"

/* Set in a child forked by txl_fork_replacement: Python must not run
 * there (the interpreter was not told about the fork). */
static volatile int txl_forked_child = 0;

int txl_in_forked_child(void) { return txl_forked_child; }

/* ---- xentoollog logger ------------------------------------------------ */

struct txl_logger {
    xentoollog_logger vtable;
    void *user;
    volatile int min_level;
};

static void txl_logger_emit(struct txl_logger *lg, int level, const char *text)
{
    if (txl_forked_child) {
        fprintf(stderr, "txlibxl[%ld]: %s\n", (long)getpid(), text);
        return;
    }
    txl_py_log(lg->user, level, text);
}

static void txl_logger_vmessage(xentoollog_logger *logger, xentoollog_level level,
                                int errnoval, const char *context,
                                const char *format, va_list al)
{
    struct txl_logger *lg = (struct txl_logger *)logger;
    char stack[1024];
    char *heap = NULL;
    char *text = NULL;
    const char *msg = stack;
    va_list copy;
    int n;
    int captured = !txl_forked_child && txl_capture_wants((int)level);

    if ((int)level < lg->min_level && !captured)
        return;                     /* before any formatting: hot paths */

    va_copy(copy, al);
    n = vsnprintf(stack, sizeof(stack), format, copy);
    va_end(copy);
    if (n < 0) {
        msg = "(unformattable log message)";
    } else if ((size_t)n >= sizeof(stack)) {
        heap = malloc((size_t)n + 1);
        if (heap) {
            vsnprintf(heap, (size_t)n + 1, format, al);
            msg = heap;
        }                           /* else: truncated, still useful */
    }
    if (errnoval >= 0) {
        if (asprintf(&text, "%s%s%s: %s", context ? context : "", context ? ": " : "",
                     msg, strerror(errnoval)) < 0)
            text = NULL;
    } else if (context) {
        if (asprintf(&text, "%s: %s", context, msg) < 0)
            text = NULL;
    }
    if (captured)
        txl_capture_message((int)level, text ? text : msg);
    if ((int)level >= lg->min_level && !(captured && txl_capture_silenced()))
        txl_logger_emit(lg, (int)level, text ? text : msg);
    free(text);
    free(heap);
}

static void txl_logger_progress(xentoollog_logger *logger, const char *context,
                                const char *doing_what, int percent,
                                unsigned long done, unsigned long total)
{
    struct txl_logger *lg = (struct txl_logger *)logger;
    char text[1024];

    if (XTL_PROGRESS < lg->min_level)
        return;
    snprintf(text, sizeof(text), "%s%s%s: %d%% (%lu/%lu)", context ? context : "",
             context ? ": " : "", doing_what ? doing_what : "", percent, done, total);
    txl_logger_emit(lg, XTL_PROGRESS, text);
}

static void txl_logger_destroy(xentoollog_logger *logger)
{
    (void)logger;                   /* owned and freed by the binding */
}

xentoollog_logger *txl_logger_new(void *user, int min_level)
{
    struct txl_logger *lg = calloc(1, sizeof(*lg));
    if (!lg)
        return NULL;
    lg->vtable.vmessage = txl_logger_vmessage;
    lg->vtable.progress = txl_logger_progress;
    lg->vtable.destroy = txl_logger_destroy;
    lg->user = user;
    lg->min_level = min_level;
    return &lg->vtable;
}

void txl_logger_set_min_level(xentoollog_logger *logger, int min_level)
{
    ((struct txl_logger *)logger)->min_level = min_level;
}

void txl_logger_free(xentoollog_logger *logger)
{
    free(logger);
}

int txl_ctx_alloc(libxl_ctx **pctx, xentoollog_logger *logger)
{
    return libxl_ctx_alloc(pctx, LIBXL_VERSION, 0, logger);
}

/* ---- osevent hooks ---------------------------------------------------- */

static double txl_timeval_seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int txl_fd_register(void *user, int fd, void **out, short events, void *for_libxl)
{
    if (txl_forked_child)
        return ERROR_OSEVENT_REG_FAIL;
    return txl_py_fd_register(user, fd, out, events, for_libxl);
}

int txl_fd_modify(void *user, int fd, void **update, short events)
{
    if (txl_forked_child)
        return ERROR_OSEVENT_REG_FAIL;
    return txl_py_fd_modify(user, fd, update, events);
}

void txl_fd_deregister(void *user, int fd, void *registration)
{
    if (txl_forked_child)
        return;
    txl_py_fd_deregister(user, fd, registration);
}

int txl_timeout_register(void *user, void **out, struct timeval abs, void *for_libxl)
{
    if (txl_forked_child)
        return ERROR_OSEVENT_REG_FAIL;
    return txl_py_timeout_register(user, out, txl_timeval_seconds(abs), for_libxl);
}

int txl_timeout_modify(void *user, void **update, struct timeval abs)
{
    if (txl_forked_child)
        return ERROR_OSEVENT_REG_FAIL;
    return txl_py_timeout_modify(user, update, txl_timeval_seconds(abs),
                                 abs.tv_sec == 0 && abs.tv_usec == 0);
}

void txl_timeout_deregister(void *user, void *registration)
{
    if (txl_forked_child)
        return;
    txl_py_timeout_deregister(user, registration);
}

/* libxl keeps the pointer: static storage outlives every ctx. */
static const libxl_osevent_hooks txl_osevent_hooks = {
    .fd_register = txl_fd_register,
    .fd_modify = txl_fd_modify,
    .fd_deregister = txl_fd_deregister,
    .timeout_register = txl_timeout_register,
    .timeout_modify = txl_timeout_modify,
    .timeout_deregister = txl_timeout_deregister,
};

void txl_register_osevent_hooks(libxl_ctx *ctx, void *user)
{
    libxl_osevent_register_hooks(ctx, &txl_osevent_hooks, user);
}

/* ---- event callbacks -------------------------------------------------- */

libxl_event *txl_event_make(int type, uint32_t domid, uint64_t for_user,
                            const uint8_t *uuid, int detail)
{
    libxl_event *ev = malloc(sizeof(*ev));
    if (!ev)
        return NULL;
    libxl_event_init(ev);
    libxl_event_init_type(ev, (libxl_event_type)type);
    ev->domid = domid;
    ev->for_user = for_user;
    if (uuid)
        memcpy(libxl_uuid_bytearray(&ev->domuuid), uuid, 16);
    if (type == LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN)
        ev->u.domain_shutdown.shutdown_reason = (uint8_t)detail;
    else if (type == LIBXL_EVENT_TYPE_OPERATION_COMPLETE)
        ev->u.operation_complete.rc = detail;
    return ev;
}

void txl_disaster(void *user, libxl_event_type type, const char *msg, int errnoval)
{
    if (txl_forked_child) {
        fprintf(stderr, "txlibxl[%ld]: libxl disaster: %s\n", (long)getpid(), msg ? msg : "");
        return;
    }
    txl_py_disaster(user, (int)type, msg ? msg : "", errnoval);
}

static void txl_queue_disaster(void *user, libxl_event_type type, const char *msg, int errnoval)
{
    txl_disaster(txl_queue_py((struct txl_queue *)user), type, msg, errnoval);
}

/* Events go to the context's queue (txl_queue.c); the disaster to Python. */
void txl_register_event_callbacks(libxl_ctx *ctx, libxl_event_hooks *hooks,
                                  uint64_t mask, struct txl_queue *queue)
{
    hooks->event_occurs_mask = mask;
    hooks->event_occurs = txl_event_occurs;
    hooks->disaster = txl_queue_disaster;
    libxl_event_register_callbacks(ctx, hooks, queue);
}

static int txl_predicate(const libxl_event *event, void *user)
{
    return txl_py_event_predicate(event, user);
}

int txl_event_check(libxl_ctx *ctx, libxl_event **event_r, uint64_t typemask,
                    void *predicate_user)
{
    return libxl_event_check(ctx, event_r, typemask,
                             predicate_user ? txl_predicate : NULL, predicate_user);
}

/* ---- child processes (libxl_sigchld_owner_mainloop) ------------------- */

static pid_t txl_fork_replacement(void *user)
{
    pid_t pid = fork();
    if (pid == 0) {
        txl_forked_child = 1;       /* no Python in the child, ever */
        return 0;
    }
    if (pid > 0) {
        int saved = errno;
        txl_py_child_forked(user, (int)pid);
        errno = saved;
    }
    return pid;
}

static const libxl_childproc_hooks txl_childproc_hooks = {
    .chldowner = libxl_sigchld_owner_mainloop,
    .fork_replacement = txl_fork_replacement,
    .reaped_callback = NULL,        /* not permitted with owner_mainloop */
};

void txl_set_childproc_mainloop(libxl_ctx *ctx, void *user)
{
    libxl_childproc_setmode(ctx, &txl_childproc_hooks, user);
}

/* ---- async operations ------------------------------------------------- */

void txl_ao_how_init(libxl_asyncop_how *how, uintptr_t op_id)
{
    memset(how, 0, sizeof(*how));
    how->callback = txl_ao_done;      /* queued, as events are (txl_queue.c) */
    how->u.for_callback = (void *)op_id;
}

/* ---- accessors -------------------------------------------------------- */

void txl_uuid_format(const libxl_uuid *uuid, char *buf)
{
    const uint8_t *b = libxl_uuid_bytearray_const(uuid);
    snprintf(buf, LIBXL_UUID_FMTLEN + 1, LIBXL_UUID_FMT,
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
             b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

void txl_disk_read(const libxl_device_disk *d, struct txl_disk_fields *out)
{
    out->backend_domid = d->backend_domid;
    out->backend_domname = d->backend_domname;
    out->pdev_path = d->pdev_path;
    out->vdev = d->vdev;
    out->backend = libxl_disk_backend_to_string(d->backend);
    out->format = libxl_disk_format_to_string(d->format);
    out->script = d->script;
    out->removable = d->removable;
    out->readwrite = d->readwrite;
    out->is_cdrom = d->is_cdrom;
}

void txl_event_read(const libxl_event *ev, struct txl_event_fields *out)
{
    memset(out, 0, sizeof(*out));
    out->type = (int)ev->type;
    out->domid = ev->domid;
    txl_uuid_format(&ev->domuuid, out->uuid);
    out->for_user = ev->for_user;
    out->shutdown_reason = -1;
    switch (ev->type) {
    case LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN:
        out->shutdown_reason = ev->u.domain_shutdown.shutdown_reason;
        break;
    case LIBXL_EVENT_TYPE_DISK_EJECT:
        out->vdev = ev->u.disk_eject.vdev;
        out->has_disk = 1;
        txl_disk_read(&ev->u.disk_eject.disk, &out->disk);
        break;
    case LIBXL_EVENT_TYPE_OPERATION_COMPLETE:
        out->rc = ev->u.operation_complete.rc;
        break;
    default:
        break;
    }
}

/* ---- beforepoll / afterpoll (struct timeval by value) ----------------- */

int txl_osevent_beforepoll(libxl_ctx *ctx, int *nfds_io, struct pollfd *fds,
                           int *timeout_upd, long sec, long usec)
{
    struct timeval now = { .tv_sec = sec, .tv_usec = usec };
    return libxl_osevent_beforepoll(ctx, nfds_io, fds, timeout_upd, now);
}

void txl_osevent_afterpoll(libxl_ctx *ctx, int nfds, const struct pollfd *fds,
                           long sec, long usec)
{
    struct timeval now = { .tv_sec = sec, .tv_usec = usec };
    libxl_osevent_afterpoll(ctx, nfds, fds, now);
}
