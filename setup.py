"""Build hooks that setup.cfg cannot express.

Two native pieces are built by the package's own build:

* ``txlibxl._libxl._cffi``: the cffi (API mode) binding and its C side
  (``txlibxl/_libxl/c/txl.c``), compiled against the installed
  ``<libxl.h>`` and linked with libxenlight.
* ``txlibxl.sim._xcshim``: the simulated host's libxenctrl shim, a plain
  shared object (it is never imported as a Python module; it is loaded
  with ``RTLD_GLOBAL`` before libxenlight so that libxl's ``xc_*`` calls
  reach the simulated hypervisor).
"""
from setuptools import Extension, setup

setup(
    cffi_modules=["txlibxl/_libxl/_build.py:ffibuilder"],
    ext_modules=[
        Extension(
            "txlibxl.sim._xcshim",
            sources=[
                "txlibxl/sim/shim/xcshim.c",
                "txlibxl/sim/shim/xcshim_create.c",
                "txlibxl/sim/shim/xcshim_builder.c",
                "txlibxl/sim/shim/xcshim_hvm.c",
                "txlibxl/sim/shim/xcshim_sockets.c",
                "txlibxl/sim/shim/xcshim_redirect.c",
                "txlibxl/sim/shim/xcshim_stream.c",
                "txlibxl/sim/shim/xcshim_save.c",
                "txlibxl/sim/shim/xcshim_restore.c",
            ],
            depends=["txlibxl/sim/shim/xcshim.h", "txlibxl/sim/shim/xcshim_stream.h",
                     "txlibxl/sim/shim/xcshim_stubs.inc"],
            extra_compile_args=["-std=gnu11", "-Wall", "-Werror=implicit-function-declaration"],
            libraries=["dl"],
        )
    ],
)
