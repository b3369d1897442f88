/*
 * txl.h: the C side of txlibxl's libxl binding (txl.c, txl_capture.c,
 * txl_config.c), as the compiled module txlibxl._libxl._cffi sees it.
 *
 * Both txl.c and the cffi-generated module source include this header
 * (the module's whole preamble is `#include "txl.h"`), so it pins the
 * libxl API version for both and includes every header whose names the
 * cdef in _build.py declares.
 *
 * The part between TXL_CDEF_BEGIN and TXL_CDEF_END is also cffi's
 * declaration of these functions: _build.py reads it and passes it to
 * ffi.cdef(), after its own declarations of libxl's types.  It must stay
 * what cffi parses: declarations only, no preprocessor lines, no macros.
 */
#ifndef TXLIBXL_TXL_H
#define TXLIBXL_TXL_H

/* The newest LIBXL_API_VERSION the 4.17 libxl.h accepts (it lists
 * 0x040200 ... 0x041300 and 0x041400; 0x041400 only drops two internal
 * cpuid functions).  With it, pause/unpause/shutdown/reboot take an
 * ao_how.  It must be defined before libxl.h is included. */
#define LIBXL_API_VERSION 0x041400

#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/time.h>
#include <sys/types.h>
#include <xentoollog.h>
#include <libxl.h>
#include <libxl_event.h>
#include <libxl_utils.h>
#include <libxl_uuid.h>
#include <libxlutil.h>
#include <xen/xen.h>
#include <xenstore.h>

#if LIBXL_API_VERSION < 0x041300
#error "txlibxl needs the ao_how forms of pause/unpause/shutdown/reboot"
#endif

/* TXL_CDEF_BEGIN */

struct txl_queue;    /* c/txl_queue.c: a context's queue of libxl's reports */

/* A libxl_event's payload, flattened (txl_event_read, txl_disk_read). */
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

xentoollog_logger *txl_logger_new(void *user, int min_level);
void txl_logger_set_min_level(xentoollog_logger *logger, int min_level);
void txl_logger_free(xentoollog_logger *logger);
int txl_ctx_alloc(libxl_ctx **pctx, xentoollog_logger *logger);
void txl_register_osevent_hooks(libxl_ctx *ctx, void *user);
void txl_register_event_callbacks(libxl_ctx *ctx, libxl_event_hooks *hooks,
                                  uint64_t mask, struct txl_queue *queue);
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
int txl_fd_register(void *user, int fd, void **out, short events, void *for_libxl);
int txl_fd_modify(void *user, int fd, void **update, short events);
void txl_fd_deregister(void *user, int fd, void *registration);
int txl_timeout_register(void *user, void **out, struct timeval abs, void *for_libxl);
int txl_timeout_modify(void *user, void **update, struct timeval abs);
void txl_timeout_deregister(void *user, void *registration);
void txl_disaster(void *user, libxl_event_type type, const char *msg, int errnoval);
void *txl_queue_py(struct txl_queue *q);
void txl_event_occurs(void *user, libxl_event *event);

/* The report queue (txl_queue.c): what libxl reports, packed, until the
 * binding takes it.  A record is TXL_RECORD_WORDS int64 values: type
 * (a libxl_event_type, or TXL_REPORT_OP_DONE), domid, for_user (an
 * operation's op_id), detail (a shutdown's reason, an rc; for a
 * DOMAIN_DEATH, TXL_DEATH_SPENT if its generator was one of the queue's
 * and is disabled now), and a kept libxl_event pointer (0 if the event
 * was freed at once).  A take also counts the operation completions in
 * what it took. */
enum { TXL_RECORD_WORDS = 5, TXL_REPORT_OP_DONE = 0, TXL_DEATH_SPENT = 1 };
struct txl_queue *txl_queue_new(void *py);
void txl_queue_set_ctx(struct txl_queue *q, libxl_ctx *ctx);
size_t txl_queue_take(struct txl_queue *q, int64_t *out, size_t cap, int *overflow, size_t *ops);
size_t txl_queue_count(struct txl_queue *q);
size_t txl_queue_discard(struct txl_queue *q);
size_t txl_queue_free(struct txl_queue *q);
void txl_queue_forget_generators(struct txl_queue *q);
void txl_queue_report(struct txl_queue *q, int type, uint32_t domid, uint64_t user, int detail);
int txl_evenable_death(struct txl_queue *q, uint32_t domid, uint64_t user, int *died);
int txl_evdisable_death(struct txl_queue *q, uint64_t user);
void txl_event_release(libxl_event *event);
void txl_event_counts(uint64_t *received, uint64_t *freed, uint64_t *disabled);
void txl_ao_done(libxl_ctx *ctx, int rc, void *for_callback);
/* A libxl_event as libxl would allocate it (for those tests): freed by
 * whoever it is handed to.  `detail` is a shutdown's reason or an
 * operation's rc; `uuid` is 16 bytes, or NULL for the nil UUID. */
libxl_event *txl_event_make(int type, uint32_t domid, uint64_t for_user,
                            const uint8_t *uuid, int detail);

/* What libxl logs at error level on this thread while a capture is open
 * (txl_capture.c).  txl_capture_end returns the text (malloc'd; NULL if
 * nothing was said) and frees the capture. */
struct txl_capture;
struct txl_capture *txl_capture_begin(void);
char *txl_capture_end(struct txl_capture *capture);
/* What it holds so far, as a malloc'd copy (NULL if nothing yet). */
char *txl_capture_peek(struct txl_capture *capture);
/* Keep what this capture (and any inside it) captures from the logger. */
void txl_capture_quiet(struct txl_capture *capture);

/* Building domains (txl_config.c).  txl_disk_parse returns an errno
 * value (EINVAL for a bad spec) and sets *report to libxlutil's report
 * (malloc'd, may be NULL or ""); disk must have been initialised. */
int txl_disk_parse(const char *spec, libxl_device_disk *disk, char **report);
void txl_progress_how_init(libxl_asyncprogress_how *how, uint64_t for_event);
int txl_vcpu_bitmap(libxl_ctx *ctx, libxl_bitmap *map, int count);

/* TXL_CDEF_END */

/* Between txl.c's logger and txl_capture.c. */
int txl_capture_wants(int level);
void txl_capture_message(int level, const char *text);
/* Whether an open capture of this thread is quiet. */
int txl_capture_silenced(void);

/* Python, called from txl.c: cffi defines these in the module (the cdef
 * declares them extern "Python+C"), and the compiler checks that these
 * prototypes match its definitions. */
void txl_py_log(void *user, int level, const char *text);
int txl_py_fd_register(void *user, int fd, void **out, short events, void *for_libxl);
int txl_py_fd_modify(void *user, int fd, void **update, short events);
void txl_py_fd_deregister(void *user, int fd, void *registration);
int txl_py_timeout_register(void *user, void **out, double deadline, void *for_libxl);
int txl_py_timeout_modify(void *user, void **update, double deadline, int asap);
void txl_py_timeout_deregister(void *user, void *registration);
void txl_py_disaster(void *user, int type, const char *msg, int errnoval);
void txl_py_child_forked(void *user, int pid);
int txl_py_event_predicate(const libxl_event *event, void *user);

#endif /* TXLIBXL_TXL_H */
