/*
 * txlibxl's libxenctrl shim: the calls of libxl's domain-creation and
 * device paths (libxl__domain_make, libxl__build_pre/post, NUMA
 * placement, the scheduler parameters, memory and vCPU changes).
 *
 * What changes the domain goes to the simulated hypervisor (createdomain,
 * max_vcpus, max_mem, event channels, HVM parameters).  What a host
 * without guest memory has nothing to do for (TSC mode, CPUID policy,
 * affinities, the memory map, the PV memmap limit) succeeds here after
 * checking the handle.  The host's topology (one socket, one NUMA node,
 * the CPUs xc_physinfo reports, cpupool 0 with credit2 and every CPU) is
 * derived from PHYSINFO.
 */
#include "xcshim.h"

#define DEFAULT_CREDIT2_WEIGHT 256

int xc_domain_create(xc_interface *xch, uint32_t *pdomid,
                     struct xen_domctl_createdomain *config)
{
    if (txsim_check_handle(xch) < 0)
        return -1;
    if (!pdomid || !config) {
        errno = EFAULT;
        return -1;
    }
    struct create_args args;
    memset(&args, 0, sizeof args);
    args.domid = *pdomid;
    args.flags = config->flags;
    memcpy(args.handle, config->handle, sizeof args.handle);
    args.max_vcpus = config->max_vcpus;
    args.emulation_flags = config->arch.emulation_flags;
    args.ssidref = config->ssidref;
    args.cpupool = config->cpupool_id;
    int domid = txsim_call_ext(EXT_CREATEDOMAIN, &args, sizeof args, NULL, 0);
    if (domid < 0)
        return -1;
    *pdomid = (uint32_t)domid;
    return 0;
}

int xc_domain_max_vcpus(xc_interface *xch, uint32_t domid, unsigned int max)
{
    if (txsim_check_handle(xch) < 0)
        return -1;
    return txsim_call(OP_MAX_VCPUS, domid, max, NULL, 0, NULL, NULL, 0) < 0 ? -1 : 0;
}

int xc_domain_setmaxmem(xc_interface *xch, uint32_t domid, uint64_t max_memkb)
{
    if (txsim_check_handle(xch) < 0)
        return -1;
    struct domid_u64 args = { domid, max_memkb };
    return txsim_call_ext(EXT_SETMAXMEM, &args, sizeof args, NULL, 0) < 0 ? -1 : 0;
}

xc_evtchn_port_or_error_t xc_evtchn_alloc_unbound(xc_interface *xch, uint32_t dom,
                                                  uint32_t remote_dom)
{
    if (txsim_check_handle(xch) < 0)
        return -1;
    return txsim_call(OP_EVTCHN_ALLOC_UNBOUND, dom, remote_dom, NULL, 0, NULL, NULL, 0);
}

int xc_hvm_param_set(xc_interface *handle, uint32_t dom, uint32_t param, uint64_t value)
{
    if (txsim_check_handle(handle) < 0)
        return -1;
    struct param_args args = { dom, param, value };
    return txsim_call_ext(EXT_HVM_PARAM_SET, &args, sizeof args, NULL, 0) < 0 ? -1 : 0;
}

/* One GETINFOLIST row of domid (or -1 with errno ESRCH). */
static void keep_row(void *ctx, unsigned int index, const struct row *row)
{
    (void)index;
    *(struct row *)ctx = *row;
}

static int domain_row(xc_interface *xch, uint32_t domid, struct row *row)
{
    if (txsim_check_handle(xch) < 0)
        return -1;
    int n = txsim_call(OP_GETINFOLIST, domid, 1, NULL, 0, keep_row, row, 1);
    if (n < 0)
        return -1;
    if (n == 0 || row->domid != domid) {
        errno = ESRCH;
        return -1;
    }
    return 0;
}

/* No guest memory, no CPUs to program: accepted for a domain that exists. */
static int accept_for(xc_interface *xch, uint32_t domid)
{
    struct row row;
    return domain_row(xch, domid, &row);
}

int xc_domain_set_tsc_info(xc_interface *xch, uint32_t domid, uint32_t tsc_mode,
                           uint64_t elapsed_nsec, uint32_t gtsc_khz, uint32_t incarnation)
{
    (void)tsc_mode; (void)elapsed_nsec; (void)gtsc_khz; (void)incarnation;
    return accept_for(xch, domid);
}

