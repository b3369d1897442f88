"""
txlibxl's benchmarks: the txlibxl client against a C libxl client
(``tests/cclient``), on the simulated host.  ``python -m benchmarks`` (or
``make bench``) runs them; see ``docs/performance.rst``.
"""
