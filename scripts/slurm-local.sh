#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for `difflow run --executor slurm` and its
# tests: slurmctld, slurmd and munged started without systemd, with their configuration,
# state, logs and pid files under .slurm/ (gitignored).
#
#   scripts/slurm-local.sh start    install the Debian packages when missing, start what is not running
#   scripts/slurm-local.sh stop     stop exactly the daemons whose pid files are under .slurm/
#   scripts/slurm-local.sh status   say what runs; exit 0 when the node is up
#
# Every command is idempotent. The node is `localhost` with this machine's CPUs and memory
# (less a margin); the partition is `debug`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${DIFFLOW_SLURM_STATE:-$ROOT/.slurm}"
CONF="$STATE/slurm.conf"
SOCKET="$STATE/run/munge.socket"
export SLURM_CONF="$CONF"
say() { printf '\033[1m[slurm-local]\033[0m %s\n' "$*" >&2; }

alive() { # alive PIDFILE: the process named in the pid file runs
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]} (Debian packages)"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

write_config() {
    mkdir -p "$STATE"/{munge,run,ctld,d,log}
    chown munge:munge "$STATE/munge" "$STATE/run" 2>/dev/null || true
    # munged wants its key private and its socket's folder open to every user.
    chmod 700 "$STATE/munge"
    chmod 755 "$STATE" "$STATE/run"
    if [ ! -s "$STATE/munge/munge.key" ]; then
        head -c 1024 /dev/urandom >"$STATE/munge/munge.key"
        chmod 400 "$STATE/munge/munge.key"
        chown munge:munge "$STATE/munge/munge.key" 2>/dev/null || true
    fi
    local cpus mem
    cpus=$(nproc)
    mem=$(free -m | awk '/^Mem:/ { m = $2 - 1024; print (m > 512 ? m : 512) }')
    cat >"$CONF" <<EOF
ClusterName=difflow
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
MailProg=/bin/true
MpiDefault=none
ReturnToService=2
KillWait=30
MinJobAge=600
SchedulerParameters=sched_interval=1
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

node_up() {
    local state
    state=$(sinfo -h -n localhost -o %T 2>/dev/null | head -n1)
    case "$state" in idle* | mixed* | alloc* | allocated* | completing*) return 0 ;; *) return 1 ;; esac
}

start() {
    install_packages
    write_config
    if ! alive "$STATE/munged.pid"; then
        rm -f "$SOCKET"
        # munged runs as the munge user, as it would under systemd.
        runuser -u munge -- munged --socket="$SOCKET" --key-file="$STATE/munge/munge.key" \
            --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
            --seed-file="$STATE/munge/munged.seed"
        cp "$STATE/munge/munged.pid" "$STATE/munged.pid"
    fi
    if ! alive "$STATE/slurmctld.pid"; then
        slurmctld -i -f "$CONF"
    fi
    if ! alive "$STATE/slurmd.pid"; then
        slurmd -N localhost -f "$CONF"
    fi
    # Poll until the node takes jobs (about a second after the daemons start).
    for _ in $(seq 1 300); do
        if node_up; then
            say "up: partition debug, node localhost (SLURM_CONF=$CONF)"
            return 0
        fi
        sleep 0.1
    done
    say "the node did not come up in 30 s; see $STATE/log/"
    return 1
}

stop_one() { # stop_one NAME PIDFILE
    if alive "$2"; then
        local pid
        pid=$(cat "$2")
        kill "$pid"
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        say "stopped $1 ($pid)"
    fi
    rm -f "$2"
}

stop() {
    stop_one slurmd "$STATE/slurmd.pid"
    stop_one slurmctld "$STATE/slurmctld.pid"
    stop_one munged "$STATE/munged.pid"
    rm -f "$STATE/munge/munged.pid"
}

status() {
    local ok=0
    for d in munged slurmctld slurmd; do
        if alive "$STATE/$d.pid"; then echo "$d: running ($(cat "$STATE/$d.pid"))"; else echo "$d: stopped"; ok=1; fi
    done
    if [ $ok -eq 0 ] && node_up; then echo "node localhost: up (SLURM_CONF=$CONF)"; else echo "node localhost: down"; ok=1; fi
    return $ok
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 1
        ;;
esac
