#!/usr/bin/env bash
# End-to-end smoke check of the real services started by up.sh, and (optionally)
# a refresh of the raw scheduler output samples in tests/services/samples/.
#
#   smoke.sh [--quick] [--samples DIR]
#
# On both clusters: a job that exits 7 (FAILED 7:0), one that succeeds, an
# afterok dependency on each, an array 1-3, a cancelled job, and (unless
# --quick) a `sleep 120` job with --time=0:01 that must end TIMEOUT (~60-90 s).
# Also: Torque qsub/qstat/qdel against molqnoacct, ssh to molq-test-remote, atd.
set -uo pipefail

_svc_tag=smoke
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
QUICK=0 SAMPLES=""
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --samples) SAMPLES=$2; shift ;;
        *) die "usage: $0 [--quick] [--samples DIR]" ;;
    esac
    shift
done
if [ -n "$SAMPLES" ]; then mkdir -p "$SAMPLES" && SAMPLES=$(cd "$SAMPLES" && pwd) || die "bad --samples dir"; fi
[ -f "$MOLQ_TEST_DIR/env.sh" ] || die "run up.sh first ($MOLQ_TEST_DIR/env.sh missing)"
# shellcheck disable=SC1091
. "$MOLQ_TEST_DIR/env.sh"
WORK=$(mktemp -d /tmp/molq-smoke.XXXXXX)
cd "$WORK" || exit 1
fails=0
check() { # check DESCRIPTION EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then log "ok: $1 = $3"; else warn "FAIL: $1: expected '$2', got '$3'"; fails=$((fails + 1)); fi
}
# shell-quote a command line for the sample headers
showcmd() { local a out="\$"; for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,%+-]+$ ]]; then out+=" $a"; else out+=" '$a'"; fi; done; echo "$out"; }
run() { showcmd "$@"; "$@" 2>&1; echo "[exit $?]"; echo; }

