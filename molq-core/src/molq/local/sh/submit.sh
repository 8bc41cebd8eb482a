# submit: MAX JOB_DIR SID ENTRY JSON LINE STDOUT STDERR, the job's job.sh on stdin. Creates the
# job's output files (private), queues the job and runs a scheduling pass (which starts it at
# once when it fits and nothing waits ahead of it).
umask 077
max=$1 d=$2 sid=$3 e=$4 json=$5 line=$6 out=$7 err=$8
molq_need_setsid
t="$d/.job.sh.tmp"
{ cat >"$t" && chmod 700 "$t" && mv -f -- "$t" "$d/job.sh"; } || exit 1
printf '%s' "$json" >"$spool/jobs/$sid.json" || exit 1
rm -f -- "$spool/jobs/$sid.dir"
ln -s -- "$d" "$spool/jobs/$sid.dir" || exit 1
# `true`, not `:`: a failed redirection of a special builtin would end the script.
if ! { true >>"$out" && true >>"$err"; } 2>/dev/null; then
    molq_take "$d" || :
    molq_put "$d/never_ran" "cannot open the job's output files ($out, $err)" || exit 1
    printf 'V %s\n' "$sid"
    exit 0
fi
molq_lock || exit 4
molq_put "$spool/queued/$e" "$line" || exit 1
molq_advance "$max" >/dev/null
