/*
 * txlibxl's libxenctrl shim: what libxl's HVM create path asks of Xen
 * beyond the PV/PVH one (libxl__build_hvm and its set-params step).
 *
 * libxl maps one page of the new guest, HVM_INFO_PFN, to fill in the
 * hvm_info_table hvmloader reads (vCPU count and map, APIC mode) and fix
 * its checksum.  The simulated host has no guest memory: the mapping is
 * scratch memory of the caller's own, zeroed but for the table's header
 * (so libxl's checksum loop runs over a table of the real length), and
 * what libxl writes there goes nowhere.  Only pages of a domain that
 * exists and has memory can be mapped, as on Xen.
 */
#include "xcshim.h"

#include <xen/hvm/hvm_info_table.h>

static void keep_row(void *ctx, unsigned int index, const struct row *row)
{
    (void)index;
    *(struct row *)ctx = *row;
}

void *xc_map_foreign_range(xc_interface *xch, uint32_t dom, int size, int prot,
                           unsigned long mfn)
{
    struct row row;
    (void)prot;
    if (txsim_check_handle(xch) < 0)
        return NULL;
    if (size <= 0 || size % XC_PAGE_SIZE) {
        errno = EINVAL;
        return NULL;
    }
    int n = txsim_call(OP_GETINFOLIST, dom, 1, NULL, 0, keep_row, &row, 1);
    if (n < 0)
        return NULL;
    if (n == 0 || row.domid != dom) {
        errno = ESRCH;
        return NULL;
    }
    /* A guest with no memory yet has no frame to map. */
    if (!row.tot_pages) {
        errno = EFAULT;
        return NULL;
    }
    void *va = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
    if (va == MAP_FAILED)
        return NULL;
    if (mfn == HVM_INFO_PFN && (size_t)size >= HVM_INFO_OFFSET + sizeof(struct hvm_info_table)) {
        struct hvm_info_table *t = (struct hvm_info_table *)((char *)va + HVM_INFO_OFFSET);
        memcpy(t->signature, "HVM INFO", sizeof t->signature);
        t->length = sizeof *t;
    }
    return va;
}
