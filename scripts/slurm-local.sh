#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, to run profiles/slurm against a real scheduler:
# munged, a private MariaDB (its own data folder and port, never the system's), slurmdbd (so `sacct`, which the
# Snakemake SLURM plugin polls, works), slurmctld and slurmd; one node with this host's CPUs and memory, one
# partition and one account (the names profiles/slurm-local passes to profiles/slurm).
#
#   bash scripts/slurm-local.sh up       # start what is not running (idempotent); needs root and
#                                        #   apt-get install slurm-wlm slurmdbd munge mariadb-server
#   bash scripts/slurm-local.sh status   # what runs, the node's state
#   bash scripts/slurm-local.sh down     # stop exactly what `up` started, remove the config files it wrote
#   bash scripts/slurm-local.sh purge    # down, then delete its state folder (job database included)
#   bash scripts/slurm-local.sh overhead 10   # median delay from sbatch to a trivial job's start
#
# Everything it writes lives in $SFB_SLURM_STATE (default /var/lib/sfb-slurm), except /etc/slurm/slurm.conf
# and /etc/slurm/slurmdbd.conf (where sbatch/sacct look); it refuses to replace such files it did not write.
# $STATE/started lists the daemons it started (name and pid file): `down` stops only those.
set -euo pipefail

STATE="${SFB_SLURM_STATE:-/var/lib/sfb-slurm}"
CLUSTER=sfb
ACCOUNT=sfb
PARTITION=local
DB_PORT="${SFB_SLURM_DB_PORT:-3307}"
ETC=/etc/slurm
MARK="# written by sfprompt-bench scripts/slurm-local.sh"
HOST="$(hostname -s)"

die() { echo "slurm-local: $*" >&2; exit 1; }
log() { echo "slurm-local: $*" >&2; }

