/*
 * txlibxl's libxenctrl shim: what its files share (the wire protocol's
 * structures, the connection's calls).  See xcshim.c and README.
 */
#ifndef TXSIM_XCSHIM_H
#define TXSIM_XCSHIM_H
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

/* Declares xc_map_foreign_{range,pages,ranges}, which libxenlight imports. */
#define XC_WANT_COMPAT_MAP_FOREIGN_API 1
#include <xenctrl.h>
#include <xenguest.h>
#include <xen/version.h>
#include <xen/io/protocols.h>

#if XEN_DOMCTL_INTERFACE_VERSION != 0x00000015
#error "the shim implements the Xen 4.17 domctl ABI (interface 0x15) only"
#endif
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the wire protocol is little-endian; this shim assumes a little-endian host"
#endif

#define TXSIM_SHIM_VERSION 1
#define TXSIM_ENV "TXLIBXL_SIM_HYPERCALL"
#define TXSIM_PREFIX "txlibxl sim shim: "

/* Wire protocol: see txlibxl/sim/hypercalls.py. */
enum {
    OP_GETINFOLIST = 1,
    OP_PAUSE = 2,
    OP_UNPAUSE = 3,
    OP_SHUTDOWN = 4,
    OP_DESTROY = 5,
    OP_HVM_PARAM_GET = 6,
    OP_PHYSINFO = 7,
    OP_VCPU_GETINFO = 8,
    OP_MAX_VCPUS = 9,
    OP_EVTCHN_ALLOC_UNBOUND = 10,
    /* The save and restore ops are numbered from 16 (hypercalls_save.py). */
    OP_RESUME = 16,
};

/* Extended requests: a 16-byte header {op | EXTENDED, version, length, 0}
 * followed by `length` bytes of arguments. */
#define TXSIM_EXTENDED 0x80000000U
#define TXSIM_EXTENDED_VERSION 1
#define TXSIM_MAX_PAYLOAD 65536
enum {
    EXT_CREATEDOMAIN = 1,
    EXT_SETMAXMEM = 2,
    EXT_POPULATE = 3,
    EXT_GNTTAB_SEED = 4,
    EXT_HVM_PARAM_SET = 5,
    EXT_SAVE_BEGIN = 16,
    EXT_LOGDIRTY = 17,
    EXT_SAVE_END = 18,
    EXT_RESTORE = 19,
};

struct __attribute__((packed)) create_args {
    uint32_t domid, flags;
    uint8_t handle[16];
    uint32_t max_vcpus, emulation_flags, ssidref, cpupool, reserved;
};
_Static_assert(sizeof(struct create_args) == 44, "CREATE is 44 bytes");
struct __attribute__((packed)) domid_u64 { uint32_t domid; uint64_t value; };
struct __attribute__((packed)) seed_args { uint32_t domid; uint64_t console_gfn, xenstore_gfn; };
struct __attribute__((packed)) param_args { uint32_t domid, index; uint64_t value; };

struct request { uint32_t op, a, b, c; };
struct reply { int32_t status; uint32_t length; };

struct __attribute__((packed)) row {
    uint32_t domid, flags;
    uint64_t tot_pages, max_pages, cpu_time;
    uint32_t nr_online_vcpus, max_vcpu_id, ssidref, cpupool;
    uint8_t handle[16];
    uint32_t gpaddr_bits;
    uint8_t pad[4];
};
_Static_assert(sizeof(struct row) == 72, "ROW is 72 bytes");

struct __attribute__((packed)) physinfo {
    uint32_t threads_per_core, cores_per_socket, nr_cpus, max_cpu_id;
    uint32_t nr_nodes, max_node_id, cpu_khz, capabilities;
    uint64_t total_pages, free_pages, max_mfn;
};

struct __attribute__((packed)) vcpu {
    uint8_t online, blocked, running, pad[5];
    uint32_t cpu;
    uint64_t cpu_time;
};
_Static_assert(sizeof(struct vcpu) == 20, "VCPU is 20 bytes");

/* The opaque xc_interface handle: nothing is opened for it; the logger
 * is the caller's (the save helper's reaches libxl). */
#define XCSHIM_MAGIC 0x7873696dU
struct xc_interface_core { uint32_t magic; xentoollog_logger *logger; };

/* Shared between the shim's files; not exported from the .so. */
#define TXSIM_INTERNAL __attribute__((visibility("hidden")))

typedef void row_sink(void *ctx, unsigned int index, const struct row *row);

/* One line on stderr, one write(2): safe in forked children. */
TXSIM_INTERNAL void txsim_say(const char *msg);
/* A classic request; the reply payload goes to out (exactly out_len
 * bytes), or for GETINFOLIST row by row to sink.  status >= 0 or -1
 * with errno. */
TXSIM_INTERNAL int txsim_call(uint32_t op, uint32_t a, uint32_t b, void *out, size_t out_len,
                              row_sink *sink, void *sink_ctx, unsigned int max_rows);
/* An extended request (never repeated on a broken connection). */
TXSIM_INTERNAL int txsim_call_ext(uint32_t op, const void *args, size_t args_len,
                                  void *out, size_t out_len);
/* 0, or -1 with errno=EBADF if xch is not one of the shim's handles. */
TXSIM_INTERNAL int txsim_check_handle(xc_interface *xch);
TXSIM_INTERNAL int txsim_get_physinfo(xc_interface *xch, struct physinfo *p);
/* A message through the handle's logger, as libxc's "xc: error: ..."
 * (on stderr when the handle has none); errno is kept. */
TXSIM_INTERNAL void txsim_log(xc_interface *xch, xentoollog_level level, int errnoval,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Exported for loaders; its address also tells where the shim is. */
int txsim_shim_version(void);
/* The path libxl's compiled-in `path` stands for on the simulated host
 * (under the host's root, in buf: PATH_MAX bytes), or `path` itself. */
TXSIM_INTERNAL const char *txsim_redirect(const char *path, char *buf);
/* connect(2) and bind(2) with a Unix address redirected (xcshim_sockets.c). */
TXSIM_INTERNAL int txsim_w_connect(int fd, const struct sockaddr *addr, socklen_t len);
TXSIM_INTERNAL int txsim_w_bind(int fd, const struct sockaddr *addr, socklen_t len);

#endif
