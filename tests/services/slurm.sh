#!/usr/bin/env bash
# Bring up two real single-node SLURM clusters on this machine (idempotent).
#
#   slurm.sh [up]                 install (if missing) + start everything, wait for idle nodes
#   slurm.sh status               show daemons and node states
#   slurm.sh stop-ctld CLUSTER    stop only slurmctld of CLUSTER (simulate a controller outage)
#   slurm.sh start-ctld CLUSTER   start slurmctld of CLUSTER again and wait until it answers
#   slurm.sh clean                scancel every job on both clusters (leftovers of earlier runs)
#   slurm.sh stop                 stop all slurm daemons, slurmdbd and the private MariaDB
#
# Clusters: molqacct (slurmdbd + MariaDB accounting), molqnoacct (no accounting).
# Clients pick a cluster with SLURM_CONF=$MOLQ_TEST_DIR/slurm/<cluster>/slurm.conf;
# see tests/services/README.md. Writes $MOLQ_TEST_DIR/slurm/env.sh.
set -uo pipefail

_svc_tag=slurm
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

SLURM_DIR="$MOLQ_TEST_DIR/slurm"
MYSQL_DIR="$MOLQ_TEST_DIR/mysql"
MYSQL_PORT=16306
MYSQL_SOCK="$MYSQL_DIR/mysqld.sock"
DBD_PORT=16819
DB_NAME=molq_slurm_acct_db
DB_USER=slurm
DB_PASS=molq-test-slurmdbd          # loopback-only throwaway test database
ACCT_CLUSTER=molqacct
NOACCT_CLUSTER=molqnoacct
CLUSTERS=("$ACCT_CLUSTER" "$NOACCT_CLUSTER")
# Oversubscribed on purpose: a 2-core CI box still runs 16 one-cpu jobs at once
# per cluster (SlurmdParameters=config_overrides keeps the node from draining).
# slurmctld starts new jobs on a ~1 s tick, so trivial jobs go through at about
# NODE_CPUS per second. Override with MOLQ_TEST_SLURM_CPUS / MOLQ_TEST_SLURM_MEM_MB.
NODE_CPUS="${MOLQ_TEST_SLURM_CPUS:-16}"
[ "$(nproc)" -gt "$NODE_CPUS" ] && NODE_CPUS=$(nproc)
NODE_MEM_MB="${MOLQ_TEST_SLURM_MEM_MB:-8192}"
IDLE_WAIT=${MOLQ_TEST_SLURM_WAIT:-90}

ctld_port()  { case $1 in "$ACCT_CLUSTER") echo 16817;; *) echo 16827;; esac; }
slurmd_port(){ case $1 in "$ACCT_CLUSTER") echo 16818;; *) echo 16828;; esac; }
cdir()       { echo "$SLURM_DIR/$1"; }
conf()       { echo "$SLURM_DIR/$1/slurm.conf"; }
nodename()   { echo "$1-n1"; }
known_cluster() { [ "$1" = "$ACCT_CLUSTER" ] || [ "$1" = "$NOACCT_CLUSTER" ] || die "unknown cluster '$1' (use $ACCT_CLUSTER or $NOACCT_CLUSTER)"; }

# run a SLURM client against a cluster, bounded in time
sc() { local c=$1; shift; SLURM_CONF=$(conf "$c") timeout 30 "$@"; }

host_short() { hostname -s 2>/dev/null || hostname; }

# ---------------------------------------------------------------- munge
munge_ok() { timeout 10 munge -n 2>/dev/null | timeout 10 unmunge >/dev/null 2>&1; }

ensure_munge() {
    if munge_ok; then return 0; fi
    log "starting munged"
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    install -d -m 0755 /etc/munge
    chown munge:munge /etc/munge
    chmod 0700 /etc/munge
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key --force >&2
        else
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
        fi
    fi
    chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
    # a stale pid/socket from a killed munged makes the new one refuse to start
    if ! pid_alive /run/munge/munged.pid munged >/dev/null; then
        rm -f /run/munge/munged.pid /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    else
        kill_pidfile /run/munge/munged.pid munged 5
        rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    fi
    spawn /var/log/munge/munged.stdout setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged
    wait_until 20 "munge -n | unmunge" munge_ok || die "munged did not come up; see /var/log/munge/munged.log"
}

