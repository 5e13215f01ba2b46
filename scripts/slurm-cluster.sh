#!/usr/bin/env bash
# A real, single-machine Slurm cluster for development and CI.
#
#   bash scripts/slurm-cluster.sh install   # apt-get the Debian packages (idempotent)
#   bash scripts/slurm-cluster.sh start     # start munged, mariadbd, slurmdbd, slurmctld, slurmd
#   bash scripts/slurm-cluster.sh status    # which daemons run; exit 0 only if the cluster answers
#   bash scripts/slurm-cluster.sh stop      # stop what `start` started (by pid file)
#   bash scripts/slurm-cluster.sh purge     # stop, then delete all state (jobs, accounting db)
#
#   PLAN_EXPERIMENT_SLURM_NODES=2 ... start  # two nodes on this machine (see docs/slurm-cluster.md)
#
# Needs root (it starts daemons and writes the Slurm config). No systemd is needed or
# used: daemons are started directly and stopped by pid file. No cgroups are needed.
# See docs/slurm-cluster.md for the settings and why each one is there.
#
# Environment (all optional):
#   PLAN_EXPERIMENT_SLURM_DIR       state, logs, pid files, database  [/tmp/plan-experiment-slurm]
#   PLAN_EXPERIMENT_SLURM_CONF_DIR  where slurm.conf/slurmdbd.conf go [/etc/slurm]
#                                   (anything else: export SLURM_CONF=<dir>/slurm.conf for clients)
#   PLAN_EXPERIMENT_SLURM_CLUSTER   ClusterName                        [planexp]
#   PLAN_EXPERIMENT_SLURM_DB_PORT   TCP port of the private mariadbd   [3307]
#   PLAN_EXPERIMENT_SLURM_PORT_BASE slurmctld port; slurmd and slurmdbd take the next two [6817]
#   PLAN_EXPERIMENT_SLURM_NODE_NAME the node's NodeName               [short hostname]
#                                   (a second cluster on the same machine needs its own
#                                   _DIR, _CONF_DIR, _CLUSTER, _DB_PORT, _PORT_BASE and
#                                   _NODE_NAME; munged is shared)
#   PLAN_EXPERIMENT_SLURM_NODES     slurmd nodes [1]; 2 or more: each in its own network
#                                   namespace with its own address and host name, joined
#                                   by a bridge (needs `ip netns`); node names <cluster>-node<i>
#   PLAN_EXPERIMENT_SLURM_SUBNET    first three octets of the nodes' private /24   [10.250.0]
#                                   (.1 the controller on the bridge, .2, .3 ... the nodes)
#   PLAN_EXPERIMENT_SLURM_USERS     extra users to register, space-separated ($SUDO_USER is added)
#   PLAN_EXPERIMENT_SLURM_FORCE=1   overwrite a slurm.conf this script did not write
#   PLAN_EXPERIMENT_SLURM_TIMEOUT   seconds to wait for each daemon    [60]

set -euo pipefail

