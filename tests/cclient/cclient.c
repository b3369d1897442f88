/*
 * cclient: a minimal C toolstack for libxenlight, used by txlibxl's
 * integration tests and as the C baseline of its benchmarks.
 *
 * It does what xl or libvirt do to drive libxl's events from their own
 * main loop:
 *
 *   - the six libxl_osevent_hooks, backed by a poll(2) loop;
 *   - libxl_event_register_callbacks with LIBXL_EVENTMASK_ALL and a
 *     disaster callback (a NULL disaster would make libxl exit(-1));
 *   - the default child-process mode (libxl_sigchld_owner_libxl): this
 *     program starts no children of its own, so libxl may own SIGCHLD.
 *
 * The hook contract honoured here (libxl_event.h, see also
 * /work/shared/reference/libxl-event-contract.md section (a)):
 *
 *   - an fd may carry several registrations; each one is its own record,
 *     and every registration whose bits are ready gets its own
 *     libxl_osevent_occurred_fd call;  events == 0 keeps the record but
 *     polls for nothing;
 *   - timeouts are absolute wall-clock (gettimeofday) deadlines; a
 *     deadline in the past fires at once;
 *   - timeout_modify is only called with abs = {0,0}: fire as soon as
 *     possible, and still call libxl_osevent_occurred_timeout exactly once;
 *     occurred_timeout implicitly deregisters the timeout;
 *   - libxl_osevent_occurred_* is only ever called from the loop, never
 *     from inside a hook or an event callback;
 *   - registrations are freed only at the start of the next loop
 *     iteration, so a record that libxl drops while the loop is
 *     dispatching is skipped rather than reused.
 *
 * On the simulated host the shim is preloaded (LD_PRELOAD) by the caller;
 * if it exports txsim_redirect_paths and TXLIBXL_SIM_ROOT is set, libxl's
 * /var/run/xen and /var/lib/xen paths are redirected under that root.
 *
 * Usage: cclient COMMAND [ARGS] [COMMAND [ARGS]]...
 *
 * Commands run in order; every result and every libxl event is one JSON
 * object on one line of stdout:
 *
 *   list                     {"cmd":"list","rc":0,"count":N,"domains":[...]}
 *   info D                   {"cmd":"info","domid":D,"rc":0,"domain":{...}}
 *   name D                   {"cmd":"name","domid":D,"name":"..."|null}
 *   watch-death D...         libxl_evenable_domain_death, one line per domid
 *   watch-death-all          the same for every domain but Domain-0
 *   watch-eject D VDEV       libxl_evenable_disk_eject
 *   shutdown D | reboot D | destroy D | pause D | unpause D
 *                            asynchronous operations: the command waits for
 *                            the completion callback and prints its rc
 *   wait-events N [SECONDS]  run the loop until N events arrived since the
 *                            previous wait-events (default 60 s); on
 *                            timeout, print it and stop with status 3;
 *                            "t_first"/"t_last" are the unix times of the
 *                            first and last of those events (null if none)
 *   sleep SECONDS            run the loop for that long
 *
 * Domain creation and devices (configurations are libxl's own JSON, as
 * `xl -N create` prints it and libxl_*_from_json reads it):
 *
 *   create CONFIG.json       libxl_domain_create_new with an ao_how and
 *                            an aop_console_how; a config with no UUID
 *                            gets a random one first, as xl gives it:
 *                            {"cmd":"create","rc":RC,"domid":D,
 *                             "uuid":"...","console_available":B,
 *                             "console_first":B} (console_first: the
 *                            console-available report came before the
 *                            completion)
 *   disk-add D DISK.json | disk-remove D DISK.json
 *   nic-add D NIC.json | nic-remove D NIC.json
 *                            libxl_device_{disk,nic}_{add,remove}, an ao:
 *                            {"cmd":"disk-add","domid":D,"rc":RC}
 *   cdrom-insert D DISK.json libxl_cdrom_insert (an ao): the medium of
 *                            DISK.json (its pdev_path; none for "empty")
 *                            into the CD-ROM drive of its vdev:
 *                            {"cmd":"cdrom-insert","domid":D,"rc":RC}
 *   mem-set D KB             libxl_set_memory_target (absolute, enforced)
 *   vcpu-set D N             libxl_set_vcpuonline (an ao): vCPUs 0..N-1
 *   rename D NAME            libxl_domain_rename (any old name)
 *   console-tty D            libxl_primary_console_get_tty:
 *                            {"cmd":"console-tty","domid":D,"rc":RC,
 *                             "tty":"..."}
 *                            (each: {"cmd":...,"domid":D,"rc":RC})
 *   config D                 libxl_retrieve_domain_configuration (an ao)
 *                            then libxl_domain_config_to_json:
 *                            {"cmd":"config","domid":D,"rc":RC,
 *                             "config":{...}}
 *
 * Save, restore, resume (libxl's own streams; the C baseline of the
 * save/restore benchmarks, so nothing is done per page here):
 *
 *   save D FILE [live]       libxl_domain_suspend to FILE (created or
 *                            truncated), an ao; LIBXL_SUSPEND_LIVE with
 *                            "live".  The domain stays suspended:
 *                            {"cmd":"save","domid":D,"rc":RC,"live":B,
 *                             "bytes":N,"t_start":T,"t_end":T}
 *   restore CONFIG.json FILE libxl_domain_create_restore from FILE with
 *                            stream_version 2 (libxl's default, 1, means
 *                            a legacy stream: libxl would exec the missing
 *                            convert-legacy-stream and crash), an ao and
 *                            an aop_console_how; the domain stays paused.
 *                            A regular file whose start is not libxl's v2
 *                            header and LIBXC_CONTEXT record (empty,
 *                            truncated, foreign) is refused before libxl
 *                            sees it: libxl 4.17 crashes on those (see
 *                            stream_start_refused):
 *                            {"cmd":"restore","rc":RC,"domid":D,
 *                            "uuid":"...","bytes_read":N,"t_start":T,
 *                            "t_end":T} (with "refused":"why" then)
 *   resume D                 libxl_domain_resume(suspend_cancel=1), an
 *                            ao: the domain runs again after a save
 *   timeout-scale F          from now on, libxl's timeouts fire after F
 *                            times their time (this loop's clock, as a
 *                            test's: libxl's 60 s guest timeouts in 3 s
 *                            with 0.05); timeout_fired reports the
 *                            time libxl asked for
 *
 * Wherever a command takes a domid, "last" stands for the domid of the
 * last successful create or restore (so `create C destroy last` can alternate in one
 * process, as a benchmark creating and destroying domains does).
 *
 * Benchmark commands (the C baseline of benchmarks/):
 *
 *   quiet                    from now on, events are counted and
 *                            timestamped but not printed (printing a JSON
 *                            line per event would cost the C side more
 *                            than the Python side's own bookkeeping)
 *   unwatch-all              disable every generator enabled so far
 *   ops OP D...              start OP (shutdown, reboot, destroy, pause,
 *                            unpause) on every domid at once, then run the
 *                            loop until all have completed:
 *                            {"cmd":"ops","op":OP,"count":N,"failed":F,
 *                             "first_rc":RC,"t_start":T,"t_end":T}
 *   rusage                   {"cmd":"rusage","t":T,"utime":S,"stime":S,
 *                             "maxrss_kb":K,"rss_kb":K}: this process's CPU
 *                            seconds so far and its peak and current RSS
 *
 * Events: {"event":"domain_shutdown"|"domain_death"|"disk_eject"|...,
 *          "t":<unix time>,"t_woke":<unix time>,"domid":D,"uuid":"...",
 *          "for_user":N,...}: "t" when libxl reported it, "t_woke" when the
 *          loop's poll(2) last returned before that (0 before the first).
 * Whenever a timeout libxl registered reaches its real deadline (not a
 * {0,0} "as soon as possible" modify) the loop prints
 *   {"timeout_fired":{"after_s":<seconds it was registered for>}}
 * so callers can tell that an operation completed without hitting one of
 * libxl's own timeouts.
 *
 * Exit status: 0 all commands succeeded; 1 some command reported an error
 * rc; 2 setup failed; 3 wait-events timed out; 4 libxl reported a
 * disaster; 64 bad usage.
 *
 * Environment: CCLIENT_LOGLEVEL = debug|info|warn|error (libxl's log to
 * stderr, default error).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <libxl.h>
#include <libxl_utils.h>
#include <xentoollog.h>

/* ------------------------------------------------------------------ */
/* Output                                                              */

