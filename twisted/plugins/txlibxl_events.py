"""
The ``twistd libxl-events`` plugin: names :mod:`txlibxl.daemon.tap`, imports
nothing else (twistd imports every plugin file to list them).
"""
from twisted.application.service import ServiceMaker

libxl_events = ServiceMaker(
    "txlibxl libxl-events",
    "txlibxl.daemon.tap",
    "Publish the lifecycle events of this Xen host's domains (JSON lines, Server-Sent Events).",
    "libxl-events",
)
