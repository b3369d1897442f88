"""
``python -m tests.sim.save_in_process SHIM DOMID FILE``: save a domain of a
simulated host with libxenlight loaded the way txlibxl loads it in
process: the shim with ``RTLD_GLOBAL`` first, then libxenlight, and no
``LD_PRELOAD`` anywhere (the host's other variables in the environment).
So the save helper libxl runs only meets the simulated host if the shim
hands itself down.  ``libxl_domain_suspend`` is called synchronously (libxl
runs its own event loop); prints ``rc=N``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

XTL_ERROR = 8
LIBXL_VERSION = 0


def main(argv) -> int:
    shim_path, domid, path = argv[1], int(argv[2]), argv[3]
    if "LD_PRELOAD" in os.environ:
        print("LD_PRELOAD must not be set", file=sys.stderr)
        return 2
    shim = ctypes.CDLL(shim_path, mode=ctypes.RTLD_GLOBAL)
    libxl = ctypes.CDLL(ctypes.util.find_library("xenlight") or "libxenlight.so", mode=ctypes.RTLD_GLOBAL)
    toollog = ctypes.CDLL(ctypes.util.find_library("xentoollog") or "libxentoollog.so")
    libc = ctypes.CDLL(None)
    if shim.txsim_redirect_paths(os.fsencode(os.environ["TXLIBXL_SIM_ROOT"])) != 0:
        print("cannot redirect libxl's paths", file=sys.stderr)
        return 2
    libc.fdopen.restype = ctypes.c_void_p
    toollog.xtl_createlogger_stdiostream.restype = ctypes.c_void_p
    toollog.xtl_createlogger_stdiostream.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint]
    logger = toollog.xtl_createlogger_stdiostream(libc.fdopen(2, b"w"), XTL_ERROR, 0)
    ctx = ctypes.c_void_p()
    libxl.libxl_ctx_alloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    if libxl.libxl_ctx_alloc(ctypes.byref(ctx), LIBXL_VERSION, 0, logger) != 0:
        print("libxl_ctx_alloc failed", file=sys.stderr)
        return 2
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    libxl.libxl_domain_suspend.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    rc = libxl.libxl_domain_suspend(ctx, domid, fd, 0, None)
    os.close(fd)
    libxl.libxl_ctx_free.argtypes = [ctypes.c_void_p]
    libxl.libxl_ctx_free(ctx)
    print("rc=%d" % rc)
    sys.stdout.flush()
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