static void json_str(const char *s)
{
    if (!s) {
        fputs("null", stdout);
        return;
    }
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':  fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (*p < 0x20)
                printf("\\u%04x", *p);
            else
                putchar(*p);
        }
    }
    putchar('"');
}

static void json_uuid(const libxl_uuid *uuid)
{
    const uint8_t *b = libxl_uuid_bytearray_const(uuid);
    printf("\"%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
           "%02x%02x%02x%02x%02x%02x\"",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
           b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

static void json_time(double t)
{
    if (t)
        printf("%.6f", t);
    else
        fputs("null", stdout);
}

/* ------------------------------------------------------------------ */
/* The osevent registry                                                */

struct fdreg {
    struct fdreg *next;
    int fd;
    short events;
    void *for_libxl;
    int dead;
};

struct tmreg {
    struct tmreg *next;
    struct timeval abs;
    double registered_for;  /* seconds between registration and deadline */
    void *for_libxl;
    int asap;               /* timeout_modify({0,0}) was called */
    int dead;               /* fired (occurred implies deregistration) */
};

static libxl_ctx *ctx;
static double timeout_scale = 1.0;     /* timeout-scale: this loop's clock */
static struct fdreg *fds;
static struct tmreg *timeouts;
static int disaster_happened;

static int hook_fd_register(void *user, int fd, void **for_app_out,
                            short events, void *for_libxl)
{
    struct fdreg *r = calloc(1, sizeof(*r));
    (void)user;
    if (!r)
        return ERROR_OSEVENT_REG_FAIL;
    r->fd = fd;
    r->events = events;
    r->for_libxl = for_libxl;
    r->next = fds;
    fds = r;
    *for_app_out = r;
    return 0;
}

static int hook_fd_modify(void *user, int fd, void **for_app_update,
                          short events)
{
    struct fdreg *r = *for_app_update;
    (void)user;
    (void)fd;
    r->events = events;
    return 0;
}

static void hook_fd_deregister(void *user, int fd, void *for_app)
{
    struct fdreg *r = for_app;
    (void)user;
    (void)fd;
    r->dead = 1;  /* freed by the next sweep, never reused before that */
}

static int hook_timeout_register(void *user, void **for_app_out,
                                 struct timeval abs, void *for_libxl)
{
    struct tmreg *r = calloc(1, sizeof(*r));
    struct timeval now;
    (void)user;
    if (!r)
        return ERROR_OSEVENT_REG_FAIL;
    gettimeofday(&now, NULL);
    r->abs = abs;
    r->registered_for = (abs.tv_sec - now.tv_sec)
                        + (abs.tv_usec - now.tv_usec) / 1e6;
    r->for_libxl = for_libxl;
    r->asap = (abs.tv_sec == 0 && abs.tv_usec == 0);
    if (timeout_scale != 1.0 && !r->asap && r->registered_for > 0) {
        double at = now.tv_sec + now.tv_usec / 1e6 + r->registered_for * timeout_scale;
        r->abs.tv_sec = (time_t)at;
        r->abs.tv_usec = (suseconds_t)((at - (double)r->abs.tv_sec) * 1e6);
    }
    r->next = timeouts;
    timeouts = r;
    *for_app_out = r;
    return 0;
}

static int hook_timeout_modify(void *user, void **for_app_update,
                               struct timeval abs)
{
    struct tmreg *r = *for_app_update;
    (void)user;
    /* Only ever {0,0}: fire as soon as possible.  If the timeout is
     * already being fired by the loop this is harmless: it still gets
     * exactly one occurred_timeout. */
    if (abs.tv_sec == 0 && abs.tv_usec == 0) {
        r->asap = 1;
    } else {
        r->abs = abs;
    }
    return 0;
}

static void hook_timeout_deregister(void *user, void *for_app)
{
    struct tmreg *r = for_app;
    (void)user;
    /* libxl 4.17 never calls this; honour it anyway: no occurred call. */
    r->dead = 1;
}

static const libxl_osevent_hooks osevent_hooks = {
    .fd_register = hook_fd_register,
    .fd_modify = hook_fd_modify,
    .fd_deregister = hook_fd_deregister,
    .timeout_register = hook_timeout_register,
    .timeout_modify = hook_timeout_modify,
    .timeout_deregister = hook_timeout_deregister,
};

static void sweep(void)
{
    struct fdreg **fp = &fds;
    while (*fp) {
        if ((*fp)->dead) {
            struct fdreg *d = *fp;
            *fp = d->next;
            free(d);
        } else {
            fp = &(*fp)->next;
        }
    }
    struct tmreg **tp = &timeouts;
    while (*tp) {
        if ((*tp)->dead) {
            struct tmreg *d = *tp;
            *tp = d->next;
            free(d);
        } else {
            tp = &(*tp)->next;
        }
    }
}

static int tv_le(const struct timeval *a, const struct timeval *b)
{
    return a->tv_sec < b->tv_sec
           || (a->tv_sec == b->tv_sec && a->tv_usec <= b->tv_usec);
}

/* Milliseconds until the earliest live timeout (0 if one is due, -1 if
 * there is none). */
static int next_timeout_ms(const struct timeval *now)
{
    int best = -1;
    for (struct tmreg *t = timeouts; t; t = t->next) {
        if (t->dead)
            continue;
        if (t->asap || tv_le(&t->abs, now))
            return 0;
        double ms = (t->abs.tv_sec - now->tv_sec) * 1e3
                    + (t->abs.tv_usec - now->tv_usec) / 1e3;
        int ims = ms > 1e9 ? 1000000000 : (int)ceil(ms);
        if (best < 0 || ims < best)
            best = ims;
    }
    return best;
}

/* Growable scratch arrays for one loop iteration. */
static struct pollfd *pfds;
/* When poll(2) last returned: each event line's "t_woke". */
static double woke_t;
static struct fdreg **pregs;
static struct tmreg **firing;
static size_t pfdcap, pregcap, fcap;

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(p, n * elem);
    if (!q) {
        perror("cclient: realloc");
        exit(2);
    }
    *cap = n;
    return q;
}

/*
 * One iteration of the main loop: poll the registered fds for at most
 * max_ms (-1: no limit besides libxl's timeouts), then hand every ready
 * registration and every due timeout to libxl.
 */
static void loop_once(int max_ms)
{
    struct timeval now;
    size_t n = 0, nf = 0;

    sweep();
    for (struct fdreg *r = fds; r; r = r->next)
        n++;
    pfds = grow(pfds, &pfdcap, n, sizeof(*pfds));
    pregs = grow(pregs, &pregcap, n, sizeof(*pregs));
    n = 0;
    for (struct fdreg *r = fds; r; r = r->next) {
        pregs[n] = r;
        /* events == 0: keep the registration, report nothing (poll would
         * still report POLLHUP/POLLERR on a real fd). */
        pfds[n].fd = r->events ? r->fd : -1;
        pfds[n].events = r->events;
        pfds[n].revents = 0;
        n++;
    }

    gettimeofday(&now, NULL);
    int ms = next_timeout_ms(&now);
    if (max_ms >= 0 && (ms < 0 || max_ms < ms))
        ms = max_ms;

    int rc = poll(pfds, n, ms);
    woke_t = now_s();
    if (rc < 0) {
        if (errno != EINTR) {
            perror("cclient: poll");
            exit(2);
        }
        rc = 0;
        for (size_t i = 0; i < n; i++)
            pfds[i].revents = 0;
    }

    /* Fds first, in registration snapshot order; a record deregistered by
     * an earlier occurred call is skipped. */
    for (size_t i = 0; rc > 0 && i < n; i++) {
        if (!pfds[i].revents || pregs[i]->dead)
            continue;
        libxl_osevent_occurred_fd(ctx, pregs[i]->for_libxl, pregs[i]->fd,
                                  pregs[i]->events, pfds[i].revents);
    }

    /* Then every due timeout: collect, mark deregistered, then fire. */
    gettimeofday(&now, NULL);
    for (struct tmreg *t = timeouts; t; t = t->next) {
        if (t->dead || !(t->asap || tv_le(&t->abs, &now)))
            continue;
        firing = grow(firing, &fcap, nf + 1, sizeof(*firing));
        firing[nf++] = t;
    }
    for (size_t i = 0; i < nf; i++) {
        struct tmreg *t = firing[i];
        t->dead = 1;
        if (!t->asap) {
            printf("{\"timeout_fired\":{\"after_s\":%.3f}}\n",
                   t->registered_for);
        }
        libxl_osevent_occurred_timeout(ctx, t->for_libxl);
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* Events, operations, disaster                                        */

static unsigned long events_seen;      /* since the last wait-events */
static double first_event_t, last_event_t; /* of those events (0: none) */
static int failed;                     /* some command reported rc != 0 */
static int quiet;                      /* count events, do not print them */
static int validating = 1;             /* checking argv, libxl untouched */
static uint32_t last_created;          /* domid of the last successful create */
static int have_created;

/* The generators the commands enabled. */
static libxl_evgen_domain_death **deaths;
static libxl_evgen_disk_eject **ejects;
static size_t ndeaths, cdeaths, nejects, cejects;
static uint64_t next_user = 1;
/* death_slot[user] - 1 is the index in deaths[] of that user's death
 * generator (0: none), so that a DOMAIN_DEATH can disable its generator
 * at once, as txlibxl does. */
static size_t *death_slot;
static size_t cdeath_slot;

/* A domain's death generator is spent once its DOMAIN_DEATH is reported:
 * disable it now (libxl allows calls from event_occurs), as txlibxl does. */
static void retire_death(uint64_t user)
{
    if (user >= cdeath_slot || !death_slot[user])
        return;
    size_t k = death_slot[user] - 1;
    death_slot[user] = 0;
    if (k < ndeaths && deaths[k]) {
        libxl_evdisable_domain_death(ctx, deaths[k]);
        deaths[k] = NULL;
    }
}

static void on_event(void *user, libxl_event *ev)
{
    double t = now_s();
    (void)user;
    events_seen++;
    if (ev->type == LIBXL_EVENT_TYPE_DOMAIN_DEATH)
        retire_death(ev->for_user);
    if (!first_event_t)
        first_event_t = t;
    last_event_t = t;
    if (quiet) {
        libxl_event_free(ctx, ev);
        return;
    }
    printf("{\"event\":");
    json_str(libxl_event_type_to_string(ev->type));
    printf(",\"t\":%.6f,\"t_woke\":%.6f,\"domid\":%u,\"uuid\":", t, woke_t, ev->domid);
    json_uuid(&ev->domuuid);
    printf(",\"for_user\":%llu", (unsigned long long)ev->for_user);
    switch (ev->type) {
    case LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN:
        printf(",\"shutdown_reason\":");
        json_str(libxl_shutdown_reason_to_string(
            (libxl_shutdown_reason)ev->u.domain_shutdown.shutdown_reason));
        printf(",\"shutdown_reason_code\":%d",
               ev->u.domain_shutdown.shutdown_reason);
        break;
    case LIBXL_EVENT_TYPE_DISK_EJECT: {
        const libxl_device_disk *d = &ev->u.disk_eject.disk;
        printf(",\"vdev\":");
        json_str(ev->u.disk_eject.vdev);
        printf(",\"disk\":{\"vdev\":");
        json_str(d->vdev);
        printf(",\"pdev_path\":");
        json_str(d->pdev_path);
        printf(",\"backend_domid\":%u,\"backend\":", d->backend_domid);
        json_str(libxl_disk_backend_to_string(d->backend));
        printf(",\"format\":");
        json_str(libxl_disk_format_to_string(d->format));
        printf(",\"is_cdrom\":%d,\"removable\":%d}", d->is_cdrom,
               d->removable);
        break;
    }
    case LIBXL_EVENT_TYPE_OPERATION_COMPLETE:
        printf(",\"rc\":%d", ev->u.operation_complete.rc);
        break;
    default:
        break;
    }
    printf("}\n");
    libxl_event_free(ctx, ev);
}

static void on_disaster(void *user, libxl_event_type type, const char *msg,
                        int errnoval)
{
    (void)user;
    /* No libxl calls allowed here. */
    disaster_happened = 1;
    printf("{\"disaster\":{\"type\":%d,\"errno\":%d,\"message\":", (int)type,
           errnoval);
    json_str(msg);
    printf("}}\n");
    fflush(stdout);
}

static const libxl_event_hooks event_hooks = {
    .event_occurs_mask = LIBXL_EVENTMASK_ALL,
    .event_occurs = on_event,
    .disaster = on_disaster,
};

struct op {
    const char *name;
    uint32_t domid;
    int done;
    int rc;
};

static void on_op_done(libxl_ctx *c, int rc, void *for_callback)
{
    struct op *op = for_callback;
    (void)c;
    op->done = 1;
    op->rc = rc;
}

typedef int (*ao_fn)(libxl_ctx *, uint32_t, const libxl_asyncop_how *);

static void run_op(const char *name, ao_fn fn, uint32_t domid)
{
    struct op op = { name, domid, 0, 0 };
    libxl_asyncop_how how = { .callback = on_op_done };
    how.u.for_callback = &op;

    /* The callback may run before fn returns. */
    int rc = fn(ctx, domid, &how);
    if (rc) {
        printf("{\"cmd\":\"%s\",\"domid\":%u,\"rc\":%d,\"stage\":\"start\"}\n",
               name, domid, rc);
        failed = 1;
        return;
    }
    while (!op.done && !disaster_happened)
        loop_once(-1);
    if (!op.done)
        return;
    printf("{\"cmd\":\"%s\",\"domid\":%u,\"rc\":%d}\n", name, domid, op.rc);
    if (op.rc)
        failed = 1;
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */


static const char *state_of(const libxl_dominfo *i)
{
    if (i->dying)
        return "dying";
    if (i->shutdown)
        return "shutdown";
    if (i->paused)
        return "paused";
    if (i->blocked)
        return "blocked";
    if (i->running)
        return "running";
    return "none";
}

static void print_dominfo(const libxl_dominfo *i)
{
    char *name = libxl_domid_to_name(ctx, i->domid);
    printf("{\"domid\":%u,\"name\":", i->domid);
    json_str(name);
    free(name);
    printf(",\"uuid\":");
    json_uuid(&i->uuid);
    printf(",\"type\":");
    json_str(libxl_domain_type_to_string(i->domain_type));
    printf(",\"state\":\"%s\",\"running\":%d,\"blocked\":%d,\"paused\":%d,"
           "\"shutdown\":%d,\"dying\":%d,\"shutdown_reason\":",
           state_of(i), i->running, i->blocked, i->paused, i->shutdown,
           i->dying);
    if (i->shutdown)
        json_str(libxl_shutdown_reason_to_string(i->shutdown_reason));
    else
        fputs("null", stdout);
    printf(",\"current_memkb\":%llu,\"max_memkb\":%llu,"
           "\"vcpu_online\":%u,\"vcpu_max_id\":%u}",
           (unsigned long long)i->current_memkb,
           (unsigned long long)i->max_memkb, i->vcpu_online, i->vcpu_max_id);
}

static void cmd_list(void)
{
    int n = 0;
    libxl_dominfo *list = libxl_list_domain(ctx, &n);
    if (!list) {
        printf("{\"cmd\":\"list\",\"rc\":%d}\n", ERROR_FAIL);
        failed = 1;
        return;
    }
    printf("{\"cmd\":\"list\",\"rc\":0,\"count\":%d,\"domains\":[", n);
    for (int i = 0; i < n; i++) {
        if (i)
            putchar(',');
        print_dominfo(&list[i]);
    }
    printf("]}\n");
    libxl_dominfo_list_free(list, n);
}

static void cmd_info(uint32_t domid)
{
    libxl_dominfo info;
    libxl_dominfo_init(&info);
    int rc = libxl_domain_info(ctx, &info, domid);
    printf("{\"cmd\":\"info\",\"domid\":%u,\"rc\":%d", domid, rc);
    if (!rc) {
        printf(",\"domain\":");
        print_dominfo(&info);
    } else {
        failed = 1;
    }
    printf("}\n");
    libxl_dominfo_dispose(&info);
}

static void cmd_name(uint32_t domid)
{
    char *name = libxl_domid_to_name(ctx, domid);
    printf("{\"cmd\":\"name\",\"domid\":%u,\"name\":", domid);
    json_str(name);
    printf("}\n");
    free(name);
}

static int watch_death(uint32_t domid, uint64_t *user_out)
{
    libxl_evgen_domain_death *gen = NULL;
    uint64_t user = next_user++;
    int rc = libxl_evenable_domain_death(ctx, domid, user, &gen);
    if (!rc) {
        deaths = grow(deaths, &cdeaths, ndeaths + 1, sizeof(*deaths));
        size_t had = cdeath_slot;
        death_slot = grow(death_slot, &cdeath_slot, user + 1, sizeof(*death_slot));
        memset(death_slot + had, 0, (cdeath_slot - had) * sizeof(*death_slot));
        death_slot[user] = ndeaths + 1;
        deaths[ndeaths++] = gen;
    }
    *user_out = user;
    return rc;
}

static void cmd_watch_death(uint32_t domid)
{
    uint64_t user;
    int rc = watch_death(domid, &user);
    printf("{\"cmd\":\"watch-death\",\"domid\":%u,\"rc\":%d,"
           "\"for_user\":%llu}\n", domid, rc, (unsigned long long)user);
    if (rc)
        failed = 1;
}

static void cmd_watch_death_all(void)
{
    int n = 0, count = 0, rc = 0;
    libxl_dominfo *list = libxl_list_domain(ctx, &n);
    if (!list) {
        rc = ERROR_FAIL;
    } else {
        for (int i = 0; i < n && !rc; i++) {
            uint64_t user;
            if (list[i].domid == 0)
                continue;
            rc = watch_death(list[i].domid, &user);
            if (!rc)
                count++;
        }
        libxl_dominfo_list_free(list, n);
    }
    printf("{\"cmd\":\"watch-death-all\",\"rc\":%d,\"count\":%d}\n", rc, count);
    if (rc)
        failed = 1;
}

static void cmd_watch_eject(uint32_t domid, const char *vdev)
{
    libxl_evgen_disk_eject *gen = NULL;
    uint64_t user = next_user++;
    int rc = libxl_evenable_disk_eject(ctx, domid, vdev, user, &gen);
    if (!rc) {
        ejects = grow(ejects, &cejects, nejects + 1, sizeof(*ejects));
        ejects[nejects++] = gen;
    }
    printf("{\"cmd\":\"watch-eject\",\"domid\":%u,\"vdev\":", domid);
    json_str(vdev);
    printf(",\"rc\":%d,\"for_user\":%llu}\n", rc, (unsigned long long)user);
    if (rc)
        failed = 1;
}

/* Run the loop until `count` events arrived since the previous
 * wait-events, or `seconds` passed.  Returns 0, or -1 on timeout. */
static int cmd_wait_events(unsigned long count, double seconds)
{
    double deadline = now_s() + seconds;
    while (events_seen < count && !disaster_happened) {
        double left = deadline - now_s();
        if (left <= 0)
            break;
        loop_once((int)ceil(left * 1e3));
    }
    int ok = events_seen >= count;
    printf("{\"cmd\":\"wait-events\",\"wanted\":%lu,\"seen\":%lu,"
           "\"timeout\":%s,\"t_first\":", count, events_seen,
           ok ? "false" : "true");
    json_time(first_event_t);
    printf(",\"t_last\":");
    json_time(last_event_t);
    printf("}\n");
    events_seen = ok ? events_seen - count : 0;
    first_event_t = last_event_t = 0;
    return ok ? 0 : -1;
}

static void cmd_unwatch_all(void)
{
    size_t n = ndeaths + nejects;
    for (size_t k = 0; k < ndeaths; k++)
        if (deaths[k])
            libxl_evdisable_domain_death(ctx, deaths[k]);
    for (size_t k = 0; k < nejects; k++)
        libxl_evdisable_disk_eject(ctx, ejects[k]);
    ndeaths = nejects = 0;
    if (death_slot)
        memset(death_slot, 0, cdeath_slot * sizeof(*death_slot));
    printf("{\"cmd\":\"unwatch-all\",\"count\":%zu}\n", n);
}

/* Start `op` on domids[0..n) at once; run the loop until every one has
 * completed. */
static void cmd_ops(const char *name, ao_fn fn, const uint32_t *domids,
                    size_t n)
{
    struct op *ops = calloc(n ? n : 1, sizeof(*ops));
    size_t started = 0, pending = 0, nfailed = 0;
    int first_rc = 0;
    if (!ops) {
        perror("cclient: calloc");
        exit(2);
    }
    double t_start = now_s();
    for (size_t k = 0; k < n; k++) {
        libxl_asyncop_how how = { .callback = on_op_done };
        ops[k].name = name;
        ops[k].domid = domids[k];
        how.u.for_callback = &ops[k];
        int rc = fn(ctx, domids[k], &how);
        if (rc) {
            ops[k].done = 1;
            ops[k].rc = rc;
        } else {
            started++;
        }
    }
    for (;;) {
        pending = 0;
        for (size_t k = 0; k < n; k++)
            pending += !ops[k].done;
        if (!pending || disaster_happened)
            break;
        loop_once(-1);
    }
    double t_end = now_s();
    for (size_t k = 0; k < n; k++) {
        if (ops[k].done && ops[k].rc) {
            if (!nfailed)
                first_rc = ops[k].rc;
            nfailed++;
        }
    }
    printf("{\"cmd\":\"ops\",\"op\":\"%s\",\"count\":%zu,\"started\":%zu,"
           "\"failed\":%zu,\"first_rc\":%d,\"t_start\":%.6f,\"t_end\":%.6f}\n",
           name, n, started, nfailed, first_rc, t_start, t_end);
    if (nfailed || pending)
        failed = 1;
    free(ops);
}

static long statm_rss_kb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void cmd_rusage(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"cmd\":\"rusage\",\"t\":%.6f,\"utime\":%.6f,\"stime\":%.6f,"
           "\"maxrss_kb\":%ld,\"rss_kb\":%ld}\n", now_s(),
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
           ru.ru_maxrss, statm_rss_kb());
}

static void cmd_sleep(double seconds)
{
    double deadline = now_s() + seconds;
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0 || disaster_happened)
            break;
        loop_once((int)ceil(left * 1e3));
    }
    printf("{\"cmd\":\"sleep\",\"seconds\":%g}\n", seconds);
}

/* ------------------------------------------------------------------ */
/* Creation, devices, configuration                                    */

/* The whole of a file, NUL-terminated (NULL with errno on failure). */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (len < cap - 1) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
            }
            break;
        }
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    fclose(f);
    if (buf)
        buf[len] = 0;
    return buf;
}