# ---------------------------------------------------------------- MariaDB (private instance)
mysql_cnf() { echo "$MYSQL_DIR/my.cnf"; }
# shellcheck disable=SC2120
mysql_q()   { timeout 30 mariadb --no-defaults --socket="$MYSQL_SOCK" -uroot --batch --skip-column-names "$@"; }
mysql_ok()  { timeout 10 mariadb-admin --no-defaults --socket="$MYSQL_SOCK" -uroot ping >/dev/null 2>&1; }

ensure_mysql() {
    install -d -o mysql -g mysql -m 0750 "$MYSQL_DIR" "$MYSQL_DIR/data"
    local changed=0
    write_if_changed "$(mysql_cnf)" 0644 <<CNF && changed=1
# private MariaDB for the molq test SLURM accounting (loopback only)
[mysqld]
user=mysql
datadir=$MYSQL_DIR/data
socket=$MYSQL_SOCK
pid-file=$MYSQL_DIR/mysqld.pid
port=$MYSQL_PORT
bind-address=127.0.0.1
log-error=$MYSQL_DIR/mysqld.err
innodb_buffer_pool_size=256M
innodb_log_file_size=64M
innodb_lock_wait_timeout=900
max_connections=100
skip-name-resolve
CNF
    if mysql_ok && [ $changed = 0 ]; then return 0; fi
    if [ $changed = 1 ] && pid_alive "$MYSQL_DIR/mysqld.pid" >/dev/null; then
        log "my.cnf changed: restarting mysqld"
        kill_pidfile "$MYSQL_DIR/mysqld.pid" "" 60
    fi
    if [ ! -d "$MYSQL_DIR/data/mysql" ]; then
        log "initialising MariaDB datadir $MYSQL_DIR/data"
        timeout 300 mariadb-install-db --defaults-file="$(mysql_cnf)" --user=mysql \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$MYSQL_DIR/install-db.log" 2>&1 || die "mariadb-install-db failed; see $MYSQL_DIR/install-db.log"
    fi
    if ! pid_alive "$MYSQL_DIR/mysqld.pid" >/dev/null; then
        log "starting mysqld (127.0.0.1:$MYSQL_PORT, socket $MYSQL_SOCK)"
        rm -f "$MYSQL_DIR/mysqld.pid" "$MYSQL_SOCK"
        spawn "$MYSQL_DIR/mysqld.stdout" /usr/sbin/mariadbd --defaults-file="$(mysql_cnf)"
    fi
    wait_until 90 "mysqld ping" mysql_ok || die "mysqld did not come up; see $MYSQL_DIR/mysqld.err"
}

ensure_db() {
    # idempotent SQL; 'slurm'@'127.0.0.1' because skip-name-resolve + TCP
    mysql_q <<SQL || die "creating database/user for slurmdbd failed"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
SQL
}

# ---------------------------------------------------------------- config files
gen_slurm_conf() {
    local c=$1 d node host acct_lines
    d=$(cdir "$c"); node=$(nodename "$c"); host=$(host_short)
    if [ "$c" = "$ACCT_CLUSTER" ]; then
        # No cgroups here (proctrack/linuxproc, task/none): OverMemoryKill is what enforces
        # --mem, at each accounting sample (a job may sample faster: sbatch --acctg-freq=task=1).
        acct_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobAcctGatherParams=OverMemoryKill
# Limits set in the database (a QOS's MaxSubmitJobsPerUser, ...) are enforced as on a real
# site: sbatch refuses past them, which molq must tell from a failure (tests/slurm/test_live_room.py).
AccountingStorageEnforce=associations,limits,qos"
    else
        acct_lines="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
    fi
    cat <<CONF
# Generated by molq tests/services/slurm.sh -- do not edit (rewritten on every run)
ClusterName=$c
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(ctld_port "$c")
SlurmdPort=$(slurmd_port "$c")
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=5,bf_interval=5,default_queue_depth=1000,sched_min_interval=0
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
MaxJobCount=50000
MaxArraySize=10001
KillWait=2
OverTimeLimit=0
InactiveLimit=0
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=60
MessageTimeout=10
MailProg=/bin/true
# bind daemons to the configured (loopback) addresses instead of 0.0.0.0
CommunicationParameters=NoInAddrAny
JobCompType=jobcomp/none
$acct_lines
NodeName=$node NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$NODE_CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=$NODE_MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=long Nodes=$node Default=NO MaxTime=INFINITE State=UP
PartitionName=short Nodes=$node Default=NO MaxTime=00:03:00 State=UP
CONF
}

