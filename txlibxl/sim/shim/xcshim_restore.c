/*
 * txlibxl's libxenctrl shim: restoring a domain (xc_domain_restore, which
 * libxl-save-helper calls into the domain libxl has just created).
 *
 * It reads the simulator's stream (txlibxl/sim/savestream) from libxl's fd
 * up to and including its END record, never further (libxl reads on from
 * there), checking as it goes: libxc's headers, a domain header of the
 * domain's kind, SIM_DOMAIN first, STATIC_DATA_END once (where libxl's
 * static_data_done callback is told that the CPUID and MSR policies are
 * missing, as for a stream from before Xen 4.14), PAGE_DATA records whose
 * pages belong to the image and hold its pattern (page 0 excepted: the
 * guest's marker page), SIM_GUEST once; unknown optional records are
 * skipped, any other record fails the restore.  At END every page of the
 * image must have come.  Only then is the state handed to the hypervisor
 * (RESTORE), which checks it too and answers with the ring frames libxl
 * introduces to xenstored.  A truncated stream fails with ENODATA, a corrupt
 * or foreign one with EBADMSG; the hypervisor is left untouched either way.
 */
#include "xcshim_stream.h"

struct restore_ctx {
    xc_interface *xch;
    int fd;
    struct restore_args *args;
    uint64_t *pfns;
    uint8_t *pages;
    uint8_t *received;  /* one bit per page of the image */
    uint64_t received_count;
    bool have_domain, static_end, have_guest;
};

/* Fail the restore with errno = EBADMSG and say why. */
__attribute__((format(printf, 2, 3)))
static int corrupt(struct restore_ctx *c, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    txsim_log(c->xch, XTL_ERROR, EBADMSG, "Restore failed: %s", msg);
    errno = EBADMSG;
    return -1;
}

static int read_or_fail(struct restore_ctx *c, void *buf, size_t len, const char *what)
{
    if (txsim_read_exact(c->fd, buf, len) == 0)
        return 0;
    txsim_log(c->xch, XTL_ERROR, errno, "Restore failed reading %s", what);
    return -1;
}

/* Read and drop n octets (an optional record's body, padding). */
static int skip(struct restore_ctx *c, size_t n)
{
    uint8_t scratch[4096];
    while (n) {
        size_t chunk = n < sizeof scratch ? n : sizeof scratch;
        if (read_or_fail(c, scratch, chunk, "a record") < 0)
            return -1;
        n -= chunk;
    }
    return 0;
}

static int read_headers(struct restore_ctx *c, bool hvm)
{
    struct sr_ihdr ih;
    struct sr_dhdr dh;
    if (read_or_fail(c, &ih, sizeof ih, "the image header") < 0)
        return -1;
    if (be64toh(ih.marker) != SR_IHDR_MARKER || be32toh(ih.id) != SR_IHDR_ID)
        return corrupt(c, "not a libxc v2 stream");
    if (be32toh(ih.version) != SR_IHDR_VERSION || (be16toh(ih.options) & 1))
        return corrupt(c, "image version %u, options %#x", be32toh(ih.version), be16toh(ih.options));
    if (read_or_fail(c, &dh, sizeof dh, "the domain header") < 0)
        return -1;
    if (dh.page_shift != SR_PAGE_SHIFT || dh.type != (hvm ? SR_DHDR_X86_HVM : SR_DHDR_X86_PV))
        return corrupt(c, "domain header type %u, page shift %u for a%s domain", dh.type,
                       dh.page_shift, hvm ? "n HVM" : " PV");
    return 0;
}

static int sim_domain(struct restore_ctx *c, const struct sr_rhdr *h, uint64_t max_memkb)
{
    struct sim_domain *d = &c->args->domain;
    if (h->type != REC_SIM_DOMAIN || h->length != sizeof *d)
        return corrupt(c, "not a simulated host's stream (first record %#x)", h->type);
    if (read_or_fail(c, d, sizeof *d, "SIM_DOMAIN") < 0)
        return -1;
    if (memcmp(d->magic, "TXSIMDOM", 8) != 0 || d->version != 1)
        return corrupt(c, "not a simulated host's SIM_DOMAIN record");
    if (!d->image_pages || d->image_pages > max_memkb / 4)
        return corrupt(c, "an image of %llu pages for a domain of at most %llu KiB",
                       (unsigned long long)d->image_pages, (unsigned long long)max_memkb);
    c->received = calloc((size_t)(d->image_pages + 7) / 8, 1);
    c->pfns = malloc(SR_MAX_BATCH * sizeof *c->pfns);
    c->pages = malloc((size_t)SR_MAX_BATCH * SR_PAGE_SIZE);
    if (!c->received || !c->pfns || !c->pages) {
        errno = ENOMEM;
        return -1;
    }
    c->have_domain = true;
    return 0;
}