/* libxl's JSON, pretty-printed, on one line (a JSON string holds no raw
 * newline, so replacing them keeps the document). */
static void print_json_inline(const char *json)
{
    for (const char *p = json; *p; p++)
        putchar(*p == '\n' ? ' ' : *p);
}

/* Run the loop until the ao started with `how` completes. */
static int wait_op(struct op *op)
{
    while (!op->done && !disaster_happened)
        loop_once(-1);
    return op->done ? op->rc : ERROR_FAIL;
}

struct create_progress {
    struct op *op;
    int console_available;
    int console_first;
};

static void on_console_available(libxl_ctx *c, libxl_event *ev, void *for_callback)
{
    struct create_progress *p = for_callback;
    p->console_available = 1;
    p->console_first = !p->op->done;
    libxl_event_free(c, ev);
}

static void cmd_create(const char *path)
{
    struct op op = { "create", 0, 0, 0 };
    struct create_progress progress = { &op, 0, 0 };
    libxl_asyncop_how how = { .callback = on_op_done };
    libxl_asyncprogress_how console_how = {
        .callback = on_console_available,
        .for_callback = &progress,
    };
    libxl_domain_config cfg;
    uint32_t domid = (uint32_t)INVALID_DOMID;
    int rc;

    how.u.for_callback = &op;
    libxl_domain_config_init(&cfg);
    char *json = read_file(path);
    if (!json) {
        printf("{\"cmd\":\"create\",\"rc\":%d,\"error\":", ERROR_INVAL);
        json_str(strerror(errno));
        printf("}\n");
        failed = 1;
        libxl_domain_config_dispose(&cfg);
        return;
    }
    rc = libxl_domain_config_from_json(ctx, &cfg, json);
    free(json);
    if (rc) {
        printf("{\"cmd\":\"create\",\"rc\":%d,\"stage\":\"json\"}\n", rc);
        failed = 1;
        libxl_domain_config_dispose(&cfg);
        return;
    }
    if (libxl_uuid_is_nil(&cfg.c_info.uuid))
        libxl_uuid_generate(&cfg.c_info.uuid);
    rc = libxl_domain_create_new(ctx, &cfg, &domid, &how, &console_how);
    if (!rc)
        rc = wait_op(&op);
    printf("{\"cmd\":\"create\",\"rc\":%d,\"domid\":", rc);
    if (rc || domid == (uint32_t)INVALID_DOMID)
        fputs("null", stdout);
    else
        printf("%u", domid);
    printf(",\"uuid\":");
    json_uuid(&cfg.c_info.uuid);
    printf(",\"console_available\":%s,\"console_first\":%s}\n",
           progress.console_available ? "true" : "false",
           progress.console_first ? "true" : "false");
    if (rc) {
        failed = 1;
    } else {
        last_created = domid;
        have_created = 1;
    }
    libxl_domain_config_dispose(&cfg);
}

