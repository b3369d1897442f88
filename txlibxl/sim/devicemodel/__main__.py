"""``python -m txlibxl.sim.devicemodel QEMU-ARGS...``: the device model
stand-in libxl runs for an HVM guest (:mod:`txlibxl.sim.devicemodel.standin`)."""
import sys

from .standin import main

sys.exit(main())
