/*
 * txlibxl's libxenctrl shim: the host's domain builder.
 *
 * libxl builds PV and PVH domains through libxenguest's xc_dom_* entry
 * points (libxl__build_dom).  The real builder loads an ELF kernel into
 * guest memory and writes page tables and start_info; the simulated host
 * has no guest memory, so these definitions (which win over libxenguest's
 * in the global scope, like the xc_* ones) build the domain's *accounts*
 * instead:
 *
 * - xc_dom_allocate returns a real struct xc_dom_image (the installed
 *   <xenguest.h> layout), which libxl fills in and reads back;
 * - the kernel (and ramdisk) must be readable files: their size places
 *   the segments, their contents are not read;
 * - xc_dom_boot_mem_init populates the domain's memory in the hypervisor
 *   (POPULATE), which hands out its machine frames; for a PV guest the
 *   p2m (pv_p2m) maps each pfn to them, so the mfns libxl derives for
 *   store/ring-ref and INTRODUCE are the domain's own;
 * - xc_dom_build_image places the special pages (start_info, xenstore
 *   and console rings) as the real builder does: after the kernel and
 *   modules for PV, at the HVM special pages for PVH;
 * - xc_dom_boot_image sets the HVM parameters of an HVM container (store
 *   and console pfn and event channel), xc_dom_gnttab_init seeds the
 *   grant table with the two rings (GNTTAB_SEED).
 */
#include "xcshim.h"

#include <xen/hvm/params.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
/* The x86 HVM special pages, as libxenguest's xg_dom_x86.c places them. */
#define END_SPECIAL_REGION 0xff000UL
#define NR_SPECIAL_PAGES 8
#define SPECIALPAGE_XENSTORE 4
#define SPECIALPAGE_CONSOLE 7
#define SPECIAL_PFN(x) (END_SPECIAL_REGION - NR_SPECIAL_PAGES + (x))
/* A PV kernel's virtual base (Linux x86-64). */
#define PV_VIRT_BASE 0xffffffff80000000ULL

static struct xc_dom_arch pv_hooks = {
    .guest_type = "xen-3.0-x86_64",
    .native_protocol = XEN_IO_PROTO_ABI_X86_64,
    .page_shift = PAGE_SHIFT,
    .sizeof_pfn = 8,
    .p2m_base_supported = 1,
};

static struct xc_dom_arch hvm_hooks = {
    .guest_type = "hvm-3.0-x86_32",
    .native_protocol = XEN_IO_PROTO_ABI_X86_32,
    .page_shift = PAGE_SHIFT,
    .sizeof_pfn = 8,
};

static xen_pfn_t pages_for(size_t bytes)
{
    return (bytes + PAGE_SIZE - 1) >> PAGE_SHIFT;
}

/* libxenguest's constructors register its own arch hooks when it is
 * loaded: the shim's builder has its own, so they are not needed. */
void xc_dom_register_arch_hooks(struct xc_dom_arch *hooks)
{
    (void)hooks;
}

int xc_dom_loginit(xc_interface *xch)
{
    return txsim_check_handle(xch);
}

struct xc_dom_image *xc_dom_allocate(xc_interface *xch, const char *cmdline,
                                     const char *features)
{
    (void)features;
    if (txsim_check_handle(xch) < 0)
        return NULL;
    struct xc_dom_image *dom = calloc(1, sizeof *dom);
    if (!dom)
        return NULL;
    dom->xch = xch;
    dom->max_kernel_size = XC_DOM_DECOMPRESS_MAX;
    dom->max_module_size = XC_DOM_DECOMPRESS_MAX;
    dom->max_devicetree_size = XC_DOM_DECOMPRESS_MAX;
    if (cmdline) {
        dom->cmdline = strdup(cmdline);
        if (!dom->cmdline) {
            free(dom);
            errno = ENOMEM;
            return NULL;
        }
        dom->cmdline_size = strlen(cmdline) + 1;
    }
    dom->alloc_bootstack = 1;
    return dom;
}

void xc_dom_release(struct xc_dom_image *dom)
{
    if (!dom)
        return;
    while (dom->memblocks) {
        struct xc_dom_mem *block = dom->memblocks;
        dom->memblocks = block->next;
        free(block);
    }
    free(dom->pv_p2m);
    free(dom->cmdline);
    free(dom);
}