static void cmd_device(const char *name, uint32_t domid, const char *path)
{
    struct op op = { name, domid, 0, 0 };
    libxl_asyncop_how how = { .callback = on_op_done };
    int is_cdrom = !strcmp(name, "cdrom-insert");
    int is_disk = is_cdrom || !strncmp(name, "disk-", 5), is_add = !!strstr(name, "-add");
    libxl_device_disk disk;
    libxl_device_nic nic;
    int rc;

    how.u.for_callback = &op;
    libxl_device_disk_init(&disk);
    libxl_device_nic_init(&nic);
    char *json = read_file(path);
    if (!json) {
        rc = ERROR_INVAL;
    } else {
        rc = is_disk ? libxl_device_disk_from_json(ctx, &disk, json)
                     : libxl_device_nic_from_json(ctx, &nic, json);
        free(json);
    }
    if (!rc) {
        if (is_cdrom)
            rc = libxl_cdrom_insert(ctx, domid, &disk, &how);
        else if (is_disk)
            rc = is_add ? libxl_device_disk_add(ctx, domid, &disk, &how)
                        : libxl_device_disk_remove(ctx, domid, &disk, &how);
        else
            rc = is_add ? libxl_device_nic_add(ctx, domid, &nic, &how)
                        : libxl_device_nic_remove(ctx, domid, &nic, &how);
        if (!rc)
            rc = wait_op(&op);
    }
    printf("{\"cmd\":\"%s\",\"domid\":%u,\"rc\":%d}\n", name, domid, rc);
    if (rc)
        failed = 1;
    libxl_device_disk_dispose(&disk);
    libxl_device_nic_dispose(&nic);
}

