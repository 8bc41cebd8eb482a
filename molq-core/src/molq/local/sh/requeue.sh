# requeue: OLD NEW LINE triples. Rewrites queue entries (of an earlier molq-core) in the
# current form; an entry that left the queue meanwhile stays gone.
umask 077
molq_lock || exit 4
while [ $# -ge 3 ]; do
    if [ -f "$spool/queued/$1" ] && molq_put "$spool/queued/$2" "$3" && [ "$1" != "$2" ]; then
        rm -f -- "$spool/queued/$1"
    fi
    shift 3
done
