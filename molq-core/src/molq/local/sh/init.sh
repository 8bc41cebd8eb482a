# init: [ADVANCE_NAME] with the advance script on stdin. Creates the spool (default
# ~/.molq/local-spool of this user) and installs the hand-over script; prints the cores, the
# spool's path and the login umask, after any queue entries left by an earlier molq-core.
molq_umask=$(umask)
umask 077
[ -n "$spool" ] || spool="$HOME/.molq/local-spool"
mkdir -p -- "$spool/jobs" "$spool/queued" "$spool/claimed" "$spool/running" "$spool/bin" || exit 1
cd -- "$spool" || exit 1
if [ -n "${1:-}" ] && [ ! -f "bin/$1" ]; then
    cat >"bin/.$1.$$" && mv -f -- "bin/.$1.$$" "bin/$1" || exit 1
else
    cat >/dev/null
fi
# Queue entries of an earlier molq-core, with their jobs' descriptions (O entry json).
for f in queued/*; do
    [ -f "$f" ] || continue
    molq_line "$f" || :
    case ${v%% *} in '' | *[!0-9]*) ;; *) continue ;; esac
    e=${f##*/}
    j=
    { IFS= read -r j; } 2>/dev/null <"jobs/${e#*-}.json"
    printf 'O %s %s\n' "$e" "$j"
done
n=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
printf 'C %s\nM %s\nP %s' "$n" "$molq_umask" "$PWD"