static void cmd_config(uint32_t domid)
{
    struct op op = { "config", domid, 0, 0 };
    libxl_asyncop_how how = { .callback = on_op_done };
    libxl_domain_config cfg;

    how.u.for_callback = &op;
    libxl_domain_config_init(&cfg);
    int rc = libxl_retrieve_domain_configuration(ctx, domid, &cfg, &how);
    if (!rc)
        rc = wait_op(&op);
    printf("{\"cmd\":\"config\",\"domid\":%u,\"rc\":%d", domid, rc);
    if (!rc) {
        char *json = libxl_domain_config_to_json(ctx, &cfg);
        printf(",\"config\":");
        if (json)
            print_json_inline(json);
        else
            fputs("null", stdout);
        free(json);
    } else {
        failed = 1;
    }
    printf("}\n");
    libxl_domain_config_dispose(&cfg);
}

static void print_rc(const char *name, uint32_t domid, int rc)
{
    printf("{\"cmd\":\"%s\",\"domid\":%u,\"rc\":%d}\n", name, domid, rc);
    if (rc)
        failed = 1;
}

static void cmd_mem_set(uint32_t domid, long long kb)
{
    print_rc("mem-set", domid, libxl_set_memory_target(ctx, domid, kb, 0, 1));
}

static void cmd_vcpu_set(uint32_t domid, int count)
{
    struct op op = { "vcpu-set", domid, 0, 0 };
    libxl_asyncop_how how = { .callback = on_op_done };
    libxl_bitmap map;
    int rc;

    how.u.for_callback = &op;
    libxl_bitmap_init(&map);
    rc = libxl_cpu_bitmap_alloc(ctx, &map, count);
    if (!rc) {
        for (int v = 0; v < count; v++)
            libxl_bitmap_set(&map, v);
        rc = libxl_set_vcpuonline(ctx, domid, &map, &how);
        if (!rc)
            rc = wait_op(&op);
    }
    libxl_bitmap_dispose(&map);
    print_rc("vcpu-set", domid, rc);
}