gen_slurmdbd_conf() {
    local d; d=$(cdir "$ACCT_CLUSTER")
    cat <<CONF
# Generated by molq tests/services/slurm.sh -- do not edit
AuthType=auth/munge
DbdHost=$(host_short)
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$d/log/slurmdbd.log
PidFile=$d/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
CONF
}

# returns 0 if slurm.conf changed
write_cluster_conf() {
    local c=$1 d; d=$(cdir "$c")
    install -d -m 0755 "$d" "$d/state" "$d/spool" "$d/log" "$d/run"
    gen_slurm_conf "$c" | write_if_changed "$(conf "$c")" 0644
}

# ---------------------------------------------------------------- slurmdbd
dbd_pidf() { echo "$(cdir "$ACCT_CLUSTER")/run/slurmdbd.pid"; }
dbd_ok() { pid_alive "$(dbd_pidf)" slurmdbd >/dev/null && sc "$ACCT_CLUSTER" sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }

ensure_slurmdbd() {
    local d changed=0; d=$(cdir "$ACCT_CLUSTER")
    gen_slurmdbd_conf | write_if_changed "$d/slurmdbd.conf" 0600 && changed=1
    chown root:root "$d/slurmdbd.conf"
    if [ $changed = 1 ] && pid_alive "$(dbd_pidf)" slurmdbd >/dev/null; then
        log "slurmdbd.conf changed: restarting slurmdbd"
        kill_pidfile "$(dbd_pidf)" slurmdbd 30
    fi
    if dbd_ok; then return 0; fi
    if ! pid_alive "$(dbd_pidf)" slurmdbd >/dev/null; then
        log "starting slurmdbd (127.0.0.1:$DBD_PORT)"
        rm -f "$(dbd_pidf)"
        # slurmdbd finds slurmdbd.conf next to $SLURM_CONF
        spawn "$d/log/slurmdbd.stdout" env SLURM_CONF="$(conf "$ACCT_CLUSTER")" /usr/sbin/slurmdbd
    fi
    wait_until 90 "slurmdbd answering sacctmgr" dbd_ok || die "slurmdbd did not come up; see $d/log/slurmdbd.log"
}

# returns 0 if the cluster had to be added (slurmctld must then be restarted)
ensure_assoc() {
    local c=$ACCT_CLUSTER added=1 assoc
    # fast path (one sacctmgr call): root has an association in molqtest and
    # every root association carries QOS molqtest => all of the below exists
    assoc=$(sc "$c" sacctmgr -n -P list assoc cluster="$c" user=root format=account,qos 2>/dev/null)
    if printf '%s\n' "$assoc" | grep -q '^molqtest|' && ! printf '%s\n' "$assoc" | grep -v -q molqtest; then
        return 1
    fi
    if ! sc "$c" sacctmgr -n -P list cluster format=cluster | grep -qx "$c"; then
        log "sacctmgr add cluster $c"
        sc "$c" sacctmgr -i add cluster "$c" >&2 || die "sacctmgr add cluster failed"
        added=0
    fi
    if ! sc "$c" sacctmgr -n -P list account molqtest format=account | grep -qx molqtest; then
        log "sacctmgr add account molqtest"
        sc "$c" sacctmgr -i add account molqtest cluster="$c" Description="molq tests" Organization=molq >&2 || die "add account failed"
    fi
    if ! sc "$c" sacctmgr -n -P list assoc cluster="$c" account=molqtest user=root format=user | grep -qx root; then
        log "sacctmgr add user root account=molqtest"
        sc "$c" sacctmgr -i add user root account=molqtest cluster="$c" >&2 || die "add user failed"
    fi
    if ! sc "$c" sacctmgr -n -P list qos molqtest format=name | grep -qx molqtest; then
        log "sacctmgr add qos molqtest"
        sc "$c" sacctmgr -i add qos molqtest >&2 || die "add qos failed"
    fi
    if sc "$c" sacctmgr -n -P list assoc cluster="$c" user=root format=qos | grep -qv molqtest; then
        log "sacctmgr modify user root set qos+=molqtest"
        sc "$c" sacctmgr -i modify user root where cluster="$c" set qos+=molqtest >&2 || die "modify user qos failed"
    fi
    return $added
}

