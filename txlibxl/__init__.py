"""txlibxl: libxenlight's event machinery in the Twisted reactor."""

__version__ = "0.1.0.dev0"
