# Self-test of the guest harness (run by /init under `sh -e` as root).
# Proves: BPF LSM is active, the expected file systems are mounted, a dynamic
# host binary copied in with its libraries runs, extra files arrive, and a
# test user can run a command without a password.
fail() { echo "selftest: FAIL: $*"; exit 1; }

grep -q bpf /sys/kernel/security/lsm || fail "bpf is not an active LSM: $(cat /sys/kernel/security/lsm)"

for m in "/sys/fs/cgroup/unified cgroup2" "/sys/kernel/tracing tracefs" \
         "/sys/kernel/security securityfs" "/sys/fs/bpf bpf"; do
    grep -q " $m " /proc/mounts || fail "not mounted: $m"
done

[ -r /sys/kernel/btf/vmlinux ] || fail "no kernel BTF at /sys/kernel/btf/vmlinux (CO-RE programs cannot load)"

[ "$(cat /sentinel-guest/selftest-extra.txt)" = "extra-file-ok" ] || fail "extra file missing or wrong"

# A glibc binary from the host, copied with its libraries found via ldd.
getent passwd 2001 | grep -q '^sentineltest:' || fail "getent (dynamic host binary) cannot resolve uid 2001"

# Running a command as the watched test user (busybox su needs no password
# when root calls it): through a shell, and as a direct exec of a program.
[ "$(su -s /bin/sh -c 'id -u' sentineltest)" = 2001 ] || fail "su -s /bin/sh -c did not run as uid 2001"
[ "$(su -s /bin/sh -c 'id -g' sentineltest)" = 2001 ] || fail "su -s /bin/sh -c did not run as gid 2001"
[ "$(su -s /usr/bin/id sentineltest)" = "uid=2001(sentineltest) gid=2001(sentineltest) groups=2001(sentineltest)" ] \
    || fail "su -s /usr/bin/id did not exec id as uid 2001: $(su -s /usr/bin/id sentineltest)"
[ "$(su -s /usr/bin/id -- sentineltest -u)" = 2001 ] || fail "su -s /usr/bin/id -- sentineltest -u did not print 2001"
[ "$(as-user sentineltest id -u)" = 2001 ] || fail "as-user sentineltest id -u did not print 2001"
[ "$(as-user sentinelother /usr/bin/id -un)" = sentinelother ] || fail "as-user sentinelother did not run as sentinelother"
[ "$(as-user sentineltest /bin/echo -n 'a  b' c)" = "a  b c" ] || fail "as-user did not pass arguments through untouched"
[ "$(su -s /bin/sh -c 'id -u' sentinelother)" = 2002 ] || fail "su -s /bin/sh -c did not run as uid 2002"
# The dynamic binary also runs as the test user.
su -s /bin/sh -c 'getent passwd sentineltest' sentineltest >/dev/null || fail "getent as uid 2001 failed"
# The test user is really unprivileged.
echo secret > /root/probe && chmod 600 /root/probe
if su -s /bin/sh -c 'cat /root/probe' sentineltest 2>/dev/null; then fail "uid 2001 could read a root-only file"; fi
# A refused exec surfaces the errno text (an LSM denial reads "Operation not permitted").
if out=$(as-user sentineltest /root/probe 2>&1); then fail "uid 2001 could exec a root-only file"; fi
echo "$out" | grep -q "Permission denied" || fail "refused exec did not report its errno: $out"
echo "selftest: all checks passed"
