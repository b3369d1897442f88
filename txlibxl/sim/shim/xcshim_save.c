/*
 * txlibxl's libxenctrl shim: saving a domain (xc_domain_save, which
 * libxl-save-helper calls) and resuming one (xc_domain_resume, which libxl
 * calls after a checkpoint or a failed save).
 *
 * libxenguest's xc_domain_save maps the guest's memory and walks its page
 * tables; the simulated host has neither, so the shim's writes the
 * simulator's stream (txlibxl/sim/savestream) into the fd libxl gave the
 * helper, in the order libxc's save() writes its own:
 *
 *   headers, SIM_DOMAIN (from the hypervisor: SAVE_BEGIN), STATIC_DATA_END;
 *   live: log-dirty on (and QEMU's, through the helper's callback, for an
 *         HVM container), round 0 = every page of the memory image, then
 *         rounds of the pages the hypervisor reports dirty (LOGDIRTY
 *         CLEAN) as libxc's default precopy policy decides (at most 5,
 *         until fewer than 50 pages), the suspend callback, the last dirty
 *         set (LOGDIRTY FINAL);
 *   not live: the suspend callback, then every page;
 *   then SIM_GUEST (SAVE_END: the guest's state once suspended) and END.
 *
 * After the suspend callback the domain must be shut down with reason
 * suspend (libxc's check).  Page 0 is the hypervisor's (the guest's marker
 * page), every other page the image's pattern.  Checkpointed streams
 * (Remus, COLO) are not simulated: EOPNOTSUPP.
 */
#include "xcshim_stream.h"

#define SPP_MAX_ITERATIONS 5
#define SPP_TARGET_DIRTY_COUNT 50

struct save_ctx {
    xc_interface *xch;
    uint32_t domid;
    int fd;
    struct save_callbacks *cb;
    bool live, hvm, logdirty, qemu_logdirty;
    uint64_t image_pages;
    uint8_t page0[SR_PAGE_SIZE];
    struct page_batch batch;
};

/* libxc's simple_precopy_policy. */
static int simple_precopy_policy(struct precopy_stats stats, void *user)
{
    (void)user;
    return ((stats.dirty_count >= 0 && stats.dirty_count < SPP_TARGET_DIRTY_COUNT) ||
            stats.iteration >= SPP_MAX_ITERATIONS)
        ? XGS_POLICY_STOP_AND_COPY : XGS_POLICY_CONTINUE_PRECOPY;
}

/* Every stride-th page from stride on (none if stride is 0), page 0 first
 * if asked. */
static int send_pages(struct save_ctx *c, uint64_t stride, bool page0)
{
    if (page0 && txsim_batch_add(&c->batch, 0) < 0)
        return -1;
    for (uint64_t pfn = stride; stride && pfn < c->image_pages; pfn += stride)
        if (txsim_batch_add(&c->batch, pfn) < 0)
            return -1;
    return txsim_batch_flush(&c->batch);
}

static int logdirty(struct save_ctx *c, uint32_t command, struct logdirty_reply *r)
{
    uint32_t args[2] = { c->domid, command };
    return txsim_call_ext(EXT_LOGDIRTY, args, sizeof args, r, r ? sizeof *r : 0);
}

/* Apply a dirty set: send it. */
static int send_dirty(struct save_ctx *c, const struct logdirty_reply *r)
{
    if (r->page0_dirty)
        memcpy(c->page0, r->page0, SR_PAGE_SIZE);
    return send_pages(c, r->stride, r->page0_dirty);
}

/* libxc's suspend_domain: the callback, then the domain must show
 * shutdown(suspend). */