# alive NAME PIDFILE: the pid file names a running process called NAME
alive() {
  local pid
  pid="$(cat "$2" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}

# wait_for SECONDS WHAT CMD...: retry CMD every half second
wait_for() {
  local secs="$1" what="$2"
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || die "$what did not come up within ${secs}s (logs: $STATE/log/, $STATE/mysqld/)"
    sleep 0.5
  done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

record() { grep -qx "$1 $2" "$STATE/started" 2>/dev/null || echo "$1 $2" >> "$STATE/started"; }

check_prereqs() {
  [ "$(id -u)" = 0 ] || die "needs root (it starts munged, mariadbd, slurmdbd, slurmctld and slurmd)"
  local missing=()
  for cmd in munged munge slurmctld slurmd slurmdbd sacctmgr sbatch sacct scontrol sinfo mariadbd \
             mariadb-install-db mariadb-admin mariadb; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  done
  [ ${#missing[@]} = 0 ] || die "missing ${missing[*]}: apt-get install slurm-wlm slurmdbd munge mariadb-server"
}

# write_conf FILE MODE: stdin to FILE unless another tool's file is there
write_conf() {
  if [ -e "$1" ] && ! grep -qxF "$MARK" "$1"; then
    die "$1 exists and was not written by this script; refusing to replace it (move it away first)"
  fi
  local tmp="$1.tmp.$$"
  cat > "$tmp"
  chmod "$2" "$tmp"
  mv "$tmp" "$1"
  record conf "$1"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    grep -q '^munged ' "$STATE/started" || log "using the munged already running"
    return
  fi
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    record key /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  runuser -u munge -- munged || die "munged failed to start (log: /var/log/munge/munged.log)"
  wait_for 10 munged bash -c 'munge -n | unmunge'
  record munged /run/munge/munged.pid
}

start_mariadb() {
  local sock="$STATE/mysqld/mysqld.sock"
  # the server runs as user mysql: its socket, pid file and log live in a folder it owns
  install -d -o mysql -g mysql -m 0755 "$STATE/mysqld"
  if ! alive mariadbd "$STATE/mysqld/mysqld.pid"; then
    port_busy "$DB_PORT" && die "port $DB_PORT is in use by another process; set SFB_SLURM_DB_PORT"
    if [ ! -d "$STATE/mysql/mysql" ]; then
      mariadb-install-db --user=mysql --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
        --skip-test-db > "$STATE/log/mariadb-install.log" 2>&1 \
        || die "mariadb-install-db failed (log: $STATE/log/mariadb-install.log)"
    fi
    # --no-defaults: none of the system server's settings (socket, port, data folder) apply to this one
    mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" --socket="$sock" --port="$DB_PORT" \
      --bind-address=127.0.0.1 --pid-file="$STATE/mysqld/mysqld.pid" --log-error="$STATE/mysqld/mariadbd.log" \
      --innodb-buffer-pool-size=64M --innodb-log-file-size=48M > /dev/null 2>&1 &
    disown
    wait_for 60 mariadbd mariadb-admin --socket="$sock" ping
    record mariadbd "$STATE/mysqld/mysqld.pid"
  fi
  [ -s "$STATE/db.pass" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$STATE/db.pass")
  mariadb --socket="$sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$STATE/db.pass")';
    ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$STATE/db.pass")';
    CREATE DATABASE IF NOT EXISTS slurm_acct_db; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

write_configs() {
  local cpus mem
  cpus="$(nproc)"
  mem="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
  mkdir -p "$ETC"
  write_conf "$ETC/slurmdbd.conf" 0600 <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$STATE/db.pass")
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
EOF
  # One node: this host's CPUs (nproc) and memory (MemTotal, MB). CR_CPU_Memory schedules CPUs and memory, so
  # a job's --cpus-per-task and --mem decide how many run at once, as on a real cluster. linuxproc/none need
  # no cgroup set-up (containers).
  write_conf "$ETC/slurm.conf" 0644 <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageEnforce=associations,limits
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
KillWait=5
# a job runs at the nice value of the process that submitted it (a test session's background runs yield)
PropagatePrioProcess=1
InactiveLimit=0
MinJobAge=300
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

start_slurm() {
  local daemon
  for daemon in slurmdbd slurmctld slurmd; do
    if alive "$daemon" "$STATE/$daemon.pid"; then
      continue
    fi
    pgrep -x "$daemon" >/dev/null && die "another $daemon is running (not started by this script); stop it first"
    case $daemon in
      slurmdbd)
        "$daemon" || die "slurmdbd failed to start (log: $STATE/log/slurmdbd.log)"
        wait_for 60 slurmdbd sacctmgr -n list cluster
        sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
        ;;
      slurmctld)
        "$daemon" || die "slurmctld failed to start (log: $STATE/log/slurmctld.log)"
        wait_for 60 slurmctld scontrol ping
        ;;
      slurmd)
        "$daemon" || die "slurmd failed to start (log: $STATE/log/slurmd.log)"
        ;;
    esac
    wait_for 10 "$daemon pid file" test -s "$STATE/$daemon.pid"
    record "$daemon" "$STATE/$daemon.pid"
  done
  sacctmgr -n list account format=account | grep -qw "$ACCOUNT" \
    || sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="sfprompt-bench" Organization=sfb >/dev/null
  local user
  for user in root ${SUDO_USER:-}; do
    sacctmgr -n list association user="$user" account="$ACCOUNT" format=user | grep -qw "$user" \
      || sacctmgr -i add user "$user" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null
  done
  node_up() { sinfo -h -n "$HOST" -o %T | grep -Eq '^(idle|mixed|allocated)'; }
  if ! node_up; then
    wait_for 20 "node $HOST registration" bash -c "sinfo -h -n $HOST -o %T | grep -qv '^$'"
    scontrol update nodename="$HOST" state=resume 2>/dev/null || true
    wait_for 30 "node $HOST (sinfo state: $(sinfo -h -n "$HOST" -o %T))" node_up
  fi
}

up() {
  check_prereqs
  mkdir -p "$STATE/log" "$STATE/slurmctld" "$STATE/slurmd"
  chmod 0755 "$STATE"
  touch "$STATE/started"
  start_munge
  start_mariadb
  write_configs
  start_slurm
  log "up: cluster $CLUSTER, partition $PARTITION, account $ACCOUNT, node $HOST ($(nproc) CPUs," \
      "$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo) MB); stop with: bash scripts/slurm-local.sh down"
}

stop_pid() {  # NAME PIDFILE
  alive "$1" "$2" || return 0
  local pid
  pid="$(cat "$2")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 60); do
    [ -d "/proc/$pid" ] || return 0
    sleep 0.5
  done
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  [ -f "$STATE/started" ] || { log "nothing to stop ($STATE/started does not exist)"; return 0; }
  [ "$(id -u)" = 0 ] || die "needs root"
  # jobs of this private cluster cannot outlive it
  if alive slurmctld "$STATE/slurmctld.pid"; then
    scancel --full -u root 2>/dev/null || true
    [ -z "${SUDO_USER:-}" ] || scancel --full -u "$SUDO_USER" 2>/dev/null || true
  fi
  local name path
  for name in slurmd slurmctld slurmdbd mariadbd munged; do
    path="$(awk -v n="$name" '$1 == n {print $2}' "$STATE/started" | tail -1)"
    [ -n "$path" ] || continue
    stop_pid "$name" "$path"
    log "stopped $name"
  done
  while read -r name path; do
    case $name in
      conf) [ -f "$path" ] && grep -qxF "$MARK" "$path" && rm -f "$path" && log "removed $path" ;;
      key) rm -f "$path" && log "removed $path" ;;
    esac
  done < "$STATE/started"
  rm -f "$STATE/started"
}

status() {
  local name
  for name in munged mariadbd slurmdbd slurmctld slurmd; do
    local pidfile="$STATE/$name.pid"
    [ "$name" = mariadbd ] && pidfile="$STATE/mysqld/mysqld.pid"
    [ "$name" = munged ] && pidfile=/run/munge/munged.pid
    if alive "$name" "$pidfile"; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; fi
  done
  if command -v sinfo >/dev/null 2>&1 && alive slurmctld "$STATE/slurmctld.pid"; then
    sinfo -o "%P %a %D %T %c %m"
  fi
}

# overhead N: submit N trivial jobs one at a time to the idle node and print each one's delay from `sbatch`
# to the job's first command (what scheduling and job launch cost, without any work), then the median.
overhead() {
  local n="${1:-10}" i t0 t1 out delays=()
  out="$(mktemp -d)"
  for i in $(seq "$n"); do
    t0="$(date +%s.%N)"
    sbatch -W -Q -A "$ACCOUNT" -p "$PARTITION" -c 1 --mem 100 -t 1 -o /dev/null \
      --wrap "date +%s.%N > $out/$i" || die "sbatch failed"
    t1="$(cat "$out/$i")"
    delays+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')")
  done
  rm -rf "$out"
  echo "sbatch to job start (s): ${delays[*]}"
  printf '%s\n' "${delays[@]}" | sort -n | awk '{d[NR] = $1} END {printf "median %.2f s over %d jobs\n", \
    (NR % 2 ? d[(NR + 1) / 2] : (d[NR / 2] + d[NR / 2 + 1]) / 2), NR}'
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  purge) down; rm -rf "$STATE"; log "removed $STATE" ;;
  status) status ;;
  overhead) overhead "${2:-10}" ;;
  *) echo "usage: bash scripts/slurm-local.sh up|down|status|purge|overhead [N]" >&2; exit 2 ;;
esac
