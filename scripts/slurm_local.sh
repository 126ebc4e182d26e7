#!/usr/bin/env bash
# A real single-host SLURM cluster (Debian's slurm-wlm 22.05: slurmctld, slurmd, munge) for the cluster
# tests and for trying the cluster profiles by hand. Everything lives in one folder: a generated
# slurm.conf, its own munge key and munged socket, state, spool, logs and pid files. The one file
# outside it is a symlink /etc/slurm/slurm.conf -> the folder's slurm.conf, because SLURM clients inside
# a job (the executor plugin's nested srun) drop SLURM_CONF and read the default path, as on a real
# cluster; `start` refuses to replace a slurm.conf it did not make, `stop` removes the symlink.
#
#   scripts/slurm_local.sh install [--if-possible]  # apt-get install the daemons (root); no-op when
#                                            # present; --if-possible: say why not and exit 0
#   scripts/slurm_local.sh start [--gpus N]  # (re)start; prints the line to source: export SLURM_CONF=...
#   scripts/slurm_local.sh stop              # stop the daemons of the folder (by their pid files)
#   scripts/slurm_local.sh status            # sinfo of the running cluster
#
# Without --gpus: one node `cpu1` (this machine's cores and memory) in the default partition `main`,
# no generic resources, as on a cluster without GPUs (sbatch rejects --gpus there).
# With --gpus N: also a node `gpu1` with a fake GPU GRES (gpu:N, no real device behind it) in its own
# partition `gpu`; both nodes are slurmd processes on this host and share its cores.
#
# Environment: OMNIFUSE_SLURM_DIR (folder, default ${TMPDIR:-/tmp}/omnifuse-slurm),
# OMNIFUSE_SLURM_PORT (slurmctld port, default 16817; the nodes' slurmd use the next ports).
# `start` stops a cluster left behind in the same folder by a killed run first. Run as root: the daemons
# run as root (SlurmUser=root) and the jobs as the submitting user.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin" # the daemons live in sbin, which a user's PATH may lack

DIR=${OMNIFUSE_SLURM_DIR:-${TMPDIR:-/tmp}/omnifuse-slurm}
PORT=${OMNIFUSE_SLURM_PORT:-16817}
PACKAGES=(slurmctld slurmd slurm-client munge)
SYSTEM_CONF=/etc/slurm/slurm.conf

die() {
  echo "slurm_local: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
  exit 2
}

have_binaries() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null &&
    command -v munged >/dev/null
}

