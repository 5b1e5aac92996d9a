#!/bin/sh
# Manual end-to-end check of smelt-init's stage 1 under QEMU (TCG),
# without smelt: builds with host tools a squashfs root (the debug init as
# /init, /etc/hostname, a dir skeleton), a stage-1 initramfs (the same
# init, /etc/smelt/stage1.json, a module subset with depmod's files), and
# boots it with -kernel/-initrd against:
#   iso    the root on an ISO 9660 CD (-cdrom, machine pc: ata_piix, sr_mod)
#   gpt    the root in partition 2 of a GPT disk on virtio-blk
#   flip   the same disk with one byte of the image flipped: must refuse
#   usb    the ISO as a USB stick on xHCI (usb-storage)
#   sata   the ISO on a q35 machine's CD drive (AHCI, as on real hardware)
#   none   no medium at all: must say what it tried and saw, after 30 s
#
#   images/init/tests/stage1-qemu.sh KERNEL MODULES_DIR [CASE…]  (as root)
#
# KERNEL is a vmlinuz, MODULES_DIR its /lib/modules/RELEASE (no depmod
# output needed; modinfo resolves dependencies). With the kernel's
# config-RELEASE beside KERNEL the needed drivers' settings are printed
# first. A case whose drivers the kernel lacks is reported as SKIP.
# EXTRA_APPEND adds to the kernel command line (e.g. smelt.debug).
# Needs qemu-system-x86_64, mksquashfs, xorriso, sgdisk, depmod, modinfo,
# cpio, gzip, python3; runc and a static busybox for the mount-table check.
set -eu
KERNEL=$1; MODS=$2; shift 2
CASES=${*:-iso gpt flip usb sata none}
KR=$(basename "$MODS")
HERE=$(cd "$(dirname "$0")/../../.." && pwd)
(cd "$HERE" && cargo build -q -p smelt-init)
INIT=$HERE/target/x86_64-unknown-linux-gnu/debug/init
W=$(mktemp -d); QPID=
cleanup() { [ -n "$QPID" ] && kill "$QPID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT INT TERM

CONFIG=$(dirname "$KERNEL")/config-$KR
if [ -f "$CONFIG" ]; then
  echo "=== kernel config ($CONFIG)"
  for o in SQUASHFS OVERLAY_FS ISO9660_FS BLK_DEV_LOOP BLK_DEV_SR ATA_PIIX SATA_AHCI BLK_DEV_SD \
           VIRTIO_PCI VIRTIO_BLK SCSI_VIRTIO BLK_DEV_NVME USB_XHCI_PCI USB_STORAGE USB_UAS EFI_PARTITION; do
    v=$(sed -n "s/^CONFIG_$o=//p" "$CONFIG"); printf '  %-14s %s\n' "$o" "${v:-missing}"
  done
fi

# --- the squashfs root
R=$W/root
mkdir -p "$R"/dev "$R"/proc "$R"/sys "$R"/run "$R"/tmp "$R"/etc "$R"/sbin "$R"/var/log "$R"/containers
cp "$INIT" "$R"/init; ln -s ../init "$R"/sbin/init
echo stage1box > "$R"/etc/hostname
# With runc and a static busybox on the host, an onboot container without
# a pid namespace prints PID 1's mount table: the overlay root, the
# stage-1 mounts under /.smelt, one /proc /sys /dev each (moved in by
# stage 1, EBUSY for the main init), the main init's own /run.
RUNC=$(command -v runc || true); BB=$(command -v busybox || true)
if [ -n "$RUNC" ] && [ -n "$BB" ] && file -L "$BB" | grep -q 'statically linked'; then
  mkdir -p "$R"/usr/bin; cp "$RUNC" "$R"/usr/bin/runc
  for l in $(ldd "$RUNC" | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$l")"; cp "$l" "$R$l"; done
  C=$R/containers/onboot/000-mounts; mkdir -p "$C"/rootfs/bin "$C"/rootfs/proc "$C"/rootfs/dev "$C"/rootfs/sys
  cp "$BB" "$C"/rootfs/bin/busybox; for a in sh cat ls echo; do ln -s busybox "$C"/rootfs/bin/$a; done
  (cd "$W" && runc spec)
  python3 - "$W"/config.json "$C"/config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c['process']['terminal'] = False
c['process']['args'] = ['/bin/sh', '-c',
    'cat /proc/1/mounts; ls /proc/1/root/.smelt/ro/etc/hostname; echo mounts-done']
for k in c['process']['capabilities']:
    c['process']['capabilities'][k] += ['CAP_SYS_PTRACE']
c['linux']['namespaces'] = [n for n in c['linux']['namespaces'] if n['type'] != 'pid']
json.dump(c, open(sys.argv[2], 'w'))
PY
  CHECK=1
else
  echo "(no runc or static busybox on the host: the mount table is not checked)"; CHECK=
fi
mksquashfs "$R" "$W"/root.squashfs -noappend -quiet -all-root -comp xz >/dev/null
SIZE=$(stat -c %s "$W"/root.squashfs)
SHA=$(sha256sum "$W"/root.squashfs | cut -d' ' -f1)
UUID=5ae1f0c0-57e1-4c1a-9b5e-00000000000b

# --- the stage-1 initramfs
I=$W/initramfs
mkdir -p "$I"/etc/smelt "$I"/proc "$I"/sys "$I"/dev "$I"/run "$I"/sysroot "$I"/lib/modules/"$KR"
cp "$INIT" "$I"/init
# The contract's list, plus virtio_pci: virtio_blk does not depend on it,
# yet without it (=m in Debian's kernels) no virtio device exists.
MODULES="squashfs overlay isofs loop sr_mod cdrom ata_piix ahci sd_mod usb_storage uas xhci_pci virtio_blk virtio_scsi nvme virtio_pci"
python3 - "$MODS" "$I/lib/modules/$KR" $MODULES > "$W"/modules.txt <<'PY'
import os, shutil, subprocess, sys
mods, out, want = sys.argv[1], sys.argv[2], sys.argv[3:]
norm = lambda n: n.replace('-', '_')
index = {}
for d, _, fs in os.walk(mods):
    for f in fs:
        if '.ko' in f:
            index[norm(f.split('.ko')[0])] = os.path.join(d, f)
builtin = {norm(os.path.basename(l.strip()).split('.ko')[0])
           for l in open(os.path.join(mods, 'modules.builtin'))}
done, missing, built = set(), [], []
def add(n):
    n = norm(n)
    if n in done: return
    done.add(n)
    if n in builtin: built.append(n); return
    if n not in index: missing.append(n); return
    deps = subprocess.run(['modinfo', '-F', 'depends', index[n]], capture_output=True, text=True).stdout.strip()
    for d in filter(None, deps.split(',')): add(d)
    rel = os.path.relpath(index[n], mods)
    os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
    shutil.copy(index[n], os.path.join(out, rel))
for w in want: add(w)
print('builtin:', ' '.join(built) or '-')
print('missing:', ' '.join(missing) or '-')
print('copied:', len([n for n in done if n not in builtin and n not in missing]))
PY
for f in modules.builtin modules.order modules.builtin.modinfo; do
  [ -f "$MODS/$f" ] && cp "$MODS/$f" "$I/lib/modules/$KR/"
done
depmod -b "$I" "$KR"
echo "=== modules for $KR"; sed 's/^/  /' "$W"/modules.txt
json_modules=$(printf '"%s",' $MODULES | sed 's/,$//')
cat > "$I"/etc/smelt/stage1.json <<EOF
{
  "schema": "smelt.stage1/v1",
  "root": { "sha256": "$SHA", "size": $SIZE, "fstype": "squashfs" },
  "locate": [
    { "iso": { "volume_id": "SMELT_TEST", "path": "/smelt/root.squashfs" } },
    { "partition": { "partuuid": "$UUID", "partlabel": "smelt-root-a" } }
  ],
  "modules": [$json_modules],
  "timeout_secs": 30
}
EOF
mknod "$I"/dev/console c 5 1
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1 > "$W"/initrd.img)

# --- media: an ISO and a GPT disk (the image at the start of partition 2)
mkdir -p "$W"/iso/smelt; cp "$W"/root.squashfs "$W"/iso/smelt/
xorriso -as mkisofs -V SMELT_TEST -R -o "$W"/root.iso "$W"/iso 2>/dev/null
MB=$(( SIZE / 1048576 + 4 ))
truncate -s $(( MB + 4 ))M "$W"/disk.img
sgdisk -n 1:2048:+1M -c 1:esp -t 1:ef00 -n 2:0:+${MB}M -c 2:smelt-root-a -u 2:$UUID "$W"/disk.img >/dev/null
START=$(sgdisk -i 2 "$W"/disk.img | sed -n 's/^First sector: \([0-9]*\).*/\1/p')
dd if="$W"/root.squashfs of="$W"/disk.img bs=512 seek="$START" conv=notrunc status=none
cp "$W"/disk.img "$W"/flip.img
OFF=$(( START * 512 + SIZE / 2 ))
python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(int(sys.argv[2])); b=f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0]^0xff]))' "$W"/flip.img "$OFF"

