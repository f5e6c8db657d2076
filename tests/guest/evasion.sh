# The evasion corpus in the guest kernel (run by /init as root under
# `sh -e`), against the embedded default policy: every route to a protected
# key and to a denied binary fails for the watched UID before a byte of the
# secret reaches it or the binary runs, and changes to a protected
# persistence file leave it as it was. `EXPECT` (set by the harness) says
# which mechanism this boot must report: `lsm` (BPF LSM active: every refusal
# is EPERM from the LSM hooks) or `fallback` (booted with `bpf` left out of
# `lsm=`: status must say so, and the fanotify file guard refuses the same
# routes with EPERM before the open; only a fileless exec, which has no file
# to mark, is killed at exec instead).
EV=/usr/local/bin/sentinel-evasion
H=/home/sentineltest
S=/tmp/s
fail() {
    echo "evasion-test ($EXPECT): FAIL: $*"
    echo "--- daemon log"; tail -n 30 /tmp/daemon.log 2>/dev/null
    echo "--- events"; tail -n 20 /tmp/ev.jsonl 2>/dev/null
    exit 1
}

# The agent's files, and the unwatched user's copies.
for u in sentineltest sentinelother; do
    d=/home/$u
    mkdir -p $d/.ssh $d/.aws
    echo "KEY-SECRET-$u" > $d/.ssh/id_ed25519
    echo "AWS-SECRET-$u" > $d/.aws/credentials
    echo "ORIGINAL-KEYS" > $d/.ssh/authorized_keys
    chown -R $u:$u $d
    chmod 700 $d/.ssh $d/.aws
    chmod 600 $d/.ssh/id_ed25519 $d/.aws/credentials $d/.ssh/authorized_keys
done
mkdir -p $S && chmod 777 $S
# A tunnelling tool where the default policy denies it: a copy of the
# evasion tool, so a run prints the marker file.
cp $EV /usr/local/bin/chisel
echo TUNNEL-RAN > /tmp/marker && chmod 644 /tmp/marker
ln -s $H/.ssh/id_ed25519 $S/key-link
ln -s $H/.ssh $S/ssh-dir
printf '#!/usr/local/bin/chisel\n' > $S/tunnel.sh && chmod 755 $S/tunnel.sh

sentinel run --agent guestagent=2001 --db /tmp/s.db --state-dir /tmp/st \
    --jsonl /tmp/ev.jsonl > /tmp/daemon.log 2>&1 &
daemon=$!
i=0
until sentinel status --state-dir /tmp/st > /dev/null 2>&1; do
    kill -0 $daemon 2>/dev/null || fail "the daemon exited"
    i=$((i + 1))
    [ $i -lt 900 ] || fail "the daemon did not start"
    sleep 0.2
done
sentinel status --json --state-dir /tmp/st > /tmp/status.json
if [ "$EXPECT" = lsm ]; then
    for kind in exec open connect change; do
        grep -q "\"$kind\": \"lsm\"" /tmp/status.json \
            || fail "$kind is not enforced by BPF LSM: $(cat /tmp/status.json)"
    done
else
    grep -q '"open": "lsm"' /tmp/status.json && fail "status claims BPF LSM with bpf out of lsm="
    grep -q 'BPF LSM is not active' /tmp/status.json \
        || fail "status does not say why BPF LSM is not used: $(cat /tmp/status.json)"
    for kind in exec open; do
        grep -q "\"$kind\": \"fanotify+sigkill\"" /tmp/status.json \
            || fail "$kind is not guarded by fanotify: $(cat /tmp/status.json)"
    done
fi

# refused NAME SECRET CMD...: CMD as the watched UID gets none of SECRET
# and fails.
refused() {
    name=$1; secret=$2; shift 2
    if out=$("$@" 2>&1); then fail "$name: it succeeded: $out"; fi
    case "$out" in *"$secret"*) fail "$name: the secret reached the process: $out" ;; esac
    if [ "$EXPECT" = lsm ] || [ -z "$KILLED_OK" ]; then
        case "$out" in
            *"Operation not permitted"*|*"not permitted"*) ;;
            *) fail "$name: not refused with EPERM: $out" ;;
        esac
    fi
    echo "evasion-test: refused: $name"
}
agent() { as-user sentineltest "$@"; }
KEY=KEY-SECRET-sentineltest

