"""
The cffi builder of txlibxl's libxl binding (API mode).

``ffibuilder`` compiles ``txlibxl._libxl._cffi`` against the installed
``<libxl.h>`` and links it with libxenlight, libxlutil (xl's disk spec
parser), libxentoollog and libxenstore.  setup.py names it in ``cffi_modules``; to build it alone::

    python txlibxl/_libxl/_build.py          # writes txlibxl/_libxl/_cffi*.so

The C side is real C, compiled with the module: ``c/txl.c``,
``c/txl_capture.c`` and ``c/txl_config.c`` (what lives in C, and why:
their opening comments) and ``c/txl.h``, which pins
``LIBXL_API_VERSION`` and is the module's whole C preamble.  The cdef
here declares the part of libxl and libxenstore the binding uses, then
takes txlibxl's own declarations from ``txl.h`` (:func:`txl_declarations`),
so the structs and prototypes the Python side uses are written once.

The ``libxl_error`` constants are read from the installed
``_libxl_types.h`` at build time, so the compiled module exposes exactly
the codes of the headers it was built against (``lib.ERROR_*``).
"""
from __future__ import annotations

import os
import re
from typing import List

from cffi import FFI

INCLUDE_DIR = os.environ.get("TXLIBXL_INCLUDE_DIR", "/usr/include")

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(os.path.dirname(HERE))

#: The C side (``txl.c``, ``txl.h``), relative to the project root: the
#: compiler runs there, both under setup.py and in ``compile()`` below.
C_DIR = os.path.join("txlibxl", "_libxl", "c")

#: The C side's sources, in ``C_DIR``: the hooks, logger and accessors;
#: the error capture; the helpers for building domains.
C_SOURCES = ("txl.c", "txl_queue.c", "txl_capture.c", "txl_config.c")

#: ``txl.h``, to read its declarations from wherever this runs.
TXL_H = os.path.join(HERE, "c", "txl.h")


def libxl_error_names(include_dir: str = INCLUDE_DIR) -> List[str]:
    """
    The ``ERROR_*`` names of the ``libxl_error`` enum in the installed
    ``_libxl_types.h`` (generated from ``libxl_types.idl``), in order.
    """
    path = os.path.join(include_dir, "_libxl_types.h")
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"txlibxl's binding is built against libxenlight's headers, and {path} is missing. "
            "On Debian and Ubuntu: apt-get install libxen-dev. "
            "Headers elsewhere: set TXLIBXL_INCLUDE_DIR to the directory holding libxl.h."
        ) from None
    match = re.search(r"typedef enum libxl_error \{(.*?)\} libxl_error;", text, re.S)
    if match is None:
        raise RuntimeError(f"no libxl_error enum in {include_dir}/_libxl_types.h")
    return re.findall(r"^\s*(ERROR_\w+)\s*=", match.group(1), re.M)


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
typedef struct { int devid; ...; } libxl_device_nic;
typedef struct { ...; } libxl_domain_config;
typedef struct { int checkpointed_stream; uint32_t stream_version; ...; } libxl_domain_restore_params;
typedef struct { ...; } libxl_asyncprogress_how;
typedef struct { ...; } libxl_bitmap;
typedef int... libxl_console_type;

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
#define LIBXL_CONSOLE_TYPE_SERIAL ...
#define LIBXL_CONSOLE_TYPE_PV ...
#define LIBXL_CONSOLE_TYPE_VUART ...
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

/* libxl: building and changing domains.  Configurations cross as libxl's
 * own JSON, so no struct's fields are declared here. */
void libxl_domain_config_init(libxl_domain_config *p);
void libxl_domain_config_dispose(libxl_domain_config *p);
char *libxl_domain_config_to_json(libxl_ctx *ctx, libxl_domain_config *p);
int libxl_domain_config_from_json(libxl_ctx *ctx, libxl_domain_config *p, const char *s);
char *libxl_device_disk_to_json(libxl_ctx *ctx, libxl_device_disk *p);
int libxl_device_disk_from_json(libxl_ctx *ctx, libxl_device_disk *p, const char *s);
void libxl_device_nic_init(libxl_device_nic *p);
void libxl_device_nic_dispose(libxl_device_nic *p);
char *libxl_device_nic_to_json(libxl_ctx *ctx, libxl_device_nic *p);
int libxl_device_nic_from_json(libxl_ctx *ctx, libxl_device_nic *p, const char *s);
void libxl_bitmap_init(libxl_bitmap *map);
void libxl_bitmap_dispose(libxl_bitmap *map);
int libxl_domain_create_new(libxl_ctx *ctx, libxl_domain_config *d_config, uint32_t *domid,
                            const libxl_asyncop_how *ao_how,
                            const libxl_asyncprogress_how *aop_console_how);
void libxl_domain_restore_params_init(libxl_domain_restore_params *p);
void libxl_domain_restore_params_dispose(libxl_domain_restore_params *p);
int libxl_domain_create_restore(libxl_ctx *ctx, libxl_domain_config *d_config,
                                uint32_t *domid, int restore_fd, int send_back_fd,
                                const libxl_domain_restore_params *params,
                                const libxl_asyncop_how *ao_how,
                                const libxl_asyncprogress_how *aop_console_how);
int libxl_domain_suspend(libxl_ctx *ctx, uint32_t domid, int fd, int flags,
                         const libxl_asyncop_how *ao_how);