static void cmd_rename(uint32_t domid, const char *name)
{
    print_rc("rename", domid, libxl_domain_rename(ctx, domid, NULL, name));
}

static void cmd_console_tty(uint32_t domid)
{
    char *tty = NULL;
    int rc = libxl_primary_console_get_tty(ctx, domid, &tty);
    printf("{\"cmd\":\"console-tty\",\"domid\":%u,\"rc\":%d,\"tty\":", domid, rc);
    json_str(rc ? NULL : tty);
    printf("}\n");
    free(tty);
    if (rc)
        failed = 1;
}

/* ------------------------------------------------------------------ */
/* Save, restore, resume                                               */

/* The size of a regular file, -1 for anything else (a pipe, a socket). */
static off_t file_size(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : -1;
}

/*
 * Why a restore stream must not reach libxl, or NULL.  libxl 4.17 jumps to
 * NULL when a stream fails before its LIBXC_CONTEXT record (its clean-up
 * aborts the save helper it never started, whose completion callback is
 * unset): an empty stream, a header that is not libxl's v2 little-endian
 * one, a first record libxl does not know.  And a stream that ends, or
 * says END, before LIBXC_CONTEXT "restores" a domain with no memory and
 * rc 0.  So the start of the stream is checked first: libxl's 16-octet
 * header and a LIBXC_CONTEXT record.  Only a regular file can be read
 * ahead without consuming it (pread); anything else goes to libxl as is.
 */
static const char *stream_start_refused(int fd)
{
    uint8_t b[24];
    if (file_size(fd) < 0)
        return NULL;
    ssize_t n = pread(fd, b, sizeof b, lseek(fd, 0, SEEK_CUR));
    if (n == 0)
        return "empty stream";
    if (n < (ssize_t)sizeof b)
        return "truncated libxl header";
    uint64_t ident = 0;
    for (int i = 0; i < 8; i++)
        ident = ident << 8 | b[i];
    uint32_t version = (uint32_t)b[8] << 24 | b[9] << 16 | b[10] << 8 | b[11];
    uint32_t options = (uint32_t)b[12] << 24 | b[13] << 16 | b[14] << 8 | b[15];
    uint32_t type, length;
    memcpy(&type, b + 16, 4);
    memcpy(&length, b + 20, 4);
    if (ident != 0x4c6962786c466d74ULL)
        return "not a libxl stream";
    if (version != 2 || (options & 1))
        return "not a little-endian libxl v2 stream";
    if (type != 1 || length != 0)
        return "no LIBXC_CONTEXT record first";
    return NULL;
}

static void cmd_save(uint32_t domid, const char *path, int live)
{
    struct op op = { "save", domid, 0, 0 };
    libxl_asyncop_how how = { .callback = on_op_done };
    double t_start = now_s();
    int rc;
    off_t bytes = -1;

    how.u.for_callback = &op;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = ERROR_FAIL;
        perror("cclient: save: open");
    } else {
        rc = libxl_domain_suspend(ctx, domid, fd, live ? LIBXL_SUSPEND_LIVE : 0, &how);
        if (!rc)
            rc = wait_op(&op);
        bytes = file_size(fd);
        close(fd);
    }
    printf("{\"cmd\":\"save\",\"domid\":%u,\"rc\":%d,\"live\":%s,\"bytes\":%lld,"
           "\"t_start\":%.6f,\"t_end\":%.6f}\n", domid, rc, live ? "true" : "false",
           (long long)bytes, t_start, now_s());
    if (rc)
        failed = 1;
}

static void cmd_restore(const char *config, const char *path)
{
    struct op op = { "restore", 0, 0, 0 };
    struct create_progress progress = { &op, 0, 0 };
    libxl_asyncop_how how = { .callback = on_op_done };
    libxl_asyncprogress_how console_how = {
        .callback = on_console_available,
        .for_callback = &progress,
    };
    libxl_domain_config cfg;
    libxl_domain_restore_params params;
    uint32_t domid = (uint32_t)INVALID_DOMID;
    double t_start = now_s();
    const char *refused = NULL;
    off_t bytes_read = -1;
    int rc, fd = -1;

    how.u.for_callback = &op;
    libxl_domain_config_init(&cfg);
    libxl_domain_restore_params_init(&params);
    /* Not libxl's default (1: legacy, converted by a helper that is not
     * installed; libxl then jumps to NULL): a v2 stream, as xl says. */
    params.stream_version = 2;
    params.checkpointed_stream = LIBXL_CHECKPOINTED_STREAM_NONE;
    char *json = read_file(config);
    rc = json ? libxl_domain_config_from_json(ctx, &cfg, json) : ERROR_INVAL;
    free(json);
    if (!rc) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = ERROR_FAIL;
            perror("cclient: restore: open");
        } else if ((refused = stream_start_refused(fd))) {
            rc = ERROR_INVAL;
        }
    }
    if (!rc) {
        rc = libxl_domain_create_restore(ctx, &cfg, &domid, fd, -1, &params, &how, &console_how);
        if (!rc)
            rc = wait_op(&op);
        bytes_read = lseek(fd, 0, SEEK_CUR);
    }
    if (fd >= 0)
        close(fd);
    printf("{\"cmd\":\"restore\",\"rc\":%d,\"domid\":", rc);
    if (rc || domid == (uint32_t)INVALID_DOMID)
        fputs("null", stdout);
    else
        printf("%u", domid);
    printf(",\"uuid\":");
    json_uuid(&cfg.c_info.uuid);
    if (refused) {
        printf(",\"refused\":");
        json_str(refused);
    }
    printf(",\"bytes_read\":%lld,\"t_start\":%.6f,\"t_end\":%.6f}\n",
           (long long)bytes_read, t_start, now_s());
    if (rc) {
        failed = 1;
    } else {
        last_created = domid;
        have_created = 1;
    }
    libxl_domain_restore_params_dispose(&params);
    libxl_domain_config_dispose(&cfg);
}

