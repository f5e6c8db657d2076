# BPF-LSM enforcement in a guest kernel that allows it (run by /init as root
# under `sh -e`): a denied exec, open and connect of the watched UID fail
# with EPERM from the LSM hooks; the unwatched UID is untouched; an allowed
# connect is reported once and its bytes are counted; a command the sudo
# gate refuses exits 77 before it runs.
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

kill -TERM $daemon
wait $daemon || fail "the daemon did not exit cleanly"
echo "lsm-test: exec, open and connect denied with EPERM by BPF LSM; an allowed download counted; a refused elevator exited 77"