static int page_data(struct restore_ctx *c, const struct sr_rhdr *h)
{
    uint32_t head[2];
    const struct sim_domain *d = &c->args->domain;
    if (!c->static_end || c->have_guest || h->length < sizeof head)
        return corrupt(c, "PAGE_DATA out of place");
    if (read_or_fail(c, head, sizeof head, "PAGE_DATA") < 0)
        return -1;
    uint32_t count = head[0];
    if (!count || count > SR_MAX_BATCH || h->length != sizeof head + count * (8 + SR_PAGE_SIZE))
        return corrupt(c, "PAGE_DATA of %u pages in %u octets", count, h->length);
    if (read_or_fail(c, c->pfns, count * sizeof *c->pfns, "PAGE_DATA") < 0 ||
        read_or_fail(c, c->pages, (size_t)count * SR_PAGE_SIZE, "PAGE_DATA") < 0)
        return -1;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t pfn = c->pfns[i];
        const uint8_t *page = c->pages + (size_t)i * SR_PAGE_SIZE;
        if (pfn & ~SR_PFN_MASK || pfn >= d->image_pages)
            return corrupt(c, "PAGE_DATA: pfn %#llx", (unsigned long long)pfn);
        if (pfn == 0) {
            memcpy(c->args->page0, page, SR_PAGE_SIZE);
        } else {
            uint64_t w = txsim_pattern_word(d->seed, pfn);
            const uint64_t *words = (const uint64_t *)page;
            for (unsigned int k = 0; k < SR_PAGE_SIZE / 8; k++)
                if (words[k] != w)
                    return corrupt(c, "page %#llx does not hold its pattern", (unsigned long long)pfn);
        }
        if (!(c->received[pfn / 8] & (1U << (pfn % 8)))) {
            c->received[pfn / 8] |= (uint8_t)(1U << (pfn % 8));
            c->received_count++;
        }
    }
    return 0;
}

/* The records up to END.  0, or -1 with errno. */
static int read_records(struct restore_ctx *c, struct restore_callbacks *cb, uint64_t max_memkb)
{
    for (;;) {
        struct sr_rhdr h;
        if (read_or_fail(c, &h, sizeof h, "a record header") < 0)
            return -1;
        if (h.length > SR_MAX_BODY)
            return corrupt(c, "record %#x of %u octets", h.type, h.length);
        size_t pad = (8 - (h.length & 7)) & 7;
        int rc = 0;
        if (!c->have_domain) {
            rc = sim_domain(c, &h, max_memkb);
        } else if (h.type == REC_END) {
            if (h.length)
                return corrupt(c, "END has a body");
            break;
        } else if (h.type == REC_STATIC_DATA_END) {
            if (c->static_end || h.length)
                return corrupt(c, "a second STATIC_DATA_END, or one with a body");
            c->static_end = true;
            if (cb && cb->static_data_done &&
                cb->static_data_done(XGR_SDD_MISSING_CPUID | XGR_SDD_MISSING_MSR, cb->data)) {
                txsim_log(c->xch, XTL_ERROR, -1, "static_data_done() callback failed");
                errno = ECANCELED;
                return -1;
            }
        } else if (h.type == REC_PAGE_DATA) {
            rc = page_data(c, &h);
        } else if (h.type == REC_SIM_GUEST) {
            if (c->have_guest || !c->static_end || h.length != sizeof c->args->guest)
                return corrupt(c, "SIM_GUEST out of place");
            rc = read_or_fail(c, &c->args->guest, sizeof c->args->guest, "SIM_GUEST");
            c->have_guest = true;
        } else if (h.type == REC_SIM_DOMAIN) {
            return corrupt(c, "a second SIM_DOMAIN");
        } else if (h.type & REC_OPTIONAL) {
            rc = skip(c, h.length);
        } else {
            return corrupt(c, "not a simulated host's stream (record %#x)", h.type);
        }
        if (rc < 0 || skip(c, pad) < 0)
            return -1;
    }
    if (!c->static_end || !c->have_guest)
        return corrupt(c, "the stream lacks STATIC_DATA_END or SIM_GUEST");
    if (c->received_count != c->args->domain.image_pages)
        return corrupt(c, "%llu pages of the image never came",
                       (unsigned long long)(c->args->domain.image_pages - c->received_count));
    return 0;
}

int xc_domain_restore(xc_interface *xch, int io_fd, uint32_t dom,
                      unsigned int store_evtchn, unsigned long *store_mfn,
                      uint32_t store_domid, unsigned int console_evtchn,
                      unsigned long *console_mfn, uint32_t console_domid,
                      xc_stream_type_t stream_type,
                      struct restore_callbacks *callbacks, int send_back_fd)
{
    (void)store_domid; (void)console_domid; (void)send_back_fd;
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
    struct restore_ctx c = { .xch = xch, .fd = io_fd, .args = calloc(1, sizeof *c.args) };
    int rc = -1;
    if (!c.args) {
        errno = ENOMEM;
    } else if (read_headers(&c, info.hvm) == 0 && read_records(&c, callbacks, info.max_memkb) == 0) {
        struct restore_reply reply;
        c.args->domid = dom;
        c.args->store_evtchn = store_evtchn;
        c.args->console_evtchn = console_evtchn;
        if (txsim_call_ext(EXT_RESTORE, c.args, sizeof *c.args, &reply, sizeof reply) < 0) {
            txsim_log(xch, XTL_ERROR, errno, "The hypervisor refused to restore domain %u", dom);
        } else {
            *store_mfn = (unsigned long)reply.store_gfn;
            *console_mfn = (unsigned long)reply.console_gfn;
            rc = 0;
        }
    }
    int saved = errno;
    free(c.args);
    free(c.pfns);
    free(c.pages);
    free(c.received);
    errno = saved;
    return rc;
}
