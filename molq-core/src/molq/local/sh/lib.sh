# shellcheck shell=sh
# shellcheck disable=SC2317 # a library: each script uses some of these functions
# Functions shared by the spool scripts (molq.local). Each script is this file followed by the
# script's own text, run as `sh -c TEXT molq SPOOL ARGS...`: user data only ever arrives as
# arguments or on stdin, never inside the script text.
#
# Spool layout (every path below is under $spool):
#   jobs/<sid>.json     the job's description (read by Python only)
#   jobs/<sid>.dir      symlink to the job directory (remote submissions always; on the host for
#                       queued jobs and their upstreams, the only ones a pass looks at)
#   queued/<ns>-<sid>   waiting; "<cpus> <condition>:<upstream> ..." ("<ns>d-<sid>" when it
#                       has dependencies); FIFO by the 20-digit <ns>
#   claimed/<ns>-<sid>  taken from queued/ by rename, under the lock, before its start
#   running/<sid>       "<pid> <process start time> <cpus>" of the job's wrapper
#   .lock               flock(1) lock of every pass that changes the queue

spool=$1
shift

molq_hook() {
    # Test-only fault injection: die at a named point.
    if [ "${MOLQ_TEST_KILL_AT:-}" = "$1" ]; then kill -9 $$; fi
}

molq_ident() {
    # st := the start time of process $1; fails for a gone or zombie process.
    st=
    s=
    case $1 in '' | *[!0-9]*) return 1 ;; esac
    { IFS= read -r s; } 2>/dev/null <"/proc/$1/stat" || [ -n "$s" ] || return 1
    s=${s##*)}
    set -f
    # shellcheck disable=SC2086 # split the stat fields
    set -- $s
    set +f
    case ${1:-X} in Z | X) return 1 ;; esac
    [ $# -ge 20 ] || return 1
    shift 19
    st=$1
}

molq_line() {
    # v := the first line of file $1; fails unless that line is complete.
    v=
    { IFS= read -r v; } 2>/dev/null <"$1"
}

molq_put() {
    # Replace file $1 by the line $2 (temporary file, then rename).
    if [ "${MOLQ_TEST_FAIL_PUT:-}" = "${1##*/}" ]; then return 1; fi
    t="${1%/*}/.${1##*/}.$$"
    if { printf '%s\n' "$2" >"$t" && mv -f -- "$t" "$1"; } 2>/dev/null; then return 0; fi
    rm -f -- "$t"
    return 1
}

molq_entry() {
    # pid, start, cpus := running entry $1; 0 alive, 1 absent, 2 unreadable, 3 ended. An entry
    # is "<pid> <start> <cpus>" in running/<sid>, or, written when the disk was full (by a
    # rename, which needs no space), the name running/<sid>@<pid>@<start>@<cpus>.
    pid=
    cpus=1
    [ -f "$1" ] || return 1
    case ${1##*/} in
        *@*)
            v=${1##*/}
            v=${v#*@}
            o=$IFS
            IFS=@
            set -f
            # shellcheck disable=SC2086
            set -- $v
            set +f
            IFS=$o
            ;;
        *)
            molq_line "$1" || [ -n "$v" ] || return 2
            set -f
            # shellcheck disable=SC2086
            set -- $v
            set +f
            ;;
    esac
    [ $# -ge 2 ] || return 2
    case ${3:-1} in *[!0-9]*) ;; *) cpus=${3:-1} ;; esac
    molq_ident "$1" && [ "$st" = "$2" ] || return 3
    pid=$1
}

# Helpers keep their own variable names: shell functions share every variable.
molq_running_of() {
    # Job $1 has a live running entry (pid, cpus set).
    for rf in "$spool/running/$1" "$spool/running/$1"@*; do
        molq_entry "$rf" && return 0
    done
    return 1
}

molq_has_entry() {
    # Job $1 has a running entry, alive or not.
    for rf in "$spool/running/$1" "$spool/running/$1"@*; do
        [ ! -e "$rf" ] || return 0
    done
    return 1
}

molq_started_alive() {
    # The wrapper of job directory $1 recorded "<pid> <start>" and that process still runs.
    molq_line "$1/started" || return 1
    set -f
    # shellcheck disable=SC2086
    set -- $v
    set +f
    [ $# -ge 2 ] || return 1
    molq_ident "$1" && [ "$st" = "$2" ] || return 1
    pid=$1
}

molq_scan() {
    # used := cores of live running entries; entries of ended processes are dropped.
    used=0
    for f in "$spool"/running/*; do
        molq_entry "$f"
        case $? in
            0) used=$((used + cpus)) ;;
            3) rm -f -- "$f" ;;
        esac
    done
}

molq_is_queued() {
    for q in "$spool"/queued/*; do
        qe=${q##*/}
        [ "${qe#*-}" != "$1" ] || return 0
    done
    return 1
}