int libxl_domain_resume(libxl_ctx *ctx, uint32_t domid, int suspend_cancel,
                        const libxl_asyncop_how *ao_how);
#define LIBXL_SUSPEND_LIVE ...
int libxl_retrieve_domain_configuration(libxl_ctx *ctx, uint32_t domid,
                                        libxl_domain_config *d_config,
                                        const libxl_asyncop_how *ao_how);
int libxl_device_disk_add(libxl_ctx *ctx, uint32_t domid, libxl_device_disk *disk,
                          const libxl_asyncop_how *ao_how);
int libxl_device_disk_remove(libxl_ctx *ctx, uint32_t domid, libxl_device_disk *disk,
                             const libxl_asyncop_how *ao_how);
int libxl_cdrom_insert(libxl_ctx *ctx, uint32_t domid, libxl_device_disk *disk,
                       const libxl_asyncop_how *ao_how);
int libxl_device_nic_add(libxl_ctx *ctx, uint32_t domid, libxl_device_nic *nic,
                         const libxl_asyncop_how *ao_how);
int libxl_device_nic_remove(libxl_ctx *ctx, uint32_t domid, libxl_device_nic *nic,
                            const libxl_asyncop_how *ao_how);
int libxl_devid_to_device_nic(libxl_ctx *ctx, uint32_t domid, int devid, libxl_device_nic *nic);
int libxl_mac_to_device_nic(libxl_ctx *ctx, uint32_t domid, const char *mac,
                            libxl_device_nic *nic);
int libxl_set_vcpuonline(libxl_ctx *ctx, uint32_t domid, libxl_bitmap *cpumap,
                         const libxl_asyncop_how *ao_how);
int libxl_set_memory_target(libxl_ctx *ctx, uint32_t domid, int64_t target_memkb,
                            int relative, int enforce);
int libxl_get_memory_target(libxl_ctx *ctx, uint32_t domid, uint64_t *out_target);
int libxl_domain_rename(libxl_ctx *ctx, uint32_t domid, const char *old_name,
                        const char *new_name);
int libxl_console_get_tty(libxl_ctx *ctx, uint32_t domid, int cons_num,
                          libxl_console_type type, char **path);

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

/* libc's, as txl.h's timeout trampolines take it (by value) */
struct timeval { long tv_sec; long tv_usec; ...; };

/* txlibxl's C side: c/txl.h, between its TXL_CDEF markers */
@TXL_H@

/* Python, called from the C side (txl.c, hence "Python+C": not static) */
extern "Python+C" void txl_py_log(void *user, int level, const char *text);
extern "Python+C" int txl_py_fd_register(void *user, int fd, void **out, short events,
                                         void *for_libxl);
extern "Python+C" int txl_py_fd_modify(void *user, int fd, void **update, short events);
extern "Python+C" void txl_py_fd_deregister(void *user, int fd, void *registration);
extern "Python+C" int txl_py_timeout_register(void *user, void **out, double deadline,
                                              void *for_libxl);
extern "Python+C" int txl_py_timeout_modify(void *user, void **update, double deadline,
                                            int asap);
extern "Python+C" void txl_py_timeout_deregister(void *user, void *registration);
extern "Python+C" void txl_py_disaster(void *user, int type, const char *msg, int errnoval);
extern "Python+C" void txl_py_child_forked(void *user, int pid);
extern "Python+C" int txl_py_event_predicate(const libxl_event *event, void *user);
"""


def txl_declarations(header: str = TXL_H) -> str:
    """
    The declarations of txlibxl's C side for the cdef: the text of
    C{header} (``c/txl.h``) between its ``TXL_CDEF_BEGIN`` and
    ``TXL_CDEF_END`` markers.
    """
    with open(header) as f:
        text = f.read()
    match = re.search(r"/\* TXL_CDEF_BEGIN \*/\n(.*?)/\* TXL_CDEF_END \*/", text, re.S)
    if match is None:
        raise RuntimeError(f"no TXL_CDEF_BEGIN ... TXL_CDEF_END section in {header}")
    return match.group(1)


def make_builder(include_dir: str = INCLUDE_DIR) -> FFI:
    """
    The FFI builder for ``txlibxl._libxl._cffi`` against the headers in
    C{include_dir}.
    """
    errors = libxl_error_names(include_dir)
    builder = FFI()
    cdef = CDEF.replace("@TXL_H@", txl_declarations())
    cdef = cdef.replace("@ERROR_DEFINES@", "\n".join(f"#define {name} ..." for name in errors))
    builder.cdef(cdef)
    builder.set_source(
        "txlibxl._libxl._cffi",
        '#include "txl.h"\n',
        sources=[os.path.join(C_DIR, name) for name in C_SOURCES],
        depends=[os.path.join(C_DIR, "txl.h")],
        libraries=["xenlight", "xlutil", "xentoollog", "xenstore"],
        include_dirs=[C_DIR] + ([include_dir] if include_dir != "/usr/include" else []),
        # -fvisibility=hidden: txl.c's functions link into the module but
        # stay out of its dynamic symbol table, as when they were static
        # (the module init function is exported explicitly).
        extra_compile_args=[
            "-std=gnu11",
            "-Wall",
            "-Wextra",
            "-Werror=implicit-function-declaration",
            "-fvisibility=hidden",
        ],
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=PROJECT, verbose=True)
