# The two commands a newcomer runs are `make demo` and `make test` (see README.md).
# Each one installs what it needs: Debian packages, the virtualenv, the native build.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
TRIAL   = $(PY) -m twisted.trial
REACTORS ?= select poll epoll asyncio
TESTS  ?= tests
# Two trial workers (the machines it runs on have two CPUs); the asyncio
# reactor runs in one process: trial's workers die under it.
TRIAL_JOBS ?= -j2
APT_PACKAGES = libxen-dev libxenmisc4.17 xenstore-utils xen-utils-4.17 gcc make python3-dev python3-venv

.PHONY: demo test check docs build deps venv clean bench test-xen bench-smoke

# The plugin on a simulated host while the demo scenario plays: each event
# is printed as a JSON line as it happens (twistd's own log goes to
# .demo.log).  contrib/demo.py plays the scenario through the host's control
# socket, so it stops as soon as the scenario is over and its records are out.
demo: build
	@echo "twistd -n libxl-events --simulate --disk-eject --output -   (playing the demo scenario; stops when it is over)"
	@$(PY) contrib/demo.py --twistd $(VENV)/bin/twistd --logfile .demo.log

test: build docs check test-xen

check: build .stamp-check-deps
	@set -e; for r in $(REACTORS); do \
	  case $$r in asyncio) jobs=;; *) jobs="$(TRIAL_JOBS)";; esac; \
	  echo "=== trial $$jobs --reactor=$$r $(TESTS)"; \
	  $(TRIAL) $$jobs --reactor=$$r $(TESTS); \
	done

docs: build
	$(VENV)/bin/sphinx-build -q -E -W --keep-going -b html docs docs/_build/html

# An editable install: the checkout is on the venv's sys.path (a .pth file;
# setup.cfg's package_dir makes setuptools choose that), so Python changes
# need no reinstall and twistd finds twisted/plugins/txlibxl_events.py.  Only
# what the native parts are built from (or the metadata) reinstalls it.
NATIVE_SOURCES = setup.py setup.cfg pyproject.toml txlibxl/_libxl/_build.py \
	$(wildcard txlibxl/_libxl/c/*.[ch] txlibxl/sim/shim/*.[ch] txlibxl/sim/shim/*.inc)

build: .stamp-build

.stamp-build: .stamp-venv $(NATIVE_SOURCES)
	$(PY) -m pip install -q --no-build-isolation -e '.[test,docs,bench,amqp]'
	touch $@

.stamp-venv: .stamp-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cffi
	touch $@

# Debian packages: libxenlight and its headers, the xenstore CLIs the
# conformance tests use, the real xl (xen-utils-4.17: the second toolstack
# the simulator is tested against; without a hypervisor its postinst
# starts nothing), and a C compiler for the binding and the shim.
# No recommends: xen-utils-4.17 would bring QEMU and GRUB.
.stamp-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	touch $@

# What the suite needs beyond the build: systemd-analyze (the systemd unit's
# exposure, tests/packaging/test_systemd_unit.py), headless Chromium (the
# docs' layout, tests/docs/test_layout.py; the fleet's live page) and
# RabbitMQ (tests/fleet runs real nodes on loopback).  The packaged RabbitMQ
# service is not used: where installing it started one (systemd), it is
# stopped and disabled, since it would listen on every interface.  If they
# cannot be installed, those tests are skipped and say why.
CHECK_APT_PACKAGES = systemd chromium rabbitmq-server

.stamp-check-deps:
	@missing=$$(for p in $(CHECK_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; } \
	    || echo "could not install $$missing"; \
	  if command -v systemctl >/dev/null && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then \
	    echo "stopping the packaged rabbitmq-server service (the tests run their own nodes on loopback)"; \
	    $$SUDO systemctl disable --now rabbitmq-server || true; \
	  fi; \
	fi; \
	touch $@

# Real Xen 4.17 and a Debian dom0 under QEMU (docs/real-xen.rst): the base
# image is cached in .cache/xen, the checkout is layered on per run.
XEN_APT_PACKAGES = qemu-system-x86 debootstrap cpio

test-xen: .stamp-xen-deps
	$(PYTHON) xen/runner.py

# If they cannot be installed, xen/runner.py reports the tests SKIPPED and why.
.stamp-xen-deps:
	@missing=$$(for p in $(XEN_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; } \
	    && touch $@ || echo "could not install $$missing"; \
	else touch $@; fi

# The benchmarks (docs/performance.rst): a full run rewrites
# benchmarks/results/latest.json and the docs' table and plots; the smoke
# run (tiny sizes, what CI runs) only checks that they still work.
bench: build
	$(PY) -m benchmarks

bench-smoke: build
	$(PY) -m benchmarks --smoke

clean:
	rm -rf $(VENV) build *.egg-info .stamp-* docs/_build _trial_temp*
	find . -name '*.so' -path './txlibxl/*' -delete
