# Shared helpers for the molq test-service scripts (sourced, not executed).
# shellcheck shell=bash

MOLQ_TEST_DIR="${MOLQ_TEST_DIR:-/var/lib/molq-test}"
export DEBIAN_FRONTEND=noninteractive

_svc_tag="${_svc_tag:-services}"

# Debian packages per service (up.sh installs the union in one apt-get run)
# shellcheck disable=SC2034
{
SLURM_PKGS=(slurm-wlm slurm-wlm-torque slurm-client munge mariadb-server mariadb-client slurmdbd)
SSHD_PKGS=(openssh-server openssh-client rsync)
AT_PKGS=(at)
}

log()  { printf '[%s %s] %s\n' "$_svc_tag" "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '[%s %s] WARNING: %s\n' "$_svc_tag" "$(date +%H:%M:%S)" "$*" >&2; }
die()  { printf '[%s %s] ERROR: %s\n' "$_svc_tag" "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (apt-get, daemons as other users)"
}

# pkg_missing PKG... -> prints the packages that are not installed
pkg_missing() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
    done
}

# apt_ensure PKG... : install missing packages (apt-get update once, first).
# Services are NOT started by the package scripts (policy-rc.d returns 101),
# because we start private instances ourselves.
apt_ensure() {
    local missing
    missing=$(pkg_missing "$@" | tr '\n' ' ')
    [ -z "${missing// /}" ] && return 0
    log "installing: $missing"
    mkdir -p "$MOLQ_TEST_DIR"
    (
        # serialize our own apt runs (up.sh may run scripts concurrently later)
        flock -w 900 9 || die "timed out waiting for $MOLQ_TEST_DIR/apt.lock"
        missing=$(pkg_missing "$@" | tr '\n' ' ')
        [ -z "${missing// /}" ] && exit 0
        local own_policy=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            own_policy=1
        fi
        local rc=0 try
        local aptopts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 -q -y)
        for try in 1 2 3; do
            # apt-get update once per install attempt (lists may be stale/absent on a fresh machine)
            timeout 900 apt-get "${aptopts[@]}" update >&2 || { rc=$?; warn "apt-get update failed (rc=$rc), try $try"; sleep 5; continue; }
            # shellcheck disable=SC2086
            if timeout 1800 apt-get "${aptopts[@]}" install --no-install-recommends $missing >&2; then rc=0; break; fi
            rc=$?; warn "apt-get install failed (rc=$rc), try $try"; sleep 5
        done
        [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
        exit "$rc"
    ) 9>"$MOLQ_TEST_DIR/apt.lock" || die "apt-get install $missing failed"
    missing=$(pkg_missing "$@" | tr '\n' ' ')
    [ -z "${missing// /}" ] || die "packages still missing after install: $missing"
}

# spawn LOGFILE CMD... : start CMD fully detached (new session, stdin /dev/null,
# stdout/stderr appended to LOGFILE, no inherited fds > 2), so it survives the
# calling shell and never holds a caller's pipe open.
spawn() {
    local logf=$1; shift
    (
        local fd
        for fd in "/proc/$BASHPID/fd/"*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
        done
        cd /
        exec setsid -f "$@" </dev/null >>"$logf" 2>&1
    )
}

# pid_alive PIDFILE [PATTERN] : true if pidfile names a live process whose
# cmdline contains PATTERN (if given). Prints the pid.
pid_alive() {
    local pf=$1 pat=${2:-} pid
    [ -s "$pf" ] || return 1
    pid=$(tr -dc '0-9' < "$pf" 2>/dev/null)
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    # zombies count as dead
    grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && return 1
    if [ -n "$pat" ]; then
        tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pat" || return 1
    fi
    echo "$pid"
}

# kill_pidfile PIDFILE [PATTERN] [SECONDS] : TERM, wait (bounded), then KILL.
kill_pidfile() {
    local pf=$1 pat=${2:-} secs=${3:-15} pid i
    pid=$(pid_alive "$pf" "$pat") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        [ -d "/proc/$pid" ] || break
        grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
        sleep 0.1
    done
    if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
        warn "pid $pid ($pf) ignored SIGTERM for ${secs}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pf"
}

# wait_until SECONDS DESCRIPTION CMD... : poll CMD every 0.5s, bounded.
wait_until() {
    local secs=$1 what=$2; shift 2
    local end=$((SECONDS + secs))
    while true; do
        "$@" >/dev/null 2>&1 && return 0
        [ $SECONDS -ge $end ] && { warn "timed out after ${secs}s waiting for: $what"; return 1; }
        sleep 0.5
    done
}

# write_if_changed DEST MODE < content : returns 0 if the file changed.
write_if_changed() {
    local dest=$1 mode=$2 tmp
    tmp=$(mktemp "${dest}.XXXXXX")
    cat > "$tmp"
    chmod "$mode" "$tmp"
    if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"; chmod "$mode" "$dest"; return 1
    fi
    mv -f "$tmp" "$dest"
    return 0
}

# with_lock LOCKFILE CMD... : run CMD while holding an exclusive flock (bounded).
with_lock() {
    local lf=$1; shift
    mkdir -p "$(dirname "$lf")"
    (
        flock -w 900 9 || die "timed out waiting for lock $lf"
        "$@"
    ) 9>"$lf"
}