void *xc_dom_malloc(struct xc_dom_image *dom, size_t size)
{
    if (size > SIZE_MAX - sizeof(struct xc_dom_mem)) {
        errno = ENOMEM;
        return NULL;
    }
    struct xc_dom_mem *block = calloc(1, sizeof *block + size);
    if (!block)
        return NULL;
    block->type = XC_DOM_MEM_TYPE_MALLOC_INTERNAL;
    block->len = size;
    block->ptr = block->memory;
    block->next = dom->memblocks;
    dom->memblocks = block;
    dom->alloc_malloc += size;
    return block->memory;
}

/* A readable regular file's size, or -1 with errno. */
static int file_size(const char *filename, size_t max, size_t *size)
{
    if (!filename || !*filename) {
        errno = EINVAL;
        return -1;
    }
    /* The firmware libxl names for an HVM guest is at a compiled-in
     * path, which the host's root stands in for. */
    char buf[PATH_MAX];
    int fd = open(txsim_redirect(filename, buf), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    int rc = fstat(fd, &st);
    int saved = errno;
    close(fd);
    if (rc < 0) {
        errno = saved;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        return -1;
    }
    if ((size_t)st.st_size > max) {
        errno = EFBIG;
        return -1;
    }
    *size = (size_t)st.st_size;
    return 0;
}

int xc_dom_kernel_file(struct xc_dom_image *dom, const char *filename)
{
    size_t size;
    if (file_size(filename, dom->max_kernel_size, &size) < 0)
        return -1;
    dom->kernel_size = size ? size : 1;
    return 0;
}

int xc_dom_kernel_mem(struct xc_dom_image *dom, const void *mem, size_t memsize)
{
    if (!mem || !memsize) {
        errno = EINVAL;
        return -1;
    }
    dom->kernel_size = memsize;
    return 0;
}

static int add_module(struct xc_dom_image *dom, size_t size)
{
    if (dom->num_modules >= XG_MAX_MODULES) {
        errno = ENOSPC;
        return -1;
    }
    dom->modules[dom->num_modules++].size = size ? size : 1;
    return 0;
}

int xc_dom_module_file(struct xc_dom_image *dom, const char *filename, const char *cmdline)
{
    size_t size;
    (void)cmdline;
    if (file_size(filename, dom->max_module_size, &size) < 0)
        return -1;
    return add_module(dom, size);
}

int xc_dom_module_mem(struct xc_dom_image *dom, const void *mem, size_t memsize,
                      const char *cmdline)
{
    (void)cmdline;
    if (!mem || !memsize) {
        errno = EINVAL;
        return -1;
    }
    return add_module(dom, memsize);
}

int xc_dom_boot_xen_init(struct xc_dom_image *dom, xc_interface *xch, uint32_t domid)
{
    if (txsim_check_handle(xch) < 0)
        return -1;
    dom->xch = xch;
    dom->guest_domid = domid;
    dom->xen_version = xc_version(xch, XENVER_version, NULL);
    return xc_version(xch, XENVER_capabilities, &dom->xen_caps) < 0 ? -1 : 0;
}

bool xc_dom_translated(const struct xc_dom_image *dom)
{
    return dom->container_type == XC_DOM_HVM_CONTAINER;
}

/* The "kernel" is a Linux of the container's kind; nothing is parsed. */
int xc_dom_parse_image(struct xc_dom_image *dom)
{
    if (!dom->kernel_size) {
        errno = EINVAL;
        return -1;
    }
    dom->arch_hooks = xc_dom_translated(dom) ? &hvm_hooks : &pv_hooks;
    dom->guest_type = dom->arch_hooks->guest_type;
    dom->kernel_seg.pfn = 0;
    dom->kernel_seg.pages = pages_for(dom->kernel_size);
    dom->kernel_seg.vstart = xc_dom_translated(dom) ? 0x100000 : PV_VIRT_BASE;
    dom->kernel_seg.vend = dom->kernel_seg.vstart + (dom->kernel_seg.pages << PAGE_SHIFT);
    return 0;
}

char *xc_dom_guest_os(struct xc_dom_image *dom)
{
    (void)dom;
    return "linux";
}

bool xc_dom_feature_get(struct xc_dom_image *dom, unsigned int nr)
{
    (void)dom; (void)nr;
    return false;
}

int xc_dom_mem_init(struct xc_dom_image *dom, unsigned int mem_mb)
{
    if (!mem_mb) {
        errno = EINVAL;
        return -1;
    }
    dom->total_pages = (xen_pfn_t)mem_mb << (20 - PAGE_SHIFT);
    dom->p2m_size = dom->total_pages;
    return 0;
}

/* Populate the domain's memory; a PV guest gets its p2m. */
int xc_dom_boot_mem_init(struct xc_dom_image *dom)
{
    xen_pfn_t pages = dom->total_pages;
    if (!pages || !dom->arch_hooks) {
        errno = EINVAL;
        return -1;
    }
    if (xc_dom_translated(dom) && dom->target_pages && dom->target_pages < pages)
        pages = dom->target_pages;
    struct domid_u64 args = { dom->guest_domid, pages };
    uint64_t first_mfn;
    if (txsim_call_ext(EXT_POPULATE, &args, sizeof args, &first_mfn, sizeof first_mfn) < 0)
        return -1;
    if (xc_dom_translated(dom))
        return 0;
    dom->pv_p2m = malloc(dom->p2m_size * sizeof *dom->pv_p2m);
    if (!dom->pv_p2m)
        return -1;
    for (xen_pfn_t pfn = 0; pfn < dom->p2m_size; pfn++)
        dom->pv_p2m[pfn] = pfn < pages ? first_mfn + pfn : INVALID_MFN;
    return 0;
}

int xc_dom_build_image(struct xc_dom_image *dom)
{
    if (!dom->arch_hooks || !dom->total_pages) {
        errno = EINVAL;
        return -1;
    }
    if (xc_dom_translated(dom)) {
        dom->xenstore_pfn = SPECIAL_PFN(SPECIALPAGE_XENSTORE);
        dom->console_pfn = SPECIAL_PFN(SPECIALPAGE_CONSOLE);
        dom->start_info_pfn = dom->kernel_seg.pfn + dom->kernel_seg.pages;
        dom->pfn_alloc_end = dom->start_info_pfn + 1;
        return 0;
    }
    /* PV: kernel, modules, then start_info, xenstore, console, stack. */
    xen_pfn_t pfn = dom->kernel_seg.pfn + dom->kernel_seg.pages;
    for (unsigned int i = 0; i < dom->num_modules; i++) {
        dom->modules[i].seg.pfn = pfn;
        dom->modules[i].seg.pages = pages_for(dom->modules[i].size);
        pfn += dom->modules[i].seg.pages;
    }
    dom->start_info_pfn = pfn++;
    dom->xenstore_pfn = pfn++;
    dom->console_pfn = pfn++;
    dom->bootstack_pfn = pfn++;
    if (pfn > dom->total_pages) {
        /* The kernel and modules do not fit in the guest's memory. */
        errno = ENOMEM;
        return -1;
    }
    dom->pfn_alloc_end = pfn;
    dom->virt_alloc_end = dom->kernel_seg.vstart + ((uint64_t)pfn << PAGE_SHIFT);
    return 0;
}

int xc_dom_boot_image(struct xc_dom_image *dom)
{
    if (!xc_dom_translated(dom))
        return 0;
    /* As the real builder's bootlate does for an HVM container. */
    const struct { uint32_t index; uint64_t value; } params[] = {
        { HVM_PARAM_STORE_PFN, dom->xenstore_pfn },
        { HVM_PARAM_STORE_EVTCHN, dom->xenstore_evtchn },
        { HVM_PARAM_CONSOLE_PFN, dom->console_pfn },
        { HVM_PARAM_CONSOLE_EVTCHN, dom->console_evtchn },
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        if (xc_hvm_param_set(dom->xch, dom->guest_domid, params[i].index, params[i].value) < 0)
            return -1;
    return 0;
}

int xc_dom_gnttab_init(struct xc_dom_image *dom)
{
    struct seed_args args = {
        dom->guest_domid,
        xc_dom_p2m(dom, dom->console_pfn),
        xc_dom_p2m(dom, dom->xenstore_pfn),
    };
    return txsim_call_ext(EXT_GNTTAB_SEED, &args, sizeof args, NULL, 0) < 0 ? -1 : 0;
}
