"""
The cffi builder of txlibxl's libxl binding (API mode).

``ffibuilder`` compiles ``txlibxl._libxl._cffi`` against the installed
``<libxl.h>`` (with ``LIBXL_API_VERSION`` pinned, see below) and links it
with libxenlight, libxentoollog and libxenstore.  setup.py names it in
``cffi_modules``; to build it alone::

    python txlibxl/_libxl/_build.py          # writes txlibxl/_libxl/_cffi*.so

What lives in C here, and why:

* The xentoollog logger: a ``xentoollog_logger`` vtable whose ``vmessage``
  drops messages below the minimum level *before* formatting them, then
  formats and hands ``(level, text)`` to Python.  Progress reports go the
  same way; ``destroy`` is a no-op (the binding frees the logger after
  ``libxl_ctx_free``).
* The osevent hook trampolines: ``struct timeval`` is passed by value to
  the timeout hooks, so they are converted to double seconds here (and
  ``abs={0,0}`` to an "as soon as possible" flag).
* ``fork_replacement`` for ``libxl_sigchld_owner_mainloop``: a plain
  ``fork()``; only the parent calls up into Python, with the pid.  In the
  child no Python runs at all: hooks fail, log messages go to stderr.
* Small accessors that copy a ``libxl_event``'s payload into a flat
  struct, and that format UUIDs, so the Python side never depends on the
  layout of libxl's unions.

The ``libxl_error`` constants are read from the installed
``_libxl_types.h`` at build time, so the compiled module exposes exactly
the codes of the headers it was built against (``lib.ERROR_*``).
"""
from __future__ import annotations

import os
import re
from typing import List

from cffi import FFI

#: The newest ``LIBXL_API_VERSION`` the 4.17 ``libxl.h`` accepts (it lists
#: 0x040200 ... 0x041300 and 0x041400; 0x041400 only drops two internal
#: cpuid functions).  With it, pause/unpause/shutdown/reboot take an
#: ``ao_how``.
LIBXL_API_VERSION = 0x041400

INCLUDE_DIR = os.environ.get("TXLIBXL_INCLUDE_DIR", "/usr/include")


def libxl_error_names(include_dir: str = INCLUDE_DIR) -> List[str]:
    """
    The ``ERROR_*`` names of the ``libxl_error`` enum in the installed
    ``_libxl_types.h`` (generated from ``libxl_types.idl``), in order.
    """
    with open(os.path.join(include_dir, "_libxl_types.h")) as f:
        text = f.read()
    match = re.search(r"typedef enum libxl_error \{(.*?)\} libxl_error;", text, re.S)
    if match is None:
        raise RuntimeError(f"no libxl_error enum in {include_dir}/_libxl_types.h")
    return re.findall(r"^\s*(ERROR_\w+)\s*=", match.group(1), re.M)


#: A libxl_event's payload, flattened (shared by the cdef and the C source).
EVENT_FIELDS = """
struct txl_disk_fields {
    uint32_t backend_domid;
    const char *backend_domname;
    const char *pdev_path;
    const char *vdev;
    const char *backend;
    const char *format;
    const char *script;
    int removable;
    int readwrite;
    int is_cdrom;
};
struct txl_event_fields {
    int type;
    uint32_t domid;
    char uuid[40];
    uint64_t for_user;
    int shutdown_reason;
    int rc;
    const char *vdev;
    int has_disk;
    struct txl_disk_fields disk;
};
"""

