# BPF-LSM enforcement in a guest kernel that allows it (run by /init as root
# under `sh -e`): a denied exec, open and connect of the watched UID fail
# with EPERM from the LSM hooks; the unwatched UID is untouched; an allowed
# connect is reported once and its bytes are counted; a command the sudo
# gate refuses exits 77 before it runs; a watched setuid-root process
# cannot signal, ptrace or bpf() the daemon; enforcement survives kill -9
# of the daemon and a restart takes it over.
G=/sentinel-guest
fail() {
    echo "lsm-test: FAIL: $*"
    echo "--- daemon log"; tail -n 30 /tmp/daemon.log 2>/dev/null
    echo "--- events"; tail -n 20 /tmp/ev.jsonl 2>/dev/null
    exit 1
}

echo TOP-SECRET > /tmp/secret.txt
chmod 644 /tmp/secret.txt

sentinel run --agent guestagent=2001 --policy $G/policy --db /tmp/s.db \
    --state-dir /tmp/st --jsonl /tmp/ev.jsonl > /tmp/daemon.log 2>&1 &
daemon=$!
i=0
until sentinel status --state-dir /tmp/st > /dev/null 2>&1; do
    kill -0 $daemon 2>/dev/null || fail "the daemon exited"
    i=$((i + 1))
    [ $i -lt 900 ] || fail "the daemon did not start"
    sleep 0.2
done
sentinel status --json --state-dir /tmp/st > /tmp/status.json
for kind in exec open connect; do
    grep -q "\"$kind\": \"lsm\"" /tmp/status.json \
        || fail "$kind is not enforced by BPF LSM: $(cat /tmp/status.json)"
done
grep -q '"lsm:bprm_check_security"' /tmp/status.json || fail "bprm_check_security not attached"

# exec
if out=$(as-user sentineltest $G/forbidden-tool 2>&1); then fail "a denied exec ran: $out"; fi
echo "$out" | grep -q "Operation not permitted" || fail "denied exec did not get EPERM: $out"
as-user sentinelother $G/forbidden-tool || fail "the unwatched UID could not run the tool"

# open
if out=$(as-user sentineltest /bin/cat /tmp/secret.txt 2>&1); then fail "a denied open succeeded: $out"; fi
echo "$out" | grep -q "Operation not permitted" || fail "denied open did not get EPERM: $out"
[ "$(as-user sentinelother /bin/cat /tmp/secret.txt)" = TOP-SECRET ] || fail "the unwatched UID could not read"

# connect
nc -l -p 9999 > /dev/null 2>&1 &
listener=$!
sleep 0.5
if out=$(su -s /bin/sh -c 'echo hi | nc 127.0.0.1 9999' sentineltest 2>&1); then fail "a denied connect succeeded: $out"; fi
echo "$out" | grep -q "Operation not permitted" || fail "denied connect did not get EPERM: $out"
kill $listener 2>/dev/null || true

# An allowed connect is reported once (the LSM hook decided it; the cgroup
# connect hook only registers the socket) and the bytes it moved are counted.
mkdir -p /tmp/www
head -c 100000 /dev/zero > /tmp/www/blob
httpd -p 127.0.0.1:9998 -h /tmp/www
as-user sentineltest wget -q -O /dev/null http://127.0.0.1:9998/blob \
    || fail "an allowed download by the watched UID failed"
sleep 2
n=$(grep -c '"port":9998' /tmp/ev.jsonl) || true
[ "$n" = 1 ] || fail "the allowed connect was reported $n times"
sentinel status --json --state-dir /tmp/st > /tmp/status.json
grep -A6 '"total"' /tmp/status.json | grep -Eq '"received_bytes": [1-9][0-9]{5}' \
    || fail "the download's bytes were not counted: $(grep -A8 '"bandwidth"' /tmp/status.json)"