cmd_install() { # [--if-possible]: where the packages cannot be installed, say why and exit 0
  local soft="" log="${TMPDIR:-/tmp}/omnifuse-slurm-apt.log"
  [ "${1:-}" != "--if-possible" ] || soft=1
  if have_binaries; then
    return 0
  fi
  local why=""
  if [ "$(id -u)" -ne 0 ]; then
    why="installing it needs root"
  elif ! command -v apt-get >/dev/null; then
    why="apt-get is not available to install it (Debian/Ubuntu packages: ${PACKAGES[*]})"
  fi
  if [ -n "$why" ]; then
    [ -n "$soft" ] || die "SLURM (slurmctld, slurmd, munged) is not installed and $why"
    echo "slurm_local: SLURM (slurmctld, slurmd, munged) is not installed and $why: the cluster tests will be skipped" >&2
    return 0
  fi
  echo "slurm_local: installing ${PACKAGES[*]} with apt-get (log: $log)" >&2
  local start=$SECONDS
  # Debian starts services from postinst; this cluster is started by `start` instead, with its own
  # config. Where no policy-rc.d forbids it already, forbid it for the duration of the install.
  local policy=/usr/sbin/policy-rc.d added=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    added=1
  fi
  local apt=(apt-get -q -o DPkg::Lock::Timeout=120 -o Acquire::Retries=2 -o Acquire::http::Timeout=30)
  local status=0
  {
    # a stale or missing package list cannot find the packages: refresh it once if the install fails
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${PACKAGES[@]}" ||
      { "${apt[@]}" update && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${PACKAGES[@]}"; }
  } >"$log" 2>&1 || status=$?
  [ -z "$added" ] || rm -f "$policy"
  if [ "$status" -ne 0 ] || ! have_binaries; then
    [ -n "$soft" ] || die "apt-get install ${PACKAGES[*]} failed (log: $log)"
    echo "slurm_local: apt-get install ${PACKAGES[*]} failed (log: $log): the cluster tests will be skipped" >&2
    return 0
  fi
  echo "slurm_local: installed ${PACKAGES[*]} in $((SECONDS - start)) s" >&2
}

pid_alive() { # pid file -> 0 when its process is alive
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_pidfile() { # pid file, name: TERM, wait up to 10 s, then KILL
  local file=$1 name=$2 pid i
  pid_alive "$file" || {
    rm -f "$file"
    return 0
  }
  pid=$(cat "$file")
  kill "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "slurm_local: $name ($pid) ignored TERM, killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

cmd_stop() {
  [ -d "$DIR" ] || return 0
  local file
  # jobs first (their slurmstepd), then the nodes, the controller, munge
  if [ -f "$DIR/slurm.conf" ] && pid_alive "$DIR/slurmctld.pid"; then
    SLURM_CONF=$DIR/slurm.conf timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
  fi
  for file in "$DIR"/slurmd-*.pid; do
    [ -e "$file" ] && stop_pidfile "$file" slurmd
  done
  stop_pidfile "$DIR/slurmctld.pid" slurmctld
  stop_pidfile "$DIR/munged.pid" munged
  if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$DIR/slurm.conf" ]; then
    rm -f "$SYSTEM_CONF"
  fi
  # slurmstepd of jobs that were still running when slurmd stopped
  local pid
  for pid in $(pgrep -f "slurmstepd: \[" 2>/dev/null || true); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "SLURM_CONF=$DIR/slurm.conf"; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}

write_conf() { # gpus
  local gpus=$1 host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  # memory: a little below the total, as slurmd refuses a node that claims more than it has
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  cat >"$DIR/slurm.conf" <<EOF
# generated by scripts/slurm_local.sh
ClusterName=omnifuse-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# no accounting: finished jobs stay visible to squeue (the executors' status source) for an hour
MinJobAge=3600
ReturnToService=2
SchedulerType=sched/backfill
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
EOF
  local nodes="cpu1"
  echo "NodeName=cpu1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((PORT + 1)) CPUs=$cpus RealMemory=$mem State=UNKNOWN" >>"$DIR/slurm.conf"
  if [ "$gpus" -gt 0 ]; then
    nodes="cpu1 gpu1"
    # a fake GPU: slurmctld schedules it like a real one; the job sees CUDA_VISIBLE_DEVICES, no device
    sed -i "s/^MpiDefault=none$/MpiDefault=none\nGresTypes=gpu/" "$DIR/slurm.conf"
    echo "NodeName=gpu1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((PORT + 2)) CPUs=$cpus RealMemory=$mem Gres=gpu:$gpus State=UNKNOWN" >>"$DIR/slurm.conf"
    # slurmd drops a GPU without a device file; a character device (as /dev/null) avoids its warning
    : >"$DIR/gres.conf"
    mkdir -p "$DIR/dev"
    local i
    for i in $(seq 0 $((gpus - 1))); do
      mknod "$DIR/dev/gpu$i" c 1 3 2>/dev/null || touch "$DIR/dev/gpu$i"
      echo "NodeName=gpu1 Name=gpu File=$DIR/dev/gpu$i" >>"$DIR/gres.conf"
    done
    echo "PartitionName=main Nodes=cpu1 Default=YES MaxTime=INFINITE State=UP" >>"$DIR/slurm.conf"
    echo "PartitionName=gpu Nodes=gpu1 MaxTime=INFINITE State=UP" >>"$DIR/slurm.conf"
  else
    : >"$DIR/gres.conf"
    echo "PartitionName=main Nodes=cpu1 Default=YES MaxTime=INFINITE State=UP" >>"$DIR/slurm.conf"
  fi
  echo "$nodes" >"$DIR/nodes"
}

claim_system_conf() { # fail unless /etc/slurm/slurm.conf is absent or our symlink of a stopped cluster
  local target other
  if [ -L "$SYSTEM_CONF" ]; then
    target=$(readlink "$SYSTEM_CONF")
    [ -e "$target" ] || return 0 # dangling: its cluster folder is gone
    head -n 1 "$target" | grep -q '^# generated by scripts/slurm_local.sh' ||
      die "$SYSTEM_CONF points to $target, which this script did not make: not replacing it"
    other=$(dirname "$target")
    if [ "$other" != "$DIR" ] && pid_alive "$other/slurmctld.pid"; then
      die "another local cluster runs in $other (stop it: OMNIFUSE_SLURM_DIR=$other $0 stop)"
    fi
    return 0
  fi
  [ ! -e "$SYSTEM_CONF" ] || die "$SYSTEM_CONF exists and was not made by this script: not replacing a system SLURM's config"
}

wait_idle() { # nodes...
  local node state i
  for node in "$@"; do
    for i in $(seq 150); do
      state=$(SLURM_CONF=$DIR/slurm.conf sinfo -h -n "$node" -o %T 2>/dev/null || true)
      case "$state" in idle | mixed | allocated) break ;; esac
      sleep 0.2
    done
    case "$state" in
      idle | mixed | allocated) ;;
      *)
        tail -n 20 "$DIR"/log/*.log >&2 || true
        die "node $node is not up after 30 s (state: '${state:-none}'); logs in $DIR/log"
        ;;
    esac
  done
}

cmd_start() {
  local gpus=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --gpus)
        gpus=${2:?--gpus needs a number}
        shift 2
        ;;
      *) usage ;;
    esac
  done
  [[ "$gpus" =~ ^[0-9]+$ ]] || die "--gpus needs a number, got '$gpus'"
  [ "$(id -u)" -eq 0 ] || die "start needs root (the daemons run as root)"
  have_binaries || die "slurmctld/slurmd/munged not found: run '$0 install' (root, Debian) first"
  claim_system_conf
  cmd_stop
  rm -rf "$DIR"
  mkdir -p "$DIR"/{state,spool,log,munge}
  chmod 755 "$DIR"
  chmod 711 "$DIR/munge"
  head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
  chmod 400 "$DIR/munge/munge.key"
  munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed" ||
    die "munged failed to start; see $DIR/log/munged.log"
  write_conf "$gpus"
  mkdir -p "$(dirname "$SYSTEM_CONF")"
  ln -sfn "$DIR/slurm.conf" "$SYSTEM_CONF"
  export SLURM_CONF=$DIR/slurm.conf
  slurmctld -f "$SLURM_CONF" || die "slurmctld failed to start; see $DIR/log/slurmctld.log"
  local node
  for node in $(cat "$DIR/nodes"); do
    mkdir -p "$DIR/spool/$node"
    slurmd -f "$SLURM_CONF" -N "$node" || die "slurmd $node failed to start; see $DIR/log/slurmd-$node.log"
  done
  # shellcheck disable=SC2046
  wait_idle $(cat "$DIR/nodes")
  echo "export SLURM_CONF=$SLURM_CONF"
}

cmd_status() {
  [ -f "$DIR/slurm.conf" ] || die "no cluster in $DIR"
  SLURM_CONF=$DIR/slurm.conf sinfo -N -o '%N %P %T %c %m %G'
}

case "${1:-}" in
  install)
    shift
    cmd_install "$@"
    ;;
  start)
    shift
    cmd_start "$@"
    ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) usage ;;
esac
