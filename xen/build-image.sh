#!/usr/bin/env bash
# Build the cached base image of the real-Xen tests into OUTDIR.
#
#   xen/build-image.sh OUTDIR
#
# Environment: DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR (URLs; xen/runner.py
# reads them from the host's apt sources), DEBIAN_SUITE (default bookworm).
#
# OUTDIR receives:
#   xen.elf          the hypervisor (xen-hypervisor-4.17-amd64), multiboot ELF
#   vmlinuz          the dom0-capable kernel (linux-image-amd64, not cloud);
#                    the PV/PVH guests boot the same kernel
#   rootfs/          the bookworm chroot: dom0's userland plus the compiler,
#                    kept so that each run builds txlibxl's binding in it
#   dom0-base.cpio   rootfs without the build tools, plus the Xen kernel
#                    modules, as an uncompressed newc cpio (the dom0 initrd)
#   manifest.txt     the versions of what went in
# It is written to OUTDIR.tmp and renamed at the end, so a half-built image
# is never taken for a cached one.  Needs root (debootstrap, chroot).
set -euo pipefail

OUT=${1:?usage: build-image.sh OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:?set DEBIAN_MIRROR}
SECURITY=${DEBIAN_SECURITY_MIRROR:?set DEBIAN_SECURITY_MIRROR}
TMP=$OUT.tmp
ROOT=$TMP/rootfs

log() { printf '[build-image %(%H:%M:%S)T] %s\n' -1 "$*"; }

cleanup_mounts() {
    for m in proc sys dev/pts dev; do
        mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m" || true
    done
}
trap cleanup_mounts EXIT

rm -rf "$TMP"
mkdir -p "$TMP"

log "debootstrap $SUITE (minbase)"
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$TMP/debootstrap.log" 2>&1 \
    || { tail -30 "$TMP/debootstrap.log"; exit 1; }

cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
# No daemon may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod +x "$ROOT/usr/sbin/policy-rc.d"
# Keep documentation out of the image.
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF

mount -t proc proc "$ROOT/proc"
mount -t sysfs sys "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"

in_root() { chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }

PACKAGES=$(sed -e 's/#.*//' "$HERE/packages.txt" | xargs)
log "apt-get install: $PACKAGES"
in_root apt-get update -qq
in_root apt-get -y -qq upgrade >"$TMP/apt.log" 2>&1 || { tail -30 "$TMP/apt.log"; exit 1; }
in_root apt-get -y -qq install --no-install-recommends $PACKAGES >>"$TMP/apt.log" 2>&1 \
    || { tail -30 "$TMP/apt.log"; exit 1; }

