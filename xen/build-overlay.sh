#!/usr/bin/env bash
# Layer the current checkout onto a base image: build txlibxl's cffi
# binding inside the image's chroot (where it will run) and pack a small
# cpio that the kernel unpacks over dom0-base.cpio.
#
#   xen/build-overlay.sh BASEDIR CHECKOUT OUT.cpio
#
# The overlay holds /init (xen/init), /opt/txlibxl (the checkout's
# txlibxl/, tests/, twisted/, xen/, contrib/ and the freshly built binding) and
# /var/lib/realxen/guest.cpio.gz (the guests' busybox initrd, from the
# image's own busybox-static and xen/guest/).  Needs root (chroot).
set -euo pipefail

BASE=${1:?usage: build-overlay.sh BASEDIR CHECKOUT OUT.cpio}
SRC=${2:?usage: build-overlay.sh BASEDIR CHECKOUT OUT.cpio}
OUT=${3:?usage: build-overlay.sh BASEDIR CHECKOUT OUT.cpio}
ROOT=$BASE/rootfs
BUILD=$ROOT/opt/txlibxl
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/realxen-overlay.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

log() { printf '[build-overlay %(%H:%M:%S)T] %s\n' -1 "$*"; }

# The checkout, as it is now (uncommitted changes included).
rm -rf "$BUILD"
mkdir -p "$BUILD"
(cd "$SRC" && tar -c --exclude=__pycache__ --exclude='*.so' --exclude='*.o' --exclude='_trial_temp*' \
    --exclude=txlibxl/_libxl/_cffi.c --exclude=.cache --exclude=dropin.cache \
    txlibxl tests twisted xen contrib setup.py setup.cfg pyproject.toml) | tar -x -C "$BUILD"

log "building the cffi binding in the image's chroot"
if ! chroot "$ROOT" env LC_ALL=C sh -c 'cd /opt/txlibxl && python3 txlibxl/_libxl/_build.py' \
    >"$STAGE/build.log" 2>&1; then
    tail -40 "$STAGE/build.log"
    echo "building the binding failed" >&2
    exit 1
fi
ls "$BUILD"/txlibxl/_libxl/_cffi*.so >/dev/null
rm -f "$BUILD"/txlibxl/_libxl/_cffi.c "$BUILD"/txlibxl/_libxl/_cffi.o
find "$BUILD" -name '*.o' -delete
# The binding loads in the chroot: a missing symbol shows up here, not in dom0.
chroot "$ROOT" sh -c 'cd /opt/txlibxl && python3 -c "from txlibxl._libxl import loader; loader.load()"'

# The guests' initrd.
G=$STAGE/guest
mkdir -p "$G"/bin "$G"/sbin "$G"/proc "$G"/dev "$G"/sys "$G"/tmp
cp "$ROOT"/bin/busybox "$G"/bin/busybox
for applet in sh mount sleep cat echo; do ln -s busybox "$G/bin/$applet"; done
cp "$SRC"/xen/guest/init "$G"/init
cp "$SRC"/xen/guest/poweroff "$SRC"/xen/guest/reboot "$G"/sbin/
chmod 755 "$G"/init "$G"/sbin/*
mknod -m 600 "$G"/dev/console c 5 1
mknod -m 666 "$G"/dev/null c 1 3
O=$STAGE/overlay
mkdir -p "$O"/var/lib/realxen "$O"/opt
(cd "$G" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9) >"$O"/var/lib/realxen/guest.cpio.gz

cp -a "$BUILD" "$O"/opt/txlibxl
install -m 755 "$SRC"/xen/init "$O"/init
(cd "$O" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$OUT"
log "done: $(du -h "$OUT" | cut -f1) overlay"