# A case needs its drivers built in or among the copied modules.
has() {
  p="/$(echo "$1" | sed 's/[-_]/[-_]/g')\.ko"
  grep -qE "$p" "$I/lib/modules/$KR/modules.dep" || grep -qE "$p" "$MODS/modules.builtin"
}

# boot NAME WANT UNWANTED QEMU-ARGS…: boot until WANT or 90 s, then kill.
boot() {
  name=$1 want=$2 unwanted=$3; shift 3
  log=$W/console-$name.log; : > "$log"
  qemu-system-x86_64 -accel tcg -M "${MACHINE:-pc}" -m 512 -no-reboot -nographic -serial stdio -monitor none \
    -kernel "$KERNEL" -initrd "$W"/initrd.img -append "console=ttyS0 panic=-1 ${EXTRA_APPEND:-}" "$@" \
    < /dev/null > "$log" 2>&1 &
  QPID=$!; t0=$(date +%s); got=
  while [ $(( $(date +%s) - t0 )) -lt 90 ] && kill -0 "$QPID" 2>/dev/null; do
    if grep -qF -- "$want" "$log"; then got=1; sleep 2; break; fi
    sleep 1
  done
  kill "$QPID" 2>/dev/null || true; wait "$QPID" 2>/dev/null || true; QPID=
  secs=$(( $(date +%s) - t0 ))
  echo "=== $name (${secs}s)"; grep -a 'smelt\|^\[mounts\]' "$log" | sed 's/^/  /'
  if [ -z "$got" ]; then echo "FAIL $name: no '$want' within 90 s"; tail -n 25 "$log" | sed 's/^/  | /'; return 1; fi
  if [ -n "$unwanted" ] && grep -qF -- "$unwanted" "$log"; then echo "FAIL $name: unexpected '$unwanted'"; return 1; fi
  if [ "$want" = "$BOOTED" ] && ! booted_ok "$log"; then return 1; fi
  echo "PASS $name"
}