CDEF = """
typedef int... pid_t;
typedef int... xentoollog_level;
typedef int... libxl_event_type;
typedef int... libxl_domain_type;
typedef int... libxl_shutdown_reason;
typedef int... libxl_error;

typedef ... libxl_ctx;
typedef ... xentoollog_logger;
typedef ... libxl_event;
typedef ... libxl_evgen_domain_death;
typedef ... libxl_evgen_disk_eject;
typedef struct { ...; } libxl_uuid;
typedef struct { ...; } libxl_asyncop_how;
typedef struct { ...; } libxl_device_disk;

struct pollfd { int fd; short events; short revents; ...; };

typedef struct libxl_dominfo {
    libxl_uuid uuid;
    uint32_t domid;
    uint32_t ssidref;
    char *ssid_label;
    bool running;
    bool blocked;
    bool paused;
    bool shutdown;
    bool dying;
    bool never_stop;
    libxl_shutdown_reason shutdown_reason;
    uint64_t outstanding_memkb;
    uint64_t current_memkb;
    uint64_t shared_memkb;
    uint64_t paged_memkb;
    uint64_t max_memkb;
    uint64_t cpu_time;
    uint32_t vcpu_max_id;
    uint32_t vcpu_online;
    uint32_t cpupool;
    libxl_domain_type domain_type;
    ...;
} libxl_dominfo;

typedef struct libxl_event_hooks {
    uint64_t event_occurs_mask;
    ...;
} libxl_event_hooks;

#define LIBXL_API_VERSION ...
#define LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN ...
#define LIBXL_EVENT_TYPE_DOMAIN_DEATH ...
#define LIBXL_EVENT_TYPE_DISK_EJECT ...
#define LIBXL_EVENT_TYPE_OPERATION_COMPLETE ...
#define LIBXL_EVENT_TYPE_DOMAIN_CREATE_CONSOLE_AVAILABLE ...
#define LIBXL_DOMAIN_TYPE_HVM ...
#define LIBXL_DOMAIN_TYPE_PV ...
#define LIBXL_DOMAIN_TYPE_PVH ...
#define XTL_NONE ...
#define XTL_DEBUG ...
#define XTL_VERBOSE ...
#define XTL_DETAIL ...
#define XTL_PROGRESS ...
#define XTL_INFO ...
#define XTL_NOTICE ...
#define XTL_WARN ...
#define XTL_ERROR ...
#define XTL_CRITICAL ...
#define XTL_NUM_LEVELS ...
#define DOMID_FIRST_RESERVED ...
@ERROR_DEFINES@

/* libxl */
int libxl_ctx_free(libxl_ctx *ctx);
void libxl_event_free(libxl_ctx *ctx, libxl_event *event);
int libxl_evenable_domain_death(libxl_ctx *ctx, uint32_t domid, uint64_t user,
                                libxl_evgen_domain_death **evgen_out);
void libxl_evdisable_domain_death(libxl_ctx *ctx, libxl_evgen_domain_death *);
int libxl_evenable_disk_eject(libxl_ctx *ctx, uint32_t domid, const char *vdev,
                              uint64_t user, libxl_evgen_disk_eject **evgen_out);
void libxl_evdisable_disk_eject(libxl_ctx *ctx, libxl_evgen_disk_eject *);
void libxl_osevent_occurred_fd(libxl_ctx *ctx, void *for_libxl, int fd,
                               short events, short revents);
void libxl_osevent_occurred_timeout(libxl_ctx *ctx, void *for_libxl);
int libxl_childproc_reaped(libxl_ctx *ctx, pid_t, int status);
void libxl_childproc_sigchld_occurred(libxl_ctx *ctx);
int libxl_ao_abort(libxl_ctx *ctx, const libxl_asyncop_how *how);
int libxl_domain_shutdown(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how);
int libxl_domain_reboot(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how);
int libxl_domain_destroy(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how);
int libxl_domain_pause(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how);
int libxl_domain_unpause(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how);
int libxl_domain_info(libxl_ctx *, libxl_dominfo *info_r, uint32_t domid);
libxl_dominfo *libxl_list_domain(libxl_ctx *, int *nb_domain_out);
void libxl_dominfo_list_free(libxl_dominfo *list, int nb_domain);
void libxl_dominfo_init(libxl_dominfo *p);
void libxl_dominfo_dispose(libxl_dominfo *p);
char *libxl_domid_to_name(libxl_ctx *ctx, uint32_t domid);
int libxl_name_to_domid(libxl_ctx *ctx, const char *name, uint32_t *domid);
const char *libxl_error_to_string(libxl_error p);
int libxl_vdev_to_device_disk(libxl_ctx *ctx, uint32_t domid, const char *vdev,
                              libxl_device_disk *disk);
void libxl_device_disk_init(libxl_device_disk *p);
void libxl_device_disk_dispose(libxl_device_disk *p);
void free(void *);

/* libxenstore: a connection of our own, for xenstore watches libxl does
 * not offer (@introduceDomain) and for reading device directories. */
struct xs_handle;
typedef uint32_t xs_transaction_t;
#define XBT_NULL ...
struct xs_handle *xs_open(unsigned long flags);
void xs_close(struct xs_handle *xsh);
int xs_fileno(struct xs_handle *h);
bool xs_watch(struct xs_handle *h, const char *path, const char *token);
bool xs_unwatch(struct xs_handle *h, const char *path, const char *token);
char **xs_check_watch(struct xs_handle *h);
char **xs_directory(struct xs_handle *h, xs_transaction_t t, const char *path,
                    unsigned int *num);
void *xs_read(struct xs_handle *h, xs_transaction_t t, const char *path,
              unsigned int *len);

/* txlibxl's C side (set_source below) */
@EVENT_FIELDS@
xentoollog_logger *txl_logger_new(void *user, int min_level);
void txl_logger_set_min_level(xentoollog_logger *logger, int min_level);
void txl_logger_free(xentoollog_logger *logger);
int txl_ctx_alloc(libxl_ctx **pctx, xentoollog_logger *logger);
void txl_register_osevent_hooks(libxl_ctx *ctx, void *user);
void txl_register_event_callbacks(libxl_ctx *ctx, libxl_event_hooks *hooks,
                                  uint64_t mask, void *user);
void txl_set_childproc_mainloop(libxl_ctx *ctx, void *user);
void txl_ao_how_init(libxl_asyncop_how *how, uintptr_t op_id);
void txl_event_read(const libxl_event *ev, struct txl_event_fields *out);
void txl_disk_read(const libxl_device_disk *disk, struct txl_disk_fields *out);
void txl_uuid_format(const libxl_uuid *uuid, char *buf);
int txl_event_check(libxl_ctx *ctx, libxl_event **event_r, uint64_t typemask,
                    void *predicate_user);
int txl_osevent_beforepoll(libxl_ctx *ctx, int *nfds_io, struct pollfd *fds,
                           int *timeout_upd, long sec, long usec);
void txl_osevent_afterpoll(libxl_ctx *ctx, int nfds, const struct pollfd *fds,
                           long sec, long usec);
int txl_in_forked_child(void);

/* The trampolines libxl calls (hooks, disaster), exposed so that tests
 * can drive the C-to-Python path without a Xen host. */
struct timeval { long tv_sec; long tv_usec; ...; };
int txl_fd_register(void *user, int fd, void **out, short events, void *for_libxl);
int txl_fd_modify(void *user, int fd, void **update, short events);
void txl_fd_deregister(void *user, int fd, void *registration);
int txl_timeout_register(void *user, void **out, struct timeval abs, void *for_libxl);
int txl_timeout_modify(void *user, void **update, struct timeval abs);
void txl_timeout_deregister(void *user, void *registration);
void txl_disaster(void *user, libxl_event_type type, const char *msg, int errnoval);
void txl_event_occurs(void *user, libxl_event *event);
/* A libxl_event as libxl would allocate it (for those tests): freed by
 * whoever it is handed to.  `detail` is a shutdown's reason or an
 * operation's rc; `uuid` is 16 bytes, or NULL for the nil UUID. */
libxl_event *txl_event_make(int type, uint32_t domid, uint64_t for_user,
                            const uint8_t *uuid, int detail);

/* Python, called from the C side */
extern "Python" void txl_py_log(void *user, int level, const char *text);
extern "Python" int txl_py_fd_register(void *user, int fd, void **out, short events,
                                       void *for_libxl);
extern "Python" int txl_py_fd_modify(void *user, int fd, void **update, short events);
extern "Python" void txl_py_fd_deregister(void *user, int fd, void *registration);
extern "Python" int txl_py_timeout_register(void *user, void **out, double deadline,
                                            void *for_libxl);
extern "Python" int txl_py_timeout_modify(void *user, void **update, double deadline,
                                          int asap);
extern "Python" void txl_py_timeout_deregister(void *user, void *registration);
extern "Python" void txl_py_event_occurs(void *user, int type, uint32_t domid,
                                         uint64_t for_user, int shutdown_reason, int rc,
                                         const char *uuid, libxl_event *kept);
extern "Python" void txl_py_disaster(void *user, int type, const char *msg, int errnoval);
extern "Python" void txl_py_child_forked(void *user, int pid);
extern "Python" void txl_py_ao_complete(libxl_ctx *ctx, int rc, void *for_callback);
extern "Python" int txl_py_event_predicate(const libxl_event *event, void *user);
"""

