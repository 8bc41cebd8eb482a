# cancel: NOW GRACE_TICKS GRACE_SECONDS MAX, job ids on stdin. SIGTERM to each running job's
# process group, SIGKILL to what is left after the grace time, then a scheduling pass.
# (`kill -SIG -PGID`: dash's kill takes no `--`.)
umask 077
now=$1 ticks=$2 secs=$3 max=$4
molq_group_alive() {
    kill -0 "-$1" 2>/dev/null || return 1
    molq_ident "$1" && return 0
    # The leader has ended. Zombies waiting for init to reap them do not count, other members
    # (grandchildren of the job) do.
    [ -r /proc/self/stat ] || return 0
    pg=$1
    for s in /proc/[0-9]*/stat; do
        v=
        { IFS= read -r v; } 2>/dev/null <"$s" || [ -n "$v" ] || continue
        v=${v##*)}
        set -f
        # shellcheck disable=SC2086
        set -- $v
        set +f
        [ "${3:-}" = "$pg" ] || continue
        case $1 in Z | X) ;; *) return 0 ;; esac
    done
    return 1
}
molq_lock || exit 4
pids=
while IFS= read -r sid; do
    case $sid in '' | *[!A-Za-z0-9_.-]*) continue ;; esac
    [ -f "$spool/jobs/$sid.json" ] || continue
    d="$spool/jobs/$sid.dir"
    [ -L "$d" ] || continue
    [ ! -e "$d/exit_code" ] || continue
    molq_put "$d/cancelled" "$now" || :
    for q in "$spool"/queued/*; do
        e=${q##*/}
        [ "${e#*-}" != "$sid" ] || rm -f -- "$q"
    done
    molq_take "$d" || : # a job that has not begun never will
    if molq_running_of "$sid" || molq_started_alive "$d"; then
        kill -TERM "-$pid" 2>/dev/null
        pids="$pids $pid"
    fi
    printf 'C %s\n' "$sid"
done
molq_unlock
if sleep 0.01 2>/dev/null; then step=0.05; else
    step=1
    ticks=$secs
fi
i=0
while [ -n "$pids" ]; do
    left=
    for p in $pids; do ! molq_group_alive "$p" || left="$left $p"; done
    pids=$left
    if [ -z "$pids" ] || [ "$i" -ge "$ticks" ]; then break; fi
    i=$((i + 1))
    sleep "$step"
done
for p in $pids; do kill -KILL "-$p" 2>/dev/null; done
molq_need_setsid
molq_lock || exit 4
molq_advance "$max" >/dev/null
exit 0
