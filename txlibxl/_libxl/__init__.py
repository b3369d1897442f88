"""
txlibxl's binding to libxenlight: the only code in txlibxl that touches
cffi objects or C memory.  It knows no reactor.

* :mod:`txlibxl._libxl._build`: the cffi builder (API mode) of the
  compiled module ``txlibxl._libxl._cffi``.
* :mod:`txlibxl._libxl.loader`: imports that module on first use only,
  never when txlibxl is imported (so that a test fixture can preload the
  simulated host's libxenctrl shim before libxenlight is loaded).
* :mod:`txlibxl._libxl.binding`: :class:`~txlibxl._libxl.binding.Ctx`,
  one ``libxl_ctx`` with its hooks, callbacks and calls.

Importing this package loads nothing native.
"""
