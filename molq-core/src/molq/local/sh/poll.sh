# poll: MAX, job ids on stdin. A scheduling pass, then the facts of each job, then the times
# the wrapper recorded (T mtime path, one stat(1) for all; left out where stat cannot).
umask 077
molq_need_setsid
molq_lock || exit 4
molq_advance "$1" >/dev/null
molq_unlock
set --
while IFS= read -r sid; do
    molq_facts "$sid"
    case $sid in '' | *[!A-Za-z0-9_.-]*) continue ;; esac
    d="$spool/jobs/$sid.dir"
    [ -L "$d" ] || continue
    [ ! -e "$d/started" ] || set -- "$@" "$d/started"
    [ ! -e "$d/exit_code" ] || set -- "$@" "$d/exit_code"
done
[ $# = 0 ] || stat -c 'T %.9Y %n' -- "$@" 2>/dev/null || :