declare -A ID
submit_set() { # cluster key
    local c=$1 k=$2
    export SLURM_CONF
    SLURM_CONF=$(eval echo "\$MOLQ_TEST_SLURM_${k}_CONF")
    [ $QUICK = 1 ] || ID[$k.timeout]=$(sbatch --parsable -J molq-timeout --time=0:01 -o "$WORK/$c-%j.out" --wrap 'sleep 120')
    ID[$k.fail]=$(sbatch --parsable -J molq-fail -o "$WORK/$c-%j.out" --wrap 'exit 7')
    ID[$k.ok]=$(sbatch --parsable -J molq-ok -o "$WORK/$c-%j.out" --wrap 'echo hello')
    ID[$k.dep]=$(sbatch --parsable -J molq-dep-ok --dependency=afterok:${ID[$k.ok]} -o "$WORK/$c-%j.out" --wrap 'echo dep')
    ID[$k.never]=$(sbatch --parsable -J molq-dep-never --dependency=afterok:${ID[$k.fail]} -o "$WORK/$c-%j.out" --wrap 'echo never')
    ID[$k.array]=$(sbatch --parsable -J molq-array --array=1-3 -o "$WORK/$c-%A_%a.out" --wrap 'echo task $SLURM_ARRAY_TASK_ID; sleep 2')
    ID[$k.cancel]=$(sbatch --parsable -J molq-cancel -o "$WORK/$c-%j.out" --wrap 'sleep 300')
    if [ "$k" = ACCT ]; then
        ID[$k.acct]=$(sbatch --parsable -J molq-acct --account="$MOLQ_TEST_SLURM_ACCOUNT" --qos="$MOLQ_TEST_SLURM_QOS" -p long -o "$WORK/$c-%j.out" --wrap 'true')
    fi
    log "$c: submitted $(for x in "${!ID[@]}"; do [[ $x == $k.* ]] && printf '%s=%s ' "${x#*.}" "${ID[$x]}"; done)"
}

state_of() { SLURM_CONF=$1 squeue -h -t all -j "$2" -o %T 2>/dev/null | sort -u | tr '\n' ' ' | sed 's/ $//'; }

submit_set molqacct ACCT
submit_set molqnoacct NOACCT
sleep 3
for k in ACCT NOACCT; do
    conf=$(eval echo "\$MOLQ_TEST_SLURM_${k}_CONF")
    wait_until 30 "$k cancel job running" bash -c "[ \"\$(SLURM_CONF=$conf squeue -h -j ${ID[$k.cancel]} -o %T)\" = RUNNING ]"
    SLURM_CONF=$conf scancel "${ID[$k.cancel]}"
done
for k in ACCT NOACCT; do
    conf=$(eval echo "\$MOLQ_TEST_SLURM_${k}_CONF")
    wait_until 30 "$k short jobs finished" bash -c "! SLURM_CONF=$conf squeue -h -o %i -j ${ID[$k.ok]},${ID[$k.fail]},${ID[$k.dep]},${ID[$k.array]},${ID[$k.cancel]} | grep -q ."
    check "$k squeue state fail" FAILED "$(state_of "$conf" "${ID[$k.fail]}")"
    check "$k squeue state ok" COMPLETED "$(state_of "$conf" "${ID[$k.ok]}")"
    check "$k squeue state afterok" COMPLETED "$(state_of "$conf" "${ID[$k.dep]}")"
    check "$k squeue reason never" DependencyNeverSatisfied "$(SLURM_CONF=$conf squeue -h -j "${ID[$k.never]}" -o %r)"
    check "$k squeue state array" COMPLETED "$(state_of "$conf" "${ID[$k.array]}")"
    check "$k squeue state cancel" CANCELLED "$(state_of "$conf" "${ID[$k.cancel]}")"
    check "$k scontrol ExitCode fail" "ExitCode=7:0" "$(SLURM_CONF=$conf scontrol show job -o "${ID[$k.fail]}" | grep -o 'ExitCode=[0-9:]*')"
done
conf=$MOLQ_TEST_SLURM_ACCT_CONF
sacct_state() { SLURM_CONF=$MOLQ_TEST_SLURM_ACCT_CONF sacct -n -P -X -o "${2:-State,ExitCode}" -j "$1" | sort -u | tr '\n' ' ' | sed 's/ $//'; }
# slurmctld hands job records to slurmdbd asynchronously: poll (bounded) before judging
check_sacct() { # DESCRIPTION EXPECTED JOBID [FIELDS]
    local end=$((SECONDS + 30)) got
    while got=$(sacct_state "$3" "${4:-}"); [ "$got" != "$2" ] && [ $SECONDS -lt $end ]; do sleep 1; done
    check "$1" "$2" "$got"
}
check_sacct "sacct fail" "FAILED|7:0" "${ID[ACCT.fail]}"
check_sacct "sacct ok" "COMPLETED|0:0" "${ID[ACCT.ok]}"
check_sacct "sacct array" "COMPLETED|0:0" "${ID[ACCT.array]}"
check_sacct "sacct cancel" "CANCELLED by 0|0:0" "${ID[ACCT.cancel]}"
check_sacct "sacct account/qos" "molqtest|molqtest|long" "${ID[ACCT.acct]}" Account,QOS,Partition
check "sacct without accounting" "Slurm accounting storage is disabled" "$(SLURM_CONF=$MOLQ_TEST_SLURM_NOACCT_CONF sacct -P -j 1 2>&1)"

# Torque-style commands (slurm-wlm-torque) on molqnoacct
export SLURM_CONF=$MOLQ_TEST_SLURM_NOACCT_CONF
printf '#!/bin/bash\n#PBS -N molq-pbs\n#PBS -l walltime=00:05:00\necho pbs $PBS_JOBID; sleep 60\n' > pbs.sh
pbsid=$(qsub pbs.sh)
check "qsub prints a job id" 1 "$([[ $pbsid =~ ^[0-9]+$ ]] && echo 1)"
wait_until 20 "qstat shows R" bash -c "qstat $pbsid | grep -q ' R '"
check "qstat -f job_state" "job_state = R" "$(qstat -f "$pbsid" | grep -o 'job_state = .')"
qdel "$pbsid"
wait_until 20 "qstat shows C after qdel" bash -c "qstat $pbsid | grep -q ' C '"
check "qstat after qdel" C "$(qstat "$pbsid" | awk 'NR==3{print $5}')"

# remote SLURM through the test sshd
check "ssh squeue on molq-test-remote" ok "$(ssh -F "$MOLQ_TEST_SSH_CONFIG" molq-test-remote 'squeue -h -o %i >/dev/null && echo ok' </dev/null)"
check "ssh sinfo on molq-test-remote-noacct" "$MOLQ_TEST_SLURM_NOACCT_NODE" "$(ssh -F "$MOLQ_TEST_SSH_CONFIG" molq-test-remote-noacct 'sinfo -h -N -o %N | sort -u' </dev/null)"

if [ $QUICK = 0 ]; then
    for k in ACCT NOACCT; do
        conf=$(eval echo "\$MOLQ_TEST_SLURM_${k}_CONF")
        wait_until 150 "$k --time=0:01 job to time out" bash -c "[ \"\$(SLURM_CONF=$conf squeue -h -t all -j ${ID[$k.timeout]} -o %T)\" = TIMEOUT ]"
        check "$k squeue timeout" TIMEOUT "$(state_of "$conf" "${ID[$k.timeout]}")"
    done
    check_sacct "sacct timeout" "TIMEOUT|0:0" "${ID[ACCT.timeout]}"
fi

if [ -n "$SAMPLES" ]; then
    mkdir -p "$SAMPLES"
    for k in ACCT NOACCT; do
        lk=$(echo "$k" | tr A-Z a-z)
        conf=$(eval echo "\$MOLQ_TEST_SLURM_${k}_CONF")
        export SLURM_CONF=$conf
        all="${ID[$k.fail]},${ID[$k.ok]},${ID[$k.dep]},${ID[$k.never]},${ID[$k.array]},${ID[$k.cancel]}"
        [ $QUICK = 1 ] || all="${ID[$k.timeout]},$all"
        [ "$k" = ACCT ] && all="$all,${ID[$k.acct]}"
        hdr="# SLURM $(sinfo -V | cut -d' ' -f2) (Debian bookworm), cluster molq$lk, SLURM_CONF=$conf, captured $(date -u +%FT%TZ) by tests/services/smoke.sh
# jobs:${ID[$k.timeout]:+ ${ID[$k.timeout]}=sleep 120 --time=0:01 (TIMEOUT),} ${ID[$k.fail]}='exit 7', ${ID[$k.ok]}='echo hello', ${ID[$k.dep]}=afterok:${ID[$k.ok]}, ${ID[$k.never]}=afterok:${ID[$k.fail]} (never runs), ${ID[$k.array]}=--array=1-3, ${ID[$k.cancel]}=sleep 300 then scancel${ID[$k.acct]:+, ${ID[$k.acct]}=--account=molqtest --qos=molqtest -p long}
"
        {
            echo "$hdr"
            run squeue -h -t all -j "$all" -o '%i|%j|%T|%r|%M|%l|%N|%S|%e|%P|%a|%q'
            run squeue -h -t all -j "$all" -O 'JobID:|,ArrayJobID:|,ArrayTaskID:|,Name:|,State:|,Reason:|'
            run squeue -h -j "$all" -o '%i|%T|%r'
            run squeue
            run squeue -h -t all -j 99999999 -o '%i|%T'
        } > "$SAMPLES/squeue_$lk.txt"
        {
            echo "$hdr"
            for j in ${all//,/ }; do run scontrol show job -o "$j"; done
            run scontrol show job "${ID[$k.array]}_2"
            run scontrol show job "${ID[$k.fail]}"
            run scontrol show job -o 99999999
        } > "$SAMPLES/scontrol_show_job_$lk.txt"
        {
            echo "$hdr"
            run sacct -P -X -o JobID,JobIDRaw,JobName,State,ExitCode,DerivedExitCode,Partition,Account,QOS,Elapsed,Submit,Start,End,NodeList -j "$all"
            run sacct -P -o JobID,State,ExitCode -j "$all"
            run sacct --parsable2 --noheader -X -o JobID,State,ExitCode -j "${ID[$k.fail]}"
            run sacct -P -X -o JobID,State -j 99999999
        } > "$SAMPLES/sacct_$lk.txt"
    done
    export SLURM_CONF=$MOLQ_TEST_SLURM_NOACCT_CONF
    {
        echo "# Torque-style commands from slurm-wlm-torque against molqnoacct (SLURM_CONF=$SLURM_CONF)"
        echo "# pbs.sh: $(tr '\n' ';' < pbs.sh)"
        echo
        j=$(qsub pbs.sh); echo "\$ qsub pbs.sh"; echo "$j"; echo
        sleep 2
        run qstat "$j"
        run qstat -f "$j"
        run qdel "$j"
        sleep 2
        run qstat "$j"
        run qstat -f "$j"
        run qstat -x "$j"
        echo "\$ echo true | qsub    # no #! line"; echo true | qsub 2>&1; echo "[exit $?]"; echo
        run qstat 99999999
    } > "$SAMPLES/torque_qstat.txt"
    log "samples written to $SAMPLES"
fi
# do not leave the never-satisfiable dependants pending forever
SLURM_CONF=$MOLQ_TEST_SLURM_ACCT_CONF scancel "${ID[ACCT.never]}" 2>/dev/null
SLURM_CONF=$MOLQ_TEST_SLURM_NOACCT_CONF scancel "${ID[NOACCT.never]}" 2>/dev/null
rm -rf "$WORK"
if [ $fails -gt 0 ]; then echo "smoke: $fails check(s) FAILED"; exit 1; fi
echo "smoke: all checks passed"