molq_is_claimed() {
    for q in "$spool"/claimed/*; do
        qe=${q##*/}
        [ "${qe#*-}" != "$1" ] || return 0
    done
    return 1
}

molq_upstate() {
    # ust := U unknown, W not ended yet, S succeeded, F ended otherwise (uend says how);
    # ustarted := 1 once the upstream job started.
    u=$1
    ust=U
    ustarted=
    uend=
    [ -f "$spool/jobs/$u.json" ] || return 0
    ust=W
    d="$spool/jobs/$u.dir"
    [ -L "$d" ] || return 0
    [ ! -e "$d/started" ] || ustarted=1
    alive=
    if molq_is_queued "$u" || molq_is_claimed "$u" || molq_running_of "$u" ||
        molq_started_alive "$d"; then
        alive=1
    fi
    # Liveness first, files second: a job that ends in between has its exit code written.
    if molq_line "$d/exit_code"; then
        ust=F
        if [ "$v" = 0 ]; then
            ust=S
            uend=succeeded
        elif [ -e "$d/cancelled" ]; then
            uend=cancelled
        else
            uend="exit code $v"
        fi
        return 0
    fi
    if [ -e "$d/never_ran" ]; then
        ust=F
        uend="never ran"
        return 0
    fi
    [ -z "$alive" ] || return 0
    [ ! -e "$d/exit_unknown" ] || return 0 # no evidence: keep waiting
    ust=F
    if [ -e "$d/cancelled" ]; then uend=cancelled; else uend="ended without an exit code"; fi
}

molq_verdict() {
    # verdict := ok | wait | never for the dependencies "$@" (condition:upstream); why := text.
    verdict=ok
    why=
    for dep do
        cond=${dep%%:*}
        molq_upstate "${dep#*:}"
        if [ "$ust" = U ]; then
            verdict=never
            why="dependency on unknown local job $u"
            return 0
        fi
        if [ "$cond" = after_started ]; then
            [ -z "$ustarted" ] || continue
            if [ "$ust" = W ]; then
                verdict='wait'
                why="$u to start"
                continue
            fi
            verdict=never
            why="dependency never satisfied: $u ended ($uend) without starting"
            return 0
        fi
        if [ "$ust" = W ]; then
            verdict='wait'
            why="$u to end"
            continue
        fi
        case $cond:$ust in
            after_success:F)
                verdict=never
                why="dependency never satisfied: $u did not succeed ($uend)"
                return 0
                ;;
            after_failure:S)
                verdict=never
                why="dependency never satisfied: $u succeeded"
                return 0
                ;;
        esac
    done
}

molq_take() {
    # Create the start token of job directory $1; fails when it exists (the job began).
    set -C
    if true 2>/dev/null >"$1/begun"; then
        set +C
        return 0
    fi
    set +C
    return 1
}

molq_never() {
    # Queued entry $1 of job $2 can never start: record why ($3), drop the entry.
    d="$spool/jobs/$2.dir"
    molq_take "$d" || :
    molq_put "$d/never_ran" "$3" || return 0
    rm -f -- "$spool/queued/$1"
    printf 'V %s %s\n' "$2" "$3"
}

molq_orphans() {
    # Claims whose claimer is gone (the caller holds the lock, so no claim is in progress).
    for f in "$spool"/claimed/*; do
        [ -f "$f" ] || continue
        e=${f##*/}
        sid=${e#*-}
        if molq_has_entry "$sid" || [ -e "$spool/jobs/$sid.dir/begun" ]; then
            rm -f -- "$f" # it began: its started and exit_code files tell the rest
        else
            # Its claimer died before the job began: back to its place in the queue. Should that
            # claimer have started the wrapper after all, `begun` lets only one of the two run.
            mv -f -- "$f" "$spool/queued/$e"
        fi
    done
}

molq_launch() {
    # Claim queued entry $1 (job $2, $3 cores) and start its wrapper.
    mv -f -- "$spool/queued/$1" "$spool/claimed/$1" 2>/dev/null || return 0
    molq_hook pass-claimed
    setsid /bin/sh "$spool/jobs/$2.dir/job.sh" </dev/null >/dev/null 2>&1 9>&- &
    pid=$!
    molq_hook pass-spawned
    molq_ident "$pid" || st=gone
    # Without its running entry (a full disk) the claim stays; the wrapper's started file
    # then tells whether it runs.
    if molq_put "$spool/running/$2" "$pid $st $3"; then
        molq_hook pass-running
        rm -f -- "$spool/claimed/$1"
    else
        mv -f -- "$spool/claimed/$1" "$spool/running/$2@$pid@$st@$3" 2>/dev/null
    fi
    used=$((used + $3))
    printf 'L %s %s %s\n' "$2" "$pid" "$3"
}