# The sudo gate: the elevator's exec is held by bprm_check_security before
# it happens; refused, the process exits 77 (its shell sees it) and never
# runs the elevator; allowed, the exec goes through when resumed.
printf '#!/bin/sh\nexec "$@"\n' > /tmp/guest-elevator
chmod 755 /tmp/guest-elevator
out=$(su -s /bin/sh -c '/tmp/guest-elevator touch /tmp/elevated-marker; echo rc=$?' sentineltest 2>&1) || true
echo "$out" | grep -q "rc=77" || fail "a refused elevator did not exit 77: $out"
echo "$out" | grep -q "refused by the sudo gate" || fail "the refused elevator was not told why: $out"
[ ! -e /tmp/elevated-marker ] || fail "the refused elevated command ran"
out=$(su -s /bin/sh -c '/tmp/guest-elevator echo elevated-ok; echo rc=$?' sentineltest 2>&1) || true
echo "$out" | grep -q "elevated-ok" || fail "an allowed elevator did not run: $out"
echo "$out" | grep -q "rc=0" || fail "an allowed elevator failed: $out"
sleep 1
grep '"rule":"sudo-gate:guest-touch"' /tmp/ev.jsonl | grep -q "exited 77 before it ran" \
    || fail "no record that the refused elevator exited 77 before it ran"

# The stream says the kernel refused each of them.
sleep 1
for rule in guest-deny-exec guest-deny-open guest-deny-connect; do
    grep "\"rule\":\"$rule\"" /tmp/ev.jsonl | grep -q '"enforced":true' \
        || fail "no enforced verdict for $rule in the stream"
done
grep -q "refused the call with EPERM" /tmp/ev.jsonl || fail "the stream does not say EPERM"

# Self-protection: a watched process turned root (a setuid-root binary)
# can neither signal (kill, tkill, a pidfd, a /proc/PID descriptor),
# ptrace, read its memory (process_vm_readv) nor bpf() the daemon.
grep -q '"self_protection": "lsm"' /tmp/status.json \
    || fail "self-protection is not BPF LSM: $(cat /tmp/status.json)"
cp /usr/local/bin/sentinel-evasion /tmp/suid-ev
chown 0:0 /tmp/suid-ev
chmod 4755 /tmp/suid-ev
for attack in "kill $daemon 9" "kill $daemon 15" "tkill $daemon 9" \
    "pidfd-signal $daemon 9" "proc-signal $daemon 9" "ptrace $daemon" \
    "vm-read $daemon" "bpf"; do
    # shellcheck disable=SC2086
    if out=$(as-user sentineltest /tmp/suid-ev $attack 2>&1); then fail "$attack succeeded: $out"; fi
    echo "$out" | grep -q "Operation not permitted" || fail "$attack was not refused with EPERM: $out"
    kill -0 $daemon 2>/dev/null || fail "the daemon died of $attack"
done
sleep 1
grep '"category":"tamper"' /tmp/ev.jsonl | grep -q "refused in the kernel" \
    || fail "no tamper alert in the stream"

# Enforcement survives kill -9 of the daemon (pinned LSM programs), and a
# restarted daemon takes over and records the death.
kill -KILL $daemon
wait $daemon 2>/dev/null || true
if out=$(as-user sentineltest $G/forbidden-tool 2>&1); then fail "a denied exec ran with the daemon killed: $out"; fi
echo "$out" | grep -q "Operation not permitted" || fail "no EPERM with the daemon killed: $out"
ls /sys/fs/bpf/sentinel/tmp-st/ | grep -q '^gen-' || fail "no pins after kill -9"
sentinel run --agent guestagent=2001 --policy $G/policy --db /tmp/s.db \
    --state-dir /tmp/st --jsonl /tmp/ev2.jsonl >> /tmp/daemon.log 2>&1 &
daemon=$!
i=0
until sentinel status --state-dir /tmp/st > /dev/null 2>&1; do
    kill -0 $daemon 2>/dev/null || fail "the daemon did not restart"
    i=$((i + 1))
    [ $i -lt 900 ] || fail "the daemon did not restart in time"
    sleep 0.2
done
grep -q "did not stop cleanly" /tmp/daemon.log || fail "the death was not recorded"
if out=$(as-user sentineltest $G/forbidden-tool 2>&1); then fail "a denied exec ran after the restart: $out"; fi
[ "$(ls /sys/fs/bpf/sentinel/tmp-st/ | grep -c '^gen-')" = 1 ] || fail "old pins left: $(ls /sys/fs/bpf/sentinel/tmp-st/)"

kill -TERM $daemon
wait $daemon || fail "the daemon did not exit cleanly"
[ ! -e /sys/fs/bpf/sentinel/tmp-st ] || fail "a clean stop left pins: $(ls /sys/fs/bpf/sentinel/tmp-st)"
as-user sentineltest $G/forbidden-tool || fail "a clean stop left the programs attached"
echo "lsm-test: exec, open and connect denied with EPERM by BPF LSM; an allowed download counted; a refused elevator exited 77; the daemon refused its attackers and survived kill -9"
