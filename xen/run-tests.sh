#!/bin/bash
# Runs in dom0 (from xen/init, under its time limit): the real-Xen trial
# tests, with one marker line per test on the console (xen/dom0_trial.py).
cd /opt/txlibxl || exit 98
export PYTHONPATH=/opt/txlibxl
echo "REALXEN-VERSIONS $(python3 -c 'import sys, twisted, cffi, txaio; print("python", sys.version.split()[0], "twisted", twisted.__version__, "cffi", cffi.__version__, "txaio", txaio.__version__)')"
echo "REALXEN-XEN $(xl info | sed -n 's/^\(xen_version\|virt_caps\|total_memory\|free_memory\) *: */\1=/p' | tr '\n' ' ')"
# Every module of tests/realxen that runs in dom0 (xen/dom0_trial.py finds
# them; the simulator-fidelity and runner tests say they run on the host),
# or the tests the runner's --tests named.  Each line gets dom0's uptime.
set -o pipefail
python3 -u /opt/txlibxl/xen/dom0_trial.py ${REALXEN_TESTS:-} 2>&1 | /opt/txlibxl/xen/dom0-stamp
