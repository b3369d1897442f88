#!/bin/bash
# Runs in dom0 (from xen/init, under its time limit): the real-Xen trial
# tests, with one marker line per test on the console (xen/dom0_trial.py).
cd /opt/txlibxl || exit 98
export PYTHONPATH=/opt/txlibxl
echo "REALXEN-VERSIONS $(python3 -c 'import sys, twisted, cffi, txaio; print("python", sys.version.split()[0], "twisted", twisted.__version__, "cffi", cffi.__version__, "txaio", txaio.__version__)')"
echo "REALXEN-XEN $(xl info | sed -n 's/^\(xen_version\|virt_caps\|total_memory\|free_memory\) *: */\1=/p' | tr '\n' ' ')"
# The simulator-fidelity tests run on the host (make check), not here.
exec python3 /opt/txlibxl/xen/dom0_trial.py ${REALXEN_TESTS:-tests.realxen.test_lifecycle tests.realxen.test_twistd_events}
