# poll: MAX, job ids on stdin. A scheduling pass, then the facts of each job.
umask 077
molq_need_setsid
molq_lock || exit 4
molq_advance "$1" >/dev/null
molq_unlock
while IFS= read -r sid; do molq_facts "$sid"; done
