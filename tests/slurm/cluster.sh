#!/bin/sh
# An emulated Slurm cluster of 4 nodes on this one machine, for the tests of
# contrib/slurm/bthost-run (as root):
#   tests/slurm/cluster.sh start    install Slurm and munge if missing, start munged, slurmctld
#                                   and one slurmd per node (n1..n4), wait for the nodes
#   tests/slurm/cluster.sh stop     stop them
# The nodes share this kernel (`slurmd -N nK`, NodeHostname = this host, ports 17001-17004);
# spool and pid paths carry %n, without which two of the four slurmd failed to launch tasks.
# Slurm 22.05 (Debian 12's slurm-wlm).
set -eu

conf=/etc/slurm/slurm.conf
host=$(hostname)

stop() {
    for n in 1 2 3 4; do
        [ -f "/run/slurmd-n$n.pid" ] && kill "$(cat "/run/slurmd-n$n.pid")" 2>/dev/null || true
    done
    [ -f /run/slurmctld.pid ] && kill "$(cat /run/slurmctld.pid)" 2>/dev/null || true
    sleep 1
}

case "${1:-start}" in
stop) stop; exit 0 ;;
start) ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

# Never overwrite a Slurm configuration that is not ours: this may be a real cluster's node.
if [ -f "$conf" ] && ! grep -q '^ClusterName=bthost$' "$conf"; then
    echo "cluster.sh: $conf belongs to another cluster; not touching it" >&2
    exit 1
fi

up() { [ "$(sinfo -h -N -o '%t' 2>/dev/null | grep -cE '^(idle|mix|alloc)')" = 4 ]; }

# Already running (a previous test run): keep it, jobs and all.
if [ -f "$conf" ] && pgrep -x slurmctld >/dev/null && [ "$(pgrep -cx slurmd)" = 4 ] && up; then
    echo "cluster.sh: 4 nodes up"
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

mkdir -p /etc/slurm /etc/munge /var/spool/slurmctld /var/log/slurm /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key /run/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || munged --force

stop
cat > "$conf" <<CONF
ClusterName=bthost
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldPidFile=/run/slurmctld.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
NodeName=n[1-4] NodeHostname=$host Port=17001-17004 CPUs=2
PartitionName=debug Nodes=n[1-4] Default=YES OverSubscribe=FORCE:8 MaxTime=INFINITE State=UP
CONF
for n in 1 2 3 4; do mkdir -p "/var/spool/slurmd/n$n"; done
slurmctld
for n in 1 2 3 4; do slurmd -N "n$n"; done

# Every node up (idle or mixed), within a minute.
i=0
until up; do
    i=$((i + 1))
    if [ $i -gt 120 ]; then
        echo "cluster.sh: the 4 nodes did not come up:" >&2
        sinfo -N >&2 || true
        exit 1
    fi
    sleep 0.5
done
echo "cluster.sh: 4 nodes up ($(sinfo -h -o '%N %t' | tr '\n' ' '))"