# ---------------------------------------------------------------- slurmctld / slurmd
ctld_pidf()   { echo "$(cdir "$1")/run/slurmctld.pid"; }
slurmd_pidf() { echo "$(cdir "$1")/run/slurmd.pid"; }
ctld_alive()  { pid_alive "$(ctld_pidf "$1")" slurmctld >/dev/null; }
slurmd_alive(){ pid_alive "$(slurmd_pidf "$1")" slurmd >/dev/null; }
ctld_ok()     { ctld_alive "$1" && sc "$1" scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_state()  { sc "$1" sinfo -h -N -n "$(nodename "$1")" -o '%t' 2>/dev/null | head -n1; }
node_ready()  { case "$(node_state "$1")" in idle|mix|alloc|comp) return 0;; *) return 1;; esac; }

start_ctld() {
    local c=$1 d; d=$(cdir "$c")
    if ctld_ok "$c"; then return 0; fi
    if ! ctld_alive "$c"; then
        log "starting slurmctld for $c (port $(ctld_port "$c"))"
        rm -f "$(ctld_pidf "$c")"
        # -i: ignore errors in saved state rather than refusing to start
        spawn "$d/log/slurmctld.stdout" env SLURM_CONF="$(conf "$c")" /usr/sbin/slurmctld -i -f "$(conf "$c")"
    fi
    wait_until 60 "slurmctld $c: scontrol ping" ctld_ok "$c" || die "slurmctld for $c did not come up; see $d/log/slurmctld.log"
}

stop_ctld() { kill_pidfile "$(ctld_pidf "$1")" slurmctld 30; }

start_slurmd() {
    local c=$1 d; d=$(cdir "$c")
    if slurmd_alive "$c"; then return 0; fi
    log "starting slurmd $(nodename "$c") for $c (port $(slurmd_port "$c"))"
    rm -f "$(slurmd_pidf "$c")"
    spawn "$d/log/slurmd.stdout" env SLURM_CONF="$(conf "$c")" /usr/sbin/slurmd -f "$(conf "$c")" -N "$(nodename "$c")"
    wait_until 20 "slurmd $c pidfile" slurmd_alive "$c" || die "slurmd for $c did not start; see $d/log/slurmd.log"
}

wait_node() {
    local c=$1 end=$((SECONDS + IDLE_WAIT)) st resumed=0
    while true; do
        st=$(node_state "$c")
        case "$st" in
            idle|mix|alloc|comp) return 0 ;;
            drain|drng|down|fail|failg|drain\*|down\*|idle\*|unk*|"")
                if [ "$resumed" = 0 ] && slurmd_alive "$c" && case "$st" in drain*|drng|down|fail*) true;; *) false;; esac; then
                    log "node $(nodename "$c") is '$st': scontrol update state=resume"
                    sc "$c" scontrol update nodename="$(nodename "$c")" state=resume >&2 || true
                    resumed=1
                fi ;;
        esac
        if [ $SECONDS -ge $end ]; then
            sc "$c" scontrol show node "$(nodename "$c")" >&2 || true
            die "node $(nodename "$c") of $c not idle after ${IDLE_WAIT}s (state '$st'); logs in $(cdir "$c")/log"
        fi
        slurmd_alive "$c" || start_slurmd "$c"
        sleep 0.5
    done
}

up_cluster() {
    local c=$1 changed=0
    write_cluster_conf "$c" && changed=1
    if [ $changed = 1 ] && { ctld_alive "$c" || slurmd_alive "$c"; }; then
        log "slurm.conf of $c changed: restarting its slurmctld and slurmd"
        kill_pidfile "$(slurmd_pidf "$c")" slurmd 30
        stop_ctld "$c"
    fi
    if [ "$c" = "$ACCT_CLUSTER" ]; then
        ensure_mysql
        ensure_db
        ensure_slurmdbd
        if ensure_assoc && ctld_alive "$c"; then
            log "cluster registered in slurmdbd: restarting slurmctld of $c"
            stop_ctld "$c"
        fi
    fi
    start_ctld "$c"
    start_slurmd "$c"
    wait_node "$c"
    log "$c ready: node $(nodename "$c") $(node_state "$c")"
}