int xc_cpuid_apply_policy(xc_interface *xch, uint32_t domid, bool restore,
                          const uint32_t *featureset, unsigned int nr_features,
                          bool pae, bool itsc, bool nested_virt,
                          const struct xc_xend_cpuid *xend, const struct xc_msr *msr)
{
    (void)restore; (void)featureset; (void)nr_features; (void)pae; (void)itsc;
    (void)nested_virt; (void)xend; (void)msr;
    return accept_for(xch, domid);
}

int xc_domain_set_memmap_limit(xc_interface *xch, uint32_t domid, unsigned long map_limitkb)
{
    (void)map_limitkb;
    return accept_for(xch, domid);
}

int xc_domain_set_memory_map(xc_interface *xch, uint32_t domid, struct e820entry entries[],
                             uint32_t nr_entries)
{
    (void)entries; (void)nr_entries;
    return accept_for(xch, domid);
}

int xc_domain_set_time_offset(xc_interface *xch, uint32_t domid, int32_t time_offset_seconds)
{
    (void)time_offset_seconds;
    return accept_for(xch, domid);
}

/* HAP/shadow page-table pool of an HVM container: no page tables here. */
int xc_set_paging_mempool_size(xc_interface *xch, uint32_t domid, uint64_t size)
{
    (void)size;
    return accept_for(xch, domid);
}

int xc_vcpu_setaffinity(xc_interface *xch, uint32_t domid, int vcpu, xc_cpumap_t cpumap_hard,
                        xc_cpumap_t cpumap_soft, uint32_t flags)
{
    (void)vcpu; (void)cpumap_hard; (void)cpumap_soft; (void)flags;
    return accept_for(xch, domid);
}

int xc_domain_node_setaffinity(xc_interface *xch, uint32_t domid, xc_nodemap_t nodemap)
{
    (void)nodemap;
    return accept_for(xch, domid);
}

/* Every vCPU may run on every CPU. */
int xc_vcpu_getaffinity(xc_interface *xch, uint32_t domid, int vcpu, xc_cpumap_t cpumap_hard,
                        xc_cpumap_t cpumap_soft, uint32_t flags)
{
    struct physinfo p;
    (void)vcpu; (void)flags;
    if (accept_for(xch, domid) < 0 || txsim_get_physinfo(xch, &p) < 0)
        return -1;
    size_t size = (p.max_cpu_id + 8) / 8;
    for (xc_cpumap_t map = cpumap_hard; ; map = cpumap_soft) {
        if (map) {
            memset(map, 0, size);
            for (uint32_t cpu = 0; cpu < p.nr_cpus; cpu++)
                map[cpu / 8] |= (uint8_t)(1u << (cpu % 8));
        }
        if (map == cpumap_soft)
            break;
    }
    return 0;
}

int xc_domain_node_getaffinity(xc_interface *xch, uint32_t domid, xc_nodemap_t nodemap)
{
    struct physinfo p;
    if (accept_for(xch, domid) < 0 || txsim_get_physinfo(xch, &p) < 0)
        return -1;
    if (nodemap) {
        memset(nodemap, 0, (p.max_node_id + 8) / 8);
        for (uint32_t node = 0; node < p.nr_nodes; node++)
            nodemap[node / 8] |= (uint8_t)(1u << (node % 8));
    }
    return 0;
}

int xc_sched_id(xc_interface *xch, int *sched_id)
{
    if (txsim_check_handle(xch) < 0)
        return -1;
    *sched_id = XEN_SCHEDULER_CREDIT2;
    return 0;
}

int xc_sched_credit2_domain_get(xc_interface *xch, uint32_t domid,
                                struct xen_domctl_sched_credit2 *sdom)
{
    if (accept_for(xch, domid) < 0)
        return -1;
    sdom->weight = DEFAULT_CREDIT2_WEIGHT;
    sdom->cap = 0;
    return 0;
}

int xc_sched_credit2_domain_set(xc_interface *xch, uint32_t domid,
                                struct xen_domctl_sched_credit2 *sdom)
{
    if (!sdom || sdom->weight == 0) {
        errno = EINVAL;
        return -1;
    }
    return accept_for(xch, domid);
}

/* The ABI of a 64-bit PV guest; HVM containers have none (NULL). */
const char *xc_domain_get_native_protocol(xc_interface *xch, uint32_t domid)
{
    struct row row;
    if (domain_row(xch, domid, &row) < 0)
        return NULL;
    return (row.flags & XEN_DOMINF_hvm_guest) ? NULL : XEN_IO_PROTO_ABI_X86_64;
}

/* No page sharing on the simulated host. */
long xc_sharing_freed_pages(xc_interface *xch)
{
    return txsim_check_handle(xch) < 0 ? -1 : 0;
}

long xc_sharing_used_frames(xc_interface *xch)
{
    return txsim_check_handle(xch) < 0 ? -1 : 0;
}

