#!/bin/sh
# /init of the Sentinel guest-kernel initramfs (template; built by xtask/src/guest.rs).
# Mounts what the Sentinel daemon expects, runs the test script as root, prints
# exactly one result line carrying this boot's nonce, then powers the VM off.
# @NONCE@ is replaced with a per-boot random token so a test's own output can
# never be mistaken for the verdict.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

result() {
    echo "SENTINEL-GUEST-RESULT @NONCE@: $*"
}

die() {
    result "FAIL guest /init: $*"
    sync
    poweroff -f
    sleep 5
    exit 1
}

must_mount() {
    # must_mount TYPE SOURCE TARGET [OPTIONS]
    mkdir -p "$3" || die "cannot create mount point $3"
    if [ -n "$4" ]; then
        mount -t "$1" -o "$4" "$2" "$3" || die "cannot mount $1 on $3"
    else
        mount -t "$1" "$2" "$3" || die "cannot mount $1 on $3"
    fi
}

must_mount proc proc /proc
must_mount sysfs sysfs /sys
must_mount devtmpfs devtmpfs /dev
must_mount devpts devpts /dev/pts
must_mount tmpfs tmpfs /dev/shm mode=1777
# /tmp and /run stay on the initramfs (already a writable tmpfs) so files
# the harness put there stay visible.
mkdir -p /tmp /run && chmod 1777 /tmp && chmod 755 /run || die "cannot prepare /tmp and /run"
# Same hybrid layout as the development hosts: a tmpfs on /sys/fs/cgroup and
# the cgroup v2 hierarchy at /sys/fs/cgroup/unified.
must_mount tmpfs cgroup_root /sys/fs/cgroup mode=755
must_mount cgroup2 cgroup2 /sys/fs/cgroup/unified
must_mount tracefs tracefs /sys/kernel/tracing
must_mount securityfs securityfs /sys/kernel/security
must_mount bpf bpf /sys/fs/bpf mode=700

ip link set lo up || die "cannot bring up the loopback interface"
hostname sentinel-guest

chown 2001:2001 /home/sentineltest
chown 2002:2002 /home/sentinelother
chmod 700 /root

echo "sentinel-guest: kernel $(uname -r)"
echo "sentinel-guest: active LSMs: $(cat /sys/kernel/security/lsm)"
echo "sentinel-guest: running test script"

cd /root || die "cannot enter /root"
/bin/sh -e -o pipefail /sentinel-guest/script.sh </dev/null 2>&1
rc=$?
cd /

if [ "$rc" -eq 0 ]; then
    result "PASS"
else
    result "FAIL test script exited with status $rc"
fi
sync
poweroff -f
# poweroff -f does not return; if it ever does, /init exiting panics the
# kernel, and panic=-1 with qemu -no-reboot ends the VM either way.
sleep 5