static void cmd_resume(uint32_t domid)
{
    struct op op = { "resume", domid, 0, 0 };
    libxl_asyncop_how how = { .callback = on_op_done };
    how.u.for_callback = &op;
    int rc = libxl_domain_resume(ctx, domid, 1, &how);
    if (!rc)
        rc = wait_op(&op);
    print_rc("resume", domid, rc);
}

/* ------------------------------------------------------------------ */
/* Argument parsing and main                                           */

static void usage(const char *why)
{
    fprintf(stderr, "cclient: %s\n"
            "usage: cclient COMMAND [ARGS]...  (see the header of cclient.c)\n",
            why);
    exit(64);
}

static int is_number(const char *s)
{
    char *end;
    if (!s || !*s)
        return 0;
    strtod(s, &end);
    return *end == '\0';
}

static uint32_t arg_domid(char **argv, int argc, int i, const char *cmd)
{
    char *end;
    if (i >= argc)
        usage(cmd);
    if (!strcmp(argv[i], "last")) {
        if (!validating && !have_created) {
            fprintf(stderr, "cclient: %s last: no domain was created\n", cmd);
            exit(64);
        }
        return last_created;
    }
    unsigned long v = strtoul(argv[i], &end, 10);
    if (*end || v > 0x7fff)
        usage(cmd);
    return (uint32_t)v;
}

static double arg_seconds(char **argv, int argc, int i, const char *cmd)
{
    if (i >= argc || !is_number(argv[i]))
        usage(cmd);
    double v = strtod(argv[i], NULL);
    if (!(v >= 0))
        usage(cmd);
    return v;
}

static ao_fn op_function(const char *name)
{
    if (!strcmp(name, "shutdown"))
        return libxl_domain_shutdown;
    if (!strcmp(name, "reboot"))
        return libxl_domain_reboot;
    if (!strcmp(name, "destroy"))
        return libxl_domain_destroy;
    if (!strcmp(name, "pause"))
        return libxl_domain_pause;
    if (!strcmp(name, "unpause"))
        return libxl_domain_unpause;
    return NULL;
}

static int device_op(const char *name)
{
    return !strcmp(name, "disk-add") || !strcmp(name, "disk-remove")
        || !strcmp(name, "nic-add") || !strcmp(name, "nic-remove")
        || !strcmp(name, "cdrom-insert");
}

/* Check the whole command line before touching libxl. */
static void validate(int argc, char **argv)
{
    for (int i = 1; i < argc;) {
        const char *c = argv[i++];
        if (!strcmp(c, "list") || !strcmp(c, "watch-death-all")
            || !strcmp(c, "quiet") || !strcmp(c, "unwatch-all")
            || !strcmp(c, "rusage")) {
        } else if (!strcmp(c, "ops")) {
            if (i >= argc || !op_function(argv[i]))
                usage("ops OP D... (OP: shutdown reboot destroy pause unpause)");
            i++;
            arg_domid(argv, argc, i++, c);
            while (i < argc && is_number(argv[i]))
                arg_domid(argv, argc, i++, c);
        } else if (!strcmp(c, "info") || !strcmp(c, "name")
                   || !strcmp(c, "shutdown") || !strcmp(c, "reboot")
                   || !strcmp(c, "destroy") || !strcmp(c, "pause")
                   || !strcmp(c, "unpause")) {
            arg_domid(argv, argc, i++, c);
        } else if (!strcmp(c, "watch-death")) {
            arg_domid(argv, argc, i++, c);
            while (i < argc && is_number(argv[i]))
                arg_domid(argv, argc, i++, c);
        } else if (!strcmp(c, "watch-eject")) {
            arg_domid(argv, argc, i++, c);
            if (i >= argc)
                usage("watch-eject D VDEV");
            i++;
        } else if (!strcmp(c, "wait-events")) {
            arg_seconds(argv, argc, i++, c);
            if (i < argc && is_number(argv[i]))
                arg_seconds(argv, argc, i++, c);
        } else if (!strcmp(c, "sleep")) {
            arg_seconds(argv, argc, i++, c);
        } else if (!strcmp(c, "create")) {
            if (i >= argc)
                usage("create CONFIG.json");
            i++;
        } else if (!strcmp(c, "config") || !strcmp(c, "console-tty")) {
            arg_domid(argv, argc, i++, c);
        } else if (!strcmp(c, "mem-set") || !strcmp(c, "vcpu-set")) {
            arg_domid(argv, argc, i++, c);
            if (i >= argc || !is_number(argv[i]) || strtod(argv[i], NULL) < 1)
                usage("mem-set D KB | vcpu-set D N");
            i++;
        } else if (!strcmp(c, "rename")) {
            arg_domid(argv, argc, i++, c);
            if (i >= argc)
                usage("rename D NAME");
            i++;
        } else if (!strcmp(c, "save")) {
            arg_domid(argv, argc, i++, c);
            if (i >= argc)
                usage("save D FILE [live]");
            i++;
            if (i < argc && !strcmp(argv[i], "live"))
                i++;
        } else if (!strcmp(c, "restore")) {
            if (i + 1 >= argc)
                usage("restore CONFIG.json FILE");
            i += 2;
        } else if (!strcmp(c, "resume")) {
            arg_domid(argv, argc, i++, c);
        } else if (!strcmp(c, "timeout-scale")) {
            if (arg_seconds(argv, argc, i++, c) <= 0)
                usage("timeout-scale F (F > 0)");
        } else if (device_op(c)) {
            arg_domid(argv, argc, i++, c);
            if (i >= argc)
                usage("disk-add|disk-remove|nic-add|nic-remove|cdrom-insert D DEVICE.json");
            i++;
        } else {
            fprintf(stderr, "cclient: unknown command %s\n", c);
            usage("unknown command");
        }
    }
}

static void redirect_paths(void)
{
    int (*version)(void) =
        (int (*)(void))dlsym(RTLD_DEFAULT, "txsim_shim_version");
    int (*redirect)(const char *) =
        (int (*)(const char *))dlsym(RTLD_DEFAULT, "txsim_redirect_paths");
    const char *root = getenv("TXLIBXL_SIM_ROOT");

    printf("{\"ready\":true,\"pid\":%d,\"shim_version\":", (int)getpid());
    if (version)
        printf("%d", version());
    else
        fputs("null", stdout);
    printf(",\"redirect\":");
    if (redirect && root && *root)
        printf("%d", redirect(root));
    else
        fputs("null", stdout);
    printf("}\n");
    fflush(stdout);
}