write_env() {
    write_if_changed "$SLURM_DIR/env.sh" 0644 <<ENV || true
# Generated by molq tests/services/slurm.sh; source it to reach the test clusters.
export MOLQ_TEST_SLURM_ACCT_CONF=$(conf "$ACCT_CLUSTER")
export MOLQ_TEST_SLURM_NOACCT_CONF=$(conf "$NOACCT_CLUSTER")
export MOLQ_TEST_SLURM_ACCT_CLUSTER=$ACCT_CLUSTER
export MOLQ_TEST_SLURM_NOACCT_CLUSTER=$NOACCT_CLUSTER
export MOLQ_TEST_SLURM_ACCT_NODE=$(nodename "$ACCT_CLUSTER")
export MOLQ_TEST_SLURM_NOACCT_NODE=$(nodename "$NOACCT_CLUSTER")
export MOLQ_TEST_SLURM_ACCOUNT=molqtest
export MOLQ_TEST_SLURM_QOS=molqtest
export MOLQ_TEST_SLURM_PARTITIONS="debug short long"
export MOLQ_TEST_SLURM_CPUS=$NODE_CPUS
ENV
}

cmd_up() {
    require_root
    apt_ensure "${SLURM_PKGS[@]}"
    install -d -m 0755 "$MOLQ_TEST_DIR" "$SLURM_DIR"
    local rc=0 c
    with_lock "$SLURM_DIR/.lock" _up_locked || rc=$?
    write_env
    for c in "${CLUSTERS[@]}"; do
        echo "export SLURM_CONF=$(conf "$c")   # cluster $c"
    done
    echo "# env file: $SLURM_DIR/env.sh"
    return $rc
}

_up_locked() {
    ensure_munge
    local rc=0 c
    for c in "$NOACCT_CLUSTER" "$ACCT_CLUSTER"; do
        ( up_cluster "$c" ) || { warn "cluster $c FAILED"; rc=1; }
    done
    return $rc
}

cmd_status() {
    local c rc=0
    if munge_ok; then echo "munged: ok"; else echo "munged: DOWN"; rc=1; fi
    if mysql_ok; then echo "mysqld: ok (127.0.0.1:$MYSQL_PORT)"; else echo "mysqld: DOWN"; rc=1; fi
    if dbd_ok; then echo "slurmdbd: ok (pid $(pid_alive "$(dbd_pidf)"))"; else echo "slurmdbd: DOWN"; rc=1; fi
    for c in "${CLUSTERS[@]}"; do
        echo "== $c  SLURM_CONF=$(conf "$c")"
        if ctld_ok "$c"; then echo "  slurmctld: ok (pid $(pid_alive "$(ctld_pidf "$c")"), port $(ctld_port "$c"))"
        else echo "  slurmctld: DOWN"; rc=1; fi
        if slurmd_alive "$c"; then echo "  slurmd: running (pid $(pid_alive "$(slurmd_pidf "$c")"), node $(nodename "$c"))"
        else echo "  slurmd: DOWN"; rc=1; fi
        echo "  node state: $(node_state "$c" || true)"
    done
    return $rc
}

cmd_stop() {
    local c
    for c in "${CLUSTERS[@]}"; do
        kill_pidfile "$(slurmd_pidf "$c")" slurmd 30
        stop_ctld "$c"
    done
    kill_pidfile "$(dbd_pidf)" slurmdbd 30
    kill_pidfile "$MYSQL_DIR/mysqld.pid" "" 60
    log "stopped slurm daemons, slurmdbd and mysqld (munged left running)"
}

case "${1:-up}" in
    up) cmd_up ;;
    status) cmd_status ;;
    stop-ctld)
        [ $# -eq 2 ] || die "usage: $0 stop-ctld CLUSTER"
        known_cluster "$2"; stop_ctld "$2"; log "slurmctld of $2 stopped" ;;
    start-ctld)
        [ $# -eq 2 ] || die "usage: $0 start-ctld CLUSTER"
        known_cluster "$2"; start_ctld "$2"; log "slurmctld of $2 is up" ;;
    clean)
        for c in "${CLUSTERS[@]}"; do sc "$c" scancel --user=root >&2 || warn "scancel on $c failed"; done
        log "cancelled all jobs on ${CLUSTERS[*]}" ;;
    stop) cmd_stop ;;
    -h|--help|help) sed -n '2,13p' "$0" ;;
    *) die "unknown command '$1' (up|status|stop-ctld C|start-ctld C|clean|stop)" ;;
esac