molq_advance() {
    # One scheduling pass (the caller holds the lock): max cores $1; job $2 with wrapper pid
    # $3 just ended and hands its cores back.
    max=$1
    if [ -n "${2:-}" ]; then
        for f in "$spool/running/$2" "$spool/running/$2"@*; do
            molq_entry "$f"
            [ "$?" = 1 ] || [ "${pid:-$3}" != "$3" ] || rm -f -- "$f"
        done
    fi
    molq_orphans
    molq_scan
    for f in "$spool"/queued/*; do
        [ -f "$f" ] || continue
        e=${f##*/}
        sid=${e#*-}
        # With every core busy only jobs with dependencies can change (end, never ran).
        if [ "$used" -ge "$max" ]; then
            case ${e%%-*} in *d) ;; *) continue ;; esac
        fi
        molq_line "$f" || :
        set -f
        # shellcheck disable=SC2086
        set -- $v
        set +f
        # An entry of an earlier molq-core (empty, or upstream ids only) waits until a molq
        # process rewrites it from the job's description.
        [ $# -ge 1 ] || continue
        case $1 in *[!0-9]*) continue ;; esac
        c=$1
        shift
        molq_verdict "$@"
        case $verdict in
            never) molq_never "$e" "$sid" "$why" ;;
            ok) if [ $((used + c)) -le "$max" ]; then molq_launch "$e" "$sid" "$c"; fi ;;
        esac
    done
}

molq_lock() {
    if command -v flock >/dev/null 2>&1; then
        exec 9>>"$spool/.lock" && flock 9 && return 0
        return 1
    fi
    # No flock(1): a lock directory, taken over when it is older than about a minute.
    n=0
    until mkdir "$spool/.lock.d" 2>/dev/null; do
        n=$((n + 1))
        if [ "$n" -ge 600 ]; then
            rmdir "$spool/.lock.d" 2>/dev/null
            n=0
        fi
        sleep 0.1 2>/dev/null || sleep 1
    done
    trap 'rmdir "$spool/.lock.d" 2>/dev/null' EXIT
}

molq_unlock() {
    if command -v flock >/dev/null 2>&1; then
        exec 9>&-
    else
        rmdir "$spool/.lock.d" 2>/dev/null
        trap - EXIT
    fi
}

molq_need_setsid() {
    command -v setsid >/dev/null 2>&1 && return 0
    echo "molq: the local scheduler needs setsid(1) on this host" >&2
    exit 3
}

molq_facts() {
    # The facts a status is decided from, for job $1 (see molq.local.queue.JobFacts).
    sid=$1
    case $sid in '' | *[!A-Za-z0-9_.-]*) return 0 ;; esac
    if [ ! -f "$spool/jobs/$sid.json" ]; then
        printf 'U %s\n' "$sid"
        return 0
    fi
    d="$spool/jobs/$sid.dir"
    if [ ! -L "$d" ]; then
        printf 'N %s\n' "$sid"
        return 0
    fi
    flags=
    ! molq_is_queued "$sid" || flags="${flags}q"
    ! molq_is_claimed "$sid" || flags="${flags}c"
    ! molq_running_of "$sid" || flags="${flags}r"
    ! molq_started_alive "$d" || flags="${flags}a"
    [ ! -e "$d/started" ] || flags="${flags}s"
    [ ! -e "$d/cancelled" ] || flags="${flags}x"
    [ ! -e "$d/exit_unknown" ] || flags="${flags}u"
    [ ! -e "$d/oom_killed" ] || flags="${flags}o"
    printf 'J %s %s\n' "$sid" "${flags:--}"
    # The CPU time of the job's processes: the second line of the wrapper's `times`; the
    # third, when there is one, the peak memory of its private cgroup.
    if [ -f "$d/usage" ] && { IFS= read -r v && IFS= read -r v; } 2>/dev/null < "$d/usage"; then
        printf 'F %s usage %s\n' "$sid" "$v"
        if { IFS= read -r v && IFS= read -r v && IFS= read -r v; } 2>/dev/null < "$d/usage" && [ -n "$v" ]; then
            printf 'F %s peak %s\n' "$sid" "$v"
        fi
    fi
    # A memory cgroup its wrapper could not remove (killed, or a process the job left in it);
    # the path is written once the wrapper is in it, and a cgroup with a process stays.
    if [ -f "$d/cgroup" ] && { IFS= read -r v; } 2>/dev/null < "$d/cgroup"; then
        case $v in /sys/fs/cgroup/*) [ ! -d "$v" ] || rmdir "$v" 2>/dev/null || : ;; esac
    fi
    for n in exit_code never_ran; do
        # A file counts once its line is complete (the exit code is one write ending in \n).
        if [ -f "$d/$n" ] && molq_line "$d/$n"; then printf 'F %s %s %s\n' "$sid" "$n" "$v"; fi
    done
}