refused "typed" $KEY agent $EV read $H/.ssh/id_ed25519
refused "dot" $KEY agent $EV read $H/./.ssh/id_ed25519
refused "double slashes" $KEY agent $EV read $H//.ssh//id_ed25519
refused "dot-dot" $KEY agent $EV read $H/.ssh/../.ssh/id_ed25519
refused "proc root" $KEY agent $EV read /proc/self/root$H/.ssh/id_ed25519
refused "symlink" $KEY agent $EV read $S/key-link
refused "symlinked directory" $KEY agent $EV read $S/ssh-dir/id_ed25519
refused "openat(dirfd)" $KEY agent $EV read-at $H/.ssh id_ed25519
refused "/proc/self/fd/N/name" $KEY agent $EV read-fd-dir $H/.ssh id_ed25519
refused "O_PATH reopened" $KEY agent $EV read-opath $H/.ssh/id_ed25519
refused "int 0x80 open" $KEY agent $EV read-int80 $H/.ssh/id_ed25519
refused "relative to cwd" $KEY su -s /bin/sh -c "cd $H/.ssh && $EV read ./id_ed25519" sentineltest
refused "find -exec cat" $KEY su -s /bin/sh -c "find $H/.ssh -type f -exec cat {} +" sentineltest
out=$(su -s /bin/sh -c "tar cf - -C $H .ssh 2>&1 | cat" sentineltest || true)
case "$out" in *$KEY*) fail "tar: the secret reached the process" ;; esac
su -s /bin/sh -c "ln $H/.aws/credentials $S/creds-link" sentineltest || true
if [ "$EXPECT" = lsm ] && [ -e $S/creds-link ]; then fail "a hardlink to a protected file was made"; fi
if [ -e $S/creds-link ]; then
    refused "hardlink" AWS-SECRET-sentineltest agent $EV read $S/creds-link
fi
su -s /bin/sh -c "mv $H/.ssh/id_ed25519 $S/moved" sentineltest || true
if [ "$EXPECT" = lsm ] && [ -e $S/moved ]; then fail "a protected key was moved away"; fi
if [ -e $S/moved ]; then
    refused "moved then read" $KEY agent $EV read $S/moved
    mv $S/moved $H/.ssh/id_ed25519
fi
cp $EV $S/evasion-suid && chmod 4755 $S/evasion-suid
refused "open_by_handle_at" $KEY agent $S/evasion-suid read-handle $H/.ssh/id_ed25519

# The unwatched UID reads its own key by the same routes.
O=/home/sentinelother
for args in "read $O/./.ssh//id_ed25519" "read-at $O/.ssh id_ed25519" \
            "read-opath $O/.ssh/id_ed25519" "read-int80 $O/.ssh/id_ed25519"; do
    out=$(as-user sentinelother $EV $args 2>&1) || fail "unwatched $args: $out"
    case "$out" in *KEY-SECRET-sentinelother*) ;; *) fail "unwatched $args: $out" ;; esac
done

# Denied binary.
refused "exec typed" TUNNEL-RAN agent $EV exec /usr/local/bin/chisel read /tmp/marker
refused "exec dots" TUNNEL-RAN agent $EV exec /usr/local//bin/./chisel read /tmp/marker
refused "execveat(AT_EMPTY_PATH)" TUNNEL-RAN agent $EV exec-fd /usr/local/bin/chisel read /tmp/marker
refused "exec /proc/self/fd/N" TUNNEL-RAN agent $EV exec-proc-fd /usr/local/bin/chisel read /tmp/marker
refused "exec shebang interpreter" TUNNEL-RAN agent $EV exec $S/tunnel.sh read /tmp/marker
# A memfd has no file on disk to mark: without BPF LSM it is killed at exec.
KILLED_OK=1 refused "exec memfd" TUNNEL-RAN agent $EV exec-memfd /usr/local/bin/sentinel-evasion read /tmp/marker
out=$(as-user sentinelother $EV exec /usr/local/bin/chisel read /tmp/marker 2>&1) || true
case "$out" in *TUNNEL-RAN*) ;; *) fail "the unwatched UID could not run the tool: $out" ;; esac

# Changes to a protected persistence file.
K=$H/.ssh/authorized_keys
unchanged() {
    i=0
    while :; do
        [ "$(cat $K 2>/dev/null)" = ORIGINAL-KEYS ] && [ "$(stat -c %a $K)" = 600 ] && break
        i=$((i + 1))
        [ $i -lt 50 ] || fail "$1: authorized_keys was left changed: $(ls -l $K; cat $K)"
        sleep 0.2
    done
    echo "evasion-test: unchanged after: $1"
}
agent $EV write $K BACKDOOR || true; unchanged "truncating open"
agent $EV append $K BACKDOOR || true; unchanged "append"
agent $EV truncate $K || true; unchanged "truncate(2)"
agent $EV rename-over $K BACKDOOR || true; unchanged "rename over it"
agent $EV unlink $K || true; unchanged "unlink"
agent $EV chmod $K 666 || true; unchanged "chmod"
su -s /bin/sh -c "cd $H/.ssh && echo BACKDOOR > ../x && mv ../x ./authorized_keys" sentineltest || true
unchanged "relative rename"

sleep 1
n=$(grep '"verdict":{"action":"deny"' /tmp/ev.jsonl | grep -c '"path":"/home/sentineltest/.ssh/id_ed25519"') || true
[ "$n" -ge 10 ] || fail "only $n deny verdicts name the resolved key path"
kill -TERM $daemon
wait $daemon || fail "the daemon did not exit cleanly"
echo "evasion-test ($EXPECT): every route refused"