STATE_DIR="${PLAN_EXPERIMENT_SLURM_DIR:-/tmp/plan-experiment-slurm}"
CONF_DIR="${PLAN_EXPERIMENT_SLURM_CONF_DIR:-/etc/slurm}"
CLUSTER="${PLAN_EXPERIMENT_SLURM_CLUSTER:-planexp}"
DB_PORT="${PLAN_EXPERIMENT_SLURM_DB_PORT:-3307}"
TIMEOUT="${PLAN_EXPERIMENT_SLURM_TIMEOUT:-60}"
PORT_BASE="${PLAN_EXPERIMENT_SLURM_PORT_BASE:-6817}"
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
NODES="${PLAN_EXPERIMENT_SLURM_NODES:-1}"
SUBNET="${PLAN_EXPERIMENT_SLURM_SUBNET:-10.250.0}"
[[ $NODES =~ ^[1-9][0-9]?$ ]] || { echo "PLAN_EXPERIMENT_SLURM_NODES must be 1-99, got '$NODES'" >&2; exit 2; }
[[ $SUBNET =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] ||
    { echo "PLAN_EXPERIMENT_SLURM_SUBNET must be three octets such as 10.250.0, got '$SUBNET'" >&2; exit 2; }
# Interface names (15 characters at most) carry the subnet, so two instances never share one.
NET_TAG="pe$(tr -d . <<<"${SUBNET#*.}")"
BRIDGE="${NET_TAG}br"
ACCOUNT="$CLUSTER"
PARTITION="debug"
# A known, documented limit: the planner reads it back (scontrol show config) to split
# large evaluation arrays. Slurm's own default is 1001 too; pinning it keeps tests stable.
MAX_ARRAY_SIZE=1001
# Marker on the first line of every config file this script writes; a config without
# it belongs to someone else and is never overwritten silently.
MARKER="# Managed by plan-experiment scripts/slurm-cluster.sh -- regenerated on every start."

# iproute2 (ip netns, bridges, veth pairs) for several nodes on one machine.
PACKAGES=(munge slurm-wlm slurmdbd mariadb-server iproute2)

LOG_DIR="$STATE_DIR/log"
RUN_DIR="$STATE_DIR/run"
DB_DIR="$STATE_DIR/db"
CTLD_STATE="$STATE_DIR/state/slurmctld"
SLURMD_SPOOL="$STATE_DIR/state/slurmd"
DB_SOCKET="$DB_DIR/mysqld.sock"
DB_PID="$DB_DIR/mysqld.pid"
MUNGE_PID="/run/munge/munged.pid"
MUNGE_OURS="$RUN_DIR/munged.started-here"
DB_PASS_FILE="$STATE_DIR/db-password"
NET_DIR="$STATE_DIR/net"

export SLURM_CONF="$CONF_DIR/slurm.conf"

log() { printf "[slurm-cluster %3ss] %s\n" "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "run as root (it starts daemons and writes $CONF_DIR)"
}

# --- pid helpers ------------------------------------------------------------------

pid_alive() {  # pid_alive <pidfile>: true when the file names a live process
    local pid
    [[ -s "$1" ]] || return 1
    pid=$(<"$1")
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

wait_for() {  # wait_for <what> <command...>: poll quickly; die after $TIMEOUT seconds
    local what=$1; shift
    local deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "$what did not come up within ${TIMEOUT}s; see logs in $LOG_DIR"
        fi
        sleep 0.1
    done
}

# stop_pidfiles <name>=<pidfile>...: TERM them all at once, wait up to 10 s, then KILL.
# Daemons in one call stop in parallel, so only put independent ones together.
stop_pidfiles() {
    local spec name file pid alive
    local -a pids=()
    for spec in "$@"; do
        name=${spec%%=*} file=${spec#*=}
        if pid_alive "$file"; then
            pid=$(<"$file")
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$name=$pid")
        fi
        rm -f "$file"
    done
    for _ in $(seq 100); do
        alive=0
        for spec in "${pids[@]}"; do kill -0 "${spec#*=}" 2>/dev/null && alive=1; done
        ((alive)) || return 0
        sleep 0.1
    done
    for spec in "${pids[@]}"; do
        if kill -0 "${spec#*=}" 2>/dev/null; then
            log "${spec%%=*} did not stop in 10 s; killing it"
            kill -KILL "${spec#*=}" 2>/dev/null || true
        fi
    done
}

# Daemons are started in their own session with every stream closed or sent to a
# log, so that a caller that captures our output (a test, CI) never waits on them,
# and without fd 9 (the lock), which would otherwise stay held for their lifetime.
spawn() { setsid "$@" </dev/null >>"$LOG_DIR/spawn.log" 2>&1 9>&- & }

# --- install ------------------------------------------------------------------------

cmd_install() {
    need_root
    local missing=() bin
    for bin in munged mariadbd slurmdbd slurmctld slurmd sbatch sacct ip; do
        command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
    done
    if ((${#missing[@]} == 0)); then
        log "packages already installed ($(slurmd -V))"
        return 0
    fi
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    # Stop apt from starting the services with their packaged configs: this script
    # starts them with its own. Only a policy file we created is removed again.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        created_policy=1
    fi
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" ||
        { apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; } ||
        rc=$?
    ((created_policy)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install failed (rc $rc)"
    log "installed $(slurmd -V)"
}

# --- configuration --------------------------------------------------------------------

short_host() { hostname -s 2>/dev/null || hostname; }
node_name() { printf '%s\n' "${PLAN_EXPERIMENT_SLURM_NODE_NAME:-$(short_host)}"; }

# --- several nodes: network namespaces ------------------------------------------------
# Each node is a slurmd in its own network namespace (its own address on a private
# bridge), UTS namespace (its own host name) and mount namespace (its own /etc/hosts,
# bind-mounted from the state directory, so node names resolve there), so jobs,
# torchrun's rendezvous and gloo see separate hosts. Not `ip netns exec`: it remounts
# /sys, which hides the cgroup mounts slurmd needs.

multi_node() { ((NODES > 1)); }
node_names() { local i; for ((i = 1; i <= NODES; i++)); do printf '%s-node%s\n' "$CLUSTER" "$i"; done; }
node_addr() { printf '%s.%s\n' "$SUBNET" "$(($1 + 1))"; }  # node_addr <i>
ctld_addr() { if multi_node; then printf '%s.1\n' "$SUBNET"; else printf '127.0.0.1\n'; fi; }

net_up() {
    local i ns veth
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        log "network: bridge $BRIDGE $(ctld_addr)/24"
        ip link add "$BRIDGE" type bridge
        ip addr add "$(ctld_addr)/24" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    for ((i = 1; i <= NODES; i++)); do
        ns="$CLUSTER-node$i" veth="${NET_TAG}n$i"
        install -d -m 0755 "$NET_DIR"
        {
            printf '127.0.0.1 localhost\n%s %s\n' "$(ctld_addr)" "$(short_host)"
            local j
            for ((j = 1; j <= NODES; j++)); do printf '%s %s-node%s\n' "$(node_addr "$j")" "$CLUSTER" "$j"; done
        } >"$NET_DIR/$ns.hosts"
        if ! ip netns list | grep -qE "^$ns( |$)"; then
            log "network: namespace $ns at $(node_addr "$i")"
            ip netns add "$ns"
        fi
        if ! ip link show "$veth" >/dev/null 2>&1; then
            ip link add "$veth" type veth peer name eth0 netns "$ns"
            ip link set "$veth" master "$BRIDGE"
            ip -n "$ns" addr add "$(node_addr "$i")/24" dev eth0
        fi
        ip link set "$veth" up
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
    done
}

net_down() {
    local i ns
    for ((i = 1; i <= NODES; i++)); do
        ns="$CLUSTER-node$i"
        ip link del "${NET_TAG}n$i" 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
}

CHANGED_CONFIGS=()

# write_if_changed <path> <mode> <owner>: stdin to path, only touching it when different.
write_if_changed() {
    local path=$1 mode=$2 owner=$3 tmp
    tmp=$(mktemp "$path.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    chown "$owner" "$tmp"
    if [[ -f $path ]] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$path"
        CHANGED_CONFIGS+=("$path")
    fi
}

guard_foreign_config() {
    local f
    for f in "$CONF_DIR/slurm.conf" "$CONF_DIR/slurmdbd.conf"; do
        if [[ -e $f ]] && ! head -n1 "$f" | grep -qF "$MARKER" &&
            [[ ${PLAN_EXPERIMENT_SLURM_FORCE:-0} != 1 ]]; then
            die "$f was not written by this script; set PLAN_EXPERIMENT_SLURM_FORCE=1 to replace it"
        fi
    done
}

write_configs() {
    local host node_line cpus mem def_mem
    host=$(short_host)
    # The node line is whatever slurmd detects, so it always matches the machine
    # (a RealMemory above the real one would mark the node invalid). Drop UpTime.
    node_line=$(slurmd -C | head -n1)
    [[ $node_line == NodeName=* ]] || die "unexpected 'slurmd -C' output: $node_line"
    # Its own NodeName lets a second cluster's slurmd run beside the first one's.
    node_line="NodeName=$(node_name) ${node_line#NodeName=* }"
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
    mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
    # DefMemPerCPU: a job that asks for nothing gets 1 GiB per CPU (less on tiny
    # machines), so several small jobs share the node instead of one taking all memory.
    def_mem=$((mem / cpus))
    ((def_mem > 1024)) && def_mem=1024
    local nodes_conf="$node_line NodeAddr=127.0.0.1 State=UNKNOWN" per_node=""
    if multi_node; then
        # One pid file, log and spool per node: slurmd replaces %n with its NodeName.
        per_node="-%n"
        # The machine's CPUs and memory are shared out, so the nodes together never
        # promise more than there is.
        local per_cpus=$((cpus / NODES)) per_mem=$((mem / NODES)) i
        ((per_cpus >= 1)) || per_cpus=1
        nodes_conf=$(for ((i = 1; i <= NODES; i++)); do
            printf 'NodeName=%s-node%s NodeAddr=%s CPUs=%s RealMemory=%s State=UNKNOWN\n' \
                "$CLUSTER" "$i" "$(node_addr "$i")" "$per_cpus" "$per_mem"
        done)
        def_mem=$((per_mem / per_cpus))
        ((def_mem > 1024)) && def_mem=1024
    fi

    mkdir -p "$CONF_DIR"
    write_if_changed "$CONF_DIR/slurm.conf" 0644 root:root <<EOF
$MARKER
# Single-machine cluster; see docs/slurm-cluster.md for why each setting is here.
ClusterName=$CLUSTER
SlurmctldHost=$host($(ctld_addr))
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ReturnToService=2

StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SLURMD_SPOOL$per_node
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd$per_node.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd$per_node.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups: works in containers and on machines without a cgroup v2 delegation.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux

SchedulerType=sched/backfill
# Schedule at submit time instead of batching submissions for up to 3 s (the
# default, meant for high-throughput sites): small test jobs start at once.
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
MaxArraySize=$MAX_ARRAY_SIZE
MaxJobCount=10000
# An afterok on a failed job is cancelled at once instead of pending forever.
DependencyParameters=kill_invalid_depend
# Short waits keep cancels and tests fast.
KillWait=5
MinJobAge=300
InactiveLimit=0
SlurmdTimeout=60

# sacct needs accounting storage; slurmdbd is the supported way to get it.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
JobCompType=jobcomp/none

$nodes_conf
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

    # slurmdbd refuses a slurmdbd.conf that others can read (it holds a password).
    write_if_changed "$CONF_DIR/slurmdbd.conf" 0600 slurm:slurm <<EOF
$MARKER
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=slurm
AuthType=auth/munge
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$RUN_DIR/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(<"$DB_PASS_FILE")
StorageLoc=slurm_acct_db
EOF
}

prepare_dirs() {
    mkdir -p "$STATE_DIR"
    chmod 0755 "$STATE_DIR"  # daemons running as slurm and mysql must traverse it
    install -d -m 0755 -o slurm -g slurm "$LOG_DIR" "$RUN_DIR" "$STATE_DIR/state" "$CTLD_STATE"
    install -d -m 0755 -o root -g root "$SLURMD_SPOOL"
    install -d -m 0750 -o mysql -g mysql "$DB_DIR"
    if [[ ! -s $DB_PASS_FILE ]]; then
        (umask 077 && od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$DB_PASS_FILE")
    fi
}

# --- daemons ------------------------------------------------------------------------

munge_works() { munge -n </dev/null | unmunge >/dev/null; }

start_munged() {
    if munge_works 2>/dev/null; then
        log "munged: already answering"
        return 0
    fi
    install -d -m 0755 -o munge -g munge /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "munged: creating /etc/munge/munge.key"
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    log "munged: starting"
    # munged refuses to run as root; it forks and writes its own pid file.
    setpriv --reuid=munge --regid=munge --init-groups munged </dev/null >>"$LOG_DIR/spawn.log" 2>&1 9>&- ||
        die "munged failed to start; see /var/log/munge/munged.log"
    touch "$MUNGE_OURS"
    wait_for munged munge_works
}

db_ping() { mariadb-admin --no-defaults --socket="$DB_SOCKET" -uroot ping; }
db_sql() { mariadb --no-defaults --socket="$DB_SOCKET" -uroot -e "$1"; }

start_mariadbd() {
    if pid_alive "$DB_PID" && db_ping >/dev/null 2>&1; then
        log "mariadbd: already running"
        return 0
    fi
    if [[ ! -d $DB_DIR/mysql ]]; then
        log "mariadbd: initialising $DB_DIR"
        mariadb-install-db --no-defaults --datadir="$DB_DIR" --user=mysql \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$LOG_DIR/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed; see $LOG_DIR/mariadb-install.log"
    fi
    log "mariadbd: starting on 127.0.0.1:$DB_PORT"
    # --no-defaults: the packaged /etc/mysql config (port 3306, /run/mysqld) is not ours.
    # Small buffers and no fsync per commit: this is a throwaway accounting store.
    spawn mariadbd --no-defaults --user=mysql --datadir="$DB_DIR" \
        --socket="$DB_SOCKET" --pid-file="$DB_PID" --port="$DB_PORT" \
        --bind-address=127.0.0.1 --skip-name-resolve --log-error="$DB_DIR/mariadb.err" \
        --innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=2 \
        --innodb-lock-wait-timeout=900 --max-allowed-packet=16M
    wait_for mariadbd db_ping
    local pass
    pass=$(<"$DB_PASS_FILE")
    db_sql "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" ||
        die "could not create the accounting database"
}

dbd_answers() { sacctmgr -n -P list cluster format=cluster; }

start_slurmdbd() {
    if pid_alive "$RUN_DIR/slurmdbd.pid" && dbd_answers >/dev/null 2>&1; then
        log "slurmdbd: already running"
        return 0
    fi
    log "slurmdbd: starting"
    spawn slurmdbd
    wait_for slurmdbd dbd_answers
}

register_associations() {
    # Register before slurmctld starts so that it finds its cluster at once.
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null
    fi
    if ! sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT"; then
        sacctmgr -i -Q add account "$ACCOUNT" cluster="$CLUSTER" \
            description="plan-experiment local cluster" organization=local >/dev/null
    fi
    local -a users extra
    local u
    read -r -a extra <<<"${SUDO_USER:-} ${PLAN_EXPERIMENT_SLURM_USERS:-}"
    users=(root "${extra[@]}")
    for u in "${users[@]}"; do
        [[ -n $u ]] || continue
        if ! sacctmgr -n -P list assoc user="$u" account="$ACCOUNT" cluster="$CLUSTER" \
            format=user | grep -qx "$u"; then
            sacctmgr -i -Q add user "$u" account="$ACCOUNT" cluster="$CLUSTER" \
                defaultaccount="$ACCOUNT" >/dev/null
        fi
    done
}

ctld_answers() { scontrol ping | grep -q 'is UP'; }

start_slurmctld() {
    if pid_alive "$RUN_DIR/slurmctld.pid" && ctld_answers >/dev/null 2>&1; then
        log "slurmctld: already running"
        if [[ " ${CHANGED_CONFIGS[*]} " == *" $CONF_DIR/slurm.conf "* ]]; then
            # Most settings apply on reconfigure; node and port changes need stop + start.
            log "slurmctld: slurm.conf changed; scontrol reconfigure"
            scontrol reconfigure || log "warning: reconfigure failed; run stop, then start"
        fi
        return 0
    fi
    log "slurmctld: starting"
    spawn slurmctld
    wait_for slurmctld ctld_answers
}

node_state() { sinfo -h -N -o '%T' | head -n1; }
node_idle() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing) ]]; }
# Every node, for several: "idle" only when none is in another state.
nodes_idle() { local s; s=$(sinfo -h -N -o '%T' | sort -u | tr '\n' ' '); [[ -n $s && $s =~ ^((idle|mixed|allocated|completing)\ )+$ ]]; }

start_slurmd() {
    if multi_node; then
        start_slurmd_nodes
        return
    fi
    if ! pid_alive "$RUN_DIR/slurmd.pid"; then
        log "slurmd: starting"
        spawn slurmd -N "$(node_name)"
    else
        log "slurmd: already running"
    fi
    local deadline=$((SECONDS + TIMEOUT)) state
    until node_idle 2>/dev/null; do
        state=$(node_state 2>/dev/null || true)
        # A node left down or drained by an earlier, unclean stop comes back here.
        if [[ $state =~ ^(down|drain|drained|draining|fail) ]]; then
            scontrol update nodename="$(node_name)" state=resume 2>/dev/null || true
        fi
        ((SECONDS < deadline)) || die "node is '$state', not idle, after ${TIMEOUT}s; see $LOG_DIR"
        sleep 0.1
    done
}

start_slurmd_nodes() {
    local node
    for node in $(node_names); do
        if pid_alive "$RUN_DIR/slurmd-$node.pid"; then
            log "slurmd $node: already running"
            continue
        fi
        log "slurmd $node: starting in namespace $node"
        # Its own host name (UTS namespace): jobs, torchrun and gloo see a separate host.
        install -d -m 0755 -o root -g root "$SLURMD_SPOOL-$node"
        # shellcheck disable=SC2016  # $1 and $2 belong to the inner shell
        spawn nsenter --net="/run/netns/$node" unshare --uts --mount sh -c \
            'mount --bind "$2" /etc/hosts && hostname "$1" && exec slurmd -N "$1"' sh "$node" "$NET_DIR/$node.hosts"
    done
    local deadline=$((SECONDS + TIMEOUT)) states
    until nodes_idle 2>/dev/null; do
        states=$(sinfo -h -N -o '%N=%T' 2>/dev/null | tr '\n' ' ' || true)
        if [[ $states =~ (down|drain|fail) ]]; then
            scontrol update nodename="$(node_names | paste -sd,)" state=resume 2>/dev/null || true
        fi
        ((SECONDS < deadline)) || die "nodes are '$states', not all idle, after ${TIMEOUT}s; see $LOG_DIR"
        sleep 0.1
    done
}

sacct_answers() { sacct -n -X -S now-1minutes -o JobID >/dev/null; }

cmd_start() {
    need_root
    command -v slurmctld >/dev/null 2>&1 || die "Slurm is not installed; run: $0 install"
    local t0=$SECONDS
    guard_foreign_config
    prepare_dirs
    write_configs
    start_munged
    start_mariadbd
    multi_node && net_up
    start_slurmdbd
    register_associations
    start_slurmctld
    start_slurmd
    wait_for sacct sacct_answers
    log "cluster '$CLUSTER' ready in $((SECONDS - t0))s: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
    log "state and logs: $STATE_DIR; config: $CONF_DIR"
}

cmd_stop() {
    need_root
    # Reverse order of start: slurmctld flushes job records to slurmdbd as it
    # stops, and slurmdbd needs its database and munge until it has stopped.
    local -a slurmds=(slurmd="$RUN_DIR/slurmd.pid") node
    for node in $(multi_node && node_names); do slurmds+=("slurmd-$node=$RUN_DIR/slurmd-$node.pid"); done
    stop_pidfiles "${slurmds[@]}" slurmctld="$RUN_DIR/slurmctld.pid"
    multi_node && net_down
    stop_pidfiles slurmdbd="$RUN_DIR/slurmdbd.pid"
    # munged is shared with anything else on the machine: only stop one we started.
    if [[ -e $MUNGE_OURS ]]; then
        stop_pidfiles mariadbd="$DB_PID" munged="$MUNGE_PID"
        rm -f "$MUNGE_OURS"
    else
        stop_pidfiles mariadbd="$DB_PID"
    fi
    log "stopped"
}

cmd_purge() {
    cmd_stop
    log "deleting $STATE_DIR"
    rm -rf "$STATE_DIR"
}

cmd_status() {
    local name file
    for name in $(if multi_node; then node_names | sed 's/^/slurmd-/'; else echo slurmd; fi) slurmctld slurmdbd; do
        file="$RUN_DIR/$name.pid"
        if pid_alive "$file"; then echo "$name: running (pid $(<"$file"))"; else echo "$name: not running"; fi
    done
    if pid_alive "$DB_PID"; then echo "mariadbd: running (pid $(<"$DB_PID"))"; else echo "mariadbd: not running"; fi
    if munge_works 2>/dev/null; then echo "munged: answering"; else echo "munged: not answering"; fi
    if command -v scontrol >/dev/null 2>&1 && timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP' &&
        timeout 10 sinfo -h >/dev/null 2>&1 && timeout 10 sacct -n -X -S now-1minutes >/dev/null 2>&1; then
        echo "cluster: answering ($(sinfo -h -N -o '%N %T'))"
        return 0
    fi
    echo "cluster: not answering"
    return 1
}

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

# One start/stop/purge at a time: CI steps and developers' shells may overlap, and two
# concurrent starts would both initialise the database. The lock sits beside the state
# directory so that purge can delete the directory while holding it.
with_lock() {
    need_root
    exec 9>"${STATE_DIR%/}.lock"
    flock -w 300 9 || die "another slurm-cluster.sh is still running after 300 s"
    "$@"
}

case "${1:-}" in
    install) cmd_install ;;
    start) with_lock cmd_start ;;
    stop) with_lock cmd_stop ;;
    status) cmd_status ;;
    purge) with_lock cmd_purge ;;
    -h | --help | help) usage 0 ;;
    *) usage 2 ;;
esac
