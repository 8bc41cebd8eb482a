# advance: MAX [SID PID]. One scheduling pass; run by a job's wrapper when the job ends (SID,
# wrapper PID), so the queue moves on with no molq process alive.
umask 077
molq_need_setsid
molq_lock || exit 4
molq_advance "$1" "${2:-}" "${3:-}"
