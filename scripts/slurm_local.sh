#!/usr/bin/env bash
# A one-node SLURM cluster and a PostgreSQL server on this machine, for tests: `make test-cluster` (tests/conftest.py's
# `slurm_cluster` fixture) or by hand:
#
#   DIR=$(scripts/slurm_local.sh start)   # installs what is missing, starts munged, slurmctld, slurmd and postgres
#   . "$DIR/env"                          # SLURM_CONF (sinfo, sbatch, submitit) and RNNLAB_PG_URL (an Optuna storage)
#   sinfo; srun hostname
#   scripts/slurm_local.sh status "$DIR"
#   scripts/slurm_local.sh stop "$DIR"    # cancels the jobs left, stops the daemons, removes DIR
#
# Needs root (the daemons run as root, munged as munge, postgres as postgres) and, when the daemons are missing,
# Debian's apt-get and its package mirror: slurmctld, slurmd, slurm-client and munge (the parts of the slurm-wlm
# metapackage this needs, without its 30 plugin packages) and postgresql. Where these are missing it prints `skip: <reason>` on stderr
# and exits 3 (the fixture turns that into a skipped test). Everything it writes is under DIR (a new folder under
# /tmp when not given): slurm.conf, the daemons' state, spool, logs and pid files, munge's key and socket, the
# database. The node is this machine's hostname (address 127.0.0.1) with all its cores, in partition `debug`; no
# cgroups (proctrack/linuxproc, task/none), no job accounting database (sacct answers "accounting storage is
# disabled"; submitit then follows its jobs by their result files).
set -euo pipefail

WAIT_S=${SLURM_LOCAL_WAIT_S:-60}   # bounded wait for each daemon

skip() { echo "skip: $*" >&2; exit 3; }
die() { echo "error: $*" >&2; exit 1; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

install_missing() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sinfo >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [ -n "$(pg_bin)" ] || missing+=(postgresql)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || skip "${missing[*]} not installed and no apt-get to install them"
    echo "installing ${missing[*]} (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || skip "apt-get update failed (no network to the package mirror?)"
    apt-get install -y -qq "${missing[@]}" >&2 || skip "apt-get install ${missing[*]} failed"
}

wait_for() {  # wait_for WHAT COMMAND...: run COMMAND every 0.5 s until it succeeds, at most WAIT_S seconds
    local what=$1; shift
    local deadline=$((SECONDS + WAIT_S))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.5
    done
    echo "$what: up after $((SECONDS - started))s" >&2
}

node_idle() { [ "$(sinfo -h -n "$NODE" -o %T 2>/dev/null)" = idle ]; }

start() {
    [ "$(id -u)" -eq 0 ] || skip "the SLURM daemons need root (running as $(id -un))"
    install_missing
    local dir=${1:-$(mktemp -d /tmp/rnnlab-slurm.XXXXXX)}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    STARTING=$dir
    trap 'rc=$?; [ $rc -eq 0 ] || stop "$STARTING"; exit $rc' EXIT   # a failed start leaves nothing running
    chmod 755 "$dir"   # munge and postgres reach their folders through it
    mkdir -p "$dir"/{state,spool,log} "$dir/munge" "$dir/pg"
    chown munge:munge "$dir/munge"; chmod 711 "$dir/munge"   # munged: clients must reach its socket
    chown postgres:postgres "$dir/pg"; chmod 700 "$dir/pg"
    started=$SECONDS
    NODE=$(hostname -s)
    local cpus; cpus=$(nproc)

    # munge: its own key and socket, as the munge user
    runuser -u munge -- mungekey --create --keyfile="$dir/munge/munge.key" >&2
    runuser -u munge -- munged --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
    wait_for munged test -S "$dir/munge/munge.socket" || die "munged did not start: $(tail -3 "$dir/munge/munged.log")"

    cat > "$dir/slurm.conf" <<EOF
# written by scripts/slurm_local.sh: one node, $NODE, for tests
ClusterName=rnnlab-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: also how long a requeued job waits before it may start again (120 s by default)
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# a job step that ignores SIGTERM is killed 5 s later (30 s by default)
KillWait=5
SchedulerParameters=bf_interval=1
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -i
    slurmd
    wait_for "slurm node $NODE idle" node_idle \
        || die "node $NODE not idle after ${WAIT_S}s: $(sinfo -h -o '%T %E' 2>&1 | head -1); logs in $dir/log"

    # postgres: a fresh cluster in $dir/pg, on a loopback port, trust authentication (loopback only)
    local pg port; pg=$(pg_bin); port=$(free_port)
    runuser -u postgres -- "$pg/initdb" -D "$dir/pg/data" -U postgres --auth=trust -E UTF8 >"$dir/log/initdb.log"
    runuser -u postgres -- "$pg/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/postgres.log" -w -t "$WAIT_S" \
        -o "-p $port -k $dir/pg -c listen_addresses=127.0.0.1" start >&2 \
        || die "postgres did not start: $(tail -3 "$dir/pg/postgres.log")"

    cat > "$dir/env" <<EOF
export SLURM_CONF=$dir/slurm.conf
export RNNLAB_PG_URL=postgresql://postgres@127.0.0.1:$port/postgres
EOF
    echo "cluster ready in $((SECONDS - started))s: . $dir/env" >&2
    trap - EXIT
    echo "$dir"
}

pid_of() { [ -s "$1" ] && cat "$1" || true; }

stop_pid() {  # stop_pid PID NAME: SIGTERM, then SIGKILL after WAIT_S/4 s
    local pid=$1 name=$2 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < WAIT_S * 2 / 4; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    echo "$name ($pid) ignored SIGTERM: SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    local dir=${1:?usage: slurm_local.sh stop DIR}
    [ -f "$dir/slurm.conf" ] || die "$dir holds no cluster of slurm_local.sh (no slurm.conf)"
    export SLURM_CONF=$dir/slurm.conf
    if [ -n "$(pid_of "$dir/slurmctld.pid")" ]; then  # jobs first: their processes outlive slurmd (no cgroups)
        scancel --full --quiet --user=root 2>/dev/null || true
        local deadline=$((SECONDS + WAIT_S))
        while [ -n "$(squeue -h -o %i 2>/dev/null)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
    fi
    stop_pid "$(pid_of "$dir/slurmd.pid")" slurmd
    stop_pid "$(pid_of "$dir/slurmctld.pid")" slurmctld
    if [ -f "$dir/pg/data/postmaster.pid" ]; then
        runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m fast -w stop >&2 || true
    fi
    stop_pid "$(pid_of "$dir/munge/munged.pid")" munged
    rm -rf "$dir"
}

status() {
    local dir=${1:?usage: slurm_local.sh status DIR}
    [ -f "$dir/env" ] || die "$dir holds no running cluster of slurm_local.sh (no env file)"
    # shellcheck disable=SC1091
    . "$dir/env"
    sinfo
    squeue
    runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$dir/pg/data" status
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    status) shift; status "$@" ;;
    *) echo "usage: $0 start [DIR] | status DIR | stop DIR" >&2; exit 2 ;;
esac