static int suspend_domain(struct save_ctx *c)
{
    if (c->cb->suspend(c->cb->data) == 0) {
        txsim_log(c->xch, XTL_ERROR, -1, "save callback suspend() failed");
        errno = ECANCELED;
        return -1;
    }
    xc_dominfo_t info;
    if (xc_domain_getinfo(c->xch, c->domid, 1, &info) != 1 || info.domid != c->domid) {
        txsim_log(c->xch, XTL_ERROR, errno, "Unable to refresh domain information");
        return -1;
    }
    if (!info.shutdown || info.shutdown_reason != SHUTDOWN_suspend) {
        txsim_log(c->xch, XTL_ERROR, -1, "Domain has not been suspended: shutdown %d, reason %d",
                  info.shutdown, info.shutdown_reason);
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* libxc's send_memory_live: the precopy rounds. */
static int send_memory_live(struct save_ctx *c)
{
    struct precopy_stats stats = { 0, 0, (long)c->image_pages };
    precopy_policy_t policy = c->cb->precopy_policy ? c->cb->precopy_policy : simple_precopy_policy;
    struct logdirty_reply dirty;
    uint64_t stride = 1;
    bool page0 = true;
    unsigned int x = 0;
    int decision;

    for (;;) {
        decision = policy(stats, c->cb->data);
        x++;
        if (stats.dirty_count > 0 && decision != XGS_POLICY_ABORT && send_pages(c, stride, page0) < 0)
            return -1;
        if (decision != XGS_POLICY_CONTINUE_PRECOPY)
            break;
        stats.iteration = x;
        stats.total_written += stats.dirty_count;
        stats.dirty_count = -1;
        decision = policy(stats, c->cb->data);
        if (decision != XGS_POLICY_CONTINUE_PRECOPY)
            break;
        if (logdirty(c, LOGDIRTY_CLEAN, &dirty) < 0) {
            txsim_log(c->xch, XTL_ERROR, errno, "Failed to retrieve logdirty bitmap");
            return -1;
        }
        if (dirty.page0_dirty)
            memcpy(c->page0, dirty.page0, SR_PAGE_SIZE);
        stride = dirty.stride;
        page0 = dirty.page0_dirty;
        stats.dirty_count = (long)dirty.count;
    }
    if (decision == XGS_POLICY_ABORT) {
        txsim_log(c->xch, XTL_ERROR, -1, "Abort precopy loop");
        errno = ECANCELED;
        return -1;
    }
    return 0;
}

static int write_headers(struct save_ctx *c)
{
    struct sr_ihdr ih = { htobe64(SR_IHDR_MARKER), htobe32(SR_IHDR_ID), htobe32(SR_IHDR_VERSION), 0, { 0 } };
    struct sr_dhdr dh = { c->hvm ? SR_DHDR_X86_HVM : SR_DHDR_X86_PV, SR_PAGE_SHIFT, 0, 4, 17 };
    struct iovec iov[2] = { { &ih, sizeof ih }, { &dh, sizeof dh } };
    return txsim_write_all(c->fd, iov, 2);
}

static int save(struct save_ctx *c)
{
    struct save_begin_reply begin;
    struct save_end_reply end;
    struct logdirty_reply dirty;
    uint32_t args[2] = { c->domid, c->live };

    if (txsim_call_ext(EXT_SAVE_BEGIN, args, sizeof args, &begin, sizeof begin) < 0) {
        txsim_log(c->xch, XTL_ERROR, errno, "Unable to start saving domain %u", c->domid);
        return -1;
    }
    c->logdirty = c->live;
    c->image_pages = begin.domain.image_pages;
    memcpy(c->page0, begin.page0, SR_PAGE_SIZE);
    if (txsim_batch_init(&c->batch, c->fd, begin.domain.seed) < 0)
        return -1;
    c->batch.page0 = c->page0;
    if (write_headers(c) < 0 ||
        txsim_write_record(c->fd, REC_SIM_DOMAIN, &begin.domain, sizeof begin.domain) < 0 ||
        txsim_write_record(c->fd, REC_STATIC_DATA_END, NULL, 0) < 0)
        goto write_failed;
    if (c->live) {
        if (c->hvm) {
            if (c->cb->switch_qemu_logdirty(c->domid, 1, c->cb->data)) {
                txsim_log(c->xch, XTL_ERROR, errno, "Couldn't enable qemu log-dirty mode");
                return -1;
            }
            c->qemu_logdirty = true;
        }
        if (send_memory_live(c) < 0 || suspend_domain(c) < 0)
            return -1;
        if (logdirty(c, LOGDIRTY_FINAL, &dirty) < 0) {
            txsim_log(c->xch, XTL_ERROR, errno, "Failed to retrieve logdirty bitmap");
            return -1;
        }
        if (send_dirty(c, &dirty) < 0)
            goto write_failed;
    } else if (suspend_domain(c) < 0) {
        return -1;
    }
    if (txsim_call_ext(EXT_SAVE_END, &c->domid, sizeof c->domid, &end, sizeof end) < 0) {
        txsim_log(c->xch, XTL_ERROR, errno, "Unable to read the state of domain %u", c->domid);
        return -1;
    }
    c->logdirty = false;
    if (!c->live) {
        memcpy(c->page0, end.page0, SR_PAGE_SIZE);
        if (send_pages(c, 1, true) < 0)
            goto write_failed;
    }
    if (txsim_write_record(c->fd, REC_SIM_GUEST, &end.guest, sizeof end.guest) < 0 ||
        txsim_write_record(c->fd, REC_END, NULL, 0) < 0)
        goto write_failed;
    return 0;

write_failed:
    txsim_log(c->xch, XTL_ERROR, errno, "Unable to write the stream");
    return -1;
}

int xc_domain_save(xc_interface *xch, int io_fd, uint32_t dom, uint32_t flags,
                   struct save_callbacks *callbacks, xc_stream_type_t stream_type, int recv_fd)
{
    (void)recv_fd;
    if (txsim_check_handle(xch) < 0)
        return -1;
    if (stream_type != XC_STREAM_PLAIN) {
        txsim_log(xch, XTL_ERROR, -1, "checkpointed streams (Remus, COLO) are not simulated");
        errno = EOPNOTSUPP;
        return -1;
    }
    xc_dominfo_t info;
    if (xc_domain_getinfo(xch, dom, 1, &info) != 1 || info.domid != dom) {
        txsim_log(xch, XTL_ERROR, errno, "Domain %u does not exist", dom);
        errno = ESRCH;
        return -1;
    }
    if (!callbacks || !callbacks->suspend || (info.hvm && !callbacks->switch_qemu_logdirty)) {
        errno = EINVAL;
        return -1;
    }
    struct save_ctx c = {
        .xch = xch, .domid = dom, .fd = io_fd, .cb = callbacks,
        .live = !!(flags & XCFLAGS_LIVE), .hvm = info.hvm,
    };
    int rc = save(&c);
    int saved = errno;
    if (c.logdirty)
        logdirty(&c, LOGDIRTY_OFF, NULL);
    if (c.qemu_logdirty && c.cb->switch_qemu_logdirty(c.domid, 0, c.cb->data))
        txsim_log(xch, XTL_ERROR, errno, "Failed to disable qemu log-dirty mode");
    txsim_batch_free(&c.batch);
    if (rc < 0)
        txsim_log(xch, XTL_ERROR, saved, "Save failed");
    errno = saved;
    return rc;
}

/* XEN_DOMCTL_resumedomain: cooperative (fast) or not, the domain runs again. */
int xc_domain_resume(xc_interface *xch, uint32_t domid, int fast)
{
    if (txsim_check_handle(xch) < 0)
        return -1;
    return txsim_call(OP_RESUME, domid, fast ? 1 : 0, NULL, 0, NULL, NULL, 0) < 0 ? -1 : 0;
}