static xentoollog_level log_level(void)
{
    const char *l = getenv("CCLIENT_LOGLEVEL");
    if (!l)
        return XTL_ERROR;
    if (!strcmp(l, "debug"))
        return XTL_DEBUG;
    if (!strcmp(l, "info"))
        return XTL_INFO;
    if (!strcmp(l, "warn"))
        return XTL_WARN;
    return XTL_ERROR;
}

int main(int argc, char **argv)
{
    static char outbuf[1 << 16];
    int status = 0;

    if (argc < 2)
        usage("no command");
    validate(argc, argv);
    validating = 0;
    setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));

    xentoollog_logger_stdiostream *logger =
        xtl_createlogger_stdiostream(stderr, log_level(), 0);
    if (!logger) {
        fprintf(stderr, "cclient: cannot create the logger\n");
        return 2;
    }
    int rc = libxl_ctx_alloc(&ctx, LIBXL_VERSION, 0,
                             (xentoollog_logger *)logger);
    if (rc) {
        printf("{\"setup\":\"libxl_ctx_alloc\",\"rc\":%d}\n", rc);
        fflush(stdout);
        xtl_logger_destroy((xentoollog_logger *)logger);
        return 2;
    }
    /* Hooks first: before any evgen or ao exists. */
    libxl_osevent_register_hooks(ctx, &osevent_hooks, NULL);
    libxl_event_register_callbacks(ctx, &event_hooks, NULL);
    /* Default mode (owner_libxl): we start no children of our own. */
    libxl_childproc_setmode(ctx, NULL, NULL);
    redirect_paths();

    for (int i = 1; i < argc && !disaster_happened;) {
        const char *c = argv[i++];
        if (!strcmp(c, "list")) {
            cmd_list();
        } else if (!strcmp(c, "info")) {
            cmd_info(arg_domid(argv, argc, i++, c));
        } else if (!strcmp(c, "name")) {
            cmd_name(arg_domid(argv, argc, i++, c));
        } else if (!strcmp(c, "watch-death")) {
            cmd_watch_death(arg_domid(argv, argc, i++, c));
            while (i < argc && is_number(argv[i]))
                cmd_watch_death(arg_domid(argv, argc, i++, c));
        } else if (!strcmp(c, "watch-death-all")) {
            cmd_watch_death_all();
        } else if (!strcmp(c, "watch-eject")) {
            uint32_t domid = arg_domid(argv, argc, i++, c);
            cmd_watch_eject(domid, argv[i++]);
        } else if (!strcmp(c, "shutdown")) {
            run_op(c, libxl_domain_shutdown, arg_domid(argv, argc, i++, c));
        } else if (!strcmp(c, "reboot")) {
            run_op(c, libxl_domain_reboot, arg_domid(argv, argc, i++, c));
        } else if (!strcmp(c, "destroy")) {
            run_op(c, libxl_domain_destroy, arg_domid(argv, argc, i++, c));
        } else if (!strcmp(c, "pause")) {
            run_op(c, libxl_domain_pause, arg_domid(argv, argc, i++, c));
        } else if (!strcmp(c, "unpause")) {
            run_op(c, libxl_domain_unpause, arg_domid(argv, argc, i++, c));
        } else if (!strcmp(c, "wait-events")) {
            unsigned long count =
                (unsigned long)arg_seconds(argv, argc, i++, c);
            double seconds = 60;
            if (i < argc && is_number(argv[i]))
                seconds = arg_seconds(argv, argc, i++, c);
            if (cmd_wait_events(count, seconds)) {
                status = 3;
                break;
            }
        } else if (!strcmp(c, "sleep")) {
            cmd_sleep(arg_seconds(argv, argc, i++, c));
        } else if (!strcmp(c, "quiet")) {
            quiet = 1;
        } else if (!strcmp(c, "unwatch-all")) {
            cmd_unwatch_all();
        } else if (!strcmp(c, "rusage")) {
            cmd_rusage();
        } else if (!strcmp(c, "create")) {
            cmd_create(argv[i++]);
        } else if (!strcmp(c, "config")) {
            cmd_config(arg_domid(argv, argc, i++, c));
        } else if (!strcmp(c, "console-tty")) {
            cmd_console_tty(arg_domid(argv, argc, i++, c));
        } else if (!strcmp(c, "mem-set")) {
            uint32_t domid = arg_domid(argv, argc, i++, c);
            cmd_mem_set(domid, strtoll(argv[i++], NULL, 10));
        } else if (!strcmp(c, "vcpu-set")) {
            uint32_t domid = arg_domid(argv, argc, i++, c);
            cmd_vcpu_set(domid, (int)strtol(argv[i++], NULL, 10));
        } else if (!strcmp(c, "rename")) {
            uint32_t domid = arg_domid(argv, argc, i++, c);
            cmd_rename(domid, argv[i++]);
        } else if (device_op(c)) {
            uint32_t domid = arg_domid(argv, argc, i++, c);
            cmd_device(c, domid, argv[i++]);
        } else if (!strcmp(c, "save")) {
            uint32_t domid = arg_domid(argv, argc, i++, c);
            const char *path = argv[i++];
            int live = i < argc && !strcmp(argv[i], "live");
            i += live;
            cmd_save(domid, path, live);
        } else if (!strcmp(c, "restore")) {
            cmd_restore(argv[i], argv[i + 1]);
            i += 2;
        } else if (!strcmp(c, "resume")) {
            cmd_resume(arg_domid(argv, argc, i++, c));
        } else if (!strcmp(c, "timeout-scale")) {
            timeout_scale = arg_seconds(argv, argc, i++, c);
        } else if (!strcmp(c, "ops")) {
            const char *op = argv[i++];
            size_t n = 0;
            uint32_t *domids = calloc(argc, sizeof(*domids));
            if (!domids) {
                perror("cclient: calloc");
                return 2;
            }
            while (i < argc && is_number(argv[i]))
                domids[n++] = arg_domid(argv, argc, i++, c);
            cmd_ops(op, op_function(op), domids, n);
            free(domids);
        }
        fflush(stdout);
    }

    if (disaster_happened) {
        /* After a disaster libxl may refuse everything: do not free. */
        fflush(stdout);
        return 4;
    }
    /* No ao is in flight (every op waited for its callback): disable the
     * evgens, then free the ctx (which deregisters the hooks' fds). */
    for (size_t k = 0; k < ndeaths; k++)
        if (deaths[k])
            libxl_evdisable_domain_death(ctx, deaths[k]);
    for (size_t k = 0; k < nejects; k++)
        libxl_evdisable_disk_eject(ctx, ejects[k]);
    libxl_ctx_free(ctx);
    xtl_logger_destroy((xentoollog_logger *)logger);
    sweep();
    free(pfds);
    free(pregs);
    free(firing);
    free(deaths);
    free(death_slot);
    free(ejects);
    fflush(stdout);
    if (status)
        return status;
    return failed ? 1 : 0;
}