/* No vNUMA: as Xen answers for a domain without a virtual topology. */
int xc_domain_getvnuma(xc_interface *xch, uint32_t domid, uint32_t *nr_vnodes,
                       uint32_t *nr_vmemranges, uint32_t *nr_vcpus, xen_vmemrange_t *vmemrange,
                       unsigned int *vdistance, unsigned int *vcpu_to_vnode)
{
    (void)nr_vnodes; (void)nr_vmemranges; (void)nr_vcpus; (void)vmemrange;
    (void)vdistance; (void)vcpu_to_vnode;
    if (accept_for(xch, domid) < 0)
        return -1;
    errno = EOPNOTSUPP;
    return -1;
}

/* --- the host's topology ------------------------------------------------ */

static void count_row(void *ctx, unsigned int index, const struct row *row)
{
    (void)index; (void)row;
    (*(uint32_t *)ctx)++;
}

/* Pool 0 (the only one): credit2, every CPU, every domain. */
xc_cpupoolinfo_t *xc_cpupool_getinfo(xc_interface *xch, uint32_t poolid)
{
    struct physinfo p;
    if (txsim_get_physinfo(xch, &p) < 0)
        return NULL;
    if (poolid != 0) {
        errno = ENOENT;
        return NULL;
    }
    size_t size = (p.max_cpu_id + 8) / 8;
    xc_cpupoolinfo_t *info = calloc(1, sizeof *info + size);
    if (!info)
        return NULL;
    info->cpupool_id = 0;
    info->sched_id = XEN_SCHEDULER_CREDIT2;
    info->cpumap = (xc_cpumap_t)(info + 1);
    for (uint32_t cpu = 0; cpu < p.nr_cpus; cpu++)
        info->cpumap[cpu / 8] |= (uint8_t)(1u << (cpu % 8));
    uint32_t n = 0;
    if (txsim_call(OP_GETINFOLIST, 0, DOMID_FIRST_RESERVED, NULL, 0, count_row, &n,
                   DOMID_FIRST_RESERVED) < 0) {
        int saved = errno;
        free(info);
        errno = saved;
        return NULL;
    }
    info->n_dom = n;
    return info;
}

void xc_cpupool_infofree(xc_interface *xch, xc_cpupoolinfo_t *info)
{
    (void)xch;
    free(info);
}

/* Every CPU is in pool 0: none is free. */
xc_cpumap_t xc_cpupool_freeinfo(xc_interface *xch)
{
    struct physinfo p;
    if (txsim_get_physinfo(xch, &p) < 0)
        return NULL;
    return calloc(1, (p.max_cpu_id + 8) / 8);
}

int xc_numainfo(xc_interface *xch, unsigned *max_nodes, xc_meminfo_t *meminfo,
                uint32_t *distance)
{
    struct physinfo p;
    if (txsim_get_physinfo(xch, &p) < 0)
        return -1;
    unsigned int have = *max_nodes;
    *max_nodes = p.nr_nodes;
    if (!meminfo && !distance)
        return 0;
    if (have < p.nr_nodes) {
        errno = ENOBUFS;
        return -1;
    }
    for (unsigned int i = 0; i < p.nr_nodes; i++) {
        if (meminfo) {
            meminfo[i].memsize = (p.total_pages / p.nr_nodes) << XC_PAGE_SHIFT;
            meminfo[i].memfree = (p.free_pages / p.nr_nodes) << XC_PAGE_SHIFT;
        }
        if (distance)
            for (unsigned int j = 0; j < p.nr_nodes; j++)
                distance[i * p.nr_nodes + j] = i == j ? 10 : 20;
    }
    return 0;
}

int xc_cputopoinfo(xc_interface *xch, unsigned *max_cpus, xc_cputopo_t *cputopo)
{
    struct physinfo p;
    if (txsim_get_physinfo(xch, &p) < 0)
        return -1;
    unsigned int have = *max_cpus;
    *max_cpus = p.nr_cpus;
    if (!cputopo)
        return 0;
    if (have < p.nr_cpus) {
        errno = ENOBUFS;
        return -1;
    }
    uint32_t per_node = p.nr_cpus / (p.nr_nodes ? p.nr_nodes : 1);
    for (uint32_t cpu = 0; cpu < p.nr_cpus; cpu++) {
        uint32_t threads = p.threads_per_core ? p.threads_per_core : 1;
        cputopo[cpu].core = cpu / threads;
        cputopo[cpu].socket = 0;
        cputopo[cpu].node = per_node ? cpu / per_node : 0;
    }
    return 0;
}