# The hypervisor and the kernel are unpacked, not installed: installing
# them would run initramfs-tools and the bootloader hooks for nothing.
KPKG=$(in_root apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
[ -n "$KPKG" ] || { echo "cannot find the kernel linux-image-amd64 depends on" >&2; exit 1; }
case $KPKG in *cloud*) echo "$KPKG is the cloud flavour: it has no dom0 support" >&2; exit 1;; esac
log "downloading $KPKG and xen-hypervisor-4.17-amd64"
mkdir -p "$ROOT/tmp/debs"
chmod 777 "$ROOT/tmp/debs"
(cd "$ROOT/tmp/debs" && chroot "$ROOT" sh -c "cd /tmp/debs && apt-get download -qq $KPKG xen-hypervisor-4.17-amd64")
mkdir -p "$TMP/debs-x"
XENVER=$(dpkg-deb -f "$ROOT"/tmp/debs/xen-hypervisor-4.17-amd64_*.deb Version)
for deb in "$ROOT"/tmp/debs/*.deb; do dpkg-deb -x "$deb" "$TMP/debs-x"; done
KVER=${KPKG#linux-image-}
zcat "$TMP"/debs-x/boot/xen-4.17-amd64.gz >"$TMP/xen.elf"
cp "$TMP/debs-x/boot/vmlinuz-$KVER" "$TMP/vmlinuz"
grep -q '^CONFIG_XEN_DOM0=y' "$TMP/debs-x/boot/config-$KVER" \
    || { echo "$KPKG has no CONFIG_XEN_DOM0=y" >&2; exit 1; }

# Only the Xen driver modules go into dom0 (evtchn, gntdev, gntalloc,
# privcmd, xenfs, and the backends in drivers/xen).
MODROOT=$ROOT/tmp/modroot  # inside the chroot: its depmod does the work
mkdir -p "$MODROOT/lib/modules/$KVER/kernel/drivers"
cp -a "$TMP/debs-x/lib/modules/$KVER/kernel/drivers/xen" "$MODROOT/lib/modules/$KVER/kernel/drivers/"
cp "$TMP"/debs-x/lib/modules/"$KVER"/modules.{order,builtin,builtin.modinfo} "$MODROOT/lib/modules/$KVER/" 2>/dev/null || true
chroot "$ROOT" depmod -b /tmp/modroot "$KVER"
# bookworm is merged-/usr: /lib is a symlink that this second archive must
# not replace with a directory (the kernel would unlink the symlink).
mkdir -p "$MODROOT/usr/lib"
mv "$MODROOT/lib/modules" "$MODROOT/usr/lib/modules"
rmdir "$MODROOT/lib"
mkdir -p "$MODROOT/var/lib/realxen"
cp "$TMP/vmlinuz" "$MODROOT/var/lib/realxen/vmlinuz"
echo "$KVER" >"$MODROOT/var/lib/realxen/kernel-release"

cleanup_mounts
rm -rf "$ROOT/tmp/debs" "$TMP/debs-x"
in_root apt-get clean

{
    echo "suite: $SUITE"
    echo "kernel: $KPKG"
    chroot "$ROOT" dpkg-query -W -f '${Package} ${Version}\n' \
        xen-utils-4.17 libxenmisc4.17 qemu-system-xen seabios python3 python3-twisted python3-cffi python3-txaio busybox-static
    echo "hypervisor: $XENVER"
} >"$TMP/manifest.txt"

# dom0's initrd: the chroot minus what only the build needs, then the
# modules and the guest kernel.  hvmloader stays (not the PV shim), and of
# the device model's data only the x86 firmware and the legacy (non-EFI)
# option ROMs SeaBIOS loads; gstreamer's iso-codes tables go.
# Uncompressed: gunzip under TCG costs more than reading the bigger archive.
log "packing dom0-base.cpio"
(cd "$ROOT" && find . \
    \( -path ./usr/include -o -path ./usr/lib/gcc -o -path ./usr/libexec/gcc \
       -o -path ./usr/share/doc -o -path ./usr/share/man -o -path ./usr/share/locale \
       -o -path ./usr/share/info -o -path ./var/cache/apt -o -path ./var/lib/apt/lists \
       -o -path ./usr/lib/x86_64-linux-gnu/perl -o -path ./usr/share/perl \
       -o -path ./usr/lib/python3/dist-packages/twisted/test \
       -o -path './usr/lib/x86_64-linux-gnu/*.a' -o -path './usr/lib/x86_64-linux-gnu/lib*san.so*' \
       -o -path './usr/lib/x86_64-linux-gnu/libgprofng*' -o -path './usr/bin/x86_64-linux-gnu-*' \
       -o -path './usr/lib/python3.11/config-3.11-*' -o -path './usr/lib/udev/hwdb.*' \
       -o -path ./boot -o -path ./opt/txlibxl -o -path './tmp/*' \
       -o -path ./usr/share/icons -o -path ./usr/share/applications \
       -o -path './usr/share/qemu/openbios-*' -o -path ./usr/share/qemu/skiboot.lid \
       -o -path ./usr/share/qemu/slof.bin -o -path ./usr/share/qemu/hppa-firmware.img \
       -o -path './usr/share/qemu/opensbi-*' -o -path ./usr/share/qemu/palcode-clipper \
       -o -path './usr/share/qemu/s390-*' -o -path './usr/lib/ipxe/qemu/efi-*' \
       -o -path ./usr/lib/xen-4.17/boot/xen-shim -o -path ./usr/share/iso-codes \
       -o -path ./usr/share/xml/iso-codes \) \
    -prune -o -print \
    | LC_ALL=C sort | cpio -o -H newc --quiet) >"$TMP/dom0-base.cpio"
(cd "$MODROOT" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >>"$TMP/dom0-base.cpio"
rm -rf "$MODROOT"

rm -rf "$OUT"
mv "$TMP" "$OUT"
log "done: $(du -sh "$OUT/dom0-base.cpio" | cut -f1) dom0-base.cpio, kernel $KVER"