# What a booted system must show; with CHECK also its mount table
# ($ROOTDEV and $MEDIADEV set per case).
BOOTED='Welcome to smelt'; [ -n "$CHECK" ] && BOOTED='[mounts] mounts-done'
booted_ok() {
  ok=0
  for line in 'Welcome to smelt' ${CHECK:+"[mounts] overlay / overlay rw,relatime,lowerdir=/.smelt/ro,upperdir=/.smelt/rw/upper,workdir=/.smelt/rw/work" "[mounts] $ROOTDEV /.smelt/ro squashfs ro" \
      "[mounts] tmpfs /.smelt/rw tmpfs rw" "[mounts] tmpfs /run tmpfs rw" "[mounts] /proc/1/root/.smelt/ro/etc/hostname"} \
      ${MEDIADEV:+"[mounts] $MEDIADEV /.smelt/media iso9660 ro"}; do
    grep -qF -- "$line" "$1" || { echo "  MISSING: $line"; ok=1; }
  done
  if [ -n "$CHECK" ]; then
    for fs in 'proc /proc proc' 'sysfs /sys sysfs' 'devtmpfs /dev devtmpfs'; do
      n=$(grep -cF -- "[mounts] $fs" "$1" || true)
      [ "$n" = 1 ] || { echo "  $fs mounted $n times, want 1"; ok=1; }
    done
  fi
  grep -q 'smelt init: ' "$1" && { echo "  UNEXPECTED: $(grep 'smelt init: ' "$1" | head -1)"; ok=1; }
  [ $ok = 0 ] || echo "FAIL $name: booted system is not as expected"
  return $ok
}

fail=0; summary=
for c in $CASES; do
  r=0
  case $c in
    iso)  if has ata_piix && has sr_mod && has isofs; then
            ROOTDEV=/dev/loop0 MEDIADEV=/dev/sr0
            boot iso "$BOOTED" 'refusing to boot' -cdrom "$W"/root.iso || r=1
          else r=2; fi ;;
    gpt)  if has virtio_blk; then
            ROOTDEV=/dev/vda2 MEDIADEV=
            boot gpt "$BOOTED" 'refusing to boot' -drive file="$W"/disk.img,if=virtio,format=raw || r=1
          else r=2; fi ;;
    flip) if has virtio_blk; then
            boot flip "root image sha256 mismatch on /dev/vda2: expected $SHA, got " 'Welcome to smelt' \
              -drive file="$W"/flip.img,if=virtio,format=raw || r=1
          else r=2; fi ;;
    usb)  if has xhci_pci && has usb_storage && has isofs; then
            ROOTDEV=/dev/loop0 MEDIADEV=/dev/sda
            boot usb "$BOOTED" 'refusing to boot' -device qemu-xhci,id=xhci \
              -drive if=none,id=stick,file="$W"/root.iso,format=raw -device usb-storage,bus=xhci.0,drive=stick || r=1
          else r=2; fi ;;
    sata) if has ahci && has sr_mod && has isofs; then
            ROOTDEV=/dev/loop0 MEDIADEV=/dev/sr0 MACHINE=q35
            boot sata "$BOOTED" 'refusing to boot' -cdrom "$W"/root.iso || r=1; MACHINE=
          else r=2; fi ;;
    none) boot none "smelt stage1: root not found after 30s: tried iso volume SMELT_TEST (path /smelt/root.squashfs), partition partuuid $UUID partlabel smelt-root-a ; block devices seen: sr0" \
            'Welcome to smelt' || r=1 ;;
    *) echo "unknown case $c"; r=1 ;;
  esac
  case $r in 0) summary="$summary $c:PASS" ;; 1) summary="$summary $c:FAIL"; fail=1 ;;
    2) echo "=== $c"; echo "SKIP $c: the kernel lacks its drivers"; summary="$summary $c:SKIP" ;; esac
done
echo "stage1-qemu ($KR):$summary"
exit $fail