SOURCE = r"""
#define LIBXL_API_VERSION @API_VERSION@
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>
#include <xentoollog.h>
#include <libxl.h>
#include <libxl_event.h>
#include <libxl_utils.h>
#include <libxl_uuid.h>
#include <xen/xen.h>
#include <xenstore.h>

#if LIBXL_API_VERSION < 0x041300
#error "txlibxl needs the ao_how forms of pause/unpause/shutdown/reboot"
#endif

/* The extern "Python" functions, defined by cffi further down. */
static void txl_py_log(void *user, int level, const char *text);
static int txl_py_fd_register(void *user, int fd, void **out, short events, void *for_libxl);
static int txl_py_fd_modify(void *user, int fd, void **update, short events);
static void txl_py_fd_deregister(void *user, int fd, void *registration);
static int txl_py_timeout_register(void *user, void **out, double deadline, void *for_libxl);
static int txl_py_timeout_modify(void *user, void **update, double deadline, int asap);
static void txl_py_timeout_deregister(void *user, void *registration);
static void txl_py_event_occurs(void *user, int type, uint32_t domid, uint64_t for_user,
                                int shutdown_reason, int rc, const char *uuid,
                                libxl_event *kept);
static void txl_py_disaster(void *user, int type, const char *msg, int errnoval);
static void txl_py_child_forked(void *user, int pid);
static void txl_py_ao_complete(libxl_ctx *ctx, int rc, void *for_callback);
static int txl_py_event_predicate(const libxl_event *event, void *user);
static void txl_uuid_format(const libxl_uuid *uuid, char *buf);

@EVENT_FIELDS@

/* Set in a child forked by txl_fork_replacement: Python must not run
 * there (the interpreter was not told about the fork). */
static volatile int txl_forked_child = 0;

static int txl_in_forked_child(void) { return txl_forked_child; }

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

    if ((int)level < lg->min_level)
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

static xentoollog_logger *txl_logger_new(void *user, int min_level)
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

static void txl_logger_set_min_level(xentoollog_logger *logger, int min_level)
{
    ((struct txl_logger *)logger)->min_level = min_level;
}

static void txl_logger_free(xentoollog_logger *logger)
{
    free(logger);
}

static int txl_ctx_alloc(libxl_ctx **pctx, xentoollog_logger *logger)
{
    return libxl_ctx_alloc(pctx, LIBXL_VERSION, 0, logger);
}

/* ---- osevent hooks ---------------------------------------------------- */

static double txl_timeval_seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static int txl_fd_register(void *user, int fd, void **out, short events, void *for_libxl)
{
    if (txl_forked_child)
        return ERROR_OSEVENT_REG_FAIL;
    return txl_py_fd_register(user, fd, out, events, for_libxl);
}

static int txl_fd_modify(void *user, int fd, void **update, short events)
{
    if (txl_forked_child)
        return ERROR_OSEVENT_REG_FAIL;
    return txl_py_fd_modify(user, fd, update, events);
}

static void txl_fd_deregister(void *user, int fd, void *registration)
{
    if (txl_forked_child)
        return;
    txl_py_fd_deregister(user, fd, registration);
}

static int txl_timeout_register(void *user, void **out, struct timeval abs, void *for_libxl)
{
    if (txl_forked_child)
        return ERROR_OSEVENT_REG_FAIL;
    return txl_py_timeout_register(user, out, txl_timeval_seconds(abs), for_libxl);
}

static int txl_timeout_modify(void *user, void **update, struct timeval abs)
{
    if (txl_forked_child)
        return ERROR_OSEVENT_REG_FAIL;
    return txl_py_timeout_modify(user, update, txl_timeval_seconds(abs),
                                 abs.tv_sec == 0 && abs.tv_usec == 0);
}

static void txl_timeout_deregister(void *user, void *registration)
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

static void txl_register_osevent_hooks(libxl_ctx *ctx, void *user)
{
    libxl_osevent_register_hooks(ctx, &txl_osevent_hooks, user);
}

/* ---- event callbacks -------------------------------------------------- */

/* The per-event path: the scalar fields go to Python as arguments and
 * the event is freed here.  Only an event with more than scalars (a disk
 * eject's disk, a type this binding does not know) is handed over as
 * `kept`, for Python to read and free. */
static void txl_event_occurs(void *user, libxl_event *event)
{
    char uuid[40];
    const char *u = NULL;
    int reason = -1, rc = 0;
    libxl_event *kept = NULL;
    if (!libxl_uuid_is_nil(&event->domuuid)) {
        txl_uuid_format(&event->domuuid, uuid);
        u = uuid;
    }
    switch (event->type) {
    case LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN:
        reason = event->u.domain_shutdown.shutdown_reason;
        break;
    case LIBXL_EVENT_TYPE_DOMAIN_DEATH:
    case LIBXL_EVENT_TYPE_DOMAIN_CREATE_CONSOLE_AVAILABLE:
        break;
    case LIBXL_EVENT_TYPE_OPERATION_COMPLETE:
        rc = event->u.operation_complete.rc;
        break;
    default:
        kept = event;
        break;
    }
    txl_py_event_occurs(user, (int)event->type, event->domid, event->for_user, reason, rc, u,
                        kept);
    if (!kept)
        libxl_event_free(NULL, event);  /* 4.17 ignores ctx here; libxl itself passes 0 */
}

static libxl_event *txl_event_make(int type, uint32_t domid, uint64_t for_user,
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

static void txl_disaster(void *user, libxl_event_type type, const char *msg, int errnoval)
{
    if (txl_forked_child) {
        fprintf(stderr, "txlibxl[%ld]: libxl disaster: %s\n", (long)getpid(), msg ? msg : "");
        return;
    }
    txl_py_disaster(user, (int)type, msg ? msg : "", errnoval);
}

static void txl_register_event_callbacks(libxl_ctx *ctx, libxl_event_hooks *hooks,
                                         uint64_t mask, void *user)
{
    hooks->event_occurs_mask = mask;
    hooks->event_occurs = txl_event_occurs;
    hooks->disaster = txl_disaster;
    libxl_event_register_callbacks(ctx, hooks, user);
}

static int txl_predicate(const libxl_event *event, void *user)
{
    return txl_py_event_predicate(event, user);
}

static int txl_event_check(libxl_ctx *ctx, libxl_event **event_r, uint64_t typemask,
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

static void txl_set_childproc_mainloop(libxl_ctx *ctx, void *user)
{
    libxl_childproc_setmode(ctx, &txl_childproc_hooks, user);
}

/* ---- async operations ------------------------------------------------- */

static void txl_ao_how_init(libxl_asyncop_how *how, uintptr_t op_id)
{
    memset(how, 0, sizeof(*how));
    how->callback = txl_py_ao_complete;
    how->u.for_callback = (void *)op_id;
}

/* ---- accessors -------------------------------------------------------- */

static void txl_uuid_format(const libxl_uuid *uuid, char *buf)
{
    const uint8_t *b = libxl_uuid_bytearray_const(uuid);
    snprintf(buf, LIBXL_UUID_FMTLEN + 1, LIBXL_UUID_FMT,
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
             b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static void txl_disk_read(const libxl_device_disk *d, struct txl_disk_fields *out)
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

static void txl_event_read(const libxl_event *ev, struct txl_event_fields *out)
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

static int txl_osevent_beforepoll(libxl_ctx *ctx, int *nfds_io, struct pollfd *fds,
                                  int *timeout_upd, long sec, long usec)
{
    struct timeval now = { .tv_sec = sec, .tv_usec = usec };
    return libxl_osevent_beforepoll(ctx, nfds_io, fds, timeout_upd, now);
}

static void txl_osevent_afterpoll(libxl_ctx *ctx, int nfds, const struct pollfd *fds,
                                  long sec, long usec)
{
    struct timeval now = { .tv_sec = sec, .tv_usec = usec };
    libxl_osevent_afterpoll(ctx, nfds, fds, now);
}
"""


def make_builder(include_dir: str = INCLUDE_DIR) -> FFI:
    """
    The FFI builder for ``txlibxl._libxl._cffi`` against the headers in
    C{include_dir}.
    """
    errors = libxl_error_names(include_dir)
    builder = FFI()
    cdef = CDEF.replace("@EVENT_FIELDS@", EVENT_FIELDS)
    cdef = cdef.replace("@ERROR_DEFINES@", "\n".join(f"#define {name} ..." for name in errors))
    builder.cdef(cdef)
    builder.set_source(
        "txlibxl._libxl._cffi",
        SOURCE.replace("@API_VERSION@", hex(LIBXL_API_VERSION)).replace(
            "@EVENT_FIELDS@", EVENT_FIELDS
        ),
        libraries=["xenlight", "xentoollog", "xenstore"],
        include_dirs=[include_dir] if include_dir != "/usr/include" else [],
        extra_compile_args=["-std=gnu11", "-Wall", "-Werror=implicit-function-declaration"],
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    ffibuilder.compile(tmpdir=os.path.join(here, "..", ".."), verbose=True)
