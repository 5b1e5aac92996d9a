#!/bin/sh
# Manual end-to-end check of smelt-init under QEMU (TCG), without smelt:
# builds an initramfs around the debug init binary, the host's static
# busybox and runc (+ its libraries), a few modules from a Debian kernel
# tree, and onboot/services/onshutdown bundles made from `runc spec`; boots
# it and checks the console for the expected lines.
#
#   images/init/tests/qemu-boot.sh KERNEL MODULES_DIR   (run as root)
#
# KERNEL is a vmlinuz, MODULES_DIR its /lib/modules/RELEASE (needs fat,
# vfat, virtio, virtio_ring, failover, net_failover, virtio_net, virtio_pci*,
# evdev, button). Needs
# qemu-system-x86_64, busybox (static), runc, depmod, cpio, python3.
set -eu
KERNEL=$1; MODS=$2; KR=$(basename "$MODS")
HERE=$(cd "$(dirname "$0")/../../.." && pwd)
(cd "$HERE" && cargo build -q -p smelt-init)
INIT=$HERE/target/x86_64-unknown-linux-gnu/debug/init
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; R=$W/root
mkdir -p "$R"/bin "$R"/sbin "$R"/etc "$R"/usr/bin "$R"/lib/x86_64-linux-gnu "$R"/lib64 "$R"/dev "$R"/lib/modules/"$KR"
cp "$INIT" "$R"/init; ln -s ../init "$R"/sbin/init
cp "$(command -v busybox)" "$R"/bin/busybox; ln -s busybox "$R"/bin/sh
cp "$(command -v runc)" "$R"/usr/bin/runc
for l in $(ldd "$(command -v runc)" | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$l")"; cp "$l" "$R$l"; done
for m in fs/fat/fat fs/fat/vfat drivers/virtio/virtio drivers/virtio/virtio_ring net/core/failover drivers/net/net_failover drivers/net/virtio_net \
         drivers/virtio/virtio_pci drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci_legacy_dev \
         drivers/input/evdev drivers/acpi/button; do
  mkdir -p "$R/lib/modules/$KR/kernel/$(dirname $m)"; cp "$MODS/kernel/$m.ko" "$R/lib/modules/$KR/kernel/$m.ko"
done
cp "$MODS"/modules.builtin "$MODS"/modules.order "$R/lib/modules/$KR/"
depmod -b "$R" "$KR" 2>/dev/null
# virtio_net is not listed: the modalias pass must find it (after
# virtio_pci, itself found by its PCI modalias, creates the virtio device).
printf 'vfat # fs\nevdev\nnot_a_module\n' > "$R"/etc/modules
echo testbox > "$R"/etc/hostname
mknod "$R"/dev/console c 5 1
(cd "$W" && runc spec)
python3 - "$W" <<'PY'
import json, os, shutil, sys
W = sys.argv[1]; R = W + '/root'
base = json.load(open(W + '/config.json'))
def mk(kind, name, script, drop=(), rootfs=True, binds=()):
    d = f'{R}/containers/{kind}/{name}'; os.makedirs(d)
    c = json.loads(json.dumps(base))
    c['process']['terminal'] = False
    c['process']['args'] = ['/bin/sh', '-c', script]
    c['root']['readonly'] = False
    c['mounts'] += [{'destination': d, 'type': 'bind', 'source': s, 'options': ['rbind']} for s, d in binds]
    c['linux']['namespaces'] = [n for n in c['linux']['namespaces'] if n['type'] not in drop]
    json.dump(c, open(d + '/config.json', 'w'))
    if rootfs:
        for x in ['bin', 'proc', 'dev', 'sys', 'tmp']: os.makedirs(f'{d}/rootfs/{x}')
        shutil.copy(shutil.which('busybox'), d + '/rootfs/bin/busybox')
        for a in ['sh', 'echo', 'sleep', 'kill', 'ls', 'grep']: os.symlink('busybox', f'{d}/rootfs/bin/{a}')
# runtime.json acts on the host: see it through a bind of the host's /run.
mk('onboot', '000-hello', 'echo hello from onboot; ls -d /hostrun/rtmnt /hostrun/made', binds=[('/run', '/hostrun')])
mk('onboot', '001-fail', 'echo failing; exit 7')
mk('onboot', '002-bad', 'true', rootfs=False)
mk('services', 'flappy', 'echo flappy up; sleep 1; exit 3')
# No pid namespace: `kill -USR2 1` reaches the init, as busybox poweroff would.
# With smelt.test=button on the command line the test presses the ACPI
# power button instead (QEMU's system_powerdown).
mk('services', 'stopper', 'echo stopper up; ls /sys/class/net; grep -q smelt.test=button /proc/cmdline && sleep 100; sleep 5; kill -USR2 1; sleep 100', drop=('pid', 'network'))
mk('onshutdown', '000-bye', 'echo bye from onshutdown')
json.dump({"mkdir": ["/run/made"], "interfaces": [{"name": "x"}],
           "mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "/run/rtmnt", "options": ["nosuid", "size=1m"]}]},
          open(f'{R}/containers/onboot/000-hello/runtime.json', 'w'))
PY
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 > "$W"/initrd.img)
fail=0
for mode in signal button; do
  log=$W/console-$mode.log
  (
    # Press the power button once the services are up and flapping.
    [ $mode = button ] || exit 0
    for _ in $(seq 120); do grep -qF 'restarting in 2s' "$log" 2>/dev/null && break; sleep 1; done
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"system_powerdown\n")' "$W"/mon
  ) &
  timeout 180 qemu-system-x86_64 -nographic -no-reboot -m 512 -kernel "$KERNEL" -initrd "$W"/initrd.img \
    -append "console=ttyS0 panic=-1 smelt.test=$mode" -nic user,model=virtio-net-pci \
    -monitor unix:"$W"/mon,server,nowait > "$log" 2>&1 || true
  wait
  echo "=== $mode"
  sed -n '/Run \/init/,$p' "$log"
  for want in 'Welcome to smelt' 'smelt: kernel '"$KR"', 3 onboot, 2 services, 1 onshutdown' \
    '[hello] hello from onboot' '[hello] /hostrun/rtmnt' '[hello] /hostrun/made' '*** onboot fail failed: exit code 7 ***' \
    'onboot bad failed: container bad: /containers/onboot/002-bad/rootfs is missing' \
    'module not_a_module not found' 'service flappy exited (code 3), restarting in 1s' \
    '[stopper] eth0' 'service flappy exited (code 3), restarting in 2s' 'smelt: powering off' '[bye] bye from onshutdown' 'reboot: Power down'; do
    grep -qF -- "$want" "$log" || { echo "MISSING ($mode): $want"; fail=1; }
  done
  grep -q 'onboot hello failed' "$log" && { echo "UNEXPECTED hello failure"; fail=1; }
  grep -q 'loading module' "$log" && { echo "UNEXPECTED module load failure"; fail=1; }
done
[ $fail = 0 ] && echo "qemu-boot: OK"
exit $fail
