# queue: no arguments. The running jobs (R sid pid cpus), jobs being started (C sid) and the
# queued jobs in order with what each waits for (Q entry cpus verdict reason).
umask 077
for f in "$spool"/running/*; do
    n=${f##*/}
    if molq_entry "$f"; then printf 'R %s %s %s\n' "${n%%@*}" "$pid" "$cpus"; fi
done
for f in "$spool"/claimed/*; do
    n=${f##*/}
    [ ! -f "$f" ] || printf 'C %s\n' "${n#*-}"
done
for f in "$spool"/queued/*; do
    [ -f "$f" ] || continue
    e=${f##*/}
    molq_line "$f" || :
    set -f
    # shellcheck disable=SC2086
    set -- $v
    set +f
    case ${1:-x} in
        *[!0-9]*)
            printf 'Q %s 1 wait %s\n' "$e" "a molq process to upgrade its queue entry"
            continue
            ;;
    esac
    c=$1
    shift
    molq_verdict "$@"
    printf 'Q %s %s %s %s\n' "$e" "$c" "$verdict" "$why"
done
