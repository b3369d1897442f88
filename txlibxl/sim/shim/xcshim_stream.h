/*
 * txlibxl's libxenctrl shim: the save stream the shim's xc_domain_save
 * writes and xc_domain_restore reads (libxc v2's framing, the simulator's
 * records).  The format is documented in txlibxl/sim/savestream; these
 * numbers are the same as there.
 */
#ifndef TXSIM_XCSHIM_STREAM_H
#define TXSIM_XCSHIM_STREAM_H
#include "xcshim.h"

#include <endian.h>
#include <sys/uio.h>

#define SR_PAGE_SHIFT 12
#define SR_PAGE_SIZE 4096
#define SR_MAX_BATCH 1024
#define SR_IHDR_MARKER 0xffffffffffffffffULL
#define SR_IHDR_ID 0x58454e46U
#define SR_IHDR_VERSION 3
#define SR_DHDR_X86_PV 1
#define SR_DHDR_X86_HVM 2

#define REC_END 0x00000000U
#define REC_PAGE_DATA 0x00000001U
#define REC_STATIC_DATA_END 0x00000010U
#define REC_OPTIONAL 0x80000000U
#define REC_SIM_DOMAIN 0x80545801U
#define REC_SIM_GUEST 0x80545802U
#define SR_PFN_MASK ((1ULL << 52) - 1)
/* The largest record body a restore takes: a full PAGE_DATA. */
#define SR_MAX_BODY (8 + SR_MAX_BATCH * (8 + SR_PAGE_SIZE))

/* Big-endian, as libxc writes it. */
struct __attribute__((packed)) sr_ihdr { uint64_t marker; uint32_t id, version; uint16_t options; uint8_t reserved[6]; };
struct __attribute__((packed)) sr_dhdr { uint32_t type; uint16_t page_shift, reserved; uint32_t xen_major, xen_minor; };
struct __attribute__((packed)) sr_rhdr { uint32_t type, length; };

/* The sim's records, produced and checked by the hypervisor model; the
 * shim reads the image's geometry from SIM_DOMAIN. */
struct __attribute__((packed)) sim_domain {
    char magic[8];
    uint32_t version, type;
    uint8_t uuid[16];
    uint32_t vcpus, reserved;
    uint64_t max_memory_kb, image_pages, seed, store_pfn, console_pfn;
};
struct __attribute__((packed)) sim_guest { uint8_t raw[40]; };
_Static_assert(sizeof(struct sr_ihdr) == 24, "image header");
_Static_assert(sizeof(struct sr_dhdr) == 16, "domain header");
_Static_assert(sizeof(struct sim_domain) == 80, "SIM_DOMAIN");

/* The hypercall replies and requests of the save path (hypercalls_save.py). */
struct __attribute__((packed)) save_begin_reply { struct sim_domain domain; uint8_t page0[SR_PAGE_SIZE]; };
struct __attribute__((packed)) logdirty_reply { uint64_t count; uint32_t stride, page0_dirty; uint8_t page0[SR_PAGE_SIZE]; };
struct __attribute__((packed)) save_end_reply { struct sim_guest guest; uint8_t page0[SR_PAGE_SIZE]; };
struct __attribute__((packed)) restore_args {
    uint32_t domid, store_evtchn, console_evtchn, reserved;
    struct sim_domain domain;
    struct sim_guest guest;
    uint8_t page0[SR_PAGE_SIZE];
};
struct __attribute__((packed)) restore_reply { uint64_t store_gfn, console_gfn; };
enum { LOGDIRTY_OFF = 0, LOGDIRTY_CLEAN = 1, LOGDIRTY_FINAL = 2 };

/* The word pattern page pfn of an image repeats (splitmix64). */
TXSIM_INTERNAL uint64_t txsim_pattern_word(uint64_t seed, uint64_t pfn);

/* Whole writes and reads on a stream fd (blocking or not); 0, or -1 with
 * errno (ENODATA: the stream ended). */
TXSIM_INTERNAL int txsim_write_all(int fd, const struct iovec *iov, int iovcnt);
TXSIM_INTERNAL int txsim_read_exact(int fd, void *buf, size_t len);
/* One record: header, body, padding to 8 octets. */
TXSIM_INTERNAL int txsim_write_record(int fd, uint32_t type, const void *body, uint32_t len);

/* PAGE_DATA records of at most SR_MAX_BATCH pages, filled page by page. */
struct page_batch {
    int fd;
    uint64_t seed;
    const uint8_t *page0;  /* the marker page, as the hypervisor gave it */
    uint32_t count;
    uint64_t *pfns;
    uint8_t *pages;
    uint64_t pages_sent;
};
TXSIM_INTERNAL int txsim_batch_init(struct page_batch *b, int fd, uint64_t seed);
TXSIM_INTERNAL int txsim_batch_add(struct page_batch *b, uint64_t pfn);
TXSIM_INTERNAL int txsim_batch_flush(struct page_batch *b);
TXSIM_INTERNAL void txsim_batch_free(struct page_batch *b);

#endif
